// What a new user tripped on (issue 13), through real processes: `pmq storage` + `pmq broker`
// on 127.0.0.1 and the client commands as a user runs them.
// - bugs 3 and 4: impossible topic names are refused by the client (PMQ_ERR_ARGUMENT, with the
//   rule) and, sent raw, answered by the broker with PMQ_ERR_ARGUMENT on a connection that
//   stays usable; "." and ".." are refused like the storage node refuses them.
// - bug 2: a consumer with its storage node down says so and exits 1.
// - the friction list, rpk's conventions (short flags, --brokers, -H, -f templates, -o starts).
// - bug 11: produce stopped by Ctrl-C or PMQ_ERR_REGION_FULL says what was acknowledged and
//   how to resume (--skip-lines), and the resume stores every line once.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

import t from 'tap';

import { Client, runPmq, startBroker, startStorage, stopProc, tempDir, type PmqRun, type Proc }
  from '../helpers/broker-cluster.js';

import { connect, offsetsForTimes } from '../../clients/index.js';

const PMQ_CLI = new URL('../../cli/pmq.ts', import.meta.url).pathname;

const { dir, remove } = tempDir('pmq-cli-usability-');
let storage: Proc;
let broker: Proc;
let client: string[];

t.before(async () => {
  storage = await startStorage(`${dir}/region`, 0);
  broker = await startBroker(`${dir}/broker`, [storage]);
  client = ['--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'];
});
t.teardown(async () => {
  await stopProc(broker);
  await stopProc(storage);
  remove();
});

const IMPOSSIBLE = ['bad/name', 'has space', '', '.', '..', 'x'.repeat(250), 'ünïcode'];

t.test('the client refuses impossible topic names, saying the rule', async (t) => {
  for (const name of IMPOSSIBLE) {
    for (const args of [['topic', 'create', name, '--partitions', '1'], ['produce', name,
      '--value', 'v'], ['consume', name, '--max', '1', '--timeout-ms', '1000']]) {
      const run = await runPmq([...args, ...client]);
      t.equal(run.code, 1, `${args[0]} ${JSON.stringify(name)}`);
      t.match(run.stderr, /invalid topic name .*rule: 1\.\.249 characters.*\[PMQ_ERR_ARGUMENT\]/,
        run.stderr);
      t.notMatch(run.stderr, /NOT_CONNECTED|UCX/);
    }
  }
  const list = await runPmq(['topic', 'list', ...client]);
  t.notMatch(list.stdout, /^\.\.?\s/m, 'neither "." nor ".." was created');
});

t.test('the broker answers an impossible name with PMQ_ERR_ARGUMENT and keeps going', async (t) => {
  const raw = new Client();
  t.teardown(() => raw.transport.close());
  await raw.connect(broker);
  for (const name of IMPOSSIBLE) {
    for (const [kind, body] of [['topicCreate', { topic: name, partitions: 1, configs: [] }],
      ['topicDescribe', { topic: name }], ['topicDelete', { topic: name }]] as const) {
      const error = await raw.call(kind, body as never).then(() => null, (e: unknown) => e);
      t.match(error, { code: 'PMQ_ERR_ARGUMENT' }, `${kind} ${JSON.stringify(name)}`);
    }
  }
  const listed = await raw.call('topicList', {});
  t.equal(listed.kind, 'topics', 'the same connection still serves');
});

t.test('a consumer reports a storage outage instead of "0 records" (bug 2)', async (t) => {
  const down = await startStorage(`${dir}/down-region`, 1);
  const downBroker = await startBroker(`${dir}/down-broker`, [down]);
  t.teardown(async () => { await stopProc(downBroker); await stopProc(down); });
  const at = ['--broker', `${downBroker.host}:${downBroker.port}`, '--transports', 'tcp'];
  t.equal((await runPmq(['topic', 'create', 'd', '--partitions', '1', ...at])).code, 0);
  t.equal((await runPmq(['produce', 'd', ...at], 'a\nb\nc\n')).code, 0);
  const before = await runPmq(['consume', 'd', '--max', '3', '--timeout-ms', '3000', ...at]);
  t.equal(before.code, 0, before.stderr);
  t.equal(before.stdout, 'a\nb\nc\n');
  await stopProc(down);
  const run = await runPmq(['consume', 'd', '--max', '3', '--timeout-ms', '3000', ...at]);
  t.equal(run.stdout, '', 'nothing read');
  t.equal(run.code, 1, 'non-zero exit');
  t.match(run.stderr, /pmq: reads of d\/0 were failing when it stopped: .*storage node/,
    run.stderr);
});

