/**
 * Judges a crash-test history (`history.ts`): did pmq keep "acknowledged means durable, once, in
 * order" (DESIGN.md, "Crash recovery")? Pure: a function of the events, no I/O, no clock.
 *
 * The anomaly kinds follow Jepsen's Kafka workload (lost-write, duplicate, inconsistent-offsets,
 * poll-skip, nonmonotonic-poll, nonmonotonic-send, G1a), adapted to pmq: the final read of every
 * partition is the ground truth of what is stored, so offsets are compared directly instead of
 * through an inferred version order. Hole fillers (control batches) take offsets that neither
 * consumers nor the final read see; a gap that the final read also has is therefore not a skip.
 * Group-offset commits and topic creates (lost-commit, lost-topic) are judged by
 * history-metadata.ts. docs/crash-testing.md explains each kind and how to read the report.
 */
import type { Assign, FinalRead, HistoryEvent, Poll, Seek, SendInvoke, SendOk } from './history.js';
import {
  checkMetadata, describeMetadataAnomaly, emptyMetadataStats, MetadataIndex,
  type MetadataAnomaly, type MetadataStats,
} from './history-metadata.js';

export interface Place { topic: string; partition: number; offset: number }
export type SightingSource = 'ack' | 'poll' | 'final-read';
/** Where a value was seen: by whom (`process`), in which event (index into the history). */
export interface Sighting extends Place { source: SightingSource; value: string; event: number;
  process: string }
/** One step of a consumer's poll sequence; `value` null is the sequence start (assign/seek). */
export interface PollStep { offset: number; value: string | null; event: number | null }

export type Anomaly =
  | { kind: 'lost-write'; reason: 'absent-from-final-read' | 'never-polled'; value: string;
      /** the acknowledgement; null for an indeterminate send that a consumer read */
      ack: Sighting | null; place: Place; storedAtOffset: string | null; polls: Sighting[];
      coveredBy: { process: string; start: PollStep; read: PollStep } | null }
  | { kind: 'duplicate'; value: string; sightings: Sighting[] }
  | { kind: 'inconsistent-offset'; reason: 'offset-conflict'; place: Place; sightings: Sighting[] }
  | { kind: 'inconsistent-offset'; reason: 'value-moved'; value: string;
      requested: { topic: string; partition: number | null }; sightings: Sighting[] }
  | { kind: 'nonmonotonic-poll'; process: string; topic: string; partition: number;
      previous: PollStep; next: PollStep }
  | { kind: 'skipped-offset'; process: string; topic: string; partition: number;
      previous: PollStep; next: PollStep; skipped: { offset: number; value: string }[];
      skippedCount: number }
  | { kind: 'failed-read'; value: string; fail: { event: number; process: string; error: string };
      sightings: Sighting[] }
  | { kind: 'nonmonotonic-send'; process: string; topic: string; partition: number;
      previous: PollStep; next: PollStep }
  | { kind: 'unknown-value'; value: string; sightings: Sighting[] }
  | { kind: 'malformed'; event: number; problem: string }
  | MetadataAnomaly;
export type AnomalyKind = Anomaly['kind'];

export const COUNT_KEYS = {
  'lost-write': 'lostWrites', 'duplicate': 'duplicates', 'inconsistent-offset':
    'inconsistentOffsets', 'nonmonotonic-poll': 'nonMonotonicPolls', 'skipped-offset':
    'skippedOffsets', 'failed-read': 'failedReads', 'nonmonotonic-send': 'nonMonotonicSends',
  'unknown-value': 'unknownValues', 'lost-commit': 'lostCommits', 'lost-topic': 'lostTopics',
  'malformed': 'malformed',
} as const satisfies Record<AnomalyKind, string>;
export type Counts = Record<(typeof COUNT_KEYS)[AnomalyKind], number>;

export interface Stats extends MetadataStats {
  events: number; sends: number; acked: number; failed: number;
  /** send-info plus sends without any completion (`uncompleted`, e.g. the producer was killed) */
  indeterminate: number; uncompleted: number;
  /** indeterminate sends whose value was seen in a poll or the final read: allowed, counted */
  indeterminateRead: number;
  polls: number; polled: number; finalRecords: number; partitions: number;
  /** acknowledged values absent from the final read below its partition's log start: deleted
   *  by retention, not lost */
  retentionDeleted: number;
}

