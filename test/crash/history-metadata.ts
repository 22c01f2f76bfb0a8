/**
 * The metadata half of the history checker (history-checker.ts): group-offset commits and topic
 * creates (history version 2). Pure, like the rest of the checker.
 *
 * Rules (docs/crash-testing.md, "Metadata"):
 * - `lost-commit`: for a key (group, topic, partition), the final committed offset is lower
 *   than the highest offset a commit to that key was acknowledged for (or there is none); or a
 *   consumer's read of the committed offset (`commit-read`, at its start) is lower than the
 *   highest acknowledged before that read. This relies on the workload rule of history.ts: one
 *   committer per key at a time, offsets that never go down; a correct broker may then only
 *   show the last acknowledged commit or a later one (acknowledged or indeterminate), never an
 *   earlier one.
 * - `lost-topic`: an acknowledged create whose topic the final topic list does not have.
 *
 * Records sent to a lost topic, and commits to it, are not judged on their own: the topic is
 * gone from the broker's metadata, so its partitions cannot be read back (their segments are
 * quarantined, not freed). They are counted in the lost-topic anomaly instead, so that a run
 * reports one cause, not hundreds of lost writes.
 */
import type {
  CommitEvent, CommitRead, CreateEvent, FinalOffsets, FinalTopics, HistoryEvent, OffsetKey,
} from './history.js';

/** Who acknowledged what, where in the history. */
export interface MetadataAck { offset: number; event: number; process: string }

export type MetadataAnomaly =
  | { kind: 'lost-commit'; group: string; topic: string; partition: number;
      /** 'final': the final offsets; 'read': a consumer's commit-read */
      reason: 'final' | 'read';
      /** the highest commit acknowledged (before the read) */
      acked: MetadataAck; acks: number; final: number | null; finalEvent: number;
      reader: string | null }
  | { kind: 'lost-topic'; topic: string; create: { event: number; process: string };
      finalEvent: number; sendsAcked: number; commitsAcked: number };

export interface MetadataStats {
  commits: number; commitsAcked: number; commitsFailed: number; commitsIndeterminate: number;
  creates: number; createsAcked: number; createsFailed: number; createsIndeterminate: number;
  /** commit-read events, and those that found a committed offset (a group continued) */
  commitReads: number; commitReadsFound: number;
  /** acknowledged sends to topics reported lost (not judged as records) */
  sendsInLostTopics: number;
}

type Outcome = 'pending' | 'ok' | 'fail' | 'info';
interface Pending<E> { invoke: E; event: number; outcome: Outcome }

const keyOf = (k: OffsetKey): string => `${k.group}\n${k.partition}\n${k.topic}`;

export function emptyMetadataStats(): MetadataStats {
  return { commits: 0, commitsAcked: 0, commitsFailed: 0, commitsIndeterminate: 0, creates: 0,
    createsAcked: 0, createsFailed: 0, createsIndeterminate: 0, commitReads: 0,
    commitReadsFound: 0, sendsInLostTopics: 0 };
}

/** Indexes the metadata events of one history; `malformed` reports broken recorder rules. */
export class MetadataIndex {
  readonly commits: Pending<CommitEvent & { kind: 'commit-invoke' }>[] = [];
  private readonly openCommits = new Map<string, Pending<CommitEvent>[]>();
  readonly creates = new Map<string, Pending<CreateEvent & { kind: 'create-invoke' }>>();
  readonly reads: { event: CommitRead; index: number }[] = [];
  finalOffsets: { event: FinalOffsets; index: number } | null = null;
  finalTopics: { event: FinalTopics; index: number } | null = null;
  readonly stats = emptyMetadataStats();

  constructor(private readonly malformed: (event: number, problem: string) => void) {}

  add(event: HistoryEvent, index: number): boolean {
    switch (event.kind) {
      case 'commit-invoke': return this.commitInvoke(event, index);
      case 'commit-ok': case 'commit-fail': case 'commit-info':
        return this.commitDone(event, index);
      case 'commit-read':
        this.reads.push({ event, index });
        return true;
      case 'create-invoke': return this.createInvoke(event, index);
      case 'create-ok': case 'create-fail': case 'create-info':
        return this.createDone(event, index);
      case 'final-offsets':
      case 'final-topics': {
        const field = event.kind === 'final-offsets' ? 'finalOffsets' : 'finalTopics';
        if (this[field] !== null) this.malformed(index, `a second ${event.kind}`);
        else if (event.kind === 'final-offsets') this.finalOffsets = { event, index };
        else this.finalTopics = { event, index };
        return true;
      }
      default: return false;
    }
  }

