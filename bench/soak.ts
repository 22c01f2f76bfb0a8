/**
 * The soak run (`pmq bench --soak`, docs/benchmarks.md, "Soak"): retention keeping a broker
 * running. A fresh cluster (bench/cluster.ts), one topic whose retention.bytes per partition
 * keeps the whole topic well below the region's size, a steady producer writing `factor` times
 * the region's size of values through it, and a consumer keeping up, both in this process on
 * one client. Every `intervalMs` it reports: region use (the topic's segments and the metadata
 * log's, of the region's segments), records/s, the producer's ack latency percentiles over the
 * interval, the consumer's lag and anything it lost to retention (an autoOffsetReset); at the
 * start and end the storage node's and broker's resident memory (VmRSS).
 *
 * Not a timed test: the machine this runs on is shared. A region full (PMQ_ERR_REGION_FULL)
 * fails the run.
 */
import { readFileSync } from 'node:fs';

import { connect, type Client } from '../clients/index.js';
import { startCluster, type Cluster } from './cluster.js';
import { Histogram } from './histogram.js';

export interface SoakOptions {
  regionSizeBytes: number;
  segmentSizeBytes: number;
  recordBytes: number;
  partitions: number;
  /** Values written in all: factor × the region's size. */
  factor: number;
  /** Records per second (0: as fast as acknowledgements allow, `inFlight` at a time). */
  rate: number;
  intervalMs: number;
  transports: string;
  regionDir: string;
  /** A line of the report, as it happens. */
  onLine?: (line: SoakInterval | SoakSummary) => void;
}

export interface SoakInterval {
  bench: 'soak-interval';
  atS: number;
  records: number;
  recordsPerS: number;
  regionUsePct: number;
  segmentsInUse: number;
  ackUs: { p50: number; p99: number; max: number };
  consumerLag: number;
}

export interface SoakSummary {
  bench: 'soak';
  regionBytes: number;
  writtenBytes: number;
  records: number;
  consumed: number;
  /** Records the consumer never saw: retention deleted them before it read them. */
  lostToRetention: number;
  regionUsePctMax: number;
  full: boolean;
  rssKiB: { storage: [number, number]; broker: [number, number] };
  tookS: number;
}

const IN_FLIGHT = 64;
const TOPIC = 'soak';

/** Resident memory of a process in KiB (Linux /proc), or -1. */
export function rssKiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? -1 : Number(match[1]);
  } catch {
    return -1;
  }
}

/** retention.bytes per partition: the topic keeps at most about half the region. */
export function soakRetentionBytes(o: Pick<SoakOptions, 'regionSizeBytes' | 'segmentSizeBytes' |
  'partitions'>): number {
  return Math.max(o.segmentSizeBytes,
    Math.floor(o.regionSizeBytes / 2 / o.partitions) - 2 * o.segmentSizeBytes);
}

class Consumed {
  count = 0;
  lost = 0;
  readonly next = new Map<number, number>();
}

async function consume(client: Client, consumed: Consumed, stop: { done: boolean }):
  Promise<void> {
  const consumer = client.consumer({ start: 'earliest', autoOffsetReset: 'earliest',
    maxWaitMs: 200 });
  await consumer.subscribe(TOPIC);
  const batches = consumer.batches()[Symbol.asyncIterator]();
  const closing = (async () => {
    while (!stop.done) await new Promise((resolve) => setTimeout(resolve, 50));
    await consumer.close();
  })();
  for (;;) {
    const next = await batches.next();
    if (next.done === true) break;
    const batch = next.value;
    const expected = consumed.next.get(batch.partition) ?? 0;
    // A jump forward: retention deleted what lay between before it was read.
    if (batch.baseOffset > expected) consumed.lost += batch.baseOffset - expected;
    consumed.next.set(batch.partition, batch.lastOffset + 1);
    consumed.count += batch.records.length;
  }
  await closing;
}

async function regionUse(client: Client, o: SoakOptions): Promise<{ segments: number;
  pct: number }> {
  const described = await client.admin().describeTopic(TOPIC);
  const segments = described.partitions.reduce((sum, p) => sum + p.segments, 0) + 1;
  const total = Math.floor(o.regionSizeBytes / o.segmentSizeBytes);
  return { segments, pct: Math.round(1000 * segments / total) / 10 };
}

