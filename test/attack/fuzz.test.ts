// A bounded fuzz of control and data-path messages (test/fixtures/fuzz-peer.ts) against a real
// `pmq storage` and `pmq broker` (CLI processes, /dev/shm, a cluster key), on tcp and on sm,tcp.
// Before the fuzz a legitimate client produces a few hundred records; after each node's run:
// both processes alive (no exit, no abort in stderr), a fresh legitimate connection is served
// (produce and consume), and the records acknowledged before read back unchanged. Some of the
// fuzzer's connections are lease sessions (its own topic `fuzz-lease`): a real lease, then
// hostile appends, releases, writes, subscribes and unsubscribes about it
// (test/fixtures/fuzz-peer.ts).
// PMQ_FUZZ_MESSAGES per node per transport (default 1500; `npm run test:fuzz`: 20 000),
// PMQ_TEST_SEED replays a run (the seed is printed). docs/security.md, "Fuzzing". First, the
// regression test of what it found in native code: closing an endpoint with rendezvous
// receives or sends in flight aborted the process in UCX 1.13.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import t from 'tap';

import { startBroker, startStorage, tempDir, type Proc } from '../helpers/broker-cluster.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { testSeed } from '../fixtures/record-batch-random.js';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const MESSAGES = Number(process.env.PMQ_FUZZ_MESSAGES ?? 1500);
const PER_CONNECTION = 40;
const SEED = testSeed();
const TOPIC = 'fuzz-records';
const PARTITIONS = 3;
t.comment(`seed ${SEED} (PMQ_TEST_SEED=${SEED} replays), ${MESSAGES} messages per node per ` +
  'transport');

interface Answer { ok: boolean; error?: string; acks?: [number, number, string][];
  records?: [number, number, string][] }

/** The legitimate client process (test/fixtures/fuzz-client.ts): one command, one answer. */
class LegitClient {
  private readonly child: ChildProcess;
  private readonly answers: ((answer: Answer) => void)[] = [];

  constructor(broker: Proc, transports: string) {
    this.child = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, 'fuzz-client.ts'),
      JSON.stringify({ broker: `${broker.host}:${broker.port}`, transports })],
    { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.answers.shift()?.(JSON.parse(line) as Answer);
    });
  }

  run(command: Record<string, unknown>): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${command.op} in 60 s`)),
        60_000);
      this.answers.push((answer) => { clearTimeout(timer); resolve(answer); });
      this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    if (this.child.exitCode === null) await once(this.child, 'exit');
  }
}

interface Stats { generated: number; sent: number; connections: number; closedByNode: number;
  sendFailed: number; ms: number; unreachable?: boolean;
  kinds?: { leaseSessions: number; leased: number; leaseMessages: number; pushes: number } }

async function fuzz(node: Proc, role: 'storage' | 'broker', transports: string,
  seed: number, broker: Proc): Promise<{ code: number | null; stats: Stats | undefined;
  stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, 'fuzz-peer.ts'),
    JSON.stringify({ host: node.host, port: node.port, transports, messages: MESSAGES,
      perConnection: PER_CONNECTION, seed, role, broker: `${broker.host}:${broker.port}` })],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => { stdout += String(chunk); });
  child.stderr.on('data', (chunk) => { stderr += String(chunk); });
  const [code] = await once(child, 'exit');
  const line = stdout.trim().split('\n').pop() ?? '';
  return { code: code as number | null, stats: line.startsWith('{') ? JSON.parse(line) as Stats :
    undefined, stderr };
}

/** stderr of a node process, kept whole: an abort shows up there. */
function collect(proc: Proc): () => string {
  let text = '';
  proc.child.stderr!.on('data', (chunk) => { text += String(chunk); });
  return () => text;
}

const ABORT = /Assertion|invariant broken|abort|Aborted|FATAL|Segmentation|backtrace/i;

for (const transports of ['tcp', 'sm,tcp'] as const) {
  t.test(`a close with rendezvous receives and sends in flight, over ${transports}`,
    async (t) => {
      const { dir, remove } = tempDir('pmq-fuzz-rndv-');
      testKeyFile(dir);
      const storage = await startStorage(join(dir, 'region'), 1, 0, ['--transports', transports]);
      const stderr = collect(storage);
      t.teardown(() => {
        if (storage.child.exitCode === null) storage.child.kill('SIGKILL');
        remove();
      });
      // 20 connections: 6 rendezvous messages of 1 MB, then a bad frame header without waiting.
      // The node closes each connection while receiving (its abort, on tcp); the peer's own
      // transport closes them at exit while sending (its abort, on sm).
      const peer = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES,
        'rndv-close-peer.ts'), storage.host, String(storage.port), transports, '20', '6'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
      let peerErr = '';
      peer.stderr.on('data', (chunk) => { peerErr += String(chunk); });
      const [code] = await once(peer, 'exit');
      t.equal(code, 0, `the peer ended normally ${peerErr.match(/.*Assertion.*/)?.[0] ?? ''}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      t.equal(storage.child.exitCode, null, 'the storage node is still running');
      t.notMatch(stderr(), ABORT, 'no abort in its stderr');
    });
}

