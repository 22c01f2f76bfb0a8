/**
 * Where `pmq consume` starts each partition (--from / -o), as rpk's --offset does:
 * `earliest` (`start`), `latest` (`end`), an offset `N`, `-N` (N records before the end),
 * `+N` (N after the log start) and `@T` (the first record at or after time T: milliseconds
 * since the epoch or an ISO 8601 time, found by the client's offsetsForTimes).
 *
 * An absolute offset that a partition does not hold is an error naming each partition's range,
 * unless --auto-offset-reset says where such a partition goes. Relative starts are clamped to
 * what the partition holds. No I/O but through the client.
 */
import { InvalidArgumentError } from 'commander';

import { PmqError } from '../common/errors.js';
import { offsetsForTimes, type Client, type PartitionInfo } from '../clients/index.js';

export type From = 'earliest' | 'latest' | number | { fromEnd: number } |
  { fromStart: number } | { timestampMs: number };

export function fromArgument(text: string): From {
  if (text === 'earliest' || text === 'start' || text === 'oldest') return 'earliest';
  if (text === 'latest' || text === 'end' || text === 'newest') return 'latest';
  const relative = /^([+-])(\d+)$/.exec(text);
  if (relative !== null && Number.isSafeInteger(Number(relative[2]))) {
    const count = Number(relative[2]);
    return relative[1] === '-' ? { fromEnd: count } : { fromStart: count };
  }
  if (text.startsWith('@')) {
    const time = text.slice(1);
    const timestampMs = /^\d+$/.test(time) ? Number(time) : Date.parse(time);
    if (Number.isSafeInteger(timestampMs) && timestampMs >= 0) return { timestampMs };
    throw new InvalidArgumentError(`${text}: after @ comes milliseconds since the epoch or an ` +
      'ISO 8601 time, e.g. @1763900000000 or @2026-12-06T12:00:00Z');
  }
  const offset = Number(text);
  if (/^\d+$/.test(text) && Number.isSafeInteger(offset)) return offset;
  throw new InvalidArgumentError('must be earliest, latest, an offset N, -N (N before the ' +
    'end), +N (N after the start) or @TIME (ms since the epoch, or ISO 8601)');
}

/** earliest/latest need no per-partition work; everything else does. */
export function isPerPartition(from: From): from is Exclude<From, 'earliest' | 'latest'> {
  return from !== 'earliest' && from !== 'latest';
}

function rangeText(info: PartitionInfo): string {
  return `partition ${info.partition}: ${info.logStart}..${info.highWatermark}`;
}

/**
 * The offset each partition starts at, or a PMQ_ERR_OFFSET_OUT_OF_RANGE naming each
 * partition's range when an absolute offset is not held and no reset policy was given.
 */
export async function startOffsets(client: Client, topic: string, from: Exclude<From,
  'earliest' | 'latest'>, partitions: PartitionInfo[], resetGiven: boolean):
  Promise<Map<number, number>> {
  const starts = new Map<number, number>();
  if (typeof from === 'number') {
    const outside = partitions.filter((p) => from < p.logStart || from > p.highWatermark);
    if (outside.length > 0 && !resetGiven) {
      throw new PmqError('PMQ_ERR_OFFSET_OUT_OF_RANGE', `offset ${from} is not held by ` +
        `${topic} ${outside.map(rangeText).join(', ')} (log start..high watermark): pick one ` +
        'in range, -N / +N / @TIME, or --auto-offset-reset earliest|latest to move such ' +
        'partitions there');
    }
    for (const p of partitions) starts.set(p.partition, from);
  } else if ('fromEnd' in from) {
    for (const p of partitions) {
      starts.set(p.partition, Math.max(p.logStart, p.highWatermark - from.fromEnd));
    }
  } else if ('fromStart' in from) {
    for (const p of partitions) {
      starts.set(p.partition, Math.min(p.highWatermark, p.logStart + from.fromStart));
    }
  } else {
    const found = await offsetsForTimes(client, topic, from.timestampMs,
      partitions.map((p) => p.partition));
    for (const p of partitions) starts.set(p.partition, found.get(p.partition) ?? p.highWatermark);
  }
  return starts;
}
