/**
 * A benchmark producer process (spawned by bench/run.ts). Closed loop: sends of up to 256 KiB
 * of records, as many outstanding as the producer's byte budget allows, each record's acked
 * latency counted from its send() call. Open loop (`rate` > 0): record i is due at
 * start + i / rate and is sent then, whatever happened to earlier records; its latency is
 * counted from that INTENDED time, so a stall delays every record due during it and the stall
 * shows in the percentiles (no coordinated omission). Each value starts with the time its
 * latency is counted from (worker-io.ts, STAMP_BYTES), which consumers use for end-to-end
 * latency. Partitions are used round robin (per send, shifted by the producer's number).
 */
import { connect, type Producer, type ZeroCopyWrites } from '../clients/index.js';
import { Histogram } from './histogram.js';
import { emit, ownCpuSeconds, STAMP_BYTES, wallMs, type ProducerArgs } from './worker-io.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const PROGRESS_MS = 500;

const args = JSON.parse(process.argv[2]!) as ProducerArgs;
const latency = new Histogram();
const totals = { records: 0, failed: 0, firstMs: 0, lastMs: 0 };
/** Per partition, the offset after the last record this producer had acknowledged. */
const ends: Record<number, number> = {};

/**
 * Value buffers of sends that have resolved, reused: only the stamp changes, so a producer of
 * large records measures pmq, not allocating and filling a fresh buffer per record (which was
 * a quarter of this process's CPU with 1 MiB records).
 */
const freeValues: Buffer[] = [];

function valueAt(stampMs: number): Buffer {
  let value = freeValues.pop();
  if (value === undefined) {
    value = Buffer.allocUnsafe(Math.max(STAMP_BYTES, args.recordBytes));
    value.fill(0x61, STAMP_BYTES);
  }
  value.writeDoubleLE(stampMs, 0);
  return value;
}

/**
 * Sends `count` records stamped `stampMs` to `partition`. They share one value buffer: the
 * producer copies values into its batches and needs them unchanged only until send() resolves.
 */
async function send(producer: Producer, partition: number, stampMs: number,
  count: number): Promise<void> {
  const value = valueAt(stampMs);
  const records = new Array<{ value: Buffer }>(count);
  for (let i = 0; i < count; i += 1) records[i] = { value };
  try {
    const results = await producer.send({ topic: args.topic, partition, records });
    const now = wallMs();
    let end = ends[partition] ?? 0;
    for (const r of results) end = Math.max(end, r.offset + 1);
    ends[partition] = end;
    latency.record((now - stampMs) * 1e6, count);
    totals.records += count;
    totals.lastMs = now;
  } catch (error) {
    totals.failed += count;
    process.stderr.write(`bench producer ${args.producer}: ${String(error)}\n`);
  }
  // Acknowledged durable (acks all): the producer never reads the value again. Not after a
  // failure (another batch of the send may still be queued) nor with acks none (a retried
  // batch may be encoded again until flush(): docs/clients.md).
  if (args.acks === 'all' && totals.failed === 0) freeValues.push(value);
}

async function closedLoop(producer: Producer, endMs: number): Promise<void> {
  const chunk = Math.max(1, Math.min(4096, Math.floor(256 * KIB / args.recordBytes)));
  // Enough to keep the producer's batches in flight and a few queued behind them; more only
  // adds queueing to the measured latency and keeps records alive for the GC to copy (32 MiB
  // here cost ~30% more producer CPU and 8x the ack latency, for no throughput).
  const windowBytes = Math.max(4 * MIB, 8 * args.recordBytes);
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  for (let i = 0; sent < args.count && wallMs() < endMs; i += 1) {
    const n = Math.min(chunk, args.count - sent);
    const now = wallMs();
    const sending = send(producer, (args.producer + i) % args.partitions, now, n);
    sent += n;
    inFlight.add(sending);
    void sending.finally(() => inFlight.delete(sending));
    while (inFlight.size * n * args.recordBytes >= windowBytes || inFlight.size >= 1024) {
      await Promise.race(inFlight);
    }
  }
  await Promise.all(inFlight);
}