export interface CheckOptions {
  /** anomalies kept per kind in `anomalies` (all are counted) */
  examplesMax?: number;
  /** kinds that are reported but do not make the history invalid (Jepsen's allowed types), e.g.
   *  'nonmonotonic-send' for producers with maxInFlightBatches > 1 (order not kept on retry) */
  allowed?: AnomalyKind[];
}

export interface CheckResult { valid: boolean; counts: Counts; anomalies: Anomaly[];
  stats: Stats; allowed: AnomalyKind[] }

interface SendState { invoke: SendInvoke; invokeEvent: number; outcome: 'pending' | 'ok' | 'fail' |
  'info'; completionEvent: number | null; error: string; ack: Sighting | null }
interface Sequence { process: string; topic: string; partition: number; start: PollStep;
  reads: PollStep[] }

const SKIPPED_SHOWN_MAX = 8;

const partitionKey = (topic: string, partition: number): string => `${partition}:${topic}`;
const placeKey = (place: Place): string => `${place.partition}:${place.offset}:${place.topic}`;

function emptyStats(): Stats {
  return { events: 0, sends: 0, acked: 0, failed: 0, indeterminate: 0, uncompleted: 0,
    indeterminateRead: 0, polls: 0, polled: 0, finalRecords: 0, partitions: 0,
    retentionDeleted: 0,
    ...emptyMetadataStats() };
}

/** Everything the checks need, built in one pass over the history. */
class HistoryIndex {
  readonly sends = new Map<string, SendState>();
  readonly byValue = new Map<string, Sighting[]>();
  readonly byPlace = new Map<string, Sighting[]>();
  private readonly sightingKeys = new Set<string>();
  readonly sequences: Sequence[] = [];
  private readonly openSequences = new Map<string, Sequence>();
  readonly finals = new Map<string, Map<number, string>>();
  /** Each partition's log start at the final read (retention deleted what is below it). */
  readonly logStarts = new Map<string, number>();
  private readonly finalOffsetsSorted = new Map<string, number[]>();
  readonly touched = new Map<string, { topic: string; partition: number; event: number }>();
  private readonly seqLast = new Map<string, number>();
  readonly stats = emptyStats();
  readonly metadata = new MetadataIndex((event, problem) => this.malformed(event, problem));
  /** Topics with an acknowledged create that the final topic list lacks: their records and
   *  commits are counted in the lost-topic anomaly, not judged one by one. */
  lostTopics = new Set<string>();

  constructor(readonly events: readonly HistoryEvent[], readonly findings: Findings) {
    events.forEach((event, index) => this.add(event, index));
    this.lostTopics = this.metadata.lostTopics();
  }

  private add(event: HistoryEvent, index: number): void {
    this.stats.events += 1;
    const last = this.seqLast.get(event.process);
    if (last !== undefined && event.seq <= last) {
      this.malformed(index, `${event.process}: seq ${event.seq} after ${last}`);
    }
    this.seqLast.set(event.process, event.seq);
    switch (event.kind) {
      case 'send-invoke': return this.addInvoke(event, index);
      case 'send-ok': case 'send-fail': case 'send-info': return this.addCompletion(event, index);
      case 'assign': case 'seek': return this.startSequence(event, index);
      case 'poll': return this.addPoll(event, index);
      case 'final-read': return this.addFinalRead(event, index);
      case 'commit-invoke': case 'commit-ok': case 'commit-fail': case 'commit-info':
      case 'commit-read': case 'final-offsets': case 'create-invoke': case 'create-ok':
      case 'create-fail': case 'create-info': case 'final-topics':
        this.metadata.add(event, index);
        return;
      default: {
        const unknown: never = event;
        return this.malformed(index, `unknown kind ${JSON.stringify(unknown)}`);
      }
    }
  }

  malformed(event: number, problem: string): void {
    this.findings.add({ kind: 'malformed', event, problem });
  }