/** Runs the soak; resolves with the summary (intervals go to onLine as they happen). */
export async function runSoak(o: SoakOptions): Promise<SoakSummary> {
  const started = performance.now();
  const cluster: Cluster = await startCluster({ transports: o.transports, spinUs: 0,
    busyPoll: false, regionDir: o.regionDir, regionSizeBytes: o.regionSizeBytes,
    segmentSizeBytes: o.segmentSizeBytes });
  const rssStart = { storage: rssKiB(cluster.pids.storage), broker: rssKiB(cluster.pids.broker) };
  const client = await connect({ brokers: [cluster.broker], transports: o.transports,
    netDevices: 'lo', clientId: 'bench-soak' });
  try {
    await client.admin().createTopic(TOPIC, { partitions: o.partitions,
      configs: { 'retention.bytes': soakRetentionBytes(o) } });
    const consumed = new Consumed();
    const stop = { done: false };
    const consuming = consume(client, consumed, stop);
    const produced = await produce(client, o, consumed);
    // Let the consumer catch up (bounded), then stop it.
    const until = performance.now() + 30_000;
    while (consumed.count + consumed.lost < produced.records && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    stop.done = true;
    await consuming;
    const summary: SoakSummary = { bench: 'soak', regionBytes: o.regionSizeBytes,
      writtenBytes: produced.records * o.recordBytes, records: produced.records,
      consumed: consumed.count, lostToRetention: consumed.lost,
      regionUsePctMax: produced.usePctMax, full: produced.full,
      rssKiB: { storage: [rssStart.storage, rssKiB(cluster.pids.storage)],
        broker: [rssStart.broker, rssKiB(cluster.pids.broker)] },
      tookS: Math.round((performance.now() - started) / 100) / 10 };
    o.onLine?.(summary);
    return summary;
  } finally {
    await client.close();
    await cluster.stop();
  }
}

/** The steady producer: `factor` × region bytes of values, intervals reported as they end. */
async function produce(client: Client, o: SoakOptions, consumed: Consumed):
  Promise<{ records: number; usePctMax: number; full: boolean }> {
  const total = Math.ceil(o.factor * o.regionSizeBytes / o.recordBytes);
  const producer = client.producer({ lingerMs: 1 });
  const value = new Uint8Array(o.recordBytes).fill(0x61);
  let latency = new Histogram();
  let acked = 0;
  let ackedAtInterval = 0;
  let usePctMax = 0;
  let full = false;
  const startedMs = performance.now();
  let intervalStart = startedMs;
  const inFlight = new Set<Promise<void>>();
  for (let n = 0; n < total && !full; n += 1) {
    if (o.rate > 0) {
      const due = startedMs + (n * 1000) / o.rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    const sentNs = process.hrtime.bigint();
    const sending: Promise<void> = producer.send({ topic: TOPIC, partition: n % o.partitions,
      records: [{ value }] }).then(() => {
      latency.record(Number(process.hrtime.bigint() - sentNs));
      acked += 1;
    }, (error: unknown) => {
      if (String((error as { code?: string }).code) === 'PMQ_ERR_REGION_FULL') full = true;
      else throw error;
    }).finally(() => inFlight.delete(sending));
    inFlight.add(sending);
    if (performance.now() - intervalStart >= o.intervalMs) {
      const use = await regionUse(client, o);
      usePctMax = Math.max(usePctMax, use.pct);
      const p = latency.percentiles();
      const seconds = (performance.now() - intervalStart) / 1000;
      o.onLine?.({ bench: 'soak-interval', atS: Math.round((performance.now() - startedMs) /
        100) / 10, records: acked, recordsPerS: Math.round((acked - ackedAtInterval) / seconds),
      regionUsePct: use.pct, segmentsInUse: use.segments,
      ackUs: { p50: Math.round(p.p50 / 1000), p99: Math.round(p.p99 / 1000),
        max: Math.round(p.max / 1000) }, consumerLag: acked - consumed.count - consumed.lost });
      latency = new Histogram();
      ackedAtInterval = acked;
      intervalStart = performance.now();
    }
  }
  await Promise.all(inFlight);
  await producer.close();
  const use = await regionUse(client, o);
  return { records: acked, usePctMax: Math.max(usePctMax, use.pct), full };
}
