/**
 * One benchmark workload, end to end: a fresh cluster (or the brokers given), a topic, consumer
 * and producer worker processes, their results merged. Producers and consumers run at the same
 * time, except in catch-up mode, where the consumers start once everything is stored. The
 * consumers learn where to stop from the producers' acknowledged end offsets.
 */
import { spawnNode, modulePath, type Child } from './processes.js';
import { childEnv, startCluster, type Cluster } from './cluster.js';
import { Histogram } from './histogram.js';
import type { GcCounts } from './gc-meter.js';
import type { ConsumerArgs, ProducerArgs, WorkerDone, WorkerLine } from './worker-io.js';

export interface Workload {
  name: string;
  transports: string;
  /** 'shm' (/dev/shm) or 'file' (an ordinary filesystem), for the report. */
  backing: 'shm' | 'file';
  regionDir: string;
  recordBytes: number;
  count: number;
  durationMs?: number;
  partitions: number;
  producers: number;
  consumers: number;
  acks: 'all' | 'none';
  batchBytes: number;
  lingerMs: number;
  /** Every process polls at most this long before sleeping (PMQ_SPIN_US; 0 = sleep at once). */
  spinUs: number;
  /** Every process busy-polls instead of sleeping (`--busy-poll`, connect({ busyPoll })). */
  busyPoll: boolean;
  /** Open loop: records per second over all producers; 0 = closed loop. */
  rate: number;
  /** Consume only after everything is produced (consumer catch-up). */
  catchUp: boolean;
  /** Use these brokers instead of starting a cluster. */
  brokers?: string;
  segmentSizeBytes: number;
  /** Progress callback: records acknowledged and consumed so far. */
  onProgress?: (produced: number, consumed: number) => void;
}

const MIB = 1024 * 1024;

/** Room for the data, a segment per partition beyond it, and the region's own tables. */
export function regionSizeFor(w: Workload): number {
  const data = w.count * (w.recordBytes + 80) * 1.1;
  const segments = Math.ceil(data / w.segmentSizeBytes) + 2 * w.partitions + 4;
  return Math.max(64 * MIB, segments * w.segmentSizeBytes);
}

type Worker = Child<WorkerLine>;

/** UCX_NET_DEVICES when set; loopback for the cluster we start; else UCX's choice. */
function netDevicesOf(w: Workload): string | undefined {
  return process.env.UCX_NET_DEVICES ?? (w.brokers === undefined ? 'lo' : undefined);
}
const isDone = (line: WorkerLine): line is WorkerDone => line.event === 'done';

function spawnTopicCreate(w: Workload, broker: string, topic: string): Promise<unknown> {
  return spawnNode(modulePath('../cli/pmq'), ['topic', 'create', topic, '--partitions',
    String(w.partitions), '--broker', broker, '--transports', w.transports,
    ...(w.busyPoll ? ['--busy-poll'] : [])],
  childEnv(w.transports, w.spinUs, w.brokers === undefined)).done;
}

function spawnProducers(w: Workload, broker: string, topic: string,
  progress: number[]): Worker[] {
  return Array.from({ length: w.producers }, (_, producer) => {
    const share = Math.floor(w.count / w.producers) + (producer < w.count % w.producers ? 1 : 0);
    const args: ProducerArgs = { broker, topic, transports: w.transports,
      netDevices: netDevicesOf(w), busyPoll: w.busyPoll,
      producer, producers: w.producers, partitions: w.partitions, recordBytes: w.recordBytes,
      count: share,
      durationMs: w.durationMs, rate: w.rate / w.producers, acks: w.acks,
      batchBytes: w.batchBytes, lingerMs: w.lingerMs };
    return spawnNode<WorkerLine>(modulePath('./producer-worker'), [JSON.stringify(args)],
      childEnv(w.transports, w.spinUs, w.brokers === undefined), (line) => {
        if (line.event !== 'ready') progress[producer] = line.records;
        w.onProgress?.(sum(progress), -1);
      });
  });
}