  private addInvoke(event: SendInvoke, index: number): void {
    if (this.sends.has(event.value)) {
      return this.malformed(index, `value ${event.value} sent twice (values must be unique)`);
    }
    this.sends.set(event.value, { invoke: event, invokeEvent: index, outcome: 'pending',
      completionEvent: null, error: '', ack: null });
  }

  private addCompletion(event: HistoryEvent & { value: string }, index: number): void {
    const send = this.sends.get(event.value);
    if (send === undefined) return this.malformed(index, `completion of unsent ${event.value}`);
    if (send.outcome !== 'pending') {
      return this.malformed(index, `second completion of ${event.value} (${send.outcome} first)`);
    }
    if (send.invoke.process !== event.process) {
      return this.malformed(index, `${event.value} completed by another process`);
    }
    send.completionEvent = index;
    if (event.kind === 'send-ok') {
      const ok = event as SendOk;
      send.outcome = 'ok';
      send.ack = this.sight('ack', ok, index, ok);
      this.touch(ok.topic, ok.partition, index);
    } else {
      send.outcome = event.kind === 'send-fail' ? 'fail' : 'info';
      send.error = 'error' in event ? event.error : '';
    }
  }

  private startSequence(event: Assign | Seek, index: number): void {
    const sequence: Sequence = { process: event.process, topic: event.topic,
      partition: event.partition, reads: [],   // offset -1: not known, the first read sets it
      start: { offset: event.offset ?? -1, value: null, event: index } };
    this.sequences.push(sequence);
    this.openSequences.set(`${event.process}\n${partitionKey(event.topic, event.partition)}`,
      sequence);
  }

  private addPoll(event: Poll, index: number): void {
    this.stats.polls += 1;
    this.touch(event.topic, event.partition, index);
    const key = `${event.process}\n${partitionKey(event.topic, event.partition)}`;
    let sequence = this.openSequences.get(key);
    if (sequence === undefined) {   // no assign recorded: the start is not known
      sequence = { process: event.process, topic: event.topic, partition: event.partition,
        start: { offset: -1, value: null, event: null }, reads: [] };
      this.sequences.push(sequence);
      this.openSequences.set(key, sequence);
    }
    for (const record of event.records) {
      this.stats.polled += 1;
      sequence.reads.push({ offset: record.offset, value: record.value, event: index });
      this.sight('poll', { ...event, offset: record.offset }, index, record);
    }
  }

  private addFinalRead(event: FinalRead, index: number): void {
    const key = partitionKey(event.topic, event.partition);
    const stored = this.finals.get(key) ?? new Map<number, string>();
    this.finals.set(key, stored);
    if (event.logStart !== undefined) {
      this.logStarts.set(key, Math.max(event.logStart, this.logStarts.get(key) ?? 0));
    }
    this.finalOffsetsSorted.delete(key);
    for (const record of event.records) {
      this.stats.finalRecords += 1;
      // A second value at one offset is kept as a sighting: the offset-conflict check sees it.
      if (!stored.has(record.offset)) stored.set(record.offset, record.value);
      this.sight('final-read', { ...event, offset: record.offset }, index, record);
    }
  }

  private touch(topic: string, partition: number, event: number): void {
    const key = partitionKey(topic, partition);
    if (!this.touched.has(key)) this.touched.set(key, { topic, partition, event });
  }

  /** Records a sighting once per (source, place, value). */
  private sight(source: SightingSource, place: Place, event: number,
    what: { value: string }): Sighting {
    const sighting: Sighting = { source, value: what.value, topic: place.topic,
      partition: place.partition, offset: place.offset, event,
      process: this.events[event]?.process ?? '?' };
    const key = `${source}\n${placeKey(place)}\n${what.value}`;
    if (this.sightingKeys.has(key)) return sighting;
    this.sightingKeys.add(key);
    pushTo(this.byValue, what.value, sighting);
    pushTo(this.byPlace, placeKey(place), sighting);
    return sighting;
  }

  /** Final-read offsets of a partition in [first, last], ascending. */
  finalOffsetsBetween(topic: string, partition: number, first: number, last: number): number[] {
    const key = partitionKey(topic, partition);
    let sorted = this.finalOffsetsSorted.get(key);
    if (sorted === undefined) {
      sorted = [...(this.finals.get(key)?.keys() ?? [])].sort((a, b) => a - b);
      this.finalOffsetsSorted.set(key, sorted);
    }
    return sorted.slice(lowerBound(sorted, first), lowerBound(sorted, last + 1));
  }
}

