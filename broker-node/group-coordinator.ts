/**
 * Consumer groups with membership (docs/broker.md, "Consumer groups"): Kafka's group protocol
 * with the assignor run by the broker (group-assignors.ts).
 *
 * A group is in one state: Empty (no members), PreparingRebalance (the join phase: members
 * join, the others are told by their heartbeat to join again), CompletingRebalance (the new
 * generation's assignment is made; members fetch theirs with groupSync), Stable (every member
 * synced), Dead (deleted). A join phase ends when every member has joined, or at the rebalance
 * timeout (members that did not join are removed). Its end makes a new generation: durable in
 * the metadata log first (so a broker after a failover starts above it), then answered.
 *
 * Members expire after their session timeout without a heartbeat (or join, or sync), measured
 * on the monotonic clock the deps give (performance.now: wall clocks jump). A member leaving,
 * expiring or joining, or a subscribed topic being created or deleted, starts a rebalance.
 * A static member (groupInstanceId) that joins again while the group is stable takes its old
 * member's place and partitions without a rebalance; its old member id is refused from then on.
 *
 * Commits (commitCheck): with a generation, only from a member of the current generation that
 * owns the partition (a cooperative member keeps owning a withheld partition until it joins
 * again); without one (a simple consumer), only while the group has no members.
 *
 * Every refusal is a PmqError for the peer; a peer's input never reaches invariant().
 * Concurrency: JS thread only; generation saves are the only awaits.
 */
import { randomBytes } from 'node:crypto';

import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import type { Logger } from '../common/log.js';
import {
  assignPartitions, isAssignor, partitionKeyOf, type AssignorName, type TopicPartition,
} from './group-assignors.js';

export type GroupState = 'Empty' | 'PreparingRebalance' | 'CompletingRebalance' | 'Stable' |
  'Dead';

/** Kafka's group.min/max.session.timeout.ms, widened below for tests that expire members. */
export const SESSION_TIMEOUT_MS_MIN = 100;
export const SESSION_TIMEOUT_MS_MAX = 300_000;
/** Members per group, and groups with members: each member ~1 KiB plus its partitions. */
export const GROUP_MEMBERS_MAX = 4096;
export const GROUPS_ACTIVE_MAX = 10_000;

export interface GroupDeps {
  /** Monotonic milliseconds. */
  now(): number;
  /** The topic's partition count, or undefined when it does not exist. */
  partitionCount(topic: string): number | undefined;
  /** The group's last durable generation (0: none). */
  storedGeneration(group: string): number;
  /** Makes the group's new generation durable (metadata log), or throws. */
  saveGeneration(group: string, generation: number): Promise<void>;
  log: Logger;
}

export interface JoinRequest {
  group: string;
  memberId: string;
  groupInstanceId: string;
  clientId: string;
  assignors: string[];
  topics: string[];
  owned: TopicPartition[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
}

export interface Joined { memberId: string; generation: number; assignor: string }

interface Member {
  memberId: string;
  groupInstanceId: string;
  clientId: string;
  assignors: AssignorName[];
  topics: string[];
  owned: TopicPartition[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  lastSeenMs: number;
  /** Joined in the current join phase (its answer waits in `waiter`). */
  joined: boolean;
  waiter: { resolve: (joined: Joined) => void; reject: (error: PmqError) => void } | null;
  assignment: TopicPartition[];
  synced: boolean;
}

interface Group {
  name: string;
  state: GroupState;
  generation: number;
  assignor: AssignorName | '';
  members: Map<string, Member>;
  /** groupInstanceId → memberId. */
  instances: Map<string, string>;
  /** partition key → the member that owns it in this generation. */
  owners: Map<string, string>;
  joinDeadlineMs: number;
  /** A generation save in flight; joins meanwhile wait for the next round. */
  saving: boolean;
  again: boolean;
}

export interface MemberDescription {
  memberId: string; groupInstanceId: string; clientId: string; partitions: TopicPartition[];
}
export interface GroupDescription {
  group: string; state: GroupState; generation: number; assignor: string;
  members: MemberDescription[];
}

const rebalancing = (group: string): PmqError => new PmqError('PMQ_ERR_REBALANCE_IN_PROGRESS',
  `group ${group} is rebalancing: join it again`);
const unknownMember = (group: string, memberId: string): PmqError => new PmqError(
  'PMQ_ERR_UNKNOWN_MEMBER', `member ${memberId} is not one of group ${group} (it expired, ` +
  'left, or a static member replaced it): join again with no member id');
const staleGeneration = (group: string, generation: number, current: number): PmqError =>
  new PmqError('PMQ_ERR_GENERATION_STALE', `generation ${generation} of group ${group} is not ` +
  `its current one (${current}): this member was fenced; join again`);

export class GroupCoordinator {
  readonly #groups = new Map<string, Group>();

