// Consumer groups with membership through real processes (`pmq storage`, `pmq broker`, and
// `pmq consume --group` members; the producer and the admin in this process):
// - two members split 8 partitions 4/4; SIGKILL one; the other owns all 8 within its session
//   timeout (plus the heartbeat that tells it); a producer runs throughout; every acknowledged
//   record is printed, and repeats only where a partition changed owner (at-least-once);
// - a zombie's commit (an earlier generation) is refused PMQ_ERR_GENERATION_STALE, and so is
//   one of the generation a broker had before a failover (generations are in the metadata log);
// - a static member restarted within its session timeout gets its partitions back without a
//   rebalance (same generation).
import '../helpers/ucx-env.js';  // first: before the addon loads
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import t from 'tap';

import { connect, type Client, type GroupDescription } from '../../clients/index.js';
import type { Message } from '../../common/wire/messages.js';
import {
  Client as RawClient, exitOf, startBroker, stopProc, tempDir, type Proc,
} from '../helpers/broker-cluster.js';
import { startClusterWithClient } from '../helpers/cluster-client.js';

const PMQ = new URL('../../cli/pmq.ts', import.meta.url).pathname;
const SESSION_TIMEOUT_MS = 3000;
/** The members' heartbeat interval: a third of the session timeout (group-member.ts). */
const HEARTBEAT_MS = SESSION_TIMEOUT_MS / 3;

const { dir, remove } = tempDir('pmq-groups-');
let storage: Proc;
let broker: Proc;
let client: Client;
const children: ChildProcess[] = [];

t.teardown(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  // Not cluster.stop(): the failover test replaces the broker and the client.
  await client?.close();
  if (broker !== undefined) await stopProc(broker);
  if (storage !== undefined) await stopProc(storage);
  remove();
});

t.before(async () => {
  const cluster = await startClusterWithClient(dir, ['--size', '64MiB', '--segment-size', '1MiB']);
  ({ storage, broker, client } = cluster);
});

interface Printed { partition: number; offset: number; value: string }
interface Member { child: ChildProcess; printed: Printed[]; stderr: () => string }

/** `pmq consume TOPIC --group GROUP --format json`, its printed records parsed. */
function member(topic: string, group: string, extra: string[] = []): Member {
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, 'consume', topic, '--group',
    group, '--format', 'json', '--session-timeout-ms', String(SESSION_TIMEOUT_MS),
    '--transports', 'tcp', '--log-level', 'info', ...extra],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo',
    PMQ_BROKER: `${broker.host}:${broker.port}` } });
  children.push(child);
  const printed: Printed[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const record = JSON.parse(line) as Printed;
    printed.push({ partition: record.partition, offset: record.offset,
      value: String(record.value) });
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr = (stderr + String(chunk)).slice(-65_536); });
  return { child, printed, stderr: () => stderr };
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>):
  Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The group once it is Stable with `count` members matching `check`. */
function stable(group: string, count: number, check: (d: GroupDescription) => boolean = () =>
  true, timeoutMs = 30_000): Promise<GroupDescription> {
  return until(`group ${group}: stable with ${count} members`, timeoutMs, async () => {
    const d = await client.admin().describeGroup(group);
    return d.state === 'Stable' && d.members.length === count && check(d) ? d : null;
  });
}

/** Sends one record to each partition in turn until stopped; keeps what was acknowledged. */
function producing(topic: string, partitions: number): { acked: Map<string, string>;
  stop: () => Promise<void> } {
  const producer = client.producer();
  const acked = new Map<string, string>();
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i += 1) {
      const partition = i % partitions;
      const value = `v-${i}`;
      const [meta] = await producer.send({ topic, partition, records: [{ value }] });
      acked.set(`${meta!.partition}/${meta!.offset}`, value);
      if (partition === partitions - 1) await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return { acked, stop: async () => { running = false; await loop; await producer.close(); } };
}

t.test('two members split 8 partitions; SIGKILL one: the other owns all 8', async (t) => {
  await client.admin().createTopic('split', { partitions: 8 });
  const producer = producing('split', 8);
  const a = member('split', 'g');
  await stable('g', 1);
  const b = member('split', 'g');
  const split = await stable('g', 2, (d) => d.members.every((m) => m.partitions.length === 4));
  t.same(split.members.map((m) => m.partitions.length), [4, 4], 'split 4/4');
  t.ok(split.members.some((m) => m.clientId === `pmq-cli-${a.child.pid}`), 'a is a member');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const killedAt = performance.now();
  a.child.kill('SIGKILL');
  await exitOf(a.child);
  const after = await stable('g', 1, (d) => d.members[0]!.partitions.length === 8);
  const tookMs = performance.now() - killedAt;
  t.equal(after.members[0]!.clientId, `pmq-cli-${b.child.pid}`, 'b owns all 8');
  t.ok(tookMs <= SESSION_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1000,
    `within the session timeout and a heartbeat (${Math.round(tookMs)} ms)`);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await producer.stop();
  const acked = producer.acked;
  t.ok(acked.size > 100, `the producer ran throughout (${acked.size} records)`);
  const seen = (): Set<string> => new Set([...a.printed, ...b.printed].map((r) =>
    `${r.partition}/${r.offset}`));
  await until('every acknowledged record printed', 20_000, () => Promise.resolve(
    [...acked.keys()].every((key) => seen().has(key)) ? true : null));
  const printed = [...a.printed, ...b.printed];
  for (const record of printed) {
    const value = acked.get(`${record.partition}/${record.offset}`);
    if (value !== undefined && value !== record.value) t.fail(`wrong value at ${record.offset}`);
  }
  // Repeats: only records a printed that b printed again after taking the partition over (from
  // a's last commit): per partition, the tail of what a printed there, each at most twice.
  const counts = new Map<string, number>();
  for (const r of printed) {
    counts.set(`${r.partition}/${r.offset}`, (counts.get(`${r.partition}/${r.offset}`) ?? 0) + 1);
  }
  const repeats = [...counts].filter(([, n]) => n > 1).map(([key]) => key);
  t.ok(repeats.every((key) => counts.get(key) === 2), 'nothing printed three times');
  for (let partition = 0; partition < 8; partition += 1) {
    const again = a.printed.filter((r) => r.partition === partition &&
      counts.get(`${partition}/${r.offset}`) === 2).map((r) => r.offset);
    const aTail = a.printed.filter((r) => r.partition === partition).map((r) => r.offset)
      .slice(-again.length);
    if (again.length > 0) {
      t.same(again, aTail, `partition ${partition}: ${again.length} repeats, the tail of a's`);
    }
  }
  t.ok(repeats.length < acked.size / 4, `${repeats.length} repeats in all`);
  b.child.kill('SIGTERM');
  t.equal(await exitOf(b.child), 0, 'b exits cleanly');
  t.match(b.stderr(), /positions committed for group g/);
});

