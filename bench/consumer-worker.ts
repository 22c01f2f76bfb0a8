/**
 * A benchmark consumer process (spawned by bench/run.ts): assigns `partitions` of `topic`,
 * reads from the earliest offset and, for every record, counts end-to-end latency as now minus
 * the stamp its producer wrote in the value's first 8 bytes (worker-io.ts). Prints
 * {"event":"ready"} once assigned; a stdin line {"until": {"<partition>": endOffset}} says
 * where to stop (the coordinator sends it once the producers are done); then prints its
 * {"event":"done"} line and exits 0.
 */
import { createInterface } from 'node:readline';

import { connect } from '../clients/index.js';
import { Histogram } from './histogram.js';
import { emit, ownCpuSeconds, STAMP_BYTES, wallMs, type ConsumerArgs } from './worker-io.js';

const PROGRESS_MS = 500;

const args = JSON.parse(process.argv[2]!) as ConsumerArgs;
const client = await connect({ brokers: [args.broker], transports: args.transports,
  netDevices: args.netDevices, busyPoll: args.busyPoll,
  clientId: `bench-consumer-${args.partitions.join('-')}` });
const consumer = client.consumer({ start: 'earliest', maxWaitMs: 100 });
await consumer.assign(args.partitions.map((partition) => ({ topic: args.topic, partition })));

const latency = new Histogram();
const totals = { records: 0, bytes: 0, firstMs: 0, lastMs: 0 };
let until: Record<string, number> | undefined;

function reached(): boolean {
  if (until === undefined) return false;
  const positions = new Map(consumer.positions().map((p) => [p.partition, p.offset]));
  return args.partitions.every((p) => (positions.get(p) ?? 0) >= (until![String(p)] ?? 0));
}

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  until = (JSON.parse(line) as { until: Record<string, number> }).until;
  if (reached()) void consumer.close();
});
const progress = setInterval(() => emit({ event: 'progress', records: totals.records }),
  PROGRESS_MS);
emit({ event: 'ready' });
const cpuStart = ownCpuSeconds();

/** A view of the buffer the last values lay in: the values of a batch share one buffer, so
 *  this reads their stamps without an allocation per record. */
let stampView: DataView = new DataView(new ArrayBuffer(0));

function stampOf(value: Uint8Array): number {
  if (value.buffer !== stampView.buffer) stampView = new DataView(value.buffer);
  return stampView.getFloat64(value.byteOffset, true);
}

for await (const batch of consumer.batches()) {
  const now = wallMs();
  if (totals.firstMs === 0) totals.firstMs = now;
  totals.lastMs = now;
  for (const record of batch.records) {
    const value = record.value;
    if (value === null || value.byteLength < STAMP_BYTES) continue;
    const stampMs = stampOf(value);
    if (stampMs === 0) continue;
    totals.records += 1;
    totals.bytes += value.byteLength;
    latency.record((now - stampMs) * 1e6);
  }
  if (reached()) await consumer.close();
}
clearInterval(progress);
const cpuSeconds = ownCpuSeconds() - cpuStart;
await client.close();
input.close();
process.stdin.destroy();
emit({ event: 'done', role: 'consumer', records: totals.records, bytes: totals.bytes, failed: 0,
  firstMs: totals.firstMs, lastMs: totals.lastMs, cpuSeconds, latency: latency.toJSON() });