/** `pmq produce` fed by the test: `write` more lines, then SIGINT or end; its outputs. */
function startProduce(args: string[]): { child: ChildProcess; done: Promise<PmqRun> } {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ_CLI, 'produce', ...args],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += String(chunk); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += String(chunk); });
  child.stdin!.on('error', () => undefined);
  const done = once(child, 'close').then(([code]) => ({ code: code as number | null, stdout,
    stderr }));
  return { child, done };
}

const numbered = (from: number, to: number, width = 0): string => Array.from(
  { length: to - from + 1 }, (_, i) => `line-${from + i}`.padEnd(width, '.')).join('\n') + '\n';

/** Every consumed line, counted. */
async function consumedCounts(topic: string, at: string[]): Promise<Map<string, number>> {
  const run = await runPmq(['consume', topic, '--timeout-ms', '3000', ...at]);
  const counts = new Map<string, number>();
  for (const line of run.stdout.split('\n').filter((l) => l.length > 0)) {
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  return counts;
}

t.test('Ctrl-C during produce: a summary and a resume without duplicates (bug 11)', async (t) => {
  t.equal((await runPmq(['topic', 'create', 'sig', '--partitions', '2', ...client])).code, 0);
  const first = startProduce(['sig', ...client]);
  first.child.stdin!.write(numbered(1, 20_000));  // stdin stays open: produce waits for more
  await new Promise((resolve) => setTimeout(resolve, 4000));
  first.child.kill('SIGINT');
  const run = await first.done;
  t.equal(run.code, 130, run.stderr);
  t.match(run.stderr, /acknowledged to sig .*; stopped: SIGINT/);
  const match = new RegExp('input lines 1\\.\\.(\\d+) are acknowledged; resume with ' +
    '`pmq produce sig --skip-lines (\\d+)`').exec(run.stderr);
  t.ok(match, run.stderr);
  const done = Number(match?.[1]);
  t.equal(done, 20_000, 'everything written before Ctrl-C was acknowledged and said');
  const rerun = await runPmq(['produce', 'sig', '--skip-lines', String(done), ...client],
    numbered(1, 25_000));
  t.equal(rerun.code, 0, rerun.stderr);
  t.match(rerun.stderr, /5000 records .* acknowledged/);
  const counts = await consumedCounts('sig', client);
  t.equal(counts.size, 25_000, 'every line stored');
  t.ok([...counts.values()].every((n) => n === 1), 'none twice');
});

t.test('friction: port in use, --size 1GB, --from out of range', async (t) => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  const regionPath = `${dir}/in-use.region`;
  const storageRun = await runPmq(['storage', '--path', regionPath, '--size', '4MiB',
    '--listen', `127.0.0.1:${port}`, '--transports', 'tcp', '--cluster-key-file',
    `${dir}/cluster.key`]);
  t.equal(storageRun.code, 1);
  t.match(storageRun.stderr, /address 127\.0\.0\.1:\d+ is already in use/);
  t.notOk(existsSync(regionPath), 'no region file left behind');
  const brokerRun = await runPmq(['broker', '--listen', `127.0.0.1:${port}`, '--storage',
    `${storage.host}:${storage.port}`, '--data-dir', `${dir}/in-use-broker`, '--transports',
    'tcp', '--cluster-key-file', `${dir}/cluster.key`]);
  t.equal(brokerRun.code, 1);
  t.match(brokerRun.stderr, /already in use/);

  const decimal = await startStorage(`${dir}/decimal.region`, 2, 0, ['--size', '10MB']);
  t.pass('--size 10MB (not a whole number of pages) is accepted, rounded up to a page');
  await stopProc(decimal);

  t.equal((await runPmq(['topic', 'create', 'range', '--partitions', '2', ...client])).code, 0);
  t.equal((await runPmq(['produce', 'range', '--partition', '0', ...client],
    numbered(1, 10))).code, 0);
  const outside = await runPmq(['consume', 'range', '--from', '50', ...client]);
  t.equal(outside.code, 1);
  t.match(outside.stderr,
    /offset 50 is not held by range partition 0: 0\.\.10, partition 1: 0\.\.0/);
});