  constructor(private readonly deps: GroupDeps) {}

  /** Answered when the join phase ends; PMQ_ERR_* for a request that can never join. */
  join(request: JoinRequest): Promise<Joined> {
    const assignors = checkJoin(request);
    const group = this.#group(request.group, true)!;
    const now = this.deps.now();
    if (request.memberId !== '') {
      const member = group.members.get(request.memberId);
      if (member === undefined) throw unknownMember(group.name, request.memberId);
      this.#checkAssignors(group, assignors, member.memberId);
      Object.assign(member, { assignors, topics: request.topics, owned: request.owned,
        sessionTimeoutMs: request.sessionTimeoutMs, lastSeenMs: now,
        rebalanceTimeoutMs: request.rebalanceTimeoutMs, clientId: request.clientId });
      return this.#waitJoin(group, member);
    }
    this.#checkAssignors(group, assignors, '');
    const instance = request.groupInstanceId;
    const previous = instance === '' ? undefined : group.instances.get(instance);
    const memberId = `${request.clientId.slice(0, 64) || 'member'}-` +
      randomBytes(12).toString('hex');
    const member: Member = { memberId, groupInstanceId: instance, clientId: request.clientId,
      assignors, topics: request.topics, owned: request.owned, lastSeenMs: now,
      sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs,
      joined: false, waiter: null, assignment: [], synced: false };
    if (previous !== undefined) {
      const old = group.members.get(previous)!;
      if (group.state === 'Stable' && sameTopics(old.topics, request.topics)) {
        return Promise.resolve(this.#replaceStatic(group, old, member));
      }
      this.#remove(group, old, 'replaced by a static member of the same instance id');
    } else if (group.members.size >= GROUP_MEMBERS_MAX) {
      throw new PmqError('PMQ_ERR_LIMIT', `group ${group.name} has ${GROUP_MEMBERS_MAX} ` +
        'members (the maximum)');
    }
    group.members.set(memberId, member);
    if (instance !== '') group.instances.set(instance, memberId);
    this.deps.log.info({ group: group.name, memberId, groupInstanceId: instance },
      'group member added');
    return this.#waitJoin(group, member);
  }

  /** The member's partitions of `generation` (once its join phase has ended). */
  sync(groupName: string, memberId: string, generation: number): TopicPartition[] {
    const { group, member } = this.#member(groupName, memberId);
    if (group.state === 'PreparingRebalance') throw rebalancing(group.name);
    if (generation !== group.generation) {
      throw staleGeneration(group.name, generation, group.generation);
    }
    member.synced = true;
    if (group.state === 'CompletingRebalance' &&
        [...group.members.values()].every((m) => m.synced)) {
      group.state = 'Stable';
      this.deps.log.info({ group: group.name, generation }, 'group stable');
    }
    return member.assignment;
  }

  heartbeat(groupName: string, memberId: string, generation: number): void {
    const { group } = this.#member(groupName, memberId);
    if (group.state === 'PreparingRebalance') throw rebalancing(group.name);
    if (generation !== group.generation) {
      throw staleGeneration(group.name, generation, group.generation);
    }
  }

  leave(groupName: string, memberId: string): void {
    const { group, member } = this.#member(groupName, memberId);
    this.#remove(group, member, 'left');
  }

  /** Refuses a commit the group's membership does not allow (see the file comment). */
  commitCheck(groupName: string, memberId: string | undefined, generation: number | undefined,
    tp: TopicPartition): void {
    const group = this.#groups.get(groupName);
    if (generation === undefined) {
      if (group !== undefined && group.members.size > 0) {
        throw new PmqError('PMQ_ERR_GROUP_NOT_EMPTY', `group ${groupName} has ` +
          `${group.members.size} members: only they commit (with their generation), or stop ` +
          'them first');
      }
      return;
    }
    const current = group?.generation ?? this.deps.storedGeneration(groupName);
    // No group here: every generation it had is an earlier broker's (a failover), or none.
    if (generation !== current || group === undefined) {
      throw staleGeneration(groupName, generation, current);
    }
    const member = group?.members.get(memberId ?? '');
    if (group === undefined || member === undefined) {
      throw unknownMember(groupName, memberId ?? '');
    }
    member.lastSeenMs = this.deps.now();
    if (group.owners.get(partitionKeyOf(tp)) !== member.memberId) {
      throw new PmqError('PMQ_ERR_NOT_ASSIGNED', `${tp.topic}/${tp.partition} is not member ` +
        `${member.memberId}'s in generation ${generation} of group ${groupName}`);
    }
  }

  /** Expires members past their session timeout and ends join phases past their deadline. */
  tick(): void {
    const now = this.deps.now();
    for (const group of this.#groups.values()) {
      for (const member of [...group.members.values()]) {
        // A member waiting in a join phase is alive: the phase's deadline bounds it.
        if (member.waiter === null && now - member.lastSeenMs > member.sessionTimeoutMs) {
          this.#remove(group, member, 'session timeout');
        }
      }
      if (group.state === 'PreparingRebalance' && !group.saving && now >= group.joinDeadlineMs) {
        for (const member of [...group.members.values()]) {
          if (!member.joined) this.#remove(group, member, 'did not join within the rebalance ' +
            'timeout', false);
        }
        this.#maybeComplete(group);
      }
    }
  }