  private commitInvoke(event: CommitEvent & { kind: 'commit-invoke' }, index: number): true {
    const pending = { invoke: event, event: index, outcome: 'pending' as Outcome };
    this.commits.push(pending);
    const key = `${event.process}\n${keyOf(event)}\n${event.offset}`;
    this.openCommits.set(key, [...this.openCommits.get(key) ?? [], pending]);
    return true;
  }

  /** Completes the oldest open commit of the same process, key and offset. */
  private commitDone(event: CommitEvent, index: number): true {
    const key = `${event.process}\n${keyOf(event)}\n${event.offset}`;
    const open = this.openCommits.get(key) ?? [];
    const pending = open.shift();
    if (pending === undefined) {
      this.malformed(index, `${event.kind} of ${event.group} ${event.topic}/` +
        `${event.partition}@${event.offset} without a commit-invoke by ${event.process}`);
      return true;
    }
    pending.outcome = event.kind === 'commit-ok' ? 'ok' : event.kind === 'commit-fail' ?
      'fail' : 'info';
    if (pending.outcome === 'ok') pending.event = index;   // the ack's event is the evidence
    return true;
  }

  private createInvoke(event: CreateEvent & { kind: 'create-invoke' }, index: number): true {
    if (this.creates.has(event.topic)) {
      this.malformed(index, `topic ${event.topic} created twice (names must be unique)`);
    } else {
      this.creates.set(event.topic, { invoke: event, event: index, outcome: 'pending' });
    }
    return true;
  }

  private createDone(event: CreateEvent, index: number): true {
    const pending = this.creates.get(event.topic);
    if (pending === undefined || pending.outcome !== 'pending' ||
        pending.invoke.process !== event.process) {
      this.malformed(index, `${event.kind} of ${event.topic} without an open create-invoke ` +
        `by ${event.process}`);
      return true;
    }
    pending.outcome = event.kind === 'create-ok' ? 'ok' : event.kind === 'create-fail' ?
      'fail' : 'info';
    if (pending.outcome === 'ok') pending.event = index;
    return true;
  }

  /** Topics whose create was acknowledged and which the final topic list does not have. */
  lostTopics(): Set<string> {
    const final = this.finalTopics;
    if (final === null) return new Set();
    const listed = new Set(final.event.topics);
    return new Set([...this.creates.values()].filter((c) => c.outcome === 'ok' &&
      !listed.has(c.invoke.topic)).map((c) => c.invoke.topic));
  }
}

function countOutcomes(index: MetadataIndex): void {
  const { stats } = index;
  for (const commit of index.commits) {
    stats.commits += 1;
    if (commit.outcome === 'ok') stats.commitsAcked += 1;
    else if (commit.outcome === 'fail') stats.commitsFailed += 1;
    else stats.commitsIndeterminate += 1;
  }
  stats.commitReads = index.reads.length;
  stats.commitReadsFound = index.reads.filter((read) => read.event.offset !== null).length;
  for (const create of index.creates.values()) {
    stats.creates += 1;
    if (create.outcome === 'ok') stats.createsAcked += 1;
    else if (create.outcome === 'fail') stats.createsFailed += 1;
    else stats.createsIndeterminate += 1;
  }
}

/** The highest acknowledged commit per key (acknowledged before event `before`), with how many
 *  acks the key had. */
