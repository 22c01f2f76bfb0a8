/**
 * What the benchmark's worker processes (bench/producer-worker.ts, consumer-worker.ts) share:
 * their argument and result shapes, a wall clock comparable across processes on one machine,
 * and JSON-line output. A worker prints JSON lines on stdout only: {"event":"ready"},
 * {"event":"progress",...} and one {"event":"done",...}; logs go to stderr.
 */
import type { HistogramJson } from './histogram.js';

/** Milliseconds since the epoch, sub-millisecond: performance.timeOrigin is per process but
 *  both are on the same clock, so stamps of two processes on one machine compare. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** CPU seconds (user + system) this process used so far. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

export interface ProducerArgs {
  broker: string;
  topic: string;
  transports?: string;
  netDevices?: string;
  busyPoll?: boolean;
  producer: number;
  producers: number;
  partitions: number;
  recordBytes: number;
  /** Records to send; with durationMs the smaller bound wins. */
  count: number;
  durationMs?: number;
  /** Open loop: records per second of this producer; 0 = closed loop (as fast as acked). */
  rate: number;
  acks: 'all' | 'none';
  batchBytes: number;
  lingerMs: number;
}

export interface ConsumerArgs {
  broker: string;
  topic: string;
  transports?: string;
  netDevices?: string;
  busyPoll?: boolean;
  partitions: number[];
}

export interface WorkerDone {
  event: 'done';
  role: 'producer' | 'consumer';
  records: number;
  bytes: number;
  failed: number;
  /** Wall clock (wallMs) of the first send / first record received, and of the last ack / last
   *  record. */
  firstMs: number;
  lastMs: number;
  cpuSeconds: number;
  /** Nanoseconds: acked latency (producer) or end-to-end latency (consumer). */
  latency: HistogramJson;
  /** Producers: batches sent after warm-up (each one append to the broker). */
  batches?: number;
  /** Producers: per partition, the offset after their last acknowledged record. */
  ends?: Record<string, number>;
}

export type WorkerLine = WorkerDone | { event: 'ready' } | { event: 'progress'; records: number };

/** Record values start with the intended send time, a float64 of wallMs(), little endian;
 *  0 marks a warm-up record, which consumers skip. */
export const STAMP_BYTES = 8;