  /** A topic was created or deleted: groups subscribed to it rebalance. */
  topicChanged(topic: string): void {
    for (const group of this.#groups.values()) {
      if (group.members.size > 0 && group.state !== 'PreparingRebalance' &&
          [...group.members.values()].some((m) => m.topics.includes(topic))) {
        this.#startRebalance(group, `topic ${topic} changed`);
      }
    }
  }

  /** Whether the group has members. */
  active(groupName: string): boolean {
    return (this.#groups.get(groupName)?.members.size ?? 0) > 0;
  }

  describe(groupName: string): GroupDescription {
    const group = this.#groups.get(groupName);
    const generation = group?.generation ?? this.deps.storedGeneration(groupName);
    if (group === undefined) {
      return { group: groupName, state: 'Empty', generation, assignor: '', members: [] };
    }
    return { group: groupName, state: group.state, generation, assignor: group.assignor,
      members: [...group.members.values()].map((m) => ({ memberId: m.memberId,
        groupInstanceId: m.groupInstanceId, clientId: m.clientId,
        partitions: m.assignment })) };
  }

  /** Groups with members (those with only offsets are the metadata store's). */
  activeGroups(): string[] {
    return [...this.#groups.values()].filter((g) => g.members.size > 0).map((g) => g.name);
  }

  /**
   * Forgets a deleted group (its offsets are the caller's to delete) unless a member joined
   * meanwhile: that one starts the group again, from generation 1.
   */
  forget(groupName: string): void {
    const group = this.#groups.get(groupName);
    if (group === undefined || group.members.size > 0 || group.saving) return;
    group.state = 'Dead';
    this.#groups.delete(groupName);
  }

  #group(name: string, create: boolean): Group | undefined {
    let group = this.#groups.get(name);
    if (group === undefined && create) {
      if (this.#groups.size >= GROUPS_ACTIVE_MAX) this.#dropEmpty();
      if (this.#groups.size >= GROUPS_ACTIVE_MAX) {
        throw new PmqError('PMQ_ERR_LIMIT', `${GROUPS_ACTIVE_MAX} groups have members (the ` +
          'maximum)');
      }
      group = { name, state: 'Empty', generation: this.deps.storedGeneration(name),
        assignor: '', members: new Map(), instances: new Map(), owners: new Map(),
        joinDeadlineMs: 0, saving: false, again: false };
      this.#groups.set(name, group);
    }
    return group;
  }

  #dropEmpty(): void {
    for (const group of this.#groups.values()) {
      if (group.members.size === 0 && !group.saving) this.#groups.delete(group.name);
    }
  }

  #member(groupName: string, memberId: string): { group: Group; member: Member } {
    const group = this.#groups.get(groupName);
    const member = group?.members.get(memberId);
    if (group === undefined || member === undefined) throw unknownMember(groupName, memberId);
    member.lastSeenMs = this.deps.now();
    return { group, member };
  }

