// The group coordinator (broker-node/group-coordinator.ts) on a fake monotonic clock: join
// phases and generations (each saved before it is answered), heartbeats that say "rebalance",
// expiry after the session timeout, the rebalance timeout, fenced commits (stale generation,
// unknown member, a partition not owned, a simple commit while members read), static members
// back without a rebalance, and a "failover": a coordinator over the same stored generations
// refuses every commit of the old one's generation.
import t from 'tap';

import { pino } from 'pino';

import { GroupCoordinator, type JoinRequest } from '../../broker-node/group-coordinator.js';

const log = pino({ level: 'silent' });

function harness(stored = new Map<string, number>()): { groups: GroupCoordinator;
  clock: { ms: number }; saved: [string, number][] } {
  const clock = { ms: 1000 };
  const saved: [string, number][] = [];
  const groups = new GroupCoordinator({ now: () => clock.ms, log,
    partitionCount: (topic) => (topic === 't' ? 8 : undefined),
    storedGeneration: (group) => stored.get(group) ?? 0,
    saveGeneration: (group, generation) => {
      saved.push([group, generation]);
      stored.set(group, generation);
      return Promise.resolve();
    } });
  return { groups, clock, saved };
}

const join = (over: Partial<JoinRequest> = {}): JoinRequest => ({ group: 'g', memberId: '',
  groupInstanceId: '', clientId: 'c', assignors: ['range'], topics: ['t'], owned: [],
  sessionTimeoutMs: 3000, rebalanceTimeoutMs: 5000, ...over });

