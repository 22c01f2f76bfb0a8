/**
 * Pieces shared by the nemesis test (nemesis.ts) and its client processes
 * (nemesis-producer.ts, nemesis-consumer.ts): a history file per OS process, a clock with one
 * origin for every process of the machine, and connecting while the broker may be down.
 *
 * Durability: each event is written with writeSync before the process acts on the outcome, so
 * a SIGKILLed process loses nothing it recorded (the page cache survives the process); a torn
 * last line is dropped by parseHistory({ tornTailAllowed }).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { connect, PmqError, type Client, type ProducerOptions } from '../../clients/index.js';
import { HistoryRecorder } from './history.js';

/** The one JSON argument of a nemesis-producer.ts process. */
export interface ProducerArgs {
  broker: string;
  topic: string;
  partitions: number;
  /** The history's process name (`producer-1#2`). */
  process: string;
  historyPath: string;
  seed: number;
  /** Sends outstanding at most, and the longest pause between two sends. */
  window: number;
  pauseMsMax: number;
  /** Bytes per record value. */
  valueBytes: number;
  requestTimeoutMs: number;
  options: ProducerOptions;
}

/** Milliseconds on a clock all processes of the machine share (sortHistory merges by it). */
export function sharedMonotonicMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A recorder appending to `path`; close() releases the file (processes may just exit). */
export function fileRecorder(path: string): HistoryRecorder & { close(): void } {
  const fd = openSync(path, 'a');
  const recorder = new HistoryRecorder((line) => { writeSync(fd, `${line}\n`); },
    { monotonicMs: sharedMonotonicMs, wallMs: () => Date.now() });
  return Object.assign(recorder, { close: () => closeSync(fd) });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Connects, retrying retriable failures (the broker may be restarting) for up to `withinMs`. */
export async function connectRetrying(broker: string, clientId: string, requestTimeoutMs: number,
  withinMs = 60_000): Promise<Client> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await connect({ brokers: [broker], transports: 'tcp', netDevices: 'lo', clientId,
        requestTimeoutMs, logLevel: (process.env.PMQ_NEMESIS_CLIENT_LOG ?? 'silent') as 'silent' });
    } catch (error) {
      if (!(error instanceof PmqError && error.retriable) || Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

/** Repeats `call` while it fails retriably, for up to `withinMs`. */
export async function retrying<T>(call: () => Promise<T>, withinMs = 60_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof PmqError && error.retriable) || Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}