t.test('relative and timestamp starts: -o -N, +N, @ms, @ISO (offsetsForTimes)', async (t) => {
  t.equal((await runPmq(['topic', 'create', 'when', '--partitions', '2', ...client])).code, 0);
  t.equal((await runPmq(['produce', 'when', '--partition', '0', ...client],
    numbered(1, 5))).code, 0);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const between = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal((await runPmq(['produce', 'when', '--partition', '0', ...client],
    numbered(6, 10))).code, 0);
  const read = async (...args: string[]): Promise<string> => {
    const run = await runPmq(['consume', 'when', '--timeout-ms', '1500', ...args, ...client]);
    t.equal(run.code, 0, run.stderr);
    return run.stdout;
  };
  t.equal(await read('--partition', '0', '-o', '-3'), numbered(8, 10), '-o -3: the last 3');
  t.equal(await read('--partition', '0', '-o', '+7'), numbered(8, 10), '+7: after 7');
  t.equal(await read('--partition', '0', '-o', `@${between}`), numbered(6, 10), '@ms');
  t.equal(await read('--partition', '0', '-o', `@${new Date(between).toISOString()}`),
    numbered(6, 10), '@ISO');
  t.equal(await read('-o', '@0'), numbered(1, 10), '@0: everything (partition 1 is empty)');
  t.equal(await read('-o', `@${Date.now() + 60_000}`), '', 'a future time: the end');
});

t.test('offsetsForTimes inside one batch: the first record at or after the time', async (t) => {
  const pmq = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp' });
  t.teardown(() => pmq.close());
  await pmq.admin().createTopic('stamped', { partitions: 1 });
  const producer = pmq.producer({ lingerMs: 50 });
  // One send, one batch: record i stamped 1 000 000 + 10 i.
  await producer.send({ topic: 'stamped', partition: 0, records: Array.from({ length: 40 },
    (_, i) => ({ value: Buffer.from(`r${i}`), timestamp: 1_000_000 + 10 * i })) });
  await producer.close();
  const at = async (ms: number): Promise<number | null> =>
    (await offsetsForTimes(pmq, 'stamped', ms)).get(0) ?? null;
  t.equal(await at(1_000_000), 0, 'the first record');
  t.equal(await at(1_000_125), 13, 'between records: the next one');
  t.equal(await at(1_000_130), 13, 'exactly a record');
  t.equal(await at(1_000_390), 39, 'the last record');
  t.equal(await at(1_000_391), null, 'after the last: none');
  t.equal(await at(0), 0, 'before everything: the first');
});

