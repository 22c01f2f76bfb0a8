/**
 * Recovery of idempotent producers' state (docs/broker.md, "Producer state"): the one place
 * where the broker reads bytes that producers wrote — batch headers only, at start, before it
 * serves. For each partition it walks the durable batches of its last segments (from the head
 * segment backwards, whole segments, until PRODUCER_LIMITS.recoveryBatchesMin batches are
 * seen) through the segment's consumer read grant, with validated reads of up to
 * recoveryReadChunkBytes, and hands every batch's (producerId, baseSequence, records, offset)
 * to ProducerStates in log order. Payload bytes are read into the chunk buffer (a batch that
 * is larger than a chunk is skipped over unread) but never interpreted.
 *
 * Offsets come from the broker's own accounting (the segment's baseOffset plus the records
 * walked), not from the producer-written header. The header's CRC is not checked (that needs
 * the whole batch); a header that does not parse (bad magic, a length past the watermark)
 * ends that segment's walk with a warning: producers whose batches were not read are unknown,
 * which only costs their duplicate detection for the batches in flight at the crash.
 */
import { invariant } from '../common/invariant.js';
import { PRODUCER_LIMITS } from '../common/limits.js';
import {
  ATTRIBUTE_CONTROL_MASK, ATTRIBUTES_POSITION, BASE_SEQUENCE_POSITION, BATCH_LENGTH_MIN,
  BATCH_LENGTH_POSITION, LAST_OFFSET_DELTA_POSITION, LOG_OVERHEAD_SIZE_BYTES, MAGIC_POSITION,
  MAGIC_V2, MAX_TIMESTAMP_POSITION, PRODUCER_ID_POSITION, RECORD_BATCH_HEADER_SIZE_BYTES,
} from '../common/record-batch/layout.js';
import type { RestoredBatch } from './producer-state.js';
import type { SegmentView } from './sequencer-types.js';

/** What the scan needs from the partition: where a segment is, and a way to read it. */
export interface SegmentReader {
  /** Reads `length` bytes at `position` of the segment into dst[0, length). */
  read(segment: SegmentView, position: number, dst: Uint8Array, length: number): Promise<void>;
}

export interface ParsedHeader {
  readonly sizeBytes: number;
  readonly records: number;
  readonly isControl: boolean;
  readonly producerId: number;
  readonly baseSequence: number;
  /** The batch's largest record timestamp (producer-written; NO_TIMESTAMP: none). */
  readonly maxTimestamp: number;
}

/** The header fields recovery needs, or a reason why the bytes are not a batch header. */
export function parseBatchHeader(bytes: Uint8Array, position: number, bytesLeft: number):
  ParsedHeader | string {
  const view = new DataView(bytes.buffer, bytes.byteOffset + position,
    RECORD_BATCH_HEADER_SIZE_BYTES);
  if (view.getInt8(MAGIC_POSITION) !== MAGIC_V2) return 'magic is not 2';
  const batchLength = view.getInt32(BATCH_LENGTH_POSITION);
  const sizeBytes = batchLength + LOG_OVERHEAD_SIZE_BYTES;
  if (batchLength < BATCH_LENGTH_MIN || sizeBytes > bytesLeft) {
    return `batchLength ${batchLength} does not fit the ${bytesLeft} bytes left`;
  }
  const lastOffsetDelta = view.getInt32(LAST_OFFSET_DELTA_POSITION);
  if (lastOffsetDelta < 0) return `lastOffsetDelta ${lastOffsetDelta}`;
  const producerId = view.getBigInt64(PRODUCER_ID_POSITION);
  const safe = producerId <= BigInt(Number.MAX_SAFE_INTEGER) && producerId >= -1n;
  const maxTimestamp = view.getBigInt64(MAX_TIMESTAMP_POSITION);
  return { sizeBytes, records: lastOffsetDelta + 1,
    isControl: (view.getInt16(ATTRIBUTES_POSITION) & ATTRIBUTE_CONTROL_MASK) !== 0,
    producerId: safe ? Number(producerId) : -1,
    baseSequence: view.getInt32(BASE_SEQUENCE_POSITION),
    maxTimestamp: maxTimestamp >= -1n && maxTimestamp <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(maxTimestamp) : -1 };
}

/** Walks one segment's durable batches from position 0; the idempotent ones are returned. */
async function walkSegment(reader: SegmentReader, segment: SegmentView, buffer: Uint8Array):
  Promise<{ batches: RestoredBatch[]; walked: number; problem: string | null }> {
  const batches: RestoredBatch[] = [];
  const { walked, problem } = await walkSegmentHeaders(reader, segment, buffer,
    (header, offset) => {
      if (!header.isControl && header.producerId >= 0) {
        batches.push({ producerId: header.producerId, baseSequence: header.baseSequence,
          records: header.records, baseOffset: offset });
      }
    });
  return { batches, walked, problem };
}

/**
 * Walks the headers of one segment's durable batches from position 0, in log order, handing
 * each to `visit` with the offset the walk counts. `problem`: why the walk stopped early.
 */
export async function walkSegmentHeaders(reader: SegmentReader, segment: SegmentView,
  buffer: Uint8Array, visit: (header: ParsedHeader, offset: number) => void):
  Promise<{ walked: number; problem: string | null }> {
  const end = segment.durable.position;
  let walked = 0;
  let position = 0;
  let offset = segment.baseOffset;
  while (position < end) {
    const length = Math.min(buffer.byteLength, end - position);
    if (length < RECORD_BATCH_HEADER_SIZE_BYTES) {
      return { walked, problem: `${length} bytes before the watermark: not a header` };
    }
    await reader.read(segment, position, buffer, length);
    let inChunk = 0;
    while (inChunk + RECORD_BATCH_HEADER_SIZE_BYTES <= length) {
      const header = parseBatchHeader(buffer, inChunk, end - position - inChunk);
      if (typeof header === 'string') return { walked, problem: header };
      visit(header, offset);
      offset += header.records;
      walked += 1;
      inChunk += header.sizeBytes;
      if (position + inChunk >= end) break;
    }
    position += inChunk;
  }
  invariant(position === end, 'walk ends at the watermark', { position, end });
  if (offset !== segment.durable.offsetLast + 1) {
    return { walked, problem: `batches hold offsets up to ${offset - 1}, the ` +
      `watermark says ${segment.durable.offsetLast}` };
  }
  return { walked, problem: null };
}

/**
 * The idempotent batches of the partition's last durable segments, in log order. `warn` is
 * told about segments whose walk stopped early (their remaining batches are not returned).
 */
export async function scanProducerBatches(reader: SegmentReader,
  segments: readonly SegmentView[], warn: (segment: SegmentView, problem: string) => void,
  batchesMin = PRODUCER_LIMITS.recoveryBatchesMin): Promise<RestoredBatch[]> {
  const buffer = new Uint8Array(PRODUCER_LIMITS.recoveryReadChunkBytes);
  const found: RestoredBatch[][] = [];
  let seen = 0;
  for (let index = segments.length - 1; index >= 0 && seen < batchesMin; index -= 1) {
    const segment = segments[index]!;
    if (segment.durable.position === 0) continue;
    const walked = await walkSegment(reader, segment, buffer);
    if (walked.problem !== null) warn(segment, walked.problem);
    found.unshift(walked.batches);
    seen += Math.max(1, walked.walked);
  }
  return found.flat();
}
