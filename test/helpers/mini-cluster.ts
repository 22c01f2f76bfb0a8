/**
 * Spawns test/fixtures/mini-cluster.ts (a broker + storage node in one process, on a real UCX
 * transport over loopback) and drives its test hooks over stdin/stdout JSON lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../fixtures/mini-cluster.ts', import.meta.url));

export interface MiniCluster {
  address: string;
  child: ChildProcess;
  call(cmd: string, args?: Record<string, unknown>): Promise<unknown>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** The fixture's `stats` hook (leases and appends are counted over all partitions). */
export interface MiniClusterStats {
  leasesOpen: number;
  /** Leases granted so far. */
  leasesGranted: number;
  /** Batches appended so far (repeats of an append not counted). */
  appends: number;
  /** Batches appended and not yet acknowledged (see holdAcks). */
  appendsInFlight: number;
  /** Segments allocated so far. */
  segments: number;
}

export interface MiniClusterOptions { segmentSizeBytes?: number; regionBytes?: number }

export async function startMiniCluster(options: MiniClusterOptions = {}): Promise<MiniCluster> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(options)], {
    env: { ...process.env, UCX_NET_DEVICES: 'lo' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let onListening: (line: Record<string, unknown>) => void = () => undefined;
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    onListening = resolve;
    void exited.then(() => reject(new Error('mini cluster exited before listening')));
  });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (!text.startsWith('{')) { process.stderr.write(`mini-cluster: ${text}\n`); return; }
    const line = JSON.parse(text) as Record<string, unknown>;
    if (line.event === 'listening') { onListening(line); return; }
    const waiter = waiting.get(Number(line.id));
    waiting.delete(Number(line.id));
    if (line.ok === true) waiter?.resolve(line.result);
    else waiter?.reject(new Error(`${String(line.code)}: ${String(line.message)}`));
  });
  const { host, port } = await listening;
  let nextId = 1;
  return {
    address: `${String(host)}:${String(port)}`,
    child,
    call(cmd, args = {}) {
      const id = nextId;
      nextId += 1;
      child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`);
      return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
