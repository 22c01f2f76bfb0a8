/**
 * Turns a workload's raw worker results into the figures the benchmark reports (one JSON line
 * per workload) and formats them as a table. Throughput is records (and value bytes) over the
 * span from the first producer's start to the last acknowledgement (produce), or from the
 * first record received to the last (consume). Latencies are in microseconds. CPU is seconds
 * per GB of values produced, per role (all processes of a role summed), and the raw seconds of
 * each process (what busy polling costs shows there, whatever the bytes). Garbage collections
 * of the storage node and the broker are counted over the workload and per million records.
 */
import { perMillionRecords, perThousandBatches, type GcCounts } from './gc-meter.js';
import { round } from './stats.js';
import { mergedLatency, type RawResult, type Workload } from './run.js';
import type { WorkerDone } from './worker-io.js';

export interface Throughput { records: number; bytes: number; seconds: number;
  recordsPerSecond: number; MBps: number }

/** Storage node and broker: null with --brokers (not ours to measure). */
export interface CpuPerProcess { storage: number | null; broker: number | null;
  producers: number[]; consumers: number[] }

export interface LatencyUs { count: number; p50: number; p90: number; p99: number;
  p999: number; max: number; mean: number }

export interface Summary {
  bench: 'pmq';
  workload: string;
  transport: string;
  backing: string;
  recordBytes: number;
  partitions: number;
  producers: number;
  consumers: number;
  acks: string;
  batchBytes: number;
  lingerMs: number;
  spinUs: number;
  /** Every process busy-polled (spinUs then does not apply). */
  busyPoll: boolean;
  rate: number;
  mode: 'closed' | 'open' | 'catch-up';
  produce: Throughput;
  consume: Throughput;
  failed: number;
  ackLatencyUs: LatencyUs;
  e2eLatencyUs: LatencyUs | null;
  cpuSeconds: Record<'storage' | 'broker' | 'producer' | 'consumer', number | null>;
  /** CPU seconds of each process (cpuSeconds sums them per role): what busy polling costs. */
  cpuSecondsPerProcess: CpuPerProcess;
  cpuSecondsPerGB: Record<'storage' | 'broker' | 'producer' | 'consumer', number | null>;
  /** Collections over the workload (null: no cluster of our own, e.g. --brokers). */
  gc: Record<'storage' | 'broker', GcCounts> | null;
  /** The same per million records produced (acknowledged). */
  gcPerMillionRecords: Record<'storage' | 'broker', GcCounts | null> | null;
  /** Batches the producers sent (appends), and the collections per thousand of them: with
   *  linger 0 a batch holds as many records as were due, which varies with the machine's
   *  load, so per batch is the steadier figure for per-message garbage. */
  batches: number;
  gcPerThousandBatches: Record<'storage' | 'broker', GcCounts | null> | null;
}

function roundedGc(c: GcCounts): GcCounts {
  return { scavenges: c.scavenges, markCompacts: c.markCompacts, pauseMs: round(c.pauseMs, 1),
    allocatedMB: round(c.allocatedMB, 1) };
}

function gcFigures(raw: RawResult, records: number):
  Pick<Summary, 'gc' | 'gcPerMillionRecords' | 'batches' | 'gcPerThousandBatches'> {
  const batches = raw.producers.reduce((a, p) => a + (p.batches ?? 0), 0);
  if (raw.gc === null) {
    return { gc: null, gcPerMillionRecords: null, batches, gcPerThousandBatches: null };
  }
  return { gc: { storage: roundedGc(raw.gc.storage), broker: roundedGc(raw.gc.broker) },
    gcPerMillionRecords: { storage: perMillionRecords(raw.gc.storage, records),
      broker: perMillionRecords(raw.gc.broker, records) },
    batches, gcPerThousandBatches: { storage: perThousandBatches(raw.gc.storage, batches),
      broker: perThousandBatches(raw.gc.broker, batches) } };
}

function throughput(workers: WorkerDone[]): Throughput {
  const records = workers.reduce((a, w) => a + w.records, 0);
  const bytes = workers.reduce((a, w) => a + w.bytes, 0);
  const started = workers.filter((w) => w.firstMs > 0);
  const first = Math.min(...started.map((w) => w.firstMs));
  const last = Math.max(...started.map((w) => w.lastMs));
  const seconds = started.length === 0 ? 0 : Math.max(0, (last - first) / 1000);
  return { records, bytes, seconds: round(seconds, 3),
    recordsPerSecond: seconds > 0 ? Math.round(records / seconds) : 0,
    MBps: seconds > 0 ? round(bytes / seconds / 1e6) : 0 };
}

function latencyUs(workers: WorkerDone[]): LatencyUs {
  const p = mergedLatency(workers).percentiles();
  const us = (ns: number): number => round(ns / 1000, 1);
  return { count: p.count, p50: us(p.p50), p90: us(p.p90), p99: us(p.p99), p999: us(p.p999),
    max: us(p.max), mean: us(p.mean) };
}