/** How long before a record is due the open loop stops sleeping on timers. */
const PACE_SPIN_MS = 2;

async function openLoop(producer: Producer, endMs: number): Promise<void> {
  const intervalMs = 1000 / args.rate;
  const startMs = wallMs();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < args.count;) {
    const dueMs = startMs + i * intervalMs;
    if (dueMs >= endMs) break;
    const now = wallMs();
    if (dueMs > now) {
      // A timer fires up to ~1 ms late, and every record it delays would carry that lateness
      // in its latency (stamped with its intended time): sleep until ~2 ms before the record
      // is due, then yield one loop turn at a time (acks still run) until it is.
      if (dueMs - now > PACE_SPIN_MS) {
        await new Promise((resolve) => setTimeout(resolve, dueMs - now - PACE_SPIN_MS));
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
      continue;
    }
    // Everything due by now goes out at once, each stamped with its own intended time.
    const sending = send(producer, (args.producer + i) % args.partitions, dueMs, 1);
    inFlight.add(sending);
    void sending.finally(() => inFlight.delete(sending));
    i += 1;
  }
  await Promise.all(inFlight);
}

/** One record per partition before timing starts: connections to the broker and the storage
 *  node, metadata and buffers are set up. Its stamp is 0: consumers skip it. */
async function warmUp(producer: Producer): Promise<void> {
  for (let partition = args.producer % args.partitions; partition < args.partitions;
    partition += Math.max(1, Math.min(args.producers, args.partitions))) {
    const results = await producer.send({ topic: args.topic, partition,
      records: [{ value: valueAt(0) }] });
    for (const r of results) ends[r.partition] = Math.max(ends[r.partition] ?? 0, r.offset + 1);
  }
}

const client = await connect({ brokers: [args.broker], transports: args.transports,
  netDevices: args.netDevices, busyPoll: args.busyPoll,
  clientId: `bench-producer-${args.producer}` });
/**
 * To compare zero copy with a copy, and its two ways of writing, in one tree
 * (docs/benchmarks.md): a number of bytes or Infinity; 'pieces' or 'iov'.
 */
const zeroCopyMinBytes = process.env.PMQ_BENCH_ZERO_COPY_MIN_BYTES === undefined ? undefined
  : Number(process.env.PMQ_BENCH_ZERO_COPY_MIN_BYTES);
const zeroCopyWrites = process.env.PMQ_BENCH_ZERO_COPY_WRITES as ZeroCopyWrites | undefined;
const producer = client.producer({ acks: args.acks, lingerMs: args.lingerMs,
  maxBatchBytes: args.batchBytes,
  maxRecordBatchBytes: Math.max(MIB, args.recordBytes + 4 * KIB), zeroCopyMinBytes,
  zeroCopyWrites });
const progress = setInterval(() => emit({ event: 'progress', records: totals.records }),
  PROGRESS_MS);
await warmUp(producer);
emit({ event: 'ready' });
const warmUpBatches = producer.batchesDispatched;
const cpuStart = ownCpuSeconds();
totals.firstMs = wallMs();
const endMs = args.durationMs === undefined ? Number.POSITIVE_INFINITY
  : totals.firstMs + args.durationMs;
if (args.rate > 0) await openLoop(producer, endMs);
else await closedLoop(producer, endMs);
await producer.close();
clearInterval(progress);
const cpuSeconds = ownCpuSeconds() - cpuStart;
await client.close();
emit({ event: 'done', role: 'producer', records: totals.records, bytes: totals.records *
  args.recordBytes, failed: totals.failed, firstMs: totals.firstMs, lastMs: totals.lastMs,
cpuSeconds, latency: latency.toJSON(), ends,
batches: producer.batchesDispatched - warmUpBatches });
