// A broker never frees a segment because its metadata does not claim it (issue 10,
// docs/broker.md "Quarantine"). Metadata lives in the storage nodes' metadata log, so an empty
// data directory knows every topic; what no metadata claims is a storage node of another
// cluster attached to this one (or the segments of a topic whose delete a crash cut short).
// Given such a node, the broker quarantines its segments, lists them, refuses to create a
// topic of the same name, and frees one only on `pmq quarantine free … --yes`; the broker of
// the other cluster then still reads every record. All through the CLI, as an operator would.
import t from 'tap';

import { runPmq, startBroker, startStorage, stopProc as stop, tempDir, type PmqRun, type Proc }
  from '../helpers/broker-cluster.js';

const RECORDS = 50;

/** `pmq args` against `broker`, over tcp. */
function pmq(broker: Proc, args: string[], input = ''): Promise<PmqRun> {
  return runPmq([...args, '--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'],
    input);
}

const { dir, remove } = tempDir('pmq-quarantine-');
const storage = await startStorage(`${dir}/region`, 1);
const strangers = await startStorage(`${dir}/region-2`, 2);
t.teardown(async () => {
  await stop(storage);
  await stop(strangers);
  remove();
});

t.test('a node of another cluster is quarantined, never freed, until asked', async (t) => {
  // The other cluster: node 2 with a metadata log of its own (written at a higher epoch).
  let stranger = await startBroker(`${dir}/stranger`, [strangers]);
  t.equal((await pmq(stranger, ['topic', 'create', 'theirs', '--partitions', '1'])).code, 0);
  await stop(stranger);
  stranger = await startBroker(`${dir}/stranger`, [strangers]);
  t.equal((await pmq(stranger, ['topic', 'create', 'later', '--partitions', '1'])).code, 0);
  await stop(stranger);

  let owner = await startBroker(`${dir}/owner`, [storage]);
  const created = await pmq(owner, ['topic', 'create', 'orders', '--partitions', '1']);
  t.equal(created.code, 0, created.stderr);
  const input = Array.from({ length: RECORDS }, (_, i) => `record-${i}`).join('\n') + '\n';
  const produced = await pmq(owner, ['produce', 'orders'], input);
  t.equal(produced.code, 0, produced.stderr);
  await stop(owner);

  stranger = await startBroker(`${dir}/stranger`, [strangers, storage]);
  const listed = await pmq(stranger, ['quarantine', 'list', '--json']);
  t.equal(listed.code, 0, listed.stderr);
  const segments = JSON.parse(listed.stdout) as { nodeId: number; segmentIndex: number;
    topic: string; baseOffset: number; offsetLast: number; reason: string }[];
  t.match(segments, [{ topic: 'orders', baseOffset: 0, offsetLast: RECORDS - 1,
    reason: 'unknown topic' }], 'the other broker\'s segment is listed, not freed');
  const name = `${segments[0]!.nodeId}/${segments[0]!.segmentIndex}`;
  const create = await pmq(stranger, ['topic', 'create', 'orders', '--partitions', '1']);
  t.not(create.code, 0, 'a topic of the same name is refused while its segments are held');
  t.match(create.stderr, /quarantined/);
  const unsure = await pmq(stranger, ['quarantine', 'free', name]);
  t.equal(unsure.code, 1, 'free without --yes does nothing');
  t.match(unsure.stderr, /--yes/);
  await stop(stranger);

  owner = await startBroker(`${dir}/owner`, [storage]);
  const consumed = await pmq(owner, ['consume', 'orders', '--max', String(RECORDS),
    '--timeout-ms', '5000']);
  t.equal(consumed.code, 0, consumed.stderr);
  t.same(consumed.stdout.trim().split('\n'), input.trim().split('\n'),
    'every acknowledged record is still there for the broker that knows the topic');
  await stop(owner);

  stranger = await startBroker(`${dir}/stranger`, [strangers, storage]);
  const freed = await pmq(stranger, ['quarantine', 'free', name, '--yes']);
  t.equal(freed.code, 0, freed.stderr);
  t.same(JSON.parse((await pmq(stranger, ['quarantine', 'list', '--json'])).stdout), [],
    'freed on request, and only then');
  t.equal((await pmq(stranger, ['topic', 'create', 'orders', '--partitions', '1'])).code, 0,
    'the name is free again');
  t.equal((await pmq(stranger, ['quarantine', 'free', name, '--yes'])).code, 1,
    'a segment that is not quarantined is not freed');
  await stop(stranger);
});