  /** A new member's assignors must share one with every member's (Kafka's protocol check). */
  #checkAssignors(group: Group, assignors: AssignorName[], except: string): void {
    const others = [...group.members.values()].filter((m) => m.memberId !== except);
    if (others.length === 0) return;
    if (!assignors.some((name) => others.every((m) => m.assignors.includes(name)))) {
      throw new PmqError('PMQ_ERR_ASSIGNOR', `group ${group.name} uses ` +
        `${group.assignor === '' ? others[0]!.assignors.join(', ') : group.assignor}; this ` +
        `member supports only ${assignors.join(', ')}`);
    }
  }

  #waitJoin(group: Group, member: Member): Promise<Joined> {
    member.waiter?.reject(rebalancing(group.name)); // a repeated join: the newer one waits
    const joined = new Promise<Joined>((resolve, reject) => {
      member.waiter = { resolve, reject };
    });
    member.joined = true;
    if (group.state !== 'PreparingRebalance') this.#startRebalance(group, 'member joined');
    else this.#maybeComplete(group);
    return joined;
  }

  #replaceStatic(group: Group, old: Member, member: Member): Joined {
    group.members.delete(old.memberId);
    old.waiter?.reject(unknownMember(group.name, old.memberId));
    member.assignment = old.assignment;
    member.synced = false;
    group.members.set(member.memberId, member);
    group.instances.set(member.groupInstanceId, member.memberId);
    for (const [key, owner] of group.owners) {
      if (owner === old.memberId) group.owners.set(key, member.memberId);
    }
    this.deps.log.info({ group: group.name, memberId: member.memberId, replaced: old.memberId,
      groupInstanceId: member.groupInstanceId }, 'static member back: no rebalance');
    return { memberId: member.memberId, generation: group.generation, assignor: group.assignor };
  }

  #remove(group: Group, member: Member, why: string, rebalance = true): void {
    group.members.delete(member.memberId);
    if (member.groupInstanceId !== '' &&
        group.instances.get(member.groupInstanceId) === member.memberId) {
      group.instances.delete(member.groupInstanceId);
    }
    for (const [key, owner] of group.owners) {
      if (owner === member.memberId) group.owners.delete(key);
    }
    member.waiter?.reject(unknownMember(group.name, member.memberId));
    member.waiter = null;
    this.deps.log.info({ group: group.name, memberId: member.memberId, why },
      'group member removed');
    if (!rebalance) return;
    if (group.members.size === 0) {
      if (!group.saving) group.state = 'Empty';
      return;
    }
    if (group.state === 'PreparingRebalance') this.#maybeComplete(group);
    else this.#startRebalance(group, why);
  }

  #startRebalance(group: Group, why: string): void {
    if (group.saving) {
      group.again = true; // after the generation being saved
      return;
    }
    group.state = 'PreparingRebalance';
    const timeout = Math.max(...[...group.members.values()].map((m) => m.rebalanceTimeoutMs));
    group.joinDeadlineMs = this.deps.now() + timeout;
    for (const member of group.members.values()) {
      if (member.waiter === null) member.joined = false;
    }
    this.deps.log.info({ group: group.name, generation: group.generation, why },
      'group rebalancing');
    this.#maybeComplete(group);
  }

  #maybeComplete(group: Group): void {
    if (group.state !== 'PreparingRebalance' || group.saving) return;
    const members = [...group.members.values()];
    if (members.length === 0) {
      group.state = 'Empty';
      return;
    }
    if (!members.every((m) => m.joined)) return;
    void this.#complete(group, members);
  }

  /** Ends the join phase: a new durable generation, the assignment, the joins answered. */
  async #complete(group: Group, members: Member[]): Promise<void> {
    const generation = group.generation + 1;
    group.saving = true;
    try {
      await this.deps.saveGeneration(group.name, generation);
    } catch (error) {
      group.saving = false;
      const failure = error instanceof PmqError ? error : new PmqError('PMQ_ERR_METADATA_IO',
        String(error), { retriable: true });
      for (const member of members) {
        member.waiter?.reject(failure);
        member.waiter = null;
        member.joined = false;
      }
      this.#startRebalance(group, 'generation not saved');
      return;
    }
    group.saving = false;
    invariant(generation > group.generation, 'generations rise', { generation });
    group.generation = generation;
    const current = members.filter((m) => group.members.get(m.memberId) === m);
    this.#assign(group, current);
    group.state = current.length === 0 ? 'Empty' : 'CompletingRebalance';
    for (const member of current) {
      member.joined = false;
      member.synced = false;
      member.lastSeenMs = this.deps.now();
      const waiter = member.waiter;
      member.waiter = null;
      waiter?.resolve({ memberId: member.memberId, generation, assignor: group.assignor });
    }
    this.deps.log.info({ group: group.name, generation, members: current.length,
      assignor: group.assignor }, 'group generation');
    const again = group.again || [...group.members.values()].some((m) => !current.includes(m));
    group.again = false;
    if (again) this.#startRebalance(group, 'members changed during the generation\'s save');
  }

  #assign(group: Group, members: Member[]): void {
    const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
    const name = sorted[0]?.assignors.find((a) => members.every((m) => m.assignors.includes(a)));
    if (name === undefined) return;
    group.assignor = name;
    const count = (topic: string): number => this.deps.partitionCount(topic) ?? 0;
    const { assignment, withheld } = assignPartitions(name, members, count);
    group.owners.clear();
    for (const member of members) {
      member.assignment = assignment.get(member.memberId) ?? [];
      for (const tp of member.assignment) group.owners.set(partitionKeyOf(tp), member.memberId);
      // Withheld: still its old owner's until it joins again having revoked them.
      for (const tp of withheld.get(member.memberId) ?? []) {
        group.owners.set(partitionKeyOf(tp), member.memberId);
      }
    }
  }
}

