// The crash-history checker (test/crash/history-checker.ts): small hand-built histories for each
// anomaly kind and for each harmless look-alike (a hole filler's gap, a read of an indeterminate
// send, a consumer restarting with assign/seek); then seeded random VALID histories from a
// simulated correct log (concurrent producers, indeterminate and failed sends, holes, consumers
// that restart and seek) that must check clean, and mutations of them that must be caught as the
// right kind. The seed is in the test names; PMQ_SEED=<seed> replays one run.
import t, { type Test } from 'tap';

import { type AnomalyKind, type CheckResult, checkHistory, formatReport } from
  '../crash/history-checker.js';
import { type HistoryBody, type HistoryEvent, HistoryFormatError, HistoryRecorder,
  encodeHistory, parseHistory, sortHistory } from '../crash/history.js';
import { type Prng, prngFrom } from '../fixtures/record-batch-random.js';

/** Builds histories through the real recorder and parser, so every test round-trips them. */
class Builder {
  private readonly lines: string[] = [];
  private now = 0;
  private readonly recorder = new HistoryRecorder((line) => this.lines.push(line),
    { monotonicMs: () => this.now, wallMs: () => 1_700_000_000_000 + this.now });

  add(process: string, body: HistoryBody): this {
    this.now += 1;
    this.recorder.record(process, body);
    return this;
  }
  send(process: string, value: string, partition: number | null = 0, topic = 't'): this {
    return this.add(process, { kind: 'send-invoke', topic, partition, key: null, value });
  }
  ok(process: string, value: string, offset: number, partition = 0, topic = 't'): this {
    return this.add(process, { kind: 'send-ok', value, topic, partition, offset });
  }
  acked(process: string, value: string, offset: number, partition = 0): this {
    return this.send(process, value, partition).ok(process, value, offset, partition);
  }
  fail(process: string, value: string): this {
    return this.add(process, { kind: 'send-fail', value, error: 'PMQ_ERR_UNKNOWN_TOPIC' });
  }
  info(process: string, value: string): this {
    return this.add(process, { kind: 'send-info', value, error: 'timeout' });
  }
  assign(process: string, offset: number | null, partition = 0): this {
    return this.add(process, { kind: 'assign', topic: 't', partition, offset });
  }
  seek(process: string, offset: number, partition = 0): this {
    return this.add(process, { kind: 'seek', topic: 't', partition, offset });
  }
  poll(process: string, records: [number, string][], partition = 0): this {
    return this.add(process, { kind: 'poll', topic: 't', partition,
      records: records.map(([offset, value]) => ({ offset, value })) });
  }
  final(records: [number, string][], partition = 0, logStart?: number): this {
    return this.add('final', { kind: 'final-read', topic: 't', partition,
      records: records.map(([offset, value]) => ({ offset, value })),
      ...(logStart === undefined ? {} : { logStart }) });
  }
  commit(process: string, group: string, offset: number,
    outcome: 'ok' | 'fail' | 'info' | null = 'ok', partition = 0, topic = 't'): this {
    const key = { group, topic, partition, offset };
    this.add(process, { kind: 'commit-invoke', ...key });
    if (outcome === 'ok') return this.add(process, { kind: 'commit-ok', ...key });
    if (outcome === null) return this;
    return this.add(process, { kind: outcome === 'fail' ? 'commit-fail' : 'commit-info', ...key,
      error: outcome === 'fail' ? 'PMQ_ERR_FENCED' : 'PMQ_ERR_TIMEOUT' });
  }
  finalOffsets(offsets: [string, number | null][], partition = 0, topic = 't'): this {
    return this.add('final-metadata', { kind: 'final-offsets',
      offsets: offsets.map(([group, offset]) => ({ group, topic, partition, offset })) });
  }
  create(process: string, topic: string, outcome: 'ok' | 'fail' | 'info' | null = 'ok'): this {
    this.add(process, { kind: 'create-invoke', topic, partitions: 1 });
    if (outcome === 'ok') return this.add(process, { kind: 'create-ok', topic });
    if (outcome === null) return this;
    return this.add(process, { kind: outcome === 'fail' ? 'create-fail' : 'create-info', topic,
      error: outcome === 'fail' ? 'PMQ_ERR_FENCED' : 'PMQ_ERR_TIMEOUT' });
  }
  finalTopics(topics: string[]): this {
    return this.add('final-metadata', { kind: 'final-topics', topics });
  }
  events(): HistoryEvent[] {
    return parseHistory(this.lines.join('\n'));
  }
  check(allowed: AnomalyKind[] = []): CheckResult {
    return checkHistory(this.events(), { allowed });
  }
}

const nonZero = (result: CheckResult): Record<string, number> =>
  Object.fromEntries(Object.entries(result.counts).filter(([, count]) => count > 0));

/** Three acked records a@0 b@1 c@2 in partition t/0, all in the final read. */
function threeAcked(): Builder {
  return new Builder().acked('p', 'a', 0).acked('p', 'b', 1).acked('p', 'c', 2);
}
const ABC: [number, string][] = [[0, 'a'], [1, 'b'], [2, 'c']];