t.test('zombie commits are refused, also after a broker failover', async (t) => {
  await client.admin().createTopic('zombie', { partitions: 2 });
  const raw = new RawClient();
  await raw.connect(broker);
  const refusal = (reply: Promise<Message>): Promise<string> => reply.then((m) => m.kind,
    (error: { code?: string }) => error.code ?? String(error));
  const joinGroup = async (memberId = ''): Promise<Message<'groupJoined'>> =>
    await raw.call('groupJoin', { group: 'z', memberId, groupInstanceId: '', clientId: 'raw',
      assignors: [{ name: 'range' }], topics: [{ topic: 'zombie' }], owned: [],
      sessionTimeoutMs: 1000, rebalanceTimeoutMs: 1000 }, 20_000) as Message<'groupJoined'>;
  const first = await joinGroup();
  const sync = await raw.call('groupSync', { group: 'z', memberId: first.memberId,
    generation: first.generation }) as Message<'groupAssignment'>;
  t.equal(sync.partitions.length, 2);
  const commit = (generation: number, memberId: string): Promise<Message> =>
    raw.call('offsetCommit', { group: 'z', topic: 'zombie', partition: 0, offset: 0,
      generation, memberId });
  t.equal((await commit(first.generation, first.memberId)).kind, 'done', 'the member commits');
  t.equal(await refusal(raw.call('offsetCommit', { group: 'z', topic: 'zombie', partition: 0,
    offset: 0 })), 'PMQ_ERR_GROUP_NOT_EMPTY', 'no simple commit while a member reads');
  // Silent past its session timeout: expired; another member makes a new generation.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const second = await joinGroup();
  t.ok(second.generation > first.generation);
  t.equal(await refusal(commit(first.generation, first.memberId)), 'PMQ_ERR_GENERATION_STALE',
    'the zombie\'s commit is refused');
  // Failover: a new broker (a higher epoch) over the same storage node.
  await stopProc(broker);
  broker = await startBroker(join(dir, 'broker'), [storage]);
  const raw2 = new RawClient();
  await raw2.connect(broker);
  t.equal(await refusal(raw2.call('offsetCommit', { group: 'z', topic: 'zombie', partition: 0,
    offset: 1, generation: second.generation, memberId: second.memberId })),
  'PMQ_ERR_GENERATION_STALE', 'the old broker\'s generation is refused');
  const info = await raw2.call('groupDescribe', { group: 'z' }) as Message<'groupInfo'>;
  t.equal(info.generation, second.generation, 'the generation survived the failover');
  const third = await raw2.call('groupJoin', { group: 'z', memberId: '', groupInstanceId: '',
    clientId: 'raw', assignors: [{ name: 'range' }], topics: [{ topic: 'zombie' }], owned: [],
    sessionTimeoutMs: 1000, rebalanceTimeoutMs: 1000 }, 20_000) as Message<'groupJoined'>;
  t.ok(third.generation > second.generation, 'the new broker\'s generations go on above it');
  await client.close();
  client = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp',
    netDevices: 'lo' });
});

t.test('a static member restarted within its session timeout: no rebalance', async (t) => {
  await client.admin().createTopic('static', { partitions: 4 });
  const flags = ['--group-instance-id', 'host-1', '--session-timeout-ms', '8000'];
  const s = member('static', 'gs', flags);
  await stable('gs', 1);
  const d = member('static', 'gs', ['--session-timeout-ms', '8000']);
  const before = await stable('gs', 2, (g) => g.members.every((m) => m.partitions.length === 2));
  const mine = before.members.find((m) => m.groupInstanceId === 'host-1')!;
  s.child.kill('SIGTERM');
  t.equal(await exitOf(s.child), 0, 'the static member exits cleanly');
  const back = member('static', 'gs', flags);
  const after = await stable('gs', 2, (g) => g.members.some((m) => m.groupInstanceId ===
    'host-1' && m.memberId !== mine.memberId));
  t.equal(after.generation, before.generation, 'the same generation: no rebalance');
  t.same(after.members.find((m) => m.groupInstanceId === 'host-1')!.partitions,
    mine.partitions, 'its partitions back');
  back.child.kill('SIGTERM');
  d.child.kill('SIGTERM');
  await Promise.all([exitOf(back.child), exitOf(d.child)]);
});