t.test('conventions as rpk: short flags, --brokers, 1 partition, -H, templates', async (t) => {
  const brokers = ['--brokers', `${broker.host}:${broker.port}`, '--transports', 'tcp'];
  const created = await runPmq(['topic', 'create', 'conv', ...brokers]);
  t.equal(created.code, 0, created.stderr);
  t.match(created.stderr, /created with 1 partition\n/, '--partitions defaults to 1');
  t.equal((await runPmq(['topic', 'create', 'conv3', '-p', '3', ...client])).code, 0);
  const produced = await runPmq(['produce', '-t', 'conv3', '-p', '2', '-k', 'K', '-H', 'src=web',
    '-H', 'n=1', ...client], 'one\ntwo\n');
  t.equal(produced.code, 0, produced.stderr);
  const templated = await runPmq(['consume', '-t', 'conv3', '-p', '1,2', '-n', '2', '-o', '0',
    '-f', '%t|%p|%o|%k|%h|%v\\n', ...brokers]);
  t.equal(templated.code, 0, templated.stderr);
  t.equal(templated.stdout, 'conv3|2|0|K|src=web,n=1|one\nconv3|2|1|K|src=web,n=1|two\n');
  const stamped = await runPmq(['consume', 'conv3', '-p', '2', '-n', '1', '-f', '%d%%\\t%v\\n',
    ...client]);
  t.match(stamped.stdout, /^\d{13}%\tone\n$/, '%d timestamp, %% and \\t');
  const json = await runPmq(['consume', 'conv3', '-n', '1', '-f', 'json', ...client]);
  t.same((JSON.parse(json.stdout) as { headers: unknown }).headers,
    [{ key: 'src', value: 'web' }, { key: 'n', value: '1' }], '-H: Kafka record headers');
  const keyed = await runPmq(['produce', '-t', 'conv', '-f', '%k %v\\n', ...client],
    'k1 first value\nk2 second\n');
  t.equal(keyed.code, 0, keyed.stderr);
  const back = await runPmq(['consume', 'conv', '-n', '2', '-f', '%k=%v\\n', ...client]);
  t.equal(back.stdout, 'k1=first value\nk2=second\n', 'produce -f %k %v: key, separator, value');
  const badInput = await runPmq(['produce', 'conv', '-f', '%v %k', ...client], 'x\n');
  t.equal(badInput.code, 1);
  t.match(badInput.stderr, /pmq produce reads '%v'/);
  const bad = await runPmq(['consume', 'conv3', '-f', '%x', ...client]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /unknown %x/);
  const none = await runPmq(['consume', ...client]);
  t.match(none.stderr, /name the topic/);
});

t.test('storage death during produce: the summary says where to resume (bug 11)', async (t) => {
  const node = await startStorage(`${dir}/death-region`, 3);
  const nodeBroker = await startBroker(`${dir}/death-broker`, [node]);
  t.teardown(async () => { await stopProc(nodeBroker); await stopProc(node); });
  const at = ['--broker', `${nodeBroker.host}:${nodeBroker.port}`, '--transports', 'tcp'];
  t.equal((await runPmq(['topic', 'create', 'death', ...at])).code, 0);
  const producer = startProduce(['death', ...at]);
  producer.child.stdin!.write(numbered(1, 5000));
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await stopProc(node);
  producer.child.stdin!.write(numbered(5001, 10_000));
  producer.child.stdin!.end(numbered(10_001, 20_000));
  const run = await producer.done;
  t.equal(run.code, 1, 'exit 1');
  t.match(run.stderr, /acknowledged to death .*; stopped: PMQ_ERR_/);
  const match = /input lines 1\.\.(\d+) are acknowledged/.exec(run.stderr);
  t.ok(match, run.stderr);
  t.ok(Number(match?.[1]) >= 5000, 'what was acknowledged before the death is said');
});

t.test('REGION_FULL during produce: what was acknowledged and where to resume', async (t) => {
  t.equal((await runPmq(['topic', 'create', 'full', '--partitions', '1', ...client])).code, 0);
  const run = await runPmq(['produce', 'full', ...client], numbered(1, 8000, 1000));
  t.equal(run.code, 1, 'exit 1');
  t.match(run.stderr, /PMQ_ERR_REGION_FULL/);
  t.match(run.stderr, /records .* acknowledged to full .*; stopped: PMQ_ERR_REGION_FULL/);
  const match = /input lines 1\.\.(\d+) are acknowledged/.exec(run.stderr);
  t.ok(match, run.stderr);
  const done = Number(match?.[1]);
  t.ok(done > 0 && done < 8000, `some lines acknowledged (${done})`);
  const counts = await consumedCounts('full', client);
  for (let line = 1; line <= done; line += 1) {
    const count = counts.get(`line-${line}`.padEnd(1000, '.')) ?? 0;
    if (count !== 1) {
      t.fail(`line ${line} stored ${count} times`);
      return;
    }
  }
  t.pass(`lines 1..${done} stored once each`);
});