for (const [index, transports] of (['tcp', 'sm,tcp'] as const).entries()) {
  t.test(`fuzz over ${transports}`, async (t) => {
    const { dir, remove } = tempDir('pmq-fuzz-');
    testKeyFile(dir);
    const procs: Proc[] = [];
    let client: LegitClient | undefined;
    t.teardown(async () => {
      await client?.close().catch(() => undefined);
      for (const proc of procs) if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
      remove();
    });
    // A 64 MiB region: the fuzzer (an admin of this broker without --auth-file, as every client)
    // may create topics and lease in them; that must not starve the test's own topic.
    const storage = await startStorage(join(dir, 'region'), 1, 0, ['--transports', transports,
      '--size', '64MiB']);
    procs.push(storage);
    const storageErr = collect(storage);
    const broker = await startBroker(join(dir, 'broker'), [storage], ['--transports',
      transports]);
    procs.push(broker);
    const brokerErr = collect(broker);
    client = new LegitClient(broker, transports);

    t.same(await client.run({ op: 'create', topic: TOPIC, partitions: PARTITIONS }), { ok: true },
      'topic created');
    const acked: [number, number, string][] = [];
    for (const tag of ['before-a', 'before-b', 'before-c']) {
      const produced = await client.run({ op: 'produce', topic: TOPIC, count: 100, tag });
      t.ok(produced.ok, `produced ${tag}: ${produced.error ?? ''}`);
      acked.push(...(produced.acks ?? []));
    }
    t.equal(acked.length, 300, '300 records acknowledged before the fuzz');

    for (const [step, [role, node]] of ([['storage', storage], ['broker', broker]] as const)
      .entries()) {
      const seed = (SEED + index * 2 + step) >>> 0;
      const run = await fuzz(node, role, transports, seed, broker);
      t.equal(run.code, 0, `fuzz peer (seed ${seed}) ended normally ${run.stderr.slice(-2000)}`);
      const stats = run.stats;
      t.ok(stats !== undefined && stats.sent === MESSAGES && stats.unreachable !== true,
        `${role} over ${transports}: ${JSON.stringify(stats)}`);
      t.comment(`${role} over ${transports}: ${stats?.sent} messages sent (${stats?.sendFailed} ` +
        `refused or cut; ${stats?.generated} generated), ${stats?.connections} connections ` +
        `(${stats?.closedByNode} closed by the node), ${stats?.ms} ms, seed ${seed}; ` +
        `${stats?.kinds?.leaseSessions} lease sessions (${stats?.kinds?.leased} leased, ` +
        `${stats?.kinds?.leaseMessages} messages about their leases, ` +
        `${stats?.kinds?.pushes} watermark pushes received)`);
      t.ok((stats?.kinds?.leased ?? 0) > 0, 'the fuzzer held real leases');

      for (const [name, proc, stderr] of [['storage', storage, storageErr],
        ['broker', broker, brokerErr]] as const) {
        t.equal(proc.child.exitCode, null, `${name} still running after fuzzing the ${role}`);
        t.equal(proc.child.signalCode, null, `${name} not killed by a signal`);
        t.notMatch(stderr(), ABORT, `no abort in the ${name}'s stderr`);
      }

      const tag = `after-${role}`;
      const produced = await client.run({ op: 'produce', topic: TOPIC, count: 50, tag });
      t.ok(produced.ok, `a fresh connection produces after fuzzing the ${role}: ` +
        `${produced.error ?? ''}`);
      acked.push(...(produced.acks ?? []));
      const until: Record<string, number> = {};
      for (const [partition, offset] of acked) {
        until[String(partition)] = Math.max(until[String(partition)] ?? 0, offset + 1);
      }
      const consumed = await client.run({ op: 'consume', topic: TOPIC, until });
      t.ok(consumed.ok, `a fresh connection consumes: ${consumed.error ?? ''}`);
      const read = new Map((consumed.records ?? []).map(([p, o, v]) => [`${p}/${o}`, v]));
      const wrong = acked.filter(([p, o, v]) => read.get(`${p}/${o}`) !== v);
      t.equal(wrong.length, 0, `all ${acked.length} acknowledged records read back unchanged` +
        (wrong.length > 0 ? `; first wrong: ${JSON.stringify(wrong[0])}` : ''));
    }
  });
}