function pushTo<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function lowerBound(sorted: readonly number[], target: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] ?? 0) < target) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Counts every anomaly; keeps the first `examplesMax` of each kind. */
class Findings {
  readonly counts = Object.fromEntries(Object.values(COUNT_KEYS).map((k) => [k, 0])) as Counts;
  readonly kept: Anomaly[] = [];

  constructor(private readonly examplesMax: number) {}

  add(anomaly: Anomaly): void {
    const key = COUNT_KEYS[anomaly.kind];
    this.counts[key] += 1;
    if (this.counts[key] <= this.examplesMax) this.kept.push(anomaly);
  }
}

const placeOf = (p: Place): Place =>
  ({ topic: p.topic, partition: p.partition, offset: p.offset });

function storedAt(index: HistoryIndex, place: Place): string | null {
  return index.finals.get(partitionKey(place.topic, place.partition))?.get(place.offset) ?? null;
}

function checkSends(index: HistoryIndex): void {
  const lastAck = new Map<string, PollStep>();
  for (const send of index.sends.values()) {   // in invoke order
    index.stats.sends += 1;
    if (send.outcome === 'ok') index.stats.acked += 1;
    if (send.outcome === 'fail') index.stats.failed += 1;
    if (send.outcome === 'info' || send.outcome === 'pending') index.stats.indeterminate += 1;
    if (send.outcome === 'pending') index.stats.uncompleted += 1;
    const ack = send.ack;
    if (ack === null) continue;
    const key = `${ack.process}\n${partitionKey(ack.topic, ack.partition)}`;
    const step: PollStep = { offset: ack.offset, value: ack.value, event: ack.event };
    const previous = lastAck.get(key);
    if (previous !== undefined && step.offset <= previous.offset) {
      index.findings.add({ kind: 'nonmonotonic-send', process: ack.process, topic: ack.topic,
        partition: ack.partition, previous, next: step });
    }
    lastAck.set(key, step);
  }
}

/** Per value: unknown, failed-read, duplicate, value-moved, lost (absent from the final read). */
function checkValue(index: HistoryIndex, value: string, sightings: Sighting[]): void {
  const send = index.sends.get(value);
  const reads = sightings.filter((s) => s.source !== 'ack');
  const finals = reads.filter((s) => s.source === 'final-read');
  const polls = reads.filter((s) => s.source === 'poll');
  if (send === undefined) {
    index.findings.add({ kind: 'unknown-value', value, sightings });
    return;
  }
  if (index.lostTopics.has(send.invoke.topic)) return;   // counted in its lost-topic
  if (send.outcome === 'fail' && reads.length > 0) {
    index.findings.add({ kind: 'failed-read', value, sightings: reads, fail: {
      event: send.completionEvent ?? -1, process: send.invoke.process, error: send.error } });
  }
  if ((send.outcome === 'info' || send.outcome === 'pending') && reads.length > 0) {
    index.stats.indeterminateRead += 1;
  }
  const placesOf = (list: Sighting[]): Set<string> => new Set(list.map(placeKey));
  if (placesOf(finals).size > 1 || placesOf(polls).size > 1) {
    index.findings.add({ kind: 'duplicate', value, sightings: reads });
  }
  if (valueMoved(send, finals, polls)) {
    index.findings.add({ kind: 'inconsistent-offset', reason: 'value-moved', value, sightings,
      requested: { topic: send.invoke.topic, partition: send.invoke.partition } });
  }
  // Consumers only see durable records, so an indeterminate send that was polled is stored too.
  const place = send.ack ?? polls[0];
  if (place !== undefined && finals.length === 0 &&
      place.offset < (index.logStarts.get(partitionKey(place.topic, place.partition)) ?? 0)) {
    index.stats.retentionDeleted += 1; // below the log start: retention deleted it
    return;
  }
  if (send.outcome !== 'fail' && place !== undefined && finals.length === 0) {
    index.findings.add({ kind: 'lost-write', reason: 'absent-from-final-read', value,
      ack: send.ack, place: placeOf(place), polls, coveredBy: null,
      storedAtOffset: storedAt(index, place) });
  }
}