function highestAcks(index: MetadataIndex, lost: Set<string>, before = Infinity):
    Map<string, { key: OffsetKey; acked: MetadataAck; acks: number }> {
  const highest = new Map<string, { key: OffsetKey; acked: MetadataAck; acks: number }>();
  for (const commit of index.commits) {
    if (commit.outcome !== 'ok' || lost.has(commit.invoke.topic) || commit.event >= before) {
      continue;
    }
    const { invoke } = commit;
    const known = highest.get(keyOf(invoke));
    const acked = { offset: invoke.offset, event: commit.event, process: invoke.process };
    if (known === undefined) {
      highest.set(keyOf(invoke), { key: { group: invoke.group, topic: invoke.topic,
        partition: invoke.partition }, acked, acks: 1 });
    } else {
      known.acks += 1;
      if (invoke.offset > known.acked.offset) known.acked = acked;
    }
  }
  return highest;
}

/**
 * Checks commits against the final offsets and creates against the final topic list; `sends`
 * gives the acknowledged sends per topic (for the lost-topic evidence and stats).
 */
export function checkMetadata(index: MetadataIndex, sendsAcked: Map<string, number>,
  malformed: (event: number, problem: string) => void): MetadataAnomaly[] {
  countOutcomes(index);
  const anomalies: MetadataAnomaly[] = [];
  const lost = index.lostTopics();
  const final = index.finalTopics;
  if (final === null && index.creates.size > 0) {
    malformed(index.creates.values().next().value?.event ?? 0,
      'topics were created but there is no final-topics event');
  }
  for (const topic of lost) {
    const create = index.creates.get(topic)!;
    const sends = sendsAcked.get(topic) ?? 0;
    index.stats.sendsInLostTopics += sends;
    anomalies.push({ kind: 'lost-topic', topic, create: { event: create.event,
      process: create.invoke.process }, finalEvent: final?.index ?? -1, sendsAcked: sends,
    commitsAcked: index.commits.filter((c) => c.outcome === 'ok' && c.invoke.topic === topic)
      .length });
  }
  for (const { event, index: at } of index.reads) {
    if (lost.has(event.topic)) continue;
    const known = highestAcks(index, lost, at).get(keyOf(event));
    if (known === undefined || (event.offset !== null && event.offset >= known.acked.offset)) {
      continue;
    }
    anomalies.push({ kind: 'lost-commit', reason: 'read', ...known.key, acked: known.acked,
      acks: known.acks, final: event.offset, finalEvent: at, reader: event.process });
  }
  const highest = highestAcks(index, lost);
  const offsets = index.finalOffsets;
  if (offsets === null) {
    if (highest.size > 0) {
      malformed(index.commits[0]?.event ?? 0, 'commits were acknowledged but there is no ' +
        'final-offsets event');
    }
    return anomalies;
  }
  const finals = new Map(offsets.event.offsets.map((o) => [keyOf(o), o.offset]));
  for (const [key, { key: where, acked, acks }] of highest) {
    if (!finals.has(key)) {
      malformed(offsets.index, `final-offsets lacks ${where.group} ${where.topic}/` +
        `${where.partition}, which had acknowledged commits`);
      continue;
    }
    const final = finals.get(key) ?? null;
    if (final === null || final < acked.offset) {
      anomalies.push({ kind: 'lost-commit', reason: 'final', ...where, acked, acks, final,
        finalEvent: offsets.index, reader: null });
    }
  }
  return anomalies;
}

/** One line of evidence for a metadata anomaly. */
export function describeMetadataAnomaly(anomaly: MetadataAnomaly): string {
  if (anomaly.kind === 'lost-commit') {
    const { acked } = anomaly;
    return `group ${anomaly.group} ${anomaly.topic}/${anomaly.partition}: commit of offset ` +
      `${acked.offset} acknowledged to ${acked.process} (event ${acked.event}; the highest of ` +
      `${anomaly.acks} acks${anomaly.reason === 'read' ? ' before the read' : ''}), ` +
      (anomaly.reason === 'read' ? `then ${anomaly.reader ?? '?'} read committed offset ` :
        'final committed offset ') + `${anomaly.final ?? 'none'} (event ${anomaly.finalEvent})`;
  }
  return `topic ${anomaly.topic}: create acknowledged to ${anomaly.create.process} (event ` +
    `${anomaly.create.event}), absent from the final topic list (event ${anomaly.finalEvent}); ` +
    `${anomaly.sendsAcked} acknowledged send(s) and ${anomaly.commitsAcked} acknowledged ` +
    'commit(s) to it are counted here, not checked as records';
}
