/**
 * The cluster a benchmark run starts for itself: one `pmq storage` on a fresh region (in
 * /dev/shm, or an ordinary file) and one `pmq broker`, as child processes on 127.0.0.1 with
 * free ports, on the run's transport (busy polling if asked). Each workload gets a fresh
 * cluster, so one workload's segments, caches and garbage never weigh on the next. The storage
 * node and broker are sampled for CPU time (/proc/<pid>/stat) from when both listen until just
 * before they stop, and run with --trace-gc, whose lines count their collections over the same
 * span.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { writeClusterKeyFile } from '../cli/cluster-key-file.js';
import { GcMeter } from './gc-meter.js';
import { CpuMeter } from './proc-stat.js';
import { modulePath, spawnNode, type Child, type SpawnOptions } from './processes.js';

export interface ClusterOptions {
  transports: string;
  /** PMQ_SPIN_US of every process (native/transport.ts spinUs). */
  spinUs: number;
  /** `--busy-poll` for the storage node and the broker (native/transport.ts busyPoll). */
  busyPoll: boolean;
  /** Directory the region file is created in: /dev/shm (tmpfs) or an ordinary filesystem. */
  regionDir: string;
  regionSizeBytes: number;
  segmentSizeBytes: number;
}

export interface Cluster {
  broker: string;
  cpu: { storage: CpuMeter; broker: CpuMeter };
  /** Collections of each server, from its --trace-gc lines (bench/gc-meter.ts). */
  gc: { storage: GcMeter; broker: GcMeter };
  /** The two servers' process ids (the soak reads their resident memory). */
  pids: { storage: number; broker: number };
  stop(): Promise<void>;
}

/** The environment of every child: the run's transport and spin, and, for a cluster on this
 *  machine, loopback unless UCX_NET_DEVICES is set (remote brokers: UCX's choice). */
export function childEnv(transports: string, spinUs: number, local = true): NodeJS.ProcessEnv {
  const devices = process.env.UCX_NET_DEVICES ?? (local ? 'lo' : undefined);
  return { ...process.env, UCX_TLS: transports, PMQ_SPIN_US: String(spinUs),
    ...(devices === undefined ? {} : { UCX_NET_DEVICES: devices }) };
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dir = mkdtempSync(join(options.regionDir, 'pmq-bench-'));
  const pmq = modulePath('../cli/pmq');
  const env = childEnv(options.transports, options.spinUs);
  const poll = options.busyPoll ? ['--busy-poll'] : [];
  const children: Child<unknown>[] = [];
  const gc = { storage: new GcMeter(), broker: new GcMeter() };
  const traced = (meter: GcMeter): SpawnOptions => ({ nodeFlags: ['--trace-gc'],
    onText: (text) => meter.feed(text) });
  const stop = async (): Promise<void> => {
    for (const child of children.reverse()) await child.stop('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const keyFile = join(dir, 'cluster.key');
    writeClusterKeyFile(keyFile);
    const storage = spawnNode(pmq, ['storage', '--path', join(dir, 'region'), '--size',
      String(options.regionSizeBytes), '--segment-size', String(options.segmentSizeBytes),
      '--listen', '127.0.0.1:0', '--transports', options.transports, '--log-level', 'warn',
      '--cluster-key-file', keyFile, ...poll], env, undefined, traced(gc.storage));
    children.push(storage);
    // Both watched from the start: the two lines may arrive in one chunk.
    const listeningAt = storage.waitForText(/listening on ([\d.]+):(\d+)/);
    const pagesMapped = storage.waitForText(/region pages (mapped|not prefaulted)/);
    const at = await listeningAt;
    // Measure the steady state: a region whose pages a long-running node has long mapped.
    await pagesMapped;
    const broker = spawnNode(pmq, ['broker', '--listen', '127.0.0.1:0', '--storage',
      `${at[1]}:${at[2]}`, '--data-dir', join(dir, 'broker'), '--transports',
      options.transports, '--log-level', 'warn', '--cluster-key-file', keyFile, ...poll], env,
    undefined, traced(gc.broker));
    children.push(broker);
    const listening = await broker.waitForText(/listening on ([\d.]+):(\d+)/);
    const cpu = { storage: new CpuMeter(storage.child.pid!), broker: new CpuMeter(
      broker.child.pid!) };
    return { broker: `${listening[1]}:${listening[2]}`, cpu, gc, stop,
      pids: { storage: storage.child.pid!, broker: broker.child.pid! } };
  } catch (error) {
    await stop();
    throw error;
  }
}
