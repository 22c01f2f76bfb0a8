// UCX as configured from outside pmq (issue 13, bugs 1 and 12), through real processes:
// - UCX's own log lines never reach stdout (a command's data), and servers at --log-level warn
//   print none for ordinary client disconnects;
// - a process told `tcp` by the UCX_TLS environment variable and one told `--transports tcp`
//   choose the same peer error-handling mode, so they connect, either way round.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { collectRun, type PmqRun } from '../helpers/child-run.js';
import { testKeyFile } from '../helpers/cluster-key.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];

interface Node { child: ChildProcess; address: string; stdout: () => string;
  stderr: () => string }

const started: ChildProcess[] = [];
const dir = mkdtempSync('/dev/shm/pmq-ucx-config-');
const keyFile = testKeyFile(dir);
t.teardown(() => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function environment(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, UCX_NET_DEVICES: 'lo', ...extra };
  delete env.UCX_TLS;
  delete env.UCX_LOG_LEVEL;
  return { ...env, ...extra };
}

/** Starts `pmq args`; resolves once it printed "listening on H:P" (at most 25 s). */
async function startNode(args: string[], env: Record<string, string> = {}): Promise<Node> {
  const child = spawn(process.execPath, [...PMQ, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: environment(env) });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" within 25 s; stdout: ` +
      `${stdout}; stderr: ${stderr.slice(-2000)}`)), 25_000);
    child.stdout!.on('data', (chunk) => {
      stdout += String(chunk);
      const match = /listening on ([\d.]+:\d+)/.exec(stdout);
      if (match !== null) { clearTimeout(timer); resolve(match[1]!); }
    });
    child.once('exit', () => { clearTimeout(timer); reject(new Error(`exited; ${stderr}`)); });
  });
  return { child, address, stdout: () => stdout, stderr: () => stderr };
}

async function stop(node: Node): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  node.child.kill('SIGKILL');
  await once(node.child, 'exit');
}

async function pmq(args: string[], env: Record<string, string> = {}): Promise<PmqRun> {
  return collectRun(spawn(process.execPath, [...PMQ, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: environment(env) }));
}

function storageArgs(name: string): string[] {
  return ['storage', '--path', join(dir, `${name}.region`), '--size', '4MiB', '--segment-size',
    '64KiB', '--listen', '127.0.0.1:0', '--log-level', 'warn', '--cluster-key-file', keyFile];
}

function brokerArgs(name: string, storage: Node): string[] {
  return ['broker', '--listen', '127.0.0.1:0', '--storage', storage.address, '--data-dir',
    join(dir, name), '--log-level', 'warn', '--cluster-key-file', keyFile];
}

t.test('no UCX line on stdout when no broker answers', async (t) => {
  // UCX's default transports (shared memory and tcp): its flush of the failed endpoint logs.
  const run = await pmq(['topic', 'list', '--broker', '127.0.0.1:1', '--request-timeout-ms',
    '1500']);
  t.equal(run.code, 1);
  t.equal(run.stdout, '', 'stdout carries data only');
  t.notMatch(run.stderr, /UCX|"component":"ucx"/, 'at warn, no UCX noise on stderr either');
  t.match(run.stderr, /no broker answers/);
});

t.test('servers print no UCX lines for ordinary client disconnects', async (t) => {
  // UCX's default transports, as a user starts them: there its disconnects log the most.
  const storage = await startNode(storageArgs('quiet'));
  const broker = await startNode(brokerArgs('quiet', storage));
  t.teardown(async () => { await stop(broker); await stop(storage); });
  const client = ['--broker', broker.address];
  const created = await pmq(['topic', 'create', 'q', '--partitions', '1', ...client]);
  t.equal(created.code, 0, created.stderr);
  // A consumer SIGKILLed mid-wait: its endpoints die without a goodbye.
  const consumer = spawn(process.execPath, [...PMQ, 'consume', 'q', ...client],
    { stdio: 'ignore', env: environment({}) });
  started.push(consumer);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.equal(consumer.exitCode, null, 'the consumer was still waiting');
  consumer.kill('SIGKILL');
  if (consumer.exitCode === null && consumer.signalCode === null) await once(consumer, 'exit');
  t.equal((await pmq(['topic', 'list', ...client])).code, 0);
  await new Promise((resolve) => setTimeout(resolve, 7000)); // past the peer timeout (5 s)
  for (const [name, node] of [['broker', broker], ['storage', storage]] as const) {
    t.notMatch(node.stdout(), /UCX/, `${name}: no UCX line on stdout`);
    t.notMatch(node.stderr(), /UCX|"component":"ucx"/, `${name}: none on stderr at warn`);
  }
});

t.test('UCX_TLS=tcp and --transports tcp agree on the error-handling mode', async (t) => {
  // The storage node told by the option, the broker by the environment ...
  const storage1 = await startNode([...storageArgs('a'), '--transports', 'tcp']);
  const broker1 = await startNode(brokerArgs('a', storage1), { UCX_TLS: 'tcp' });
  t.pass('a broker with UCX_TLS=tcp reached a storage node given --transports tcp');
  const listed = await pmq(['topic', 'create', 'x', '--partitions', '1', '--broker',
    broker1.address, '--transports', 'tcp']);
  t.equal(listed.code, 0, `client --transports tcp to broker UCX_TLS=tcp: ${listed.stderr}`);
  await stop(broker1);
  await stop(storage1);
  // ... and the reverse.
  const storage2 = await startNode(storageArgs('b'), { UCX_TLS: 'tcp' });
  const broker2 = await startNode([...brokerArgs('b', storage2), '--transports', 'tcp']);
  t.pass('a broker given --transports tcp reached a storage node with UCX_TLS=tcp');
  const created = await pmq(['topic', 'create', 'y', '--partitions', '1', '--broker',
    broker2.address],
    { UCX_TLS: 'tcp' });
  t.equal(created.code, 0, `client UCX_TLS=tcp to broker --transports tcp: ${created.stderr}`);
  await stop(broker2);
  await stop(storage2);
});