/** The sources disagree on where a value lives: the acknowledged place is not where the final
 *  read has it, a consumer read it somewhere it is neither acknowledged nor stored, or it sits
 *  in another partition than the producer asked for. A value stored at two places is a
 *  duplicate, not this. */
function valueMoved(send: SendState, finals: Sighting[], polls: Sighting[]): boolean {
  const requested = send.invoke;
  const all = [...finals, ...polls, ...(send.ack === null ? [] : [send.ack])];
  if (all.some((s) => s.topic !== requested.topic ||
      (requested.partition !== null && s.partition !== requested.partition))) return true;
  const home = new Set(finals.map(placeKey));
  if (send.ack !== null) {
    if (home.size > 0 && !home.has(placeKey(send.ack))) return true;
    home.add(placeKey(send.ack));
  }
  return home.size > 0 && polls.some((s) => !home.has(placeKey(s)));
}

function checkPlaces(index: HistoryIndex): void {
  for (const sightings of index.byPlace.values()) {
    const values = new Set(sightings.map((s) => s.value));
    if (values.size < 2) continue;
    const first = sightings[0];
    if (first === undefined) continue;
    index.findings.add({ kind: 'inconsistent-offset', reason: 'offset-conflict', sightings,
      place: { topic: first.topic, partition: first.partition, offset: first.offset } });
  }
}

/** Within one uninterrupted poll sequence offsets grow, and every gap is one the final read
 *  has too (hole fillers). */
function checkSequence(index: HistoryIndex, sequence: Sequence): void {
  const { process, topic, partition } = sequence;
  let previous: PollStep = sequence.start;
  let expected = sequence.start.offset;            // -1: start unknown, the first read sets it
  for (const next of sequence.reads) {
    if (expected >= 0 && next.offset < expected) {
      index.findings.add({ kind: 'nonmonotonic-poll', process, topic, partition, previous,
        next });
    } else if (expected >= 0 && next.offset > expected) {
      const gap = index.finalOffsetsBetween(topic, partition, expected, next.offset - 1);
      if (gap.length > 0) {
        const stored = index.finals.get(partitionKey(topic, partition));
        index.findings.add({ kind: 'skipped-offset', process, topic, partition, previous, next,
          skippedCount: gap.length, skipped: gap.slice(0, SKIPPED_SHOWN_MAX).map((offset) =>
            ({ offset, value: stored?.get(offset) ?? '' })) });
      }
    }
    previous = next;
    expected = next.offset + 1;
  }
}

/** Jepsen's lost write: an acknowledged value that is stored, yet no consumer ever read it,
 *  although one consumer started at or before its offset and read past it. */
function checkNeverPolled(index: HistoryIndex): void {
  const covers = new Map<string, { start: number; sequence: Sequence; read: PollStep }[]>();
  for (const sequence of index.sequences) {
    const first = sequence.reads[0];
    if (first === undefined) continue;
    const start = sequence.start.offset >= 0 ? sequence.start.offset : first.offset;
    const read = sequence.reads.reduce((a, b) => (b.offset > a.offset ? b : a), first);
    pushTo(covers, partitionKey(sequence.topic, sequence.partition), { start, sequence, read });
  }
  for (const list of covers.values()) list.sort((a, b) => a.start - b.start);
  const candidates = new Map<string, { send: SendState; home: Sighting }[]>();
  for (const [value, send] of index.sends) {
    const sightings = index.byValue.get(value) ?? [];
    if (send.outcome === 'fail' || sightings.some((s) => s.source === 'poll')) continue;
    const stored = sightings.filter((s) => s.source === 'final-read');
    const ack = send.ack === null ? '' : placeKey(send.ack);
    const home = stored.find((s) => placeKey(s) === ack) ?? stored[0];
    if (home === undefined) continue;              // absent from the final read: reported so
    pushTo(candidates, partitionKey(home.topic, home.partition), { send, home });
  }
  for (const [key, list] of candidates) {
    list.sort((a, b) => a.home.offset - b.home.offset);
    const sequences = covers.get(key) ?? [];
    let next = 0;
    let best: (typeof sequences)[number] | undefined;
    for (const { send, home } of list) {
      for (; next < sequences.length && (sequences[next]?.start ?? 0) <= home.offset;
        next += 1) {
        const cover = sequences[next];
        if (cover !== undefined && (best === undefined || cover.read.offset > best.read.offset)) {
          best = cover;
        }
      }
      if (best === undefined || best.read.offset <= home.offset) continue;
      index.findings.add({ kind: 'lost-write', reason: 'never-polled', value: home.value,
        ack: send.ack, place: placeOf(home), polls: [], storedAtOffset: home.value, coveredBy: {
          process: best.sequence.process, start: { ...best.sequence.start, offset: best.start },
          read: best.read } });
    }
  }
}