export function summarize(w: Workload, raw: RawResult): Summary {
  const produce = throughput(raw.producers);
  const gb = produce.bytes / 1e9;
  const cpuSeconds = { storage: raw.cpu.storage, broker: raw.cpu.broker,
    producer: raw.producers.reduce((a, p) => a + p.cpuSeconds, 0),
    consumer: raw.consumers.reduce((a, c) => a + c.cpuSeconds, 0) };
  const perGB = (s: number | null): number | null => s === null || gb === 0 ? null
    : round(s / gb, 2);
  return { bench: 'pmq', workload: w.name, transport: w.transports, backing: w.backing,
    recordBytes: w.recordBytes, partitions: w.partitions, producers: w.producers,
    consumers: Math.min(w.consumers, w.partitions), acks: w.acks, batchBytes: w.batchBytes,
    lingerMs: w.lingerMs, spinUs: w.spinUs, busyPoll: w.busyPoll, rate: w.rate,
    mode: w.catchUp ? 'catch-up' : w.rate > 0 ? 'open' : 'closed',
    produce, consume: throughput(raw.consumers),
    failed: raw.producers.reduce((a, p) => a + p.failed, 0),
    ackLatencyUs: latencyUs(raw.producers),
    // In catch-up mode records wait in storage on purpose: their age is not a latency.
    e2eLatencyUs: w.catchUp ? null : latencyUs(raw.consumers),
    cpuSeconds: { storage: cpuSeconds.storage === null ? null : round(cpuSeconds.storage),
      broker: cpuSeconds.broker === null ? null : round(cpuSeconds.broker),
      producer: round(cpuSeconds.producer), consumer: round(cpuSeconds.consumer) },
    cpuSecondsPerGB: { storage: perGB(cpuSeconds.storage), broker: perGB(cpuSeconds.broker),
      producer: perGB(cpuSeconds.producer), consumer: perGB(cpuSeconds.consumer) },
    cpuSecondsPerProcess: perProcess(raw), ...gcFigures(raw, produce.records) };
}

function perProcess(raw: RawResult): CpuPerProcess {
  const seconds = (s: number | null): number | null => s === null ? null : round(s);
  return { storage: seconds(raw.cpu.storage), broker: seconds(raw.cpu.broker),
    producers: raw.producers.map((p) => round(p.cpuSeconds)),
    consumers: raw.consumers.map((c) => round(c.cpuSeconds)) };
}

const HEADER = ['workload', 'transport', 'size', 'mode', 'poll', 'prod rec/s', 'prod MB/s',
  'cons rec/s', 'cons MB/s', 'ack p50/p99/p99.9/max µs', 'e2e p50/p99/p99.9/max µs',
  'cpu s/GB st/br/pr/co', 'cpu s st/br/pr/co', 'batches', 'gc/M rec st scav/mc/ms',
  'gc/M rec br scav/mc/ms'];

function gcCell(c: GcCounts | null | undefined): string {
  return c === null || c === undefined ? '-' : `${c.scavenges}/${c.markCompacts}/${c.pauseMs}`;
}

function latencyCell(l: LatencyUs | null): string {
  return l === null || l.count === 0 ? '-' : `${l.p50}/${l.p99}/${l.p999}/${l.max}`;
}

/** Seconds per process: storage/broker/producers/consumers, processes of a role joined by +. */
function cpuCell(p: CpuPerProcess): string {
  return [String(p.storage ?? '-'), String(p.broker ?? '-'), p.producers.join('+') || '-',
    p.consumers.join('+') || '-'].join('/');
}

export function tableRow(s: Summary): string[] {
  const c = s.cpuSecondsPerGB;
  return [s.workload, s.transport, String(s.recordBytes), s.mode,
    s.busyPoll ? 'busy' : `spin≤${s.spinUs}µs`,
    String(s.produce.recordsPerSecond), String(s.produce.MBps),
    String(s.consume.recordsPerSecond), String(s.consume.MBps),
    latencyCell(s.ackLatencyUs), latencyCell(s.e2eLatencyUs),
    [c.storage, c.broker, c.producer, c.consumer].map((v) => v ?? '-').join('/'),
    cpuCell(s.cpuSecondsPerProcess), String(s.batches), gcCell(s.gcPerMillionRecords?.storage),
    gcCell(s.gcPerMillionRecords?.broker)];
}

/** A plain-text table (columns padded) of `rows` under `header`. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!))
    .join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)]
    .join('\n') + '\n';
}

export function formatSummaries(summaries: Summary[]): string {
  return formatTable(HEADER, summaries.map(tableRow));
}

/** The same table in markdown. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

export function markdownSummaries(summaries: Summary[]): string {
  return markdownTable(HEADER, summaries.map(tableRow));
}