function sameTopics(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

/** The request's assignors, checked; PMQ_ERR_ASSIGNOR / PMQ_ERR_ARGUMENT otherwise. */
function checkJoin(request: JoinRequest): AssignorName[] {
  if (request.group.length === 0) {
    throw new PmqError('PMQ_ERR_ARGUMENT', 'group must be a non-empty string');
  }
  if (request.topics.length === 0) {
    throw new PmqError('PMQ_ERR_ARGUMENT', 'a member subscribes to at least one topic');
  }
  const timeouts = [request.sessionTimeoutMs, request.rebalanceTimeoutMs];
  if (timeouts.some((ms) => ms < SESSION_TIMEOUT_MS_MIN || ms > SESSION_TIMEOUT_MS_MAX)) {
    throw new PmqError('PMQ_ERR_ASSIGNOR', `session and rebalance timeouts must be ` +
      `${SESSION_TIMEOUT_MS_MIN}..${SESSION_TIMEOUT_MS_MAX} ms`);
  }
  const names = request.assignors.filter(isAssignor);
  if (names.length === 0 || names.length !== request.assignors.length) {
    throw new PmqError('PMQ_ERR_ASSIGNOR', `assignors must be some of range, roundrobin, ` +
      `cooperative-sticky; got ${request.assignors.join(', ') || 'none'}`);
  }
  return names;
}
