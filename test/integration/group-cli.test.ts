// `pmq group list|describe|reset-offsets|delete` as a user runs them (real `pmq storage`,
// `pmq broker` and `pmq` processes): describe shows members, partitions, committed offsets and
// lag; reset-offsets is a dry run unless --execute, refused while the group has members, and
// moves the committed offsets to the earliest, latest, an offset or a time; delete removes the
// group's offsets.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { spawn } from 'node:child_process';

import t from 'tap';

import type { Client } from '../../clients/index.js';
import {
  exitOf, runPmq, tempDir, type Proc,
} from '../helpers/broker-cluster.js';
import { startClusterWithClient, type ClusterWithClient } from '../helpers/cluster-client.js';

const PMQ = new URL('../../cli/pmq.ts', import.meta.url).pathname;
const { dir, remove } = tempDir('pmq-group-cli-');
let storage: Proc;
let broker: Proc;
let client: Client;
let cluster: ClusterWithClient | undefined;

t.teardown(async () => {
  await cluster?.stop();
  remove();
});

t.before(async () => {
  cluster = await startClusterWithClient(dir, ['--size', '32MiB', '--segment-size', '1MiB']);
  ({ storage, broker, client } = cluster);
});

const pmq = (args: string[]): ReturnType<typeof runPmq> => runPmq([...args, '--broker',
  `${broker.host}:${broker.port}`, '--transports', 'tcp']);

async function committedOf(group: string): Promise<number[]> {
  const { offsets } = await client.admin().describeGroup(group);
  return [...offsets].sort((a, b) => a.partition - b.partition).map((o) => o.offset);
}

t.test('list, describe, reset-offsets and delete', async (t) => {
  await client.admin().createTopic('orders', { partitions: 2 });
  const base = Date.now() - 60_000;
  const producer = client.producer();
  for (let i = 0; i < 10; i += 1) {
    await producer.send({ topic: 'orders', partition: i % 2,
      records: [{ value: `v${i}`, timestamp: base + i * 1000 }] });
  }
  await producer.close();
  const read = await pmq(['consume', 'orders', '--group', 'billing', '--max', '4',
    '--timeout-ms', '3000']);
  t.equal(read.code, 0, read.stderr);
  const list = await pmq(['group', 'list', '--json']);
  t.match(JSON.parse(list.stdout), [{ group: 'billing', state: 'Empty', members: 0 }]);
  const described = await pmq(['group', 'describe', 'billing']);
  t.match(described.stdout, /group billing: Empty, generation \d+/);
  t.match(described.stdout, /TOPIC\s+PARTITION\s+COMMITTED\s+HIGH-WATERMARK\s+LAG\s+MEMBER/);
  const json = JSON.parse((await pmq(['group', 'describe', 'billing', '--json'])).stdout) as
    { partitions: { committed: number; highWatermark: number; lag: number }[] };
  t.equal(json.partitions.reduce((sum, p) => sum + p.lag, 0), 6, 'lag: 10 written, 4 read');

  const dry = await pmq(['group', 'reset-offsets', 'billing', '--topic', 'orders',
    '--to-earliest']);
  t.match(dry.stderr, /dry run: nothing changed/);
  t.match(dry.stdout, /orders\s+0\s+\d+\s+0\n/);
  t.same((await committedOf('billing')).reduce((a, b) => a + b, 0), 4, 'unchanged');
  const earliest = await pmq(['group', 'reset-offsets', 'billing', '--topic', 'orders',
    '--to-earliest', '--execute']);
  t.equal(earliest.code, 0, earliest.stderr);
  t.same(await committedOf('billing'), [0, 0]);
  await pmq(['group', 'reset-offsets', 'billing', '--topic', 'orders', '--to-latest',
    '--execute']);
  t.same(await committedOf('billing'), [5, 5]);
  await pmq(['group', 'reset-offsets', 'billing', '--all-topics', '--to-offset', '3',
    '--execute']);
  t.same(await committedOf('billing'), [3, 3]);
  // Timestamps base + i s: partition 0 holds i = 0,2,4,6,8; at or after i = 5: offset 3.
  await pmq(['group', 'reset-offsets', 'billing', '--topic', 'orders', '--to-datetime',
    new Date(base + 5000).toISOString(), '--execute']);
  t.same(await committedOf('billing'), [3, 2], 'the first record at or after the time');

  // A member reading: the reset is refused, and so is delete.
  const member = spawn(process.execPath, ['--import', 'tsx', PMQ, 'consume', 'orders',
    '--group', 'billing', '--transports', 'tcp', '--broker', `${broker.host}:${broker.port}`],
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  const deadline = performance.now() + 20_000;
  while ((await client.admin().describeGroup('billing')).state !== 'Stable') {
    if (performance.now() > deadline) throw new Error('the member never joined');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const refused = await pmq(['group', 'reset-offsets', 'billing', '--topic', 'orders',
    '--to-earliest', '--execute']);
  t.not(refused.code, 0);
  t.match(refused.stderr, /PMQ_ERR_GROUP_NOT_EMPTY|has members/);
  const busy = await pmq(['group', 'describe', 'billing']);
  t.match(busy.stdout, /Stable/);
  t.match(busy.stdout, /orders\/0,orders\/1/, 'the member and its partitions');
  t.match((await pmq(['group', 'delete', 'billing'])).stderr, /GROUP_NOT_EMPTY|has members/);
  member.kill('SIGTERM');
  t.equal(await exitOf(member), 0);
  const deleted = await pmq(['group', 'delete', 'billing']);
  t.equal(deleted.code, 0, deleted.stderr);
  t.match((await pmq(['group', 'describe', 'billing'])).stderr,
    /PMQ_ERR_UNKNOWN_GROUP|no members/);
});
