// What a new user tripped on (issue 13), through real processes: `pmq storage` + `pmq broker`
// on 127.0.0.1 and the client commands as a user runs them.
// - bugs 3 and 4: impossible topic names are refused by the client (PMQ_ERR_ARGUMENT, with the
//   rule) and, sent raw, answered by the broker with PMQ_ERR_ARGUMENT on a connection that
//   stays usable; "." and ".." are refused like the storage node refuses them.
import t from 'tap';

import { Client, runPmq, startBroker, startStorage, stopProc, tempDir, type Proc } from
  '../helpers/broker-cluster.js';

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
