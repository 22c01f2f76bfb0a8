// The storage node obeys only an authenticated broker (docs/security.md, "Broker ↔ storage:
// the cluster key"): `pmq storage` and `pmq broker` processes on 127.0.0.1 with key files in a
// temp dir; peers without the key (test/fixtures/broker-impostor.ts, pmq's own Transport and
// ControlChannel in a child process) are refused PMQ_ERR_AUTH and change no byte of the region;
// the real broker keeps serving; proofs cannot be replayed; epoch raises are bounded.
import { readFileSync } from 'node:fs';

import t from 'tap';

import { connect, type Client, type ConsumerRecord } from '../../clients/index.js';
import { EPOCH_MAX, EPOCH_RAISE_STEP_MAX } from '../../common/limits.js';
import {
  exitOf, startBroker, startStorage, tempDir, type Proc,
} from '../helpers/broker-cluster.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { runFixture } from '../helpers/e2e-cluster.js';

interface Line { case: string; kind?: string | boolean; code?: string; message?: string }

const { dir, remove } = tempDir('pmq-cluster-key-');
const procs: Proc[] = [];
t.teardown(async () => {
  for (const proc of procs) {
    proc.child.kill('SIGKILL');
    await exitOf(proc.child);
  }
  remove();
});
const otherKey = testKeyFile(`${dir}/other`, 'other.key');

async function impostor(args: Record<string, unknown>, node: Proc): Promise<Line[]> {
  return runFixture<Line>('broker-impostor.ts', { host: node.host, port: node.port, ...args })
    .done;
}

async function roundTrip(client: Client, topic: string, value: string): Promise<void> {
  const producer = client.producer({ lingerMs: 0 });
  await producer.send({ topic, records: [{ value }] });
  await producer.close();
}

async function consumeAll(client: Client, topic: string, count: number):
  Promise<ConsumerRecord[]> {
  const consumer = client.consumer({ start: 'earliest', maxWaitMs: 2000 });
  await consumer.assign([{ topic, partition: 0 }]);
  const records: ConsumerRecord[] = [];
  for await (const record of consumer) {
    records.push(record);
    if (records.length === count) break;
  }
  await consumer.close();
  return records;
}

const storage = await startStorage(`${dir}/region-1`, 1);
procs.push(storage);
const broker = await startBroker(`${dir}/data`, [storage]);
procs.push(broker);
const epoch = Number(broker.match[3]);

t.test('a broker with the cluster\'s key starts and serves', async (t) => {
  t.equal(epoch, 1, 'epoch 1 on a fresh region');
  const client = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp',
    netDevices: 'lo', logLevel: 'silent' });
  t.teardown(() => client.close());
  await client.admin().createTopic('trusted', { partitions: 1 });
  await roundTrip(client, 'trusted', 'before');
  t.equal((await consumeAll(client, 'trusted', 1)).length, 1);
});

t.test('an unauthenticated peer is refused everything and changes nothing', async (t) => {
  const before = readFileSync(`${dir}/region-1`);
  const lines = await impostor({ mode: 'unauthenticated' }, storage);
  const after = readFileSync(`${dir}/region-1`);
  const refused = lines.filter((line) => line.case !== 'brokerAuth');
  t.ok(refused.length >= 20, `${refused.length} broker requests sent`);
  for (const line of refused) {
    t.equal(line.code, 'PMQ_ERR_AUTH', `${line.case}: PMQ_ERR_AUTH`);
    t.notMatch(line.message ?? '', /\d/, `${line.case}: the reply names no number (no epoch)`);
  }
  t.match(lines.find((line) => line.case === 'brokerAuth'), { kind: 'brokerChallenge' },
    'a challenge is given to anyone');
  t.ok(before.equals(after), 'the region file is byte-identical');

  const client = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp',
    netDevices: 'lo', logLevel: 'silent' });
  t.teardown(() => client.close());
  await roundTrip(client, 'trusted', 'after');
  const records = await consumeAll(client, 'trusted', 2);
  t.same(records.map((r) => new TextDecoder().decode(r.value!)), ['before', 'after'],
    'the real broker keeps serving produce and consume');
});

t.test('an impostor broker with another key is refused', async (t) => {
  const lines = await impostor({ mode: 'wrong-key', keyFile: otherKey, epoch: epoch + 1 },
    storage);
  t.match(lines, [
    { case: 'storageHello with another key: node proof verifies', kind: false },
    { case: 'storageHello with another key', code: 'PMQ_ERR_AUTH' },
    { case: 'epochRaise after it', code: 'PMQ_ERR_AUTH' },
  ]);
  for (const line of lines) t.notMatch(line.message ?? '', /\d/, `${line.case}: no epoch`);
});

