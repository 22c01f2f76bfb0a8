/**
 * `pmq dev`: the embedded default for development, one command on one machine: a storage node
 * on a /dev/shm region and a broker in front of it, as two child processes of `pmq` itself
 * (a process could hold both transports now, docs/native-transport.md "Handles"; two processes
 * is what `pmq dev` does today). Prints both addresses; Ctrl-C (SIGINT) or
 * SIGTERM stops the broker, then the storage node. If either child dies, the other is stopped
 * and `pmq dev` exits 1. Both children get the same cluster key: --cluster-key-file (or
 * PMQ_CLUSTER_KEY_FILE) when given, else `cluster.key` in the data directory, made on first run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Command } from 'commander';

import { CLUSTER_KEY_ENV, writeClusterKeyFile } from './cluster-key-file.js';
import { metricsListenOption } from './metrics-listen.js';
import { addStorageOptions, logLevelOption, type StorageCliOptions } from './options.js';

export const DEFAULT_DEV_DATA_DIR = '/dev/shm/pmq/broker';

/**
 * On a terminal `pmq dev` is for a person: the children's own lines are not forwarded and they
 * log at warn unless --log-level says otherwise, so the line to act on (where the broker is)
 * comes last and alone. Elsewhere (scripts, tests) every child line is forwarded, as before.
 */
const FOR_A_PERSON = process.stdout.isTTY === true;

interface DevCliOptions extends StorageCliOptions {
  brokerListen: string;
  brokerMetricsListen?: string;
  dataDir: string;
}

/**
 * Starts `pmq <args>`; forwards its stdout; resolves with the first match of `pattern`, or
 * with `match: null` when the child exits first.
 */
async function startChild(args: string[], pattern: RegExp, started: (c: ChildProcess) => void,
  forward: boolean): Promise<RegExpExecArray | null> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args],
    { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  started(child);
  // Listen with 'data' (not for-await, whose early exit would destroy the pipe: the child's
  // later writes would then fail with EPIPE).
  return new Promise((resolve) => {
    let text: string | null = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      if (forward) process.stdout.write(chunk);
      if (text === null) return;
      text += String(chunk);
      const match = pattern.exec(text);
      if (match === null) return;
      text = null;
      resolve(match);
    });
    child.once('exit', () => resolve(null));
  });
}

/** What both children get: transports, net devices, busy polling, log level. */
function transportArgs(opts: DevCliOptions): string[] {
  return [...(opts.transports === undefined ? [] : ['--transports', opts.transports]),
    ...(opts.netDevices === undefined ? [] : ['--net-devices', opts.netDevices]),
    ...(opts.busyPoll ? ['--busy-poll'] : []), '--log-level', opts.logLevel];
}

async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals):
  Promise<boolean> {
  if (child === undefined) return true;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
    await once(child, 'exit');
  }
  return child.exitCode === 0 || child.signalCode === signal;
}

/** The key file both children use; made in the data directory when none is given. */
function devClusterKeyFile(opts: DevCliOptions): string {
  const given = opts.clusterKeyFile ?? process.env[CLUSTER_KEY_ENV];
  if (given !== undefined && given.length > 0) return given;
  const path = join(opts.dataDir, 'cluster.key');
  if (!existsSync(path)) {
    mkdirSync(opts.dataDir, { recursive: true });
    try {
      writeClusterKeyFile(path);
      process.stdout.write(`pmq dev: made a cluster key in ${path}\n`);
    } catch (error) {
      if (!existsSync(path)) throw error; // else another `pmq dev` made it meanwhile: use it
    }
  }
  return path;
}

async function runDev(opts: DevCliOptions): Promise<void> {
  const keyFile = devClusterKeyFile(opts);
  const children: { storage?: ChildProcess; broker?: ChildProcess } = {};
  let stopping = false;
  // Whoever reads our output may go away first; stopping the children must still finish.
  process.stdout.on('error', () => undefined);
  const stop = async (signal: NodeJS.Signals, failed: boolean): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const brokerClean = await stopChild(children.broker, signal);
    const storageClean = await stopChild(children.storage, signal);
    process.exitCode = failed || !brokerClean || !storageClean ? 1 : 0;
  };
  process.on('SIGINT', () => { void stop('SIGINT', false); });
  process.on('SIGTERM', () => { void stop('SIGTERM', false); });
  const storage = await startChild(['storage', '--path', opts.path, '--listen', opts.listen,
    ...(opts.size === undefined ? [] : ['--size', opts.size]),
    ...(opts.sparse ? ['--sparse'] : []),
    ...(opts.segmentSize === undefined ? [] : ['--segment-size', opts.segmentSize]),
    ...(opts.firstSegmentSize === undefined ? [] :
      ['--first-segment-size', opts.firstSegmentSize]),
    ...(opts.nodeId === undefined ? [] : ['--node-id', String(opts.nodeId)]),
    ...(opts.direct ? ['--direct'] : []),
    ...(opts.metricsListen === undefined ? [] : ['--metrics-listen', opts.metricsListen]),
    '--cluster-key-file', keyFile, ...transportArgs(opts)],
  /listening on ([\d.]+):(\d+)/, (child) => {
    children.storage = child;
    child.once('exit', () => { void stop('SIGTERM', true); });
  }, !FOR_A_PERSON);
  if (storage === null) return;
  const broker = await startChild(['broker', '--listen', opts.brokerListen, '--storage',
    `${storage[1]}:${storage[2]}`, '--data-dir', opts.dataDir, '--cluster-key-file', keyFile,
    ...(opts.brokerMetricsListen === undefined ? [] :
      ['--metrics-listen', opts.brokerMetricsListen]),
    ...transportArgs(opts)],
  /listening on ([\d.]+):(\d+)/, (child) => {
    children.broker = child;
    child.once('exit', () => { void stop('SIGTERM', true); });
  }, !FOR_A_PERSON);
  if (broker === null) return;
  if (FOR_A_PERSON) {
    process.stdout.write(`pmq dev: storage node at ${storage[1]}:${storage[2]} (region ` +
      `${opts.path}), logs at ${opts.logLevel} on stderr\n`);
  }
  process.stdout.write(`pmq dev: broker at ${broker[1]}:${broker[2]}; press Ctrl-C to stop\n`);
}

export function registerDevCommand(program: Command): void {
  const command = program.command('dev')
    .description('run a local development cluster: a storage node on a /dev/shm region and a ' +
      'broker in front of it')
    .option('--broker-listen <host:port>', 'address the broker listens on', '127.0.0.1:9092')
    .option('--data-dir <dir>', 'the broker\'s directory (and cluster.key)', DEFAULT_DEV_DATA_DIR)
    .addOption(metricsListenOption('--broker-metrics-listen', 'the broker'))
    .addOption(logLevelOption());
  addStorageOptions(command, '127.0.0.1:7100', 'one each: the storage node and the broker')
    .action(async (opts: DevCliOptions, command: Command) => {
      if (FOR_A_PERSON && command.getOptionValueSource('logLevel') === 'default') {
        opts.logLevel = 'warn';
      }
      await runDev(opts);
    });
}