t.test('a clean history is valid, with its statistics', (t) => {
  const result = threeAcked().send('p', 'd').info('p', 'd').send('p', 'e').fail('p', 'e')
    .send('p', 'f').assign('c', 0).poll('c', [[0, 'a'], [1, 'b']]).poll('c', [])
    .poll('c', [[2, 'c']]).final(ABC).check();
  t.ok(result.valid, formatReport(result));
  t.same(nonZero(result), {});
  t.match(result.stats, { sends: 6, acked: 3, failed: 1, indeterminate: 2, uncompleted: 1,
    indeterminateRead: 0, polls: 3, polled: 3, finalRecords: 3, partitions: 1 });
  t.match(formatReport(result), /^history VALID\n/);
  t.end();
});

t.test('lost write: acknowledged, absent from the final read', (t) => {
  const result = threeAcked().assign('c', 0).poll('c', [[0, 'a'], [1, 'b']])
    .final([[0, 'a'], [2, 'c']]).check();
  t.notOk(result.valid);
  t.same(nonZero(result), { lostWrites: 1 });
  t.match(result.anomalies[0], { kind: 'lost-write', reason: 'absent-from-final-read',
    value: 'b', storedAtOffset: null, ack: { offset: 1, process: 'p', event: 3 },
    polls: [{ source: 'poll', offset: 1, process: 'c', event: 7 }] });
  t.match(formatReport(result), /lost-write: 1\n {2}"b" acked at t\/0@1 by p \(event 3\)/);
  t.end();
});

t.test('retention: absent below the final read\'s log start is deleted, not lost; above it is',
  (t) => {
    const deleted = threeAcked().assign('c', 0).poll('c', [[0, 'a']]).poll('c', [[2, 'c']])
      .final([[2, 'c']], 0, 2).check();
    t.ok(deleted.valid, formatReport(deleted));
    t.same(nonZero(deleted), {}, 'a consumer reset past deleted offsets skipped nothing stored');
    t.equal(deleted.stats.retentionDeleted, 2);
    const lost = threeAcked().final([[2, 'c']], 0, 1).check();
    t.same(nonZero(lost), { lostWrites: 1 }, 'b at offset 1 is not below log start 1: lost');
    t.match(lost.anomalies[0], { kind: 'lost-write', value: 'b' });
    t.end();
  });

t.test('lost write: stored but never polled, though a consumer read past it', (t) => {
  const result = threeAcked().assign('c', 0).poll('c', [[0, 'a'], [2, 'c']]).final(ABC).check();
  t.same(nonZero(result), { lostWrites: 1, skippedOffsets: 1 });
  t.match(result.anomalies.find((a) => a.kind === 'lost-write'), { reason: 'never-polled',
    value: 'b', coveredBy: { process: 'c', start: { offset: 0 }, read: { offset: 2 } } });
  t.end();
});

t.test('not lost: a consumer that seeks forward past a record never claims to read it', (t) => {
  const result = threeAcked().assign('c', 0).poll('c', [[0, 'a']]).seek('c', 2)
    .poll('c', [[2, 'c']]).final(ABC).check();
  t.ok(result.valid, formatReport(result));
  t.end();
});

t.test('duplicates: one value at two offsets, or in two partitions', (t) => {
  let result = threeAcked().final([...ABC, [3, 'b']]).check();
  t.same(nonZero(result), { duplicates: 1 });
  t.match(result.anomalies[0], { kind: 'duplicate', value: 'b',
    sightings: [{ offset: 1 }, { offset: 3 }] });
  result = new Builder().send('p', 'x', null).ok('p', 'x', 0, 1).final([[0, 'x']], 0)
    .final([[0, 'x']], 1).check();
  t.same(nonZero(result), { duplicates: 1 });
  result = threeAcked().assign('c', 0).poll('c', [[0, 'a'], [1, 'b']]).seek('c', 0)
    .poll('c', [[0, 'a'], [1, 'a']]).final(ABC).check();
  t.match(nonZero(result), { duplicates: 1, inconsistentOffsets: 2 }, 'a read of a at 1');
  t.end();
});

t.test('inconsistent offsets: two values at one offset', (t) => {
  const result = threeAcked().assign('c1', 0).poll('c1', [[0, 'a'], [1, 'b']])
    .send('q', 'z').info('q', 'z').assign('c2', 1).poll('c2', [[1, 'z']]).final(ABC).check();
  t.same(nonZero(result), { inconsistentOffsets: 1, lostWrites: 1 });
  t.match(result.anomalies, [
    { kind: 'lost-write', value: 'z', ack: null, place: { offset: 1 }, storedAtOffset: 'b' },
    { reason: 'offset-conflict', place: { offset: 1 }, sightings: [{ value: 'b', source: 'ack' },
      { value: 'b', source: 'poll' }, { value: 'z', source: 'poll', process: 'c2' },
      { value: 'b', source: 'final-read' }] }]);
  const moved = threeAcked().send('q', 'z').info('q', 'z').assign('c', null).poll('c', [[5, 'z']])
    .final([...ABC, [3, 'z']]).check();
  t.same(nonZero(moved), { inconsistentOffsets: 1 }, 'an indeterminate value read elsewhere');
  t.end();
});

