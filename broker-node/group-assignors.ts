/**
 * The consumer-group assignors (docs/broker.md, "Consumer groups"): range, round-robin and
 * cooperative-sticky, as Kafka's of the same names. Pure functions of their input: the broker
 * runs them when a rebalance's join phase ends (group-coordinator.ts).
 *
 * Determinism: members are ordered by their static instance id, else their member id, and
 * partitions by (topic, partition), so the same members with the same subscriptions and owned
 * partitions get the same assignment whatever order they joined in.
 *
 * Cooperative-sticky (KIP-429): a member keeps what it owns where balance allows; a partition
 * that moves from one member to another is given to neither in this generation (`withheld`):
 * its old owner revokes it (commits, stops reading) and joins again, and the next generation
 * gives it to its new owner. So no partition is ever read by two members of one generation.
 */

export const ASSIGNORS = ['range', 'roundrobin', 'cooperative-sticky'] as const;
export type AssignorName = (typeof ASSIGNORS)[number];

export interface TopicPartition { readonly topic: string; readonly partition: number }

export interface AssignorMember {
  readonly memberId: string;
  /** '' unless static. */
  readonly groupInstanceId: string;
  readonly topics: readonly string[];
  /** What it reads now (cooperative-sticky keeps these where it can). */
  readonly owned: readonly TopicPartition[];
}

export interface AssignmentResult {
  /** memberId → its partitions, sorted; every member has an entry. */
  readonly assignment: Map<string, TopicPartition[]>;
  /** Partitions that move (cooperative-sticky): their old owner keeps them until it revokes. */
  readonly withheld: Map<string, TopicPartition[]>;
}

export const isAssignor = (name: string): name is AssignorName =>
  (ASSIGNORS as readonly string[]).includes(name);

export const partitionKeyOf = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;

const sortKey = (member: AssignorMember): string =>
  member.groupInstanceId === '' ? `1${member.memberId}` : `0${member.groupInstanceId}`;

function compareTp(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

function sortedMembers(members: readonly AssignorMember[]): AssignorMember[] {
  return [...members].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1));
}

/** Every partition of every topic some member subscribes to, sorted (unknown topics: none). */
function allPartitions(members: readonly AssignorMember[],
  partitionCount: (topic: string) => number): TopicPartition[] {
  const topics = [...new Set(members.flatMap((m) => m.topics))].sort();
  return topics.flatMap((topic) =>
    Array.from({ length: partitionCount(topic) }, (_, partition) => ({ topic, partition })));
}

function emptyResult(members: readonly AssignorMember[]): Map<string, TopicPartition[]> {
  return new Map(members.map((m) => [m.memberId, []]));
}

/** Per topic, consecutive ranges: the first (count % members) members get one more. */
function range(members: readonly AssignorMember[], partitionCount: (topic: string) => number):
  Map<string, TopicPartition[]> {
  const result = emptyResult(members);
  const sorted = sortedMembers(members);
  for (const topic of [...new Set(members.flatMap((m) => m.topics))].sort()) {
    const subscribed = sorted.filter((m) => m.topics.includes(topic));
    const count = partitionCount(topic);
    const each = Math.floor(count / subscribed.length);
    const extra = count % subscribed.length;
    let next = 0;
    subscribed.forEach((member, index) => {
      const take = each + (index < extra ? 1 : 0);
      const list = result.get(member.memberId)!;
      for (let i = 0; i < take; i += 1) list.push({ topic, partition: next + i });
      next += take;
    });
  }
  return result;
}

/** All partitions in order, dealt one by one to the members subscribed to their topic. */
function roundRobin(members: readonly AssignorMember[],
  partitionCount: (topic: string) => number): Map<string, TopicPartition[]> {
  const result = emptyResult(members);
  const sorted = sortedMembers(members);
  let turn = 0;
  for (const tp of allPartitions(members, partitionCount)) {
    for (let tries = 0; tries < sorted.length; tries += 1) {
      const member = sorted[turn % sorted.length]!;
      turn += 1;
      if (member.topics.includes(tp.topic)) {
        result.get(member.memberId)!.push(tp);
        break;
      }
    }
  }
  return result;
}