function checkFinalReadsPresent(index: HistoryIndex): void {
  for (const [key, where] of index.touched) {
    if (!index.finals.has(key) && !index.lostTopics.has(where.topic)) {
      index.malformed(where.event, `no final read of ${where.topic}/${where.partition}, which ` +
        'was written or polled (the final read must cover every partition)');
    }
  }
}

export function checkHistory(events: readonly HistoryEvent[], options: CheckOptions = {}):
    CheckResult {
  const findings = new Findings(options.examplesMax ?? 8);
  const index = new HistoryIndex(events, findings);
  checkFinalReadsPresent(index);
  checkSends(index);
  for (const [value, sightings] of index.byValue) checkValue(index, value, sightings);
  checkPlaces(index);
  for (const sequence of index.sequences) checkSequence(index, sequence);
  checkNeverPolled(index);
  const sendsAcked = new Map<string, number>();
  for (const send of index.sends.values()) {
    const topic = send.ack?.topic;
    if (topic !== undefined) sendsAcked.set(topic, (sendsAcked.get(topic) ?? 0) + 1);
  }
  for (const anomaly of checkMetadata(index.metadata, sendsAcked,
    (event, problem) => index.malformed(event, problem))) findings.add(anomaly);
  Object.assign(index.stats, index.metadata.stats);
  index.stats.partitions = index.finals.size;
  const allowed = options.allowed ?? [];
  const valid = (Object.keys(COUNT_KEYS) as AnomalyKind[]).every((kind) =>
    allowed.includes(kind) || findings.counts[COUNT_KEYS[kind]] === 0);
  const order = Object.keys(COUNT_KEYS);
  const anomalies = [...findings.kept].sort((a, b) =>
    order.indexOf(a.kind) - order.indexOf(b.kind));
  return { valid, counts: findings.counts, anomalies, stats: index.stats, allowed };
}

const where = (place: Place): string => `${place.topic}/${place.partition}@${place.offset}`;
const seen = (s: Sighting): string =>
  `${s.source} ${JSON.stringify(s.value)} at ${where(s)} by ${s.process} (event ${s.event})`;
const listed = (sightings: readonly Sighting[]): string => sightings.map(seen).join('; ');
const step = (s: PollStep): string => (s.value === null ?
  `start ${s.offset < 0 ? '(unknown)' : s.offset} (event ${s.event ?? 'none'})` :
  `offset ${s.offset} ${JSON.stringify(s.value)} (event ${s.event ?? '?'})`);