t.test('inconsistent offsets: an acknowledged value stored at another offset', (t) => {
  const result = threeAcked().final([[0, 'a'], [2, 'c'], [3, 'b']]).check();
  t.same(nonZero(result), { inconsistentOffsets: 1 });
  t.match(result.anomalies[0], { reason: 'value-moved', value: 'b',
    sightings: [{ source: 'ack', offset: 1 }, { source: 'final-read', offset: 3 }] });
  const elsewhere = new Builder().acked('p', 'a', 0, 0).final([], 0).final([[0, 'a']], 1).check();
  t.same(nonZero(elsewhere), { inconsistentOffsets: 1 }, 'asked for partition 0, stored in 1');
  t.end();
});

t.test('non-monotonic polls: backwards or repeated without a seek', (t) => {
  let result = threeAcked().assign('c', 0).poll('c', [[0, 'a'], [1, 'b']])
    .poll('c', [[1, 'b'], [2, 'c']]).final(ABC).check();
  t.same(nonZero(result), { nonMonotonicPolls: 1 });
  t.match(result.anomalies[0], { process: 'c', previous: { offset: 1, event: 7 },
    next: { offset: 1, event: 8 } });
  result = threeAcked().assign('c', 2).poll('c', [[1, 'b'], [2, 'c']]).final(ABC).check();
  t.same(nonZero(result), { nonMonotonicPolls: 1 }, 'below the assigned start');
  result = threeAcked().assign('c', 0).poll('c', [[0, 'a'], [1, 'b']]).seek('c', 1)
    .poll('c', [[1, 'b'], [2, 'c']]).final(ABC).check();
  t.ok(result.valid, 'a seek between them makes it legal');
  t.end();
});

t.test('skipped offsets: a gap where the final read has records', (t) => {
  let result = threeAcked().acked('p', 'd', 3).assign('c', 0).poll('c', [[0, 'a']])
    .poll('c', [[3, 'd']]).poll('c', []).final([...ABC, [3, 'd']]).check();
  t.match(nonZero(result), { skippedOffsets: 1, lostWrites: 2 });
  t.match(result.anomalies.find((a) => a.kind === 'skipped-offset'), { process: 'c',
    skippedCount: 2, skipped: [{ offset: 1, value: 'b' }, { offset: 2, value: 'c' }],
    previous: { offset: 0 }, next: { offset: 3 } });
  result = threeAcked().assign('c', 0).poll('c', [[1, 'b'], [2, 'c']]).final(ABC).check();
  t.match(result.anomalies.find((a) => a.kind === 'skipped-offset'), {
    previous: { offset: 0, value: null }, skipped: [{ offset: 0 }] }, 'after the assign');
  t.end();
});

t.test('not a skip: a hole filler gap that the final read has too', (t) => {
  const result = new Builder().acked('p', 'a', 0).acked('p', 'b', 4).assign('c', 0)
    .poll('c', [[0, 'a'], [4, 'b']]).assign('d', 1).poll('d', [[4, 'b']])
    .final([[0, 'a'], [4, 'b']]).check();
  t.ok(result.valid, formatReport(result));
  t.end();
});

t.test('failed reads: a definitely failed send must never be read', (t) => {
  const result = threeAcked().send('p', 'x').fail('p', 'x').assign('c', 0)
    .poll('c', [[0, 'a'], [1, 'b'], [2, 'c'], [3, 'x']]).final([...ABC, [3, 'x']]).check();
  t.same(nonZero(result), { failedReads: 1 });
  t.match(result.anomalies[0], { value: 'x', fail: { process: 'p', event: 7 },
    sightings: [{ source: 'poll' }, { source: 'final-read' }] });
  t.end();
});

t.test('indeterminate sends may be read: counted, not an anomaly', (t) => {
  const result = new Builder().send('p', 'a').info('p', 'a').send('p', 'b').assign('c', 0)
    .poll('c', [[0, 'a'], [1, 'b']]).final([[0, 'a'], [1, 'b']]).check();
  t.ok(result.valid, formatReport(result));
  t.match(result.stats, { indeterminate: 2, uncompleted: 1, indeterminateRead: 2 });
  t.end();
});

t.test('consumer restarts from a committed offset or the beginning', (t) => {
  const result = threeAcked().acked('p', 'd', 3).assign('c#1', 0).poll('c#1', [[0, 'a']])
    .poll('c#1', [[1, 'b'], [2, 'c']]).assign('c#2', 1).poll('c#2', [[1, 'b'], [2, 'c']])
    .assign('c#2', 0).poll('c#2', [[0, 'a'], [1, 'b'], [2, 'c'], [3, 'd']]).assign('c#3', null)
    .poll('c#3', [[2, 'c']]).final([...ABC, [3, 'd']]).check();
  t.ok(result.valid, formatReport(result));
  t.end();
});