const code = (fn: () => unknown): string => {
  try {
    fn();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
};

t.test('two members: generations, rebalance by heartbeat, expiry, fenced commits', async (t) => {
  const { groups, clock, saved } = harness();
  const a = await groups.join(join());
  t.equal(a.generation, 1);
  t.same(saved, [['g', 1]], 'the generation is saved before the join is answered');
  t.equal(groups.sync('g', a.memberId, 1).length, 8);
  t.equal(groups.describe('g').state, 'Stable');
  const bJoin = groups.join(join());
  t.equal(code(() => groups.heartbeat('g', a.memberId, 1)), 'PMQ_ERR_REBALANCE_IN_PROGRESS');
  // a commits its positions before joining again: its generation and partitions still hold.
  t.equal(code(() => groups.commitCheck('g', a.memberId, 1, { topic: 't', partition: 7 })), 'ok');
  const a2 = await groups.join(join({ memberId: a.memberId }));
  const b = await bJoin;
  t.equal(a2.generation, 2);
  t.equal(b.generation, 2);
  const aParts = groups.sync('g', a.memberId, 2);
  const bParts = groups.sync('g', b.memberId, 2);
  t.equal(aParts.length + bParts.length, 8);
  t.equal(aParts.length, 4);
  t.equal(groups.describe('g').state, 'Stable');
  t.equal(code(() => groups.commitCheck('g', a.memberId, 1, aParts[0]!)),
    'PMQ_ERR_GENERATION_STALE', 'a zombie of generation 1');
  t.equal(code(() => groups.commitCheck('g', a.memberId, 2, bParts[0]!)),
    'PMQ_ERR_NOT_ASSIGNED', 'b\'s partition');
  t.equal(code(() => groups.commitCheck('g', undefined, undefined, bParts[0]!)),
    'PMQ_ERR_GROUP_NOT_EMPTY', 'a simple commit while members read');
  // b stops heartbeating: expired after 3 s of monotonic time, not before.
  clock.ms += 2000;
  groups.heartbeat('g', a.memberId, 2);
  groups.tick();
  t.equal(groups.describe('g').members.length, 2);
  clock.ms += 1500;
  groups.heartbeat('g', a.memberId, 2);
  groups.tick();
  t.equal(groups.describe('g').members.length, 1, 'b expired');
  t.equal(code(() => groups.heartbeat('g', a.memberId, 2)), 'PMQ_ERR_REBALANCE_IN_PROGRESS');
  const a3 = await groups.join(join({ memberId: a.memberId }));
  t.equal(groups.sync('g', a.memberId, a3.generation).length, 8, 'a owns all 8');
  t.equal(code(() => groups.commitCheck('g', b.memberId, 2, bParts[0]!)),
    'PMQ_ERR_GENERATION_STALE', 'the expired member is a zombie');
  groups.leave('g', a.memberId);
  t.equal(groups.describe('g').state, 'Empty');
  t.equal(code(() => groups.commitCheck('g', undefined, undefined, bParts[0]!)), 'ok',
    'simple commits again once no member reads');
});

t.test('a member that does not join within the rebalance timeout is removed', async (t) => {
  const { groups, clock } = harness();
  const a = await groups.join(join({ rebalanceTimeoutMs: 1000 }));
  groups.sync('g', a.memberId, a.generation);
  const b = groups.join(join({ rebalanceTimeoutMs: 1000 }));
  clock.ms += 500;
  groups.tick();
  t.equal(code(() => groups.heartbeat('g', a.memberId, a.generation)),
    'PMQ_ERR_REBALANCE_IN_PROGRESS', 'a never joins again');
  clock.ms += 600;
  groups.tick();
  const joined = await b.catch(() => null);
  t.ok(joined);
  t.equal(groups.describe('g').members.length, 1);
  t.equal(code(() => groups.heartbeat('g', a.memberId, a.generation)),
    'PMQ_ERR_UNKNOWN_MEMBER');
});

t.test('a static member back within its session timeout: same partitions, no rebalance',
  async (t) => {
    const { groups, saved } = harness();
    const s = await groups.join(join({ groupInstanceId: 'host-1' }));
    const d = groups.join(join());
    await groups.join(join({ groupInstanceId: 'host-1', memberId: s.memberId }));
    const dj = await d;
    const sParts = groups.sync('g', s.memberId, dj.generation);
    groups.sync('g', dj.memberId, dj.generation);
    const generations = saved.length;
    // The process restarts: it joins with no member id and the same instance id.
    const back = await groups.join(join({ groupInstanceId: 'host-1' }));
    t.equal(back.generation, dj.generation, 'no new generation');
    t.equal(saved.length, generations);
    t.same(groups.sync('g', back.memberId, back.generation), sParts, 'its partitions back');
    t.equal(groups.describe('g').state, 'Stable');
    t.equal(code(() => groups.heartbeat('g', s.memberId, dj.generation)),
      'PMQ_ERR_UNKNOWN_MEMBER', 'the old member id is fenced');
    t.equal(code(() => groups.commitCheck('g', back.memberId, back.generation, sParts[0]!)),
      'ok');
  });

t.test('after a failover, no commit of the old generation is taken', async (t) => {
  const stored = new Map<string, number>();
  const before = harness(stored);
  const a = await before.groups.join(join());
  const parts = before.groups.sync('g', a.memberId, a.generation);
  const after = harness(stored).groups;
  t.equal(code(() => after.commitCheck('g', a.memberId, a.generation, parts[0]!)),
    'PMQ_ERR_GENERATION_STALE', 'the old broker\'s generation');
  const b = await after.join(join());
  t.ok(b.generation > a.generation, 'generations continue above the stored one');
  after.sync('g', b.memberId, b.generation);
  t.equal(code(() => after.commitCheck('g', a.memberId, a.generation, parts[0]!)),
    'PMQ_ERR_GENERATION_STALE');
});

t.test('hostile joins are refused with codes', async (t) => {
  const { groups } = harness();
  t.equal(code(() => groups.join(join({ assignors: ['magic'] }))), 'PMQ_ERR_ASSIGNOR');
  t.equal(code(() => groups.join(join({ sessionTimeoutMs: 1 }))), 'PMQ_ERR_ASSIGNOR');
  t.equal(code(() => groups.join(join({ topics: [] }))), 'PMQ_ERR_ARGUMENT');
  t.equal(code(() => groups.join(join({ memberId: 'nobody' }))), 'PMQ_ERR_UNKNOWN_MEMBER');
  const a = await groups.join(join({ assignors: ['range'] }));
  t.ok(a.memberId);
  t.equal(code(() => groups.join(join({ assignors: ['roundrobin'] }))), 'PMQ_ERR_ASSIGNOR');
  t.equal(code(() => groups.sync('g', 'nobody', 1)), 'PMQ_ERR_UNKNOWN_MEMBER');
  t.equal(code(() => groups.sync('g', a.memberId, 99)), 'PMQ_ERR_GENERATION_STALE');
});
