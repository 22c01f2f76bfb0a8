/**
 * Launches a broker (`pmq broker`) over storage nodes (`pmq storage`), real child processes on
 * 127.0.0.1, and gives the test process a client: one Transport, one ControlChannel,
 * `call(kind, body)`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { pino } from 'pino';

import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import { collectRun, type PmqRun } from './child-run.js';
import { testKeyFile } from './cluster-key.js';

const PMQ = new URL('../../cli/pmq.ts', import.meta.url).pathname;
const ENV = { ...process.env, UCX_NET_DEVICES: 'lo' };

export interface Proc { child: ChildProcess; host: string; port: number; match: RegExpExecArray;
  /** The last 16 KiB the process wrote to stderr (its logs at warn and above). */
  stderr?: () => string }

/** Keeps the tail of a child's stderr. */
function stderrTail(child: ChildProcess): () => string {
  let tail = '';
  child.stderr?.on('data', (chunk) => { tail = (tail + String(chunk)).slice(-16_384); });
  return () => tail;
}

/** Resolves with the first match in the child's stdout; keeps draining it afterwards. */
export function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  let text: string | null = '';
  let errors = '';
  child.stderr?.on('data', (chunk) => { errors += String(chunk); });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      if (text === null) return;
      text += String(chunk);
      const match = pattern.exec(text);
      if (match === null) return;
      text = null;
      resolve(match);
    });
    child.once('exit', () => reject(new Error(`process ended before printing ${pattern}; ` +
      `output: ${text}; stderr: ${errors}`)));
  });
}

export async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const [code] = await once(child, 'exit');
  return code as number | null;
}

/** SIGKILLs a node process (unless it ended already) and waits for its exit. */
export async function stopProc(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGKILL');
  await exitOf(proc.child);
}

export { collectRun, type PmqRun } from './child-run.js';

/** Runs `pmq args` as a user would, `input` on its stdin; collects both outputs. */
export async function runPmq(args: string[], input = ''): Promise<PmqRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, ...args],
    { stdio: ['pipe', 'pipe', 'pipe'], env: ENV });
  child.stdin!.on('error', () => undefined); // a command that fails early stops reading
  child.stdin!.end(input);
  return collectRun(child);
}

/**
 * `pmq storage` on a 4 MiB region of 64 KiB segments; `extra` flags win (the last wins). The
 * cluster key is `cluster.key` beside the region (testKeyFile), the broker's beside its data
 * directory: the same file when both are in one temp dir.
 */
export async function startStorage(path: string, nodeId: number, port = 0,
  extra: string[] = []): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, 'storage', '--path', path,
    '--size', '4MiB', '--segment-size', '64KiB', '--node-id', String(nodeId), '--listen',
    `127.0.0.1:${port}`, '--transports', 'tcp', '--log-level', 'warn', '--cluster-key-file',
    testKeyFile(dirname(path)), ...extra],
  { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const match = await waitForLine(child, /listening on ([\d.]+):(\d+)/);
  return { child, host: match[1]!, port: Number(match[2]), match };
}

export async function startBroker(dataDir: string, storage: Proc[], extra: string[] = []):
  Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, 'broker', '--listen',
    '127.0.0.1:0', '--storage', storage.map((s) => `${s.host}:${s.port}`).join(','),
    '--data-dir', dataDir, '--transports', 'tcp', '--log-level', 'warn', '--cluster-key-file',
    testKeyFile(dirname(dataDir)), ...extra],
  { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = stderrTail(child);
  const match = await waitForLine(child, /listening on ([\d.]+):(\d+) \(epoch (\d+)/);
  return { child, host: match[1]!, port: Number(match[2]), match, stderr };
}

export class Client {
  readonly transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
  readonly channel = new ControlChannel(this.transport, pino({ level: 'silent' }));
  ep: Endpoint | undefined;
  readonly storageEps = new Map<number, Endpoint>();

  /** The session's ticket (welcome): storage endpoints are bound to it on connect. */
  ticket: Uint8Array | undefined;

  async connect(broker: Proc): Promise<Message<'welcome'>> {
    this.ep = await this.transport.connect(broker.host, broker.port);
    const welcome = await this.call('hello', { clientId: 'test', role: 'admin' }) as
      Message<'welcome'>;
    this.ticket = welcome.ticket;
    for (const ep of this.storageEps.values()) { // a new session (e.g. a restarted broker)
      await this.channel.request(ep, 'sessionBind', { ticket: welcome.ticket }, 10_000)
        .catch(() => undefined);
    }
    return welcome;
  }

  call<K extends RequestKind>(kind: K, body: Body<K>, timeoutMs = 10_000): Promise<Message> {
    return this.channel.request(this.ep!, kind, body, timeoutMs);
  }

  async storage(nodeId: number, host: string, port: number): Promise<Endpoint> {
    const known = this.storageEps.get(nodeId);
    if (known !== undefined) return known;
    const ep = await this.transport.connect(host, port);
    // Grants are usable only on endpoints bound to their session (docs/security.md).
    if (this.ticket !== undefined) {
      await this.channel.request(ep, 'sessionBind', { ticket: this.ticket }, 10_000);
    }
    this.storageEps.set(nodeId, ep);
    return ep;
  }
}

/** A batch written into a lease and ready to append. */
export interface WrittenBatch {
  readonly lease: Message<'leased'>;
  readonly position: number;
  readonly bytes: number;
  readonly records: number;
}

/**
 * The raw produce path, as clients/batch-sender.ts runs it: `batch` (encoded, baseOffset 0)
 * written into a new lease of exactly its size on `client`'s session.
 */
export async function writeInLease(client: Client, welcome: Message<'welcome'>, topic: string,
  partition: number, batch: Uint8Array, records: number): Promise<WrittenBatch> {
  const lease = await client.call('lease', { topic, partition, bytes: batch.byteLength,
    bytesMin: batch.byteLength, releaseEpoch: 0, releaseId: -1 });
  if (lease.kind !== 'leased') throw new Error(`lease answered ${lease.kind}`);
  const node = welcome.storageNodes.find((n) => n.nodeId === lease.nodeId)!;
  await client.transport.writeValidated(await client.storage(node.nodeId, node.host, node.port),
    { id: lease.grantId, epoch: lease.grantEpoch, key: lease.grantKey }, lease.address, batch, 0,
    batch.byteLength);
  return { lease, position: lease.position, bytes: batch.byteLength, records };
}

/** Appends a written batch; resolves with the reply (acked or duplicate). */
export function appendWritten(client: Client, topic: string, partition: number,
  written: WrittenBatch, producerId = -1, sequence = -1): Promise<Message> {
  return client.call('append', { topic, partition, epoch: written.lease.epoch,
    leaseId: written.lease.leaseId, position: written.position, bytes: written.bytes,
    records: written.records, producerId, sequence });
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join('/dev/shm', prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