t.test('non-monotonic sends: a later send of one producer at a lower offset', (t) => {
  const history = new Builder().send('p', 'a').send('p', 'b').ok('p', 'b', 0).ok('p', 'a', 1)
    .final([[0, 'b'], [1, 'a']]);
  t.same(nonZero(history.check()), { nonMonotonicSends: 1 });
  const allowed = history.check(['nonmonotonic-send']);
  t.ok(allowed.valid, 'allowed when the producer does not promise order across retries');
  t.match(formatReport(allowed), /nonmonotonic-send: 1 \[allowed\]/);
  t.end();
});

t.test('unknown values and malformed histories', (t) => {
  t.same(nonZero(threeAcked().final([...ABC, [3, 'ghost']]).check()), { unknownValues: 1 });
  const malformed = new Builder().ok('p', 'nobody', 0).send('p', 'a').send('p', 'a')
    .ok('p', 'a', 0).ok('p', 'a', 0).send('p', 'b').ok('q', 'b', 1).check();
  t.same(nonZero(malformed), { malformed: 5, lostWrites: 1 });
  t.match(formatReport(malformed), /no final read of t\/0/);
  const events = threeAcked().final(ABC).events();
  const reordered = [events[1], events[0], ...events.slice(2)] as HistoryEvent[];
  t.match(nonZero(checkHistory(reordered)), { malformed: 2 }, 'per-process seq must grow');
  t.end();
});

t.test('examplesMax keeps the first anomalies of each kind and counts all', (t) => {
  const history = threeAcked().final([]).events();
  const result = checkHistory(history, { examplesMax: 2 });
  t.equal(result.counts.lostWrites, 3);
  t.equal(result.anomalies.length, 2);
  t.match(formatReport(result), /lost-write: 3 \(first 2 shown\)/);
  t.end();
});

t.test('JSON lines: round trip, strict fields, versions, torn tail', (t) => {
  const events = threeAcked().final(ABC).events();
  t.same(parseHistory(encodeHistory(events)), events);
  t.same(sortHistory([...events].reverse()), events);
  const line = encodeHistory(events.slice(0, 1));
  t.throws(() => parseHistory(line.replace('"v":2', '"v":3')), HistoryFormatError);
  t.same(parseHistory(line.replace('"v":2', '"v":1')), [{ ...events[0], v: 1 }],
    'version 1 (records only) still parses');
  const commit = encodeHistory(new Builder().commit('c', 'g', 3).events());
  t.throws(() => parseHistory(commit.replace('"v":2', '"v":1')), /needs history version 2/);
  t.throws(() => parseHistory(line.replace('"kind":"send-invoke"', '"kind":"send-maybe"')),
    /unknown event kind/);
  t.throws(() => parseHistory(line.replace('"seq":0', '"seq":-1')), /seq must be a whole/);
  t.throws(() => parseHistory(`${line}{"v":2,"pro`), /line 2: not JSON/);
  t.same(parseHistory(`${line}{"v":2,"pro`, { tornTailAllowed: true }), events.slice(0, 1));
  t.end();
});

// ---- seeded random valid histories and their mutations ----

interface PartitionLog { topic: string; partition: number; records: { offset: number;
  value: string }[]; offsetNext: number }
interface PendingSend { value: string; log: PartitionLog; stored: boolean }
interface Consumer { name: string; incarnation: number; position: Map<PartitionLog, number>;
  committed: Map<PartitionLog, number> }

const PRODUCERS = 3;
const CONSUMERS = 2;
const STEPS = 1500;

/** A correct log and correct clients, recorded: the history must check clean. */
class Simulation {
  readonly history = new Builder();
  readonly logs: PartitionLog[] = [['a', 0], ['a', 1], ['b', 0]].map(([topic, partition]) =>
    ({ topic: topic as string, partition: partition as number, records: [], offsetNext: 0 }));
  readonly queues = Array.from({ length: PRODUCERS }, (): PendingSend[] => []);
  readonly consumers: Consumer[] = [];
  readonly stats = { holes: 0, restarts: 0, seeks: 0, lateAcks: 0 };
  private sent = 0;

  constructor(readonly prng: Prng) {
    for (let i = 0; i < CONSUMERS; i += 1) {
      const consumer: Consumer = { name: `consumer-${i}`, incarnation: 0, position: new Map(),
        committed: new Map() };
      this.consumers.push(consumer);
      this.restart(consumer, 'beginning');
    }
  }

