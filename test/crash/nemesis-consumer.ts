/**
 * A nemesis consumer process (test/crash/nemesis.ts): assigns every partition of `topic`,
 * starts each at the group's committed offset (or 0 when none: a consumer killed before its
 * first commit reads from the beginning) and records `assign` with that offset, then records
 * one `poll` per batch handed to it and commits its positions every `commitEveryMs`. A stdin
 * line {"until": {"<partition>": offset}} says where to stop: once every position reached it,
 * it prints {"event":"done", ...} and exits 0. A failure of the iterator (a CRC or structure
 * check, anything not retriable) prints {"event":"error", code, message} and exits 3.
 */
import { createInterface } from 'node:readline';

import { PmqError } from '../../clients/index.js';
import { connectRetrying, fileRecorder, retrying } from './nemesis-common.js';

interface Args {
  broker: string;
  topic: string;
  partitions: number;
  process: string;
  historyPath: string;
  groupId: string;
  commitEveryMs: number;
  requestTimeoutMs: number;
}

const args = JSON.parse(process.argv[2]!) as Args;
const emit = (line: unknown): void => { process.stdout.write(`${JSON.stringify(line)}\n`); };
const history = fileRecorder(args.historyPath);
const client = await connectRetrying(args.broker, args.process, args.requestTimeoutMs);
// A position retention deleted moves to the log start: past deleted records only (the final
// read does not hold them either), never past a stored one.
const consumer = client.consumer({ groupId: args.groupId, start: 'earliest', maxWaitMs: 200,
  autoOffsetReset: 'earliest' });
const topic = args.topic;
const partitions = Array.from({ length: args.partitions }, (_, partition) => partition);
const starts = await retrying(() => Promise.all(partitions.map((partition) =>
  consumer.committed(topic, partition))));
await retrying(() => consumer.assign(partitions.map((partition) => ({ topic, partition }))));
for (const partition of partitions) {
  const offset = Math.max(0, starts[partition]!);
  if (offset > 0) consumer.seek(topic, partition, offset);
  history.record(args.process, { kind: 'assign', topic, partition, offset });
}
emit({ event: 'ready' });

let until: Record<string, number> | undefined;
function reached(): boolean {
  if (until === undefined) return false;
  return consumer.positions().every(({ partition, offset }) =>
    offset >= (until![String(partition)] ?? 0));
}
const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  until = (JSON.parse(line) as { until: Record<string, number> }).until;
  if (reached()) void consumer.close();
});

let committing = false;
const commitTimer = setInterval(() => {
  if (committing) return;
  committing = true;
  consumer.commit().catch(() => undefined).finally(() => { committing = false; });
}, args.commitEveryMs);

const text = new TextDecoder();
let polls = 0;
let records = 0;
try {
  for await (const batch of consumer.batches()) {
    history.record(args.process, { kind: 'poll', topic, partition: batch.partition,
      records: batch.records.map((record) => ({ offset: record.offset,
        value: record.value === null ? '' : text.decode(record.value) })) });
    polls += 1;
    records += batch.records.length;
    if (reached()) await consumer.close();
  }
} catch (error) {
  const code = error instanceof PmqError ? error.code : 'unknown';
  emit({ event: 'error', code, message: String(error) });
  process.exit(3);
}
clearInterval(commitTimer);
await client.close();
input.close();
process.stdin.destroy();
emit({ event: 'done', polls, records });
