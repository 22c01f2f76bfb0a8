// Issue 10's CLI reproduction, as an operator would type it: a storage node and broker A on data
// directory `a`; `a` copied to `b`; A killed; broker B started on `b`; topic `onlyB` created on B,
// 100 records produced and 40 consumed by group `gB` (committed); A restarted on its stale `a`,
// which fences B. Before metadata lived on the storage nodes, A freed `onlyB`'s segment as a
// leftover (every record lost) and later quarantined it (records kept, topic unknown). Now:
// B exits 2 once it touches storage, A knows `onlyB` (from the metadata log in the region) with
// its 100 records and gB's committed offset, and nothing is freed or quarantined.
import { cpSync } from 'node:fs';

import t from 'tap';

import {
  exitOf, runPmq, startBroker, startStorage, stopProc, tempDir, type PmqRun, type Proc,
} from '../helpers/broker-cluster.js';

const RECORDS = 100;
const CONSUMED = 40;
const input = Array.from({ length: RECORDS }, (_, i) => `onlyB-${i}`);

/** `pmq args` against `broker`, over tcp. */
function pmq(broker: Proc, args: string[], stdin = ''): Promise<PmqRun> {
  return runPmq([...args, '--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'],
    stdin);
}

const { dir, remove } = tempDir('pmq-stale-dir-');
const procs: Proc[] = [];
t.teardown(async () => {
  for (const proc of procs) await stopProc(proc);
  remove();
});

t.test('a broker restarted on a stale data dir keeps what a newer broker did', async (t) => {
  const storage = await startStorage(`${dir}/region`, 1);
  procs.push(storage);
  const brokerA = await startBroker(`${dir}/a`, [storage]);
  procs.push(brokerA);
  t.equal((await pmq(brokerA, ['topic', 'create', 'orders', '--partitions', '1'])).code, 0);
  cpSync(`${dir}/a`, `${dir}/b`, { recursive: true });
  await stopProc(brokerA);

  const brokerB = await startBroker(`${dir}/b`, [storage]);
  procs.push(brokerB);
  const created = await pmq(brokerB, ['topic', 'create', 'onlyB', '--partitions', '1']);
  t.equal(created.code, 0, `onlyB created on B ${created.stderr}`);
  const produced = await pmq(brokerB, ['produce', 'onlyB'], `${input.join('\n')}\n`);
  t.equal(produced.code, 0, `100 records produced through B ${produced.stderr}`);
  const consumedOnB = await pmq(brokerB, ['consume', 'onlyB', '--group', 'gB', '--max',
    String(CONSUMED), '--timeout-ms', '5000']);
  t.same(consumedOnB.stdout.trim().split('\n'), input.slice(0, CONSUMED),
    `group gB consumed and committed 40 on B ${consumedOnB.stderr}`);

  const restarted = await startBroker(`${dir}/a`, [storage], ['--listen',
    `127.0.0.1:${brokerA.port}`]);
  procs.push(restarted);
  t.ok(Number(restarted.match[3]) > Number(brokerB.match[3]),
    `A restarted at epoch ${restarted.match[3]}, above B's ${brokerB.match[3]}`);
  // B learns it is fenced on its next storage request.
  const late = await pmq(brokerB, ['produce', 'onlyB'], 'late\n');
  t.not(late.code, 0, 'a produce through B fails');
  t.equal(await exitOf(brokerB.child), 2, 'B exits with code 2');

  const listed = await pmq(restarted, ['topic', 'list', '--json']);
  t.match(listed.stdout, /"onlyB"/, 'A knows topic onlyB');
  const described = await pmq(restarted, ['topic', 'describe', 'onlyB', '--json']);
  t.equal(described.code, 0, `describe onlyB on A ${described.stderr}`);
  t.match(JSON.parse(described.stdout), { partitions: [{ partition: 0,
    highWatermark: RECORDS }] }, 'with its 100 records');
  const quarantined = await pmq(restarted, ['quarantine', 'list', '--json']);
  t.same(JSON.parse(quarantined.stdout), [], 'nothing quarantined');
  const all = await pmq(restarted, ['consume', 'onlyB', '--max', String(RECORDS),
    '--timeout-ms', '5000']);
  t.same(all.stdout.trim().split('\n'), input,
    'every record, in order: the segment was not freed (nor its bytes reused)');
  const rest = await pmq(restarted, ['consume', 'onlyB', '--group', 'gB', '--max',
    String(RECORDS - CONSUMED), '--timeout-ms', '5000']);
  t.same(rest.stdout.trim().split('\n'), input.slice(CONSUMED),
    'group gB resumes at the offset committed on B');
});