function spawnConsumers(w: Workload, broker: string, topic: string,
  progress: number[]): Worker[] {
  const count = Math.min(w.consumers, w.partitions);
  return Array.from({ length: count }, (_, consumer) => {
    const partitions = Array.from({ length: w.partitions }, (_, p) => p)
      .filter((p) => p % count === consumer);
    const args: ConsumerArgs = { broker, topic, transports: w.transports,
      netDevices: netDevicesOf(w), busyPoll: w.busyPoll,
      partitions };
    return spawnNode<WorkerLine>(modulePath('./consumer-worker'), [JSON.stringify(args)],
      childEnv(w.transports, w.spinUs, w.brokers === undefined), (line) => {
        if (line.event !== 'ready') progress[consumer] = line.records;
        w.onProgress?.(-1, sum(progress));
      });
  });
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

async function finish(workers: Worker[]): Promise<WorkerDone[]> {
  const all = await Promise.all(workers.map((w) => w.done));
  return all.map((lines) => lines.find(isDone)!);
}

function endsOf(producers: WorkerDone[]): Record<string, number> {
  const ends: Record<string, number> = {};
  for (const done of producers) {
    for (const [p, end] of Object.entries(done.ends ?? {})) {
      ends[p] = Math.max(ends[p] ?? 0, end);
    }
  }
  return ends;
}

export interface RawResult { producers: WorkerDone[]; consumers: WorkerDone[];
  cpu: { storage: number | null; broker: number | null };
  gc: { storage: GcCounts; broker: GcCounts } | null }

async function drive(w: Workload, broker: string): Promise<Omit<RawResult, 'cpu' | 'gc'>> {
  const topic = `bench-${w.name.toLowerCase()}-${process.pid}-${Date.now()}`;
  await spawnTopicCreate(w, broker, topic);
  const produced: number[] = [];
  const consumed: number[] = [];
  let consumers: Worker[] = [];
  if (!w.catchUp) {
    consumers = spawnConsumers(w, broker, topic, consumed);
    await Promise.all(consumers.map((c) => c.waitFor((l) => l.event === 'ready')));
  }
  const producers = await finish(spawnProducers(w, broker, topic, produced));
  if (w.catchUp) consumers = spawnConsumers(w, broker, topic, consumed);
  const until = endsOf(producers);
  for (const consumer of consumers) consumer.tell({ until });
  return { producers, consumers: await finish(consumers) };
}

export async function runWorkload(w: Workload): Promise<RawResult> {
  let cluster: Cluster | null = null;
  if (w.brokers === undefined) {
    cluster = await startCluster({ transports: w.transports, spinUs: w.spinUs,
      busyPoll: w.busyPoll,
      regionDir: w.regionDir,
      regionSizeBytes: regionSizeFor(w), segmentSizeBytes: w.segmentSizeBytes });
  }
  try {
    cluster?.cpu.storage.reset();
    cluster?.cpu.broker.reset();
    cluster?.gc.storage.reset();
    cluster?.gc.broker.reset();
    const sampler = setInterval(() => {
      cluster?.cpu.storage.sample();
      cluster?.cpu.broker.sample();
    }, 200);
    const result = await drive(w, cluster?.broker ?? w.brokers!.split(',')[0]!);
    clearInterval(sampler);
    cluster?.cpu.storage.sample();
    cluster?.cpu.broker.sample();
    return { ...result, cpu: { storage: cluster?.cpu.storage.seconds ?? null,
      broker: cluster?.cpu.broker.seconds ?? null },
    gc: cluster === null ? null
      : { storage: cluster.gc.storage.counts, broker: cluster.gc.broker.counts } };
  } finally {
    await cluster?.stop();
  }
}

export function mergedLatency(workers: WorkerDone[]): Histogram {
  const merged = new Histogram();
  for (const done of workers) merged.merge(done.latency);
  return merged;
}
