// The consumer-group assignors (broker-node/group-assignors.ts): every partition to exactly one
// member, balance within one, the same result whatever the members' order (determinism), and
// for cooperative-sticky: owned partitions kept where balance allows, a moving partition
// withheld from its new owner for one generation, and the follow-up generation balanced.
import t from 'tap';

import {
  ASSIGNORS, assignPartitions, partitionKeyOf, type AssignorMember, type TopicPartition,
} from '../../broker-node/group-assignors.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();
const counts: Record<string, number> = { a: 8, b: 3, c: 5 };
const partitionCount = (topic: string): number => counts[topic] ?? 0;

function member(id: string, topics: string[], owned: TopicPartition[] = [],
  instance = ''): AssignorMember {
  return { memberId: id, groupInstanceId: instance, topics, owned };
}

function flat(result: Map<string, TopicPartition[]>): string[] {
  return [...result.values()].flat().map(partitionKeyOf).sort();
}

function sizes(result: Map<string, TopicPartition[]>): number[] {
  return [...result.values()].map((list) => list.length);
}

function shuffle<T>(list: T[], random: () => number): T[] {
  const copy = [...list];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

t.test(`every assignor: each partition once, balanced, deterministic (seed ${seed})`, async (t) => {
  const random = prngFrom(seed).next;
  for (const name of ASSIGNORS) {
    for (let n = 1; n <= 5; n += 1) {
      const members = Array.from({ length: n }, (_, i) => member(`m${i}`, ['a']));
      const { assignment } = assignPartitions(name, members, partitionCount);
      t.same(flat(assignment), Array.from({ length: 8 }, (_, p) => `a\u0000${p}`).sort(),
        `${name} ${n}: all once`);
      t.ok(Math.max(...sizes(assignment)) - Math.min(...sizes(assignment)) <= 1,
        `${name} ${n}: balanced`);
      const again = assignPartitions(name, shuffle(members, random), partitionCount);
      t.same([...again.assignment].sort(), [...assignment].sort(), `${name} ${n}: same result`);
    }
  }
});

t.test('range gives consecutive ranges per topic; round-robin deals across topics', async (t) => {
  const members = [member('x', ['a', 'b']), member('y', ['a', 'b'])];
  const ranged = assignPartitions('range', members, partitionCount).assignment;
  t.same(ranged.get('x')!.map(partitionKeyOf), ['a\u00000', 'a\u00001', 'a\u00002', 'a\u00003',
    'b\u00000', 'b\u00001']);
  const dealt = assignPartitions('roundrobin', members, partitionCount).assignment;
  t.same(sizes(dealt).sort(), [5, 6]);
  // A member subscribed to another topic gets only its topic's partitions.
  const mixed = assignPartitions('roundrobin', [member('x', ['a']), member('y', ['c'])],
    partitionCount).assignment;
  t.ok(mixed.get('y')!.every((tp) => tp.topic === 'c'));
  t.equal(mixed.get('x')!.length, 8);
});

t.test('static members are ordered by instance id, not member id', async (t) => {
  const first = assignPartitions('range', [member('zz', ['a'], [], 'i1'),
    member('aa', ['a'], [], 'i2')], partitionCount).assignment;
  t.same(first.get('zz')!.map((tp) => tp.partition), [0, 1, 2, 3]);
});

t.test('cooperative-sticky: keeps owned, withholds moves, balances next time', async (t) => {
  // Generation 1: one member owns all 8.
  const solo = assignPartitions('cooperative-sticky', [member('x', ['a'])], partitionCount);
  const xOwned = solo.assignment.get('x')!;
  t.equal(xOwned.length, 8);
  // Generation 2: y joins. x keeps 4 of its own, the other 4 are withheld (x revokes them).
  const second = assignPartitions('cooperative-sticky',
    [member('x', ['a'], xOwned), member('y', ['a'])], partitionCount);
  const xKeeps = second.assignment.get('x')!;
  t.equal(xKeeps.length, 4, 'x keeps four');
  t.ok(xKeeps.every((tp) => xOwned.some((o) => partitionKeyOf(o) === partitionKeyOf(tp))));
  t.equal(second.assignment.get('y')!.length, 0, 'y gets nothing while x still owns them');
  t.equal(second.withheld.get('x')!.length, 4, 'four move, from x');
  // Generation 3: x revoked them; y gets exactly those, x keeps its four.
  const third = assignPartitions('cooperative-sticky',
    [member('x', ['a'], xKeeps), member('y', ['a'])], partitionCount);
  t.same(third.assignment.get('x'), xKeeps);
  t.same(flat(third.assignment.set('x', [])), second.withheld.get('x')!.map(partitionKeyOf)
    .sort());
  t.equal(third.withheld.get('x')!.length, 0);
});

t.test(`cooperative-sticky: a member leaving moves only its partitions (seed ${seed})`,
  async (t) => {
  const random = prngFrom(seed + 1).next;
  for (let round = 0; round < 50; round += 1) {
    const n = 2 + Math.floor(random() * 4);
    const ids = Array.from({ length: n }, (_, i) => `m${i}`);
    let owned = new Map<string, TopicPartition[]>(ids.map((id) => [id, []]));
    // Converge: run generations until nothing is withheld.
    for (let gen = 0; gen < 4; gen += 1) {
      const result = assignPartitions('cooperative-sticky',
        ids.map((id) => member(id, ['a', 'c'], owned.get(id))), partitionCount);
      owned = result.assignment;
    }
    t.equal(flat(owned).length, 13, `round ${round}: converged to all 13`);
    const gone = ids[Math.floor(random() * n)]!;
    const rest = ids.filter((id) => id !== gone);
    const after = assignPartitions('cooperative-sticky',
      rest.map((id) => member(id, ['a', 'c'], owned.get(id))), partitionCount);
    for (const id of rest) {
      const before = new Set(owned.get(id)!.map(partitionKeyOf));
      const now = new Set(after.assignment.get(id)!.map(partitionKeyOf));
      const lost = [...before].filter((key) => !now.has(key));
      t.equal(lost.length, 0, `round ${round}: ${id} loses nothing when ${gone} leaves`);
    }
    t.equal(flat(after.assignment).length, 13, `round ${round}: all 13 owned at once`);
    const counts = sizes(after.assignment);
    t.ok(Math.max(...counts) - Math.min(...counts) <= 1, `round ${round}: balanced`);
  }
});

t.test('cooperative-sticky ignores owned claims that do not exist or repeat', async (t) => {
  const bogus = [{ topic: 'a', partition: 99 }, { topic: 'zzz', partition: 0 },
    { topic: 'a', partition: 0 }];
  const result = assignPartitions('cooperative-sticky', [member('x', ['a'], bogus),
    member('y', ['a'], bogus)], partitionCount);
  t.same(flat(result.assignment).length + flat(result.withheld).length, 8);
  t.equal(flat(result.assignment).filter((key) => key === 'a\u00000').length, 1);
});