  pick<T>(list: readonly T[]): T {
    const item = list[this.prng.int(list.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  step(): void {
    const roll = this.prng.next();
    const producer = this.prng.int(PRODUCERS);
    if (roll < 0.3) this.invoke(producer);
    else if (roll < 0.6) this.resolve(producer);
    else this.consume(this.pick(this.consumers));
  }

  invoke(producer: number): void {
    const log = this.pick(this.logs);
    const value = `p${producer}-${this.sent++}`;
    const partition = this.prng.chance(0.3) ? null : log.partition;   // null: partitioner picks
    this.history.add(`producer-${producer}`, { kind: 'send-invoke', topic: log.topic, partition,
      key: this.prng.chance(0.5) ? null : `k${this.prng.int(10)}`, value });
    this.queues[producer]?.push({ value, log, stored: false });
  }

  /** Settles the producer's oldest send (a producer's sends settle in order). */
  resolve(producer: number): void {
    const queue = this.queues[producer] ?? [];
    const send = queue[0];
    if (send === undefined) return;
    const process = `producer-${producer}`;
    if (send.stored) {                                 // stored earlier, acknowledged late
      this.stats.lateAcks += 1;
      queue.shift();
      const offset = send.log.records.find((r) => r.value === send.value)?.offset ?? -1;
      this.history.ok(process, send.value, offset, send.log.partition, send.log.topic);
      return;
    }
    if (this.prng.chance(0.1)) this.hole(send.log);   // an expired reservation, filled
    const fate = this.prng.next();
    if (fate < 0.8) {
      const offset = send.log.offsetNext++;
      send.log.records.push({ offset, value: send.value });
      send.stored = true;
      if (this.prng.chance(0.4)) return;                 // acknowledged at a later step
      queue.shift();
      if (fate < 0.72) this.history.ok(process, send.value, offset, send.log.partition,
        send.log.topic);
      else this.history.info(process, send.value);       // stored, but the client timed out
    } else {
      queue.shift();
      if (fate < 0.9) this.history.fail(process, send.value);
      else this.history.info(process, send.value);       // not stored, outcome unknown
    }
  }

  hole(log: PartitionLog): void {
    log.offsetNext += 1 + this.prng.int(3);
    this.stats.holes += 1;
  }

  consume(consumer: Consumer): void {
    const roll = this.prng.next();
    if (roll < 0.03) return this.restart(consumer, this.prng.chance(0.3) ? 'beginning' :
      'committed');
    const log = this.pick(this.logs);
    const position = consumer.position.get(log) ?? 0;
    if (roll < 0.06) {
      const offset = this.prng.int(position + 1);
      this.stats.seeks += 1;
      consumer.position.set(log, offset);
      this.history.add(this.processOf(consumer), { kind: 'seek', topic: log.topic,
        partition: log.partition, offset });
      return;
    }
    const records = log.records.filter((r) => r.offset >= position)
      .slice(0, 1 + this.prng.int(5));
    const last = records[records.length - 1];
    if (last !== undefined) consumer.position.set(log, last.offset + 1);
    this.history.add(this.processOf(consumer), { kind: 'poll', topic: log.topic,
      partition: log.partition, records });
    if (this.prng.chance(0.3)) consumer.committed.set(log, consumer.position.get(log) ?? 0);
  }

  processOf(consumer: Consumer): string {
    return `${consumer.name}#${consumer.incarnation}`;
  }

  /** A new incarnation (a new process id) assigns every partition again. */
  restart(consumer: Consumer, from: 'beginning' | 'committed'): void {
    consumer.incarnation += 1;
    this.stats.restarts += 1;
    for (const log of this.logs) {
      const offset = from === 'beginning' ? 0 : consumer.committed.get(log) ?? 0;
      consumer.position.set(log, offset);
      this.history.add(this.processOf(consumer), { kind: 'assign', topic: log.topic,
        partition: log.partition, offset });
    }
  }

  finish(): HistoryEvent[] {
    for (const log of this.logs) {
      this.history.add('final', { kind: 'final-read', topic: log.topic,
        partition: log.partition, records: log.records });
    }
    return this.history.events();
  }
}

function validHistory(seed: number): { events: HistoryEvent[]; simulation: Simulation } {
  const simulation = new Simulation(prngFrom(seed));
  for (let step = 0; step < STEPS; step += 1) simulation.step();
  return { events: simulation.finish(), simulation };
}

function seeds(): number[] {
  const fixed = process.env.PMQ_SEED;
  if (fixed !== undefined) return [Number(fixed)];
  return Array.from({ length: 6 }, () => Math.floor(Math.random() * 0x1_0000_0000));
}

type Finals = Extract<HistoryEvent, { kind: 'final-read' }>;
type Polls = Extract<HistoryEvent, { kind: 'poll' }>;
type Oks = Extract<HistoryEvent, { kind: 'send-ok' }>;
const finalsOf = (events: HistoryEvent[]): Finals[] =>
  events.filter((e): e is Finals => e.kind === 'final-read');
const finalOf = (events: HistoryEvent[], topic: string, partition: number): Finals => {
  const found = finalsOf(events).find((e) => e.topic === topic && e.partition === partition);
  if (found === undefined) throw new Error(`no final read of ${topic}/${partition}`);
  return found;
};
const endOf = (final: Finals): number =>
  Math.max(-1, ...final.records.map((r) => r.offset)) + 1;
const oksOf = (events: HistoryEvent[]): Oks[] =>
  events.filter((e): e is Oks => e.kind === 'send-ok');

/** Each mutation changes a valid history in one way; `kind` must be found, and nothing outside
 *  `alsoAllowed` (consequences of the same change) may be reported. */
interface Mutation { name: string; kind: AnomalyKind; alsoAllowed: AnomalyKind[];
  apply(events: HistoryEvent[], prng: Prng): boolean }

/** Each mutation applied to a copy of `events` is found as its kind, and nothing else. */
function expectEachCaught(t: Test, events: HistoryEvent[], mutations: Mutation[],
  prng: Prng): void {
  for (const mutation of mutations) {
    const mutated = structuredClone(events);
    t.ok(mutation.apply(mutated, prng), `${mutation.name}: applicable`);
    const result = checkHistory(mutated);
    const kinds = [...new Set(result.anomalies.map((a) => a.kind))];
    t.ok(kinds.includes(mutation.kind), `${mutation.name}: found as ${mutation.kind}`);
    t.same(kinds.filter((k) => k !== mutation.kind && !mutation.alsoAllowed.includes(k)), [],
      `${mutation.name}: nothing else`);
    t.notOk(result.valid, `${mutation.name}: invalid`);
  }
}

const MUTATIONS: Mutation[] = [
  { name: 'drop an acknowledged record from the final read', kind: 'lost-write', alsoAllowed: [],
    apply: (events, prng) => {
      const ok = oksOf(events)[prng.int(oksOf(events).length)];
      if (ok === undefined) return false;
      const final = finalOf(events, ok.topic, ok.partition);
      final.records = final.records.filter((r) => r.offset !== ok.offset);
      return true;
    } },
  { name: 'swap the values at two offsets', kind: 'inconsistent-offset', alsoAllowed: [],
    apply: (events, prng) => {
      const acked = new Set(oksOf(events).map((ok) => ok.value));
      const finals = finalsOf(events).filter((f) =>
        f.records.filter((r) => acked.has(r.value)).length >= 2);
      const final = finals[prng.int(finals.length)];
      if (final === undefined) return false;
      const [first, second] = final.records.filter((r) => acked.has(r.value));
      if (first === undefined || second === undefined) return false;
      [first.value, second.value] = [second.value, first.value];
      return true;
    } },
  { name: 'store an acknowledged value twice', kind: 'duplicate', alsoAllowed: [],
    apply: (events, prng) => {
      const ok = oksOf(events)[prng.int(oksOf(events).length)];
      if (ok === undefined) return false;
      const final = finalOf(events, ok.topic, ok.partition);
      final.records.push({ offset: endOf(final), value: ok.value });
      return true;
    } },
  { name: 'store a failed value', kind: 'failed-read', alsoAllowed: [],
    apply: (events, prng) => {
      const failed = new Set(events.filter((e) => e.kind === 'send-fail').map((e) => e.value));
      const invokes = events.filter((e): e is Extract<HistoryEvent, { kind: 'send-invoke' }> =>
        e.kind === 'send-invoke' && failed.has(e.value));
      const invoke = invokes[prng.int(invokes.length)];
      if (invoke === undefined) return false;
      const final = finalOf(events, invoke.topic, invoke.partition ?? 0);
      final.records.push({ offset: endOf(final), value: invoke.value });
      return true;
    } },
  { name: 'reorder two records of a poll', kind: 'nonmonotonic-poll',
    alsoAllowed: ['skipped-offset'], apply: (events, prng) => {
      const polls = events.filter((e): e is Polls => e.kind === 'poll' && e.records.length >= 2);
      const poll = polls[prng.int(polls.length)];
      if (poll === undefined) return false;
      const [first, second, ...rest] = poll.records;
      if (first === undefined || second === undefined) return false;
      poll.records = [second, first, ...rest];
      return true;
    } },
  { name: 'drop a record from the middle of a poll', kind: 'skipped-offset',
    alsoAllowed: ['lost-write'], apply: (events, prng) => {
      const polls = events.filter((e): e is Polls => e.kind === 'poll' && e.records.length >= 3);
      const poll = polls[prng.int(polls.length)];
      if (poll === undefined) return false;
      poll.records = poll.records.filter((_, i) => i !== 1);
      return true;
    } },
];

for (const seed of seeds()) {
  t.test(`random valid history checks clean (seed ${seed}; replay with PMQ_SEED=${seed})`,
    (t) => {
      const { events, simulation } = validHistory(seed);
      const result = checkHistory(events);
      t.ok(result.valid, formatReport(result));
      const { stats } = result;
      t.ok(stats.acked > 50 && stats.failed > 0 && stats.indeterminateRead > 0 &&
        stats.uncompleted >= 0 && simulation.stats.holes > 0 && simulation.stats.restarts > 2,
      'the workload did things');
      t.same(parseHistory(encodeHistory(events)), events, 'JSON lines round trip');
      t.comment(JSON.stringify({ ...stats, ...simulation.stats }));
      t.end();
    });
  t.test(`mutations of a valid history are caught (seed ${seed}; PMQ_SEED=${seed})`, (t) => {
    const { events } = validHistory(seed);
    expectEachCaught(t, events, MUTATIONS, prngFrom(seed ^ 0x5eed));
    t.end();
  });
}

// ---- metadata: group-offset commits and topic creates (history version 2) ----

t.test('commits: the final offset may be the highest ack or a later commit, never lower',
  (t) => {
    const clean = new Builder().commit('c', 'g', 1).commit('c', 'g', 4).commit('c', 'g', 6, 'info')
      .commit('c', 'g', 9, 'fail').commit('c', 'h', 2, null).finalOffsets([['g', 6], ['h', null]])
      .check();
    t.ok(clean.valid, formatReport(clean));
    t.match(clean.stats, { commits: 5, commitsAcked: 2, commitsFailed: 1,
      commitsIndeterminate: 2 });
    const lower = new Builder().commit('c', 'g', 1).commit('c', 'g', 4).commit('c', 'g', 5, 'info')
      .finalOffsets([['g', 1]]).check();
    t.same(nonZero(lower), { lostCommits: 1 });
    t.match(lower.anomalies[0], { kind: 'lost-commit', reason: 'final', group: 'g', topic: 't',
      partition: 0, acked: { offset: 4, process: 'c', event: 3 }, acks: 2, final: 1 });
    t.match(formatReport(lower),
      /group g t\/0: commit of offset 4 acknowledged to c .*final committed offset 1/);
    const none = new Builder().commit('c', 'g', 1).finalOffsets([['g', null]]).check();
    t.same(nonZero(none), { lostCommits: 1 });
    t.match(formatReport(none), /final committed offset none/);
    t.end();
  });

t.test('commit reads: a consumer starting after acks must not read a lower offset', (t) => {
  const read = (offset: number | null): HistoryBody =>
    ({ kind: 'commit-read', group: 'g', topic: 't', partition: 0, offset });
  const clean = new Builder().add('c#2', read(null)).commit('c#2', 'g', 2)
    .commit('c#2', 'g', 5, 'info').add('c#3', read(2)).add('c#4', read(5))
    .finalOffsets([['g', 5]]).check();
  t.ok(clean.valid,
    `the acknowledged 2 or the indeterminate 5 may be read: ${formatReport(clean)}`);
  const ok = new Builder().add('c', read(null)).commit('c', 'g', 2).add('c#2', read(2))
    .commit('c#2', 'g', 4).add('c#3', read(6)).finalOffsets([['g', 6]]).check();
  t.ok(ok.valid, formatReport(ok));
  const lower = new Builder().commit('c', 'g', 2).commit('c', 'g', 4).add('c#2', read(2))
    .commit('c#2', 'g', 5).finalOffsets([['g', 5]]).check();
  t.same(nonZero(lower), { lostCommits: 1 }, 'a lower read, even if later commits pass it');
  t.match(lower.anomalies[0], { kind: 'lost-commit', reason: 'read', reader: 'c#2', final: 2,
    acked: { offset: 4 } });
  t.match(formatReport(lower), /then c#2 read committed offset 2/);
  const none = new Builder().commit('c', 'g', 2).add('c#2', read(null))
    .finalOffsets([['g', 2]]).check();
  t.same(nonZero(none), { lostCommits: 1 }, 'no committed offset after an ack');
  t.end();
});

t.test('creates: an acknowledged topic must be listed at the end; its records count there',
  (t) => {
    const clean = new Builder().create('x', 'one').create('x', 'two', 'info')
      .create('x', 'three', 'fail').create('x', 'four', null).finalTopics(['one', 'two'])
      .check();
    t.ok(clean.valid, formatReport(clean));
    t.match(clean.stats, { creates: 4, createsAcked: 1, createsFailed: 1,
      createsIndeterminate: 2 });
    const lost = new Builder().create('x', 'one').create('x', 't').acked('p', 'a', 0)
      .commit('c', 'g', 1).finalTopics(['one']).finalOffsets([['g', null]]).check();
    t.same(nonZero(lost), { lostTopics: 1 }, 'no lost write or commit for the lost topic');
    t.match(lost.anomalies[0], { kind: 'lost-topic', topic: 't', sendsAcked: 1,
      commitsAcked: 1 });
    t.equal(lost.stats.sendsInLostTopics, 1);
    t.match(formatReport(lost), /topic t: create acknowledged to x .*absent from the final/);
    const unrecorded = new Builder().acked('p', 'a', 0).finalTopics([]).check();
    t.same(nonZero(unrecorded), { lostWrites: 1, malformed: 1 },
      'a topic without an acknowledged create is still judged record by record');
    t.end();
  });

t.test('metadata recorder rules: completions, finals, names', (t) => {
  const cases: [string, Builder][] = [
    ['commit-ok without an invoke', new Builder().add('c', { kind: 'commit-ok', group: 'g',
      topic: 't', partition: 0, offset: 1 }).finalOffsets([['g', 1]])],
    ['commit by another process', new Builder().add('c', { kind: 'commit-invoke', group: 'g',
      topic: 't', partition: 0, offset: 1 }).add('d', { kind: 'commit-ok', group: 'g',
      topic: 't', partition: 0, offset: 1 }).finalOffsets([['g', 1]])],
    ['no final-offsets', new Builder().commit('c', 'g', 1)],
    ['a key missing from final-offsets', new Builder().commit('c', 'g', 1)
      .finalOffsets([['h', 1]])],
    ['no final-topics', new Builder().create('x', 'one')],
    ['a topic created twice', new Builder().create('x', 'one').create('y', 'one', 'info')
      .finalTopics(['one'])],
    ['two final-topics', new Builder().finalTopics([]).finalTopics([])],
  ];
  for (const [name, builder] of cases) {
    const result = builder.check();
    t.ok(result.counts.malformed > 0 && !result.valid, `${name}: malformed`);
  }
  t.end();
});

/** Appends a correct metadata workload to a history: committers (one per group at a time,
 *  offsets that only grow) and topic creators, with every outcome, then the finals. */
function withMetadata(events: HistoryEvent[], prng: Prng): HistoryEvent[] {
  const history = new Builder();
  const outcomes = ['ok', 'ok', 'fail', 'info', null] as const;
  const outcomeOf = (): (typeof outcomes)[number] => outcomes[prng.int(outcomes.length)]!;
  const finals: [string, number | null][] = [];
  for (let group = 0; group < 4; group += 1) {
    let offset = 0;
    let final: number | null = null;
    for (let commit = 0; commit < 20; commit += 1) {
      offset += prng.int(5);
      const outcome = outcomeOf();
      history.commit(`committer-${group}`, `g${group}`, offset, outcome);
      if (outcome === 'ok' || (outcome !== 'fail' && prng.chance(0.5))) final = offset;
    }
    finals.push([`g${group}`, final]);
  }
  const listed = ['a', 'b'];
  history.create('setup', 'a').create('setup', 'b');
  for (let n = 0; n < 30; n += 1) {
    const outcome = outcomeOf();
    history.create('creator', `topic-${n}`, outcome);
    if (outcome === 'ok' || (outcome !== 'fail' && prng.chance(0.5))) listed.push(`topic-${n}`);
  }
  history.finalOffsets(finals).finalTopics(listed);
  return [...events, ...history.events()];
}

type FinalOffsetsEvent = Extract<HistoryEvent, { kind: 'final-offsets' }>;
type FinalTopicsEvent = Extract<HistoryEvent, { kind: 'final-topics' }>;
const ackedCommits = (events: HistoryEvent[]): Extract<HistoryEvent, { kind: 'commit-ok' }>[] =>
  events.filter((e): e is Extract<HistoryEvent, { kind: 'commit-ok' }> => e.kind === 'commit-ok');
const finalOffsetsOf = (events: HistoryEvent[]): FinalOffsetsEvent =>
  events.find((e): e is FinalOffsetsEvent => e.kind === 'final-offsets')!;
const finalTopicsOf = (events: HistoryEvent[]): FinalTopicsEvent =>
  events.find((e): e is FinalTopicsEvent => e.kind === 'final-topics')!;

const METADATA_MUTATIONS: Mutation[] = [
  { name: 'lower a final offset below its highest ack', kind: 'lost-commit', alsoAllowed: [],
    apply: (events, prng) => {
      const ok = ackedCommits(events)[prng.int(ackedCommits(events).length)];
      const entry = finalOffsetsOf(events).offsets.find((o) => o.group === ok?.group);
      if (ok === undefined || entry === undefined) return false;
      const highest = Math.max(...ackedCommits(events).filter((c) => c.group === ok.group)
        .map((c) => c.offset));
      entry.offset = highest === 0 ? null : highest - 1;
      return true;
    } },
  { name: 'forget a committed group', kind: 'lost-commit', alsoAllowed: [],
    apply: (events, prng) => {
      const ok = ackedCommits(events)[prng.int(ackedCommits(events).length)];
      const entry = finalOffsetsOf(events).offsets.find((o) => o.group === ok?.group);
      if (entry === undefined) return false;
      entry.offset = null;
      return true;
    } },
  { name: 'drop an acknowledged created topic', kind: 'lost-topic', alsoAllowed: [],
    apply: (events, prng) => {
      const oks = events.filter((e) => e.kind === 'create-ok' && e.topic.startsWith('topic-'));
      const ok = oks[prng.int(oks.length)];
      if (ok === undefined || ok.kind !== 'create-ok') return false;
      const final = finalTopicsOf(events);
      final.topics = final.topics.filter((topic) => topic !== ok.topic);
      return true;
    } },
  { name: 'drop a data topic (its records count in lost-topic)', kind: 'lost-topic',
    alsoAllowed: [], apply: (events) => {
      const final = finalTopicsOf(events);
      final.topics = final.topics.filter((topic) => topic !== 'b');
      return oksOf(events).some((ok) => ok.topic === 'b');
    } },
];

for (const seed of seeds()) {
  t.test(`metadata: valid history checks clean, mutations caught (seed ${seed}; ` +
    `PMQ_SEED=${seed})`, (t) => {
    const events = withMetadata(validHistory(seed).events, prngFrom(seed ^ 0x3e7a));
    const clean = checkHistory(events);
    t.ok(clean.valid, formatReport(clean));
    t.ok(clean.stats.commitsAcked > 10 && clean.stats.createsAcked > 5 &&
      clean.stats.commitsFailed > 0 && clean.stats.createsIndeterminate > 0, 'it did things');
    expectEachCaught(t, events, METADATA_MUTATIONS, prngFrom(seed ^ 0x5eed));
    t.end();
  });
}
