/**
 * Spawns test/fixtures/transport-peer.ts in its own process and talks to it over JSON lines:
 * `call(cmd, args)` resolves with the peer's result (or rejects with its error code), and
 * `nextEvent(name)` waits for an event line. Traffic stays on loopback (UCX_NET_DEVICES=lo).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Test } from 'tap';

import type { TransportOptions } from '../../native/transport.js';
import { UCX_HOOKS_OFF } from './ucx-env.js';

export type PeerEvent = Record<string, unknown> & { event: string };

export interface Peer {
  host: string;
  port: number;
  pid: number;
  child: ChildProcess;
  call(cmd: string, args?: Record<string, unknown>): Promise<unknown>;
  nextEvent(event: string, timeoutMs?: number): Promise<PeerEvent>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

// .ts under tsx, .js when compiled (test/rdma runs compiled code in the VM: no tsx there).
const FIXTURE = fileURLToPath(new URL(`../fixtures/transport-peer${extname(
  fileURLToPath(import.meta.url))}`, import.meta.url));

export interface SpawnOptions {
  /** Address the peer listens on. Default 127.0.0.1. */
  host?: string;
  /** Environment on top of this process's. Default: UCX_NET_DEVICES=lo (loopback only). */
  env?: Record<string, string>;
  /** How long the peer may take to start listening. Default 20 s. */
  startMs?: number;
}

export class PeerCallError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * Spawns a peer. Pass the test so the peer is killed when it ends, whatever happened: a
 * leftover peer would keep the test process (and tap) waiting on its pipes.
 */
export async function spawnPeer(options: TransportOptions, test?: Test,
  spawnOptions: SpawnOptions = {}): Promise<Peer> {
  const loader = FIXTURE.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const args = [...loader, FIXTURE, JSON.stringify(options),
    spawnOptions.host ?? '127.0.0.1'];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...UCX_HOOKS_OFF, ...(spawnOptions.env ?? { UCX_NET_DEVICES: 'lo' }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const events: PeerEvent[] = [];
  const eventWaiters: { event: string; resolve: (e: PeerEvent) => void }[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  test?.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (!line.startsWith('{')) {  // UCX logs its warnings to stdout
      process.stderr.write(`peer: ${line}\n`);
      return;
    }
    const message = JSON.parse(line) as Record<string, unknown>;
    if (typeof message.id === 'number') {
      const waiter = waiting.get(message.id);
      waiting.delete(message.id);
      if (message.ok === true) waiter?.resolve(message.result);
      else waiter?.reject(new PeerCallError(String(message.code), String(message.message)));
      return;
    }
    const event = message as PeerEvent;
    const index = eventWaiters.findIndex((w) => w.event === event.event);
    if (index >= 0) eventWaiters.splice(index, 1)[0]!.resolve(event);
    else events.push(event);
  });
  let nextId = 1;
  const nextEvent = (event: string, timeoutMs = 10_000): Promise<PeerEvent> => {
    const index = events.findIndex((e) => e.event === event);
    if (index >= 0) return Promise.resolve(events.splice(index, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} event from peer`)), timeoutMs);
      eventWaiters.push({ event, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    });
  };
  const listening = await nextEvent('listening', spawnOptions.startMs ?? 20_000);
  return {
    host: String(listening.host), port: Number(listening.port), pid: Number(listening.pid), child,
    call(cmd, args = {}) {
      const id = nextId;
      nextId += 1;
      child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`);
      return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
    },
    nextEvent,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