/** One line of evidence per anomaly. */
export function describeAnomaly(anomaly: Anomaly): string {
  switch (anomaly.kind) {
    case 'lost-write': {
      const { ack } = anomaly;
      const head = `${JSON.stringify(anomaly.value)} ` + (ack === null ?
        `(indeterminate send) at ${where(anomaly.place)}` :
        `acked at ${where(ack)} by ${ack.process} (event ${ack.event})`);
      if (anomaly.reason === 'absent-from-final-read') {
        return `${head}: absent from the final read (that offset holds ` +
          `${JSON.stringify(anomaly.storedAtOffset)}); polled before: ` +
          `${anomaly.polls.length === 0 ? 'never' : listed(anomaly.polls)}`;
      }
      const cover = anomaly.coveredBy;
      return `${head}: stored, never polled, though ${cover?.process ?? '?'} read from ` +
        `${cover === null ? '?' : `${step(cover.start)} to ${step(cover.read)}`}`;
    }
    case 'duplicate':
      return `${JSON.stringify(anomaly.value)} at several offsets: ${listed(anomaly.sightings)}`;
    case 'inconsistent-offset':
      if (anomaly.reason === 'offset-conflict') {
        return `${where(anomaly.place)} holds different values: ${listed(anomaly.sightings)}`;
      }
      return `${JSON.stringify(anomaly.value)} (sent to ${anomaly.requested.topic}/` +
        `${anomaly.requested.partition ?? 'any'}) seen at different places: ` +
        listed(anomaly.sightings);
    case 'nonmonotonic-poll':
    case 'skipped-offset': {
      const head = `${anomaly.process} on ${anomaly.topic}/${anomaly.partition}: ` +
        `${step(anomaly.previous)} then ${step(anomaly.next)}`;
      if (anomaly.kind === 'nonmonotonic-poll') return `${head}: went backwards or repeated`;
      return `${head}: skipped ${anomaly.skippedCount} stored record(s): ` +
        anomaly.skipped.map((r) => `${r.offset} ${JSON.stringify(r.value)}`).join(', ');
    }
    case 'failed-read':
      return `${JSON.stringify(anomaly.value)} failed definitely (${anomaly.fail.process}, ` +
        `event ${anomaly.fail.event}: ${anomaly.fail.error}) yet read: ` +
        listed(anomaly.sightings);
    case 'nonmonotonic-send':
      return `${anomaly.process} sent ${step(anomaly.previous)} then ${step(anomaly.next)} ` +
        `to ${anomaly.topic}/${anomaly.partition}: the later send got a lower offset`;
    case 'unknown-value':
      return `${JSON.stringify(anomaly.value)} was never sent: ${listed(anomaly.sightings)}`;
    case 'malformed':
      return `event ${anomaly.event}: ${anomaly.problem}`;
    case 'lost-commit':
    case 'lost-topic':
      return describeMetadataAnomaly(anomaly);
    default: {
      const unknown: never = anomaly;
      return JSON.stringify(unknown);
    }
  }
}

/** A human-readable report: verdict, statistics, counts, then the kept anomalies by kind. */
export function formatReport(result: CheckResult): string {
  const { stats, counts } = result;
  const lines = [
    `history ${result.valid ? 'VALID' : 'INVALID'}` +
      (result.allowed.length > 0 ? ` (allowed: ${result.allowed.join(', ')})` : ''),
    `events ${stats.events}; sends ${stats.sends}: acked ${stats.acked}, failed ` +
      `${stats.failed}, indeterminate ${stats.indeterminate} (${stats.uncompleted} never ` +
      `completed; ${stats.indeterminateRead} read, which is allowed)`,
    `polls ${stats.polls} (${stats.polled} records); final read ${stats.finalRecords} records ` +
      `in ${stats.partitions} partitions`,
    `commits ${stats.commits}: acked ${stats.commitsAcked}, failed ${stats.commitsFailed}, ` +
      `indeterminate ${stats.commitsIndeterminate}; creates ${stats.creates}: acked ` +
      `${stats.createsAcked}, failed ${stats.createsFailed}, indeterminate ` +
      `${stats.createsIndeterminate}; commit reads ${stats.commitReads} (` +
      `${stats.commitReadsFound} found an offset); acked sends in lost topics ` +
      `${stats.sendsInLostTopics}`,
    Object.entries(counts).map(([name, count]) => `${name} ${count}`).join(', '),
  ];
  for (const kind of Object.keys(COUNT_KEYS) as AnomalyKind[]) {
    const kept = result.anomalies.filter((a) => a.kind === kind);
    if (kept.length === 0) continue;
    const total = counts[COUNT_KEYS[kind]];
    lines.push(`${kind}: ${total}${kept.length < total ? ` (first ${kept.length} shown)` : ''}` +
      (result.allowed.includes(kind) ? ' [allowed]' : ''));
    for (const anomaly of kept) lines.push(`  ${describeAnomaly(anomaly)}`);
  }
  return `${lines.join('\n')}\n`;
}