/**
 * The balanced target that moves the fewest owned partitions: each member keeps its valid owned
 * partitions (existing, subscribed, claimed by no member before it) up to its quota, then the
 * rest go one by one to the subscribed member with the fewest.
 */
function stickyTarget(members: readonly AssignorMember[],
  partitionCount: (topic: string) => number): { target: Map<string, TopicPartition[]>;
    owner: Map<string, string> } {
  const sorted = sortedMembers(members);
  const all = allPartitions(members, partitionCount);
  const exists = new Set(all.map(partitionKeyOf));
  const owner = new Map<string, string>();
  for (const member of sorted) {
    for (const tp of [...member.owned].sort(compareTp)) {
      const key = partitionKeyOf(tp);
      if (exists.has(key) && member.topics.includes(tp.topic) && !owner.has(key)) {
        owner.set(key, member.memberId);
      }
    }
  }
  // Quotas as if every member took every topic: floor or ceil; the members owning most get
  // the ceil slots first, so fewer partitions move.
  const floor = Math.floor(all.length / Math.max(1, sorted.length));
  let ceilSlots = all.length % Math.max(1, sorted.length);
  const target = emptyResult(members);
  // Each member's valid owned partitions, found in one pass (not per member: M × P).
  const ownedBy = new Map<string, TopicPartition[]>(sorted.map((m) => [m.memberId, []]));
  for (const tp of all) {
    const holder = owner.get(partitionKeyOf(tp));
    if (holder !== undefined) ownedBy.get(holder)!.push(tp);
  }
  const owns = (m: AssignorMember): TopicPartition[] => ownedBy.get(m.memberId)!;
  const byOwned = [...sorted].sort((a, b) => owns(b).length - owns(a).length);
  const taken = new Set<string>();
  for (const member of byOwned) {
    const mine = owns(member);
    let quota = floor;
    if (mine.length > floor && ceilSlots > 0) {
      quota = floor + 1;
      ceilSlots -= 1;
    }
    for (const tp of mine.slice(0, quota)) {
      target.get(member.memberId)!.push(tp);
      taken.add(partitionKeyOf(tp));
    }
  }
  for (const tp of all) {
    if (taken.has(partitionKeyOf(tp))) continue;
    let best: AssignorMember | undefined;
    for (const member of sorted) {
      if (!member.topics.includes(tp.topic)) continue;
      if (best === undefined ||
          target.get(member.memberId)!.length < target.get(best.memberId)!.length) best = member;
    }
    if (best !== undefined) target.get(best.memberId)!.push(tp);
  }
  return { target, owner };
}

function cooperativeSticky(members: readonly AssignorMember[],
  partitionCount: (topic: string) => number): AssignmentResult {
  const { target, owner } = stickyTarget(members, partitionCount);
  const assignment = emptyResult(members);
  const withheld = emptyResult(members);
  for (const [memberId, partitions] of target) {
    for (const tp of partitions) {
      const previous = owner.get(partitionKeyOf(tp));
      if (previous === undefined || previous === memberId) assignment.get(memberId)!.push(tp);
      else withheld.get(previous)!.push(tp);
    }
  }
  return { assignment, withheld };
}

/** Runs assignor `name` over the members (each entry sorted by topic and partition). */
export function assignPartitions(name: AssignorName, members: readonly AssignorMember[],
  partitionCount: (topic: string) => number): AssignmentResult {
  let result: AssignmentResult;
  switch (name) {
    case 'range':
      result = { assignment: range(members, partitionCount), withheld: emptyResult(members) };
      break;
    case 'roundrobin':
      result = { assignment: roundRobin(members, partitionCount),
        withheld: emptyResult(members) };
      break;
    case 'cooperative-sticky':
      result = cooperativeSticky(members, partitionCount);
      break;
    default: {
      const never: never = name;
      throw new Error(`unknown assignor ${String(never)}`);
    }
  }
  for (const list of result.assignment.values()) list.sort(compareTp);
  return result;
}

/** Whether the assignor is incremental: members revoke only what they lose. */
export const cooperative = (name: AssignorName): boolean => name === 'cooperative-sticky';
