/**
 * End-to-end cluster for test/integration/e2e-*.test.ts: one `pmq storage` and one `pmq broker`
 * as child processes (the CLI users run), a region in a temp dir under /dev/shm, free ports on
 * 127.0.0.1, and helpers to SIGKILL and restart either process on the same address and data.
 * Client workloads run as separate child processes (test/fixtures/e2e-*.ts) through `runFixture`,
 * which collects their JSON lines from stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { exitOf, tempDir, waitForLine } from './broker-cluster.js';
import { testKeyFile } from './cluster-key.js';

const PMQ = fileURLToPath(new URL('../../cli/pmq.ts', import.meta.url));
const ENV = { ...process.env, UCX_NET_DEVICES: 'lo' };

export interface E2eOptions {
  /** Region size (CLI syntax). Default 16MiB. */
  regionSize?: string;
  /** Segment size (CLI syntax). Default 64KiB. */
  segmentSize?: string;
  reservationTimeoutMs?: number;
  /** UCX transports of both processes (`--transports`, UCX_TLS syntax). Default tcp. */
  transports?: string;
  /** The broker's `--auth-file` (client authentication and ACLs). Default: none (off). */
  authFile?: string;
  /** Extra flags for `pmq storage` (e.g. `--direct`). */
  storageFlags?: string[];
  /** The region file. Default `region` in the cluster's temp dir under /dev/shm. */
  regionPath?: string;
  /** Extra environment of `pmq storage` (e.g. PMQ_REGION_DURABLE_SHADOW). */
  storageEnv?: Record<string, string>;
}

export interface Running { child: ChildProcess; host: string; port: number; stderr: () => string }

function spawnPmq(args: string[], env: Record<string, string> = {}):
  { child: ChildProcess; stderr: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, ...args],
    { env: { ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors = (errors + String(chunk)).slice(-20_000); });
  return { child, stderr: () => errors };
}

async function stopHard(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await exitOf(child);
}

export class E2eCluster {
  readonly dir: string;
  /** The cluster key both processes get (`cluster.key` in the temp dir). */
  readonly keyFile: string;
  private readonly remove: () => void;
  storage: Running | undefined;
  broker: Running | undefined;
  private storagePort = 0;
  private brokerPort = 0;

  constructor(private readonly options: E2eOptions = {}) {
    const temp = tempDir('pmq-e2e-');
    this.dir = temp.dir;
    this.remove = temp.remove;
    this.keyFile = testKeyFile(this.dir);
  }

  get brokerAddress(): string {
    return `${this.broker!.host}:${this.broker!.port}`;
  }

  static async start(options: E2eOptions = {}): Promise<E2eCluster> {
    const cluster = new E2eCluster(options);
    try {
      await cluster.startStorage();
      await cluster.startBroker();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** Starts (or restarts, on the same port and region) the storage node. */
  async startStorage(): Promise<Running> {
    const { child, stderr } = spawnPmq(this.storageArgs(), this.options.storageEnv);
    const match = await waitForLine(child, /listening on ([\d.]+):(\d+)/);
    this.storagePort = Number(match[2]);
    this.storage = { child, host: match[1]!, port: this.storagePort, stderr };
    return this.storage;
  }

  /** Starts (or restarts, on the same port and data dir) the broker. */
  async startBroker(): Promise<Running> {
    const { child, stderr } = spawnPmq(this.brokerArgs());
    const match = await waitForLine(child, /listening on ([\d.]+):(\d+) \(epoch (\d+)/);
    this.brokerPort = Number(match[2]);
    this.broker = { child, host: match[1]!, port: this.brokerPort, stderr };
    return this.broker;
  }

  private storageArgs(): string[] {
    return ['storage', '--path', this.options.regionPath ?? `${this.dir}/region`,
      '--size', this.options.regionSize ?? '16MiB', '--segment-size',
      this.options.segmentSize ?? '64KiB', '--node-id', '1', '--listen',
      `127.0.0.1:${this.storagePort}`, '--transports', this.options.transports ?? 'tcp',
      '--log-level', 'warn', '--cluster-key-file', this.keyFile,
      ...this.options.storageFlags ?? []];
  }

  private brokerArgs(): string[] {
    return ['broker', '--listen', `127.0.0.1:${this.brokerPort}`,
      '--storage', `127.0.0.1:${this.storagePort}`, '--data-dir', `${this.dir}/broker`,
      '--transports', this.options.transports ?? 'tcp', '--log-level', 'warn',
      '--reservation-timeout-ms', String(this.options.reservationTimeoutMs ?? 2000),
      '--cluster-key-file', this.keyFile,
      ...this.options.authFile === undefined ? [] : ['--auth-file', this.options.authFile]];
  }

  /**
   * Starts the storage node or the broker on its port and data and SIGKILLs it after
   * `delayMs`, wherever its start-up or recovery has got to (the caller then starts it
   * properly). For crash tests: a crash during recovery must lose nothing either.
   */
  async startAndKill(which: 'storage' | 'broker', delayMs: number): Promise<void> {
    const { child } = which === 'storage' ? spawnPmq(this.storageArgs(),
      this.options.storageEnv) : spawnPmq(this.brokerArgs());
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await stopHard(child);
  }

  async killStorage(): Promise<void> {
    await stopHard(this.storage?.child);
  }

  async killBroker(): Promise<void> {
    await stopHard(this.broker?.child);
  }

  async stop(): Promise<void> {
    await stopHard(this.broker?.child);
    await stopHard(this.storage?.child);
    this.remove();
  }
}

const FIXTURES = new URL('../fixtures/', import.meta.url);

export interface FixtureRun<L> {
  child: ChildProcess;
  /** Every JSON line printed so far. */
  lines: L[];
  /** Resolves with the first line matching `test` (or rejects when the child exits first). */
  waitFor(test: (line: L) => boolean): Promise<L>;
  /** Writes one JSON line to the child's stdin. */
  tell(message: unknown): void;
  /** Resolves with every line once the child exits with code 0; rejects otherwise. */
  done: Promise<L[]>;
  kill(): Promise<void>;
}

/**
 * Spawns test/fixtures/<name> with one JSON argument; stdout lines starting with '{' are parsed,
 * stderr is kept for the error message.
 */
export function runFixture<L>(name: string, args: unknown): FixtureRun<L> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(name,
    FIXTURES)), JSON.stringify(args)], { env: ENV, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: L[] = [];
  const waiters: { test: (line: L) => boolean; resolve: (line: L) => void }[] = [];
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors = (errors + String(chunk)).slice(-20_000); });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (!text.startsWith('{')) return;
    const line = JSON.parse(text) as L;
    lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i -= 1) {
      if (!waiters[i]!.test(line)) continue;
      waiters[i]!.resolve(line);
      waiters.splice(i, 1);
    }
  });
  const done = new Promise<L[]>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(lines);
      else reject(new Error(`${name} exited with ${code ?? signal}; stderr: ${errors}`));
    });
  });
  done.catch(() => undefined);
  return {
    child, lines, done,
    waitFor(test) {
      const seen = lines.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      return Promise.race([new Promise<L>((resolve) => waiters.push({ test, resolve })),
        done.then(() => { throw new Error(`${name} exited before the line awaited`); })]);
    },
    tell(message) {
      child.stdin!.write(`${JSON.stringify(message)}\n`);
    },
    kill: () => stopHard(child),
  };
}