t.test('the key alone cannot take the live broker\'s epoch: an epoch has one owner', async (t) => {
  const lines = await impostor({ mode: 'raise', keyFile: testKeyFile(dir), epoch, raises: [] },
    storage);
  t.match(lines, [
    { case: 'valid hello: node proof verifies', kind: true },
    { case: 'valid hello', code: 'PMQ_ERR_EPOCH_STALE',
      message: new RegExp(`at epoch ${epoch}, raised by another broker instance`) },
  ]);
});

// From here on the cluster's broker is fenced (the replay below hellos one epoch above it).
t.test('a proof cannot be replayed or reused', async (t) => {
  const lines = await impostor({ mode: 'replay', keyFile: testKeyFile(dir), epoch: epoch + 1 },
    storage);
  t.match(lines, [
    { case: 'valid hello: node proof verifies', kind: true },
    { case: 'valid hello', kind: 'storageInfo' },
    { case: 'same proof again, same endpoint', code: 'PMQ_ERR_AUTH' },
    { case: 'same proof, new endpoint after a fresh brokerAuth', code: 'PMQ_ERR_AUTH' },
    { case: 'epochRaise on that endpoint', code: 'PMQ_ERR_AUTH' },
  ]);
});

t.test('a storage node with another key: the broker refuses to start', async (t) => {
  const stranger = await startStorage(`${dir}/other/region`, 2, 0,
    ['--cluster-key-file', otherKey]);
  procs.push(stranger);
  await t.rejects(startBroker(`${dir}/data-2`, [stranger]),
    new RegExp(`storage node at ${stranger.host}:${stranger.port} does not hold this ` +
      'cluster\'s key.*PMQ_ERR_AUTH'));
});

t.test('epoch raises are bounded', async (t) => {
  const node = await startStorage(`${dir}/raise/region`, 3, 0,
    ['--cluster-key-file', testKeyFile(dir)]);
  procs.push(node);
  const step = EPOCH_RAISE_STEP_MAX;
  const raises = [step + 2, step + 1, Number.MAX_SAFE_INTEGER];
  for (let e = 1 + 2 * step; e < EPOCH_MAX; e += step) raises.push(e);
  raises.push(EPOCH_MAX + 1, EPOCH_MAX);
  const lines = await impostor({ mode: 'raise', keyFile: testKeyFile(dir), epoch: 1, raises },
    node);
  const at = (epoch: number): Line | undefined =>
    lines.find((line) => line.case === `epochRaise ${epoch}`);
  t.match(at(step + 2), { code: 'PMQ_ERR_EPOCH_RANGE' }, 'more than the step above: refused');
  t.match(at(step + 1), { kind: 'done' }, 'exactly the step: raised');
  t.match(at(Number.MAX_SAFE_INTEGER), { code: 'PMQ_ERR_EPOCH_RANGE' }, '2^53-1: refused');
  t.match(at(EPOCH_MAX + 1), { code: 'PMQ_ERR_EPOCH_RANGE' },
    'above what the broker\'s ids allow: refused, even within the step');
  t.match(at(EPOCH_MAX), { kind: 'done' }, 'EPOCH_MAX itself: raised');

  // A broker can never start above EPOCH_MAX: a clear start-up error, exit 1.
  await t.rejects(startBroker(`${dir}/data-3`, [node]),
    /epoch 2097152, above the largest epoch 2097151.*PMQ_ERR_EPOCH_RANGE/);
});

t.test('a data directory does not decide the epoch: a new region starts a broker at 1',
  async (t) => {
    // Before metadata moved to the storage nodes, a data directory that remembered a high
    // epoch made a broker refuse a new region (PMQ_ERR_EPOCH_RANGE); epochs now come only from
    // the storage nodes.
    const high = await startStorage(`${dir}/far/region-a`, 4, 0,
      ['--cluster-key-file', testKeyFile(dir)]);
    procs.push(high);
    await impostor({ mode: 'raise', keyFile: testKeyFile(dir), epoch: 1,
      raises: [EPOCH_RAISE_STEP_MAX, 2 * EPOCH_RAISE_STEP_MAX] }, high);
    const keyArgs = ['--cluster-key-file', testKeyFile(dir)];
    const first = await startBroker(`${dir}/far/data`, [high], keyArgs);
    t.equal(Number(first.match[3]), 2 * EPOCH_RAISE_STEP_MAX + 1, 'one above the node');
    first.child.kill('SIGTERM');
    await exitOf(first.child);
    const fresh = await startStorage(`${dir}/far/region-b`, 5, 0,
      ['--cluster-key-file', testKeyFile(dir)]);
    procs.push(fresh);
    const second = await startBroker(`${dir}/far/data`, [fresh], keyArgs);
    t.equal(Number(second.match[3]), 1, 'the same directory on a new region: epoch 1');
    second.child.kill('SIGTERM');
    await exitOf(second.child);
  });
