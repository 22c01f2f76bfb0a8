// VOPR in miniature: one sequencer driven by a seeded random workload against a simulated
// storage node that checks every persist request the way the region store would, and a
// reference model of what must hold. Producers reserve random sizes, write and commit out of
// order, die before or after writing (their reservations expire and are filled), or commit
// too late; persists complete late, fail, and their replies are repeated and replayed stale;
// small segments roll often; the broker restarts now and then (restore from the durable
// segment tables, every reservation in flight lost). After every step the sequencer's state is
// compared with storage; at the end every acknowledged batch is durable, once, at offsets no
// other batch has. The seed is in the test name; PMQ_SEED=<seed> replays one run.
import t from 'tap';

import {
  type Ack, type Fill, type PersistRequest, type Reservation, type RestoredSegment, Sequencer,
  type SequencerConfig, type Watermark,
} from '../../broker-node/sequencer.js';
import { type Prng, prngFrom } from '../fixtures/record-batch-random.js';
import { recordBatchSizeReachable } from '../../broker-node/batch-size.js';

const SEGMENT = 64 * 1024;
const TIMEOUT_MS = 200;
const RESERVATIONS_MAX = 40;
const STEPS = 4000;

interface StoredBatch {
  position: number; bytes: number; baseOffset: number; records: number; tag: string;
  fill: boolean;
}
interface StoredSegment {
  id: string; chainPosition: number; baseOffset: number; sizeBytes: number;
  watermark: Watermark; sealed: boolean; content: StoredBatch[];
}
type Fate = 'commit' | 'slow' | 'die-before-write' | 'die-after-write';
interface Producer { name: string; reservation: Reservation; tag: string; fate: Fate;
  actAt: number }

const tagOf = (r: { epoch: number; id: number }): string => `${r.epoch}.${r.id}`;

class Failure extends Error {}
function check(condition: boolean, what: string, fields: object = {}): asserts condition {
  if (!condition) throw new Failure(`${what} ${JSON.stringify(fields)}`);
}

class Simulation {
  readonly prng: Prng;
  now = 0;
  epoch = 1;
  sequencer: Sequencer;
  readonly storage = new Map<string, StoredSegment>();
  segmentCount = 0;
  producerCount = 0;
  readonly producers = new Map<string, Producer>();
  readonly revoked = new Set<string>();
  readonly committed = new Set<string>();
  readonly fillTags = new Set<string>();
  readonly fillWritten = new Set<string>();
  fillsPending: Fill[] = [];
  readonly acked = new Map<string, Ack>();
  persistInFlight: PersistRequest | null = null;
  readonly replies: PersistRequest[] = [];
  allocation: { chainPosition: number; baseOffset: number } | null = null;
  offsetExpected = 0;
  readonly positionExpected = new Map<string, number>();
  retryPool: Reservation[] = [];
  staleRefs: Reservation[] = [];
  readonly stats = { reserved: 0, acked: 0, filled: 0, lateRefused: 0, busy: 0, tooLarge: 0,
    restores: 0, segments: 0, orphans: 0, persists: 0, staleReplies: 0,
    sealRaces: 0 };

  constructor(seed: number) {
    this.prng = prngFrom(seed);
    this.sequencer = Sequencer.create(this.config());
  }

  config(): SequencerConfig {
    return { epoch: this.epoch, segmentSizeBytes: SEGMENT, reservationTimeoutMs: TIMEOUT_MS,
      reservationsMax: RESERVATIONS_MAX };
  }

  chain(): StoredSegment[] {
    return [...this.storage.values()].sort((a, b) => a.chainPosition - b.chainPosition);
  }

  /** The offset after the durable prefix of storage: sealed segments, then the first open. */
  storagePrefixEnd(): number {
    let end = 0;
    for (const segment of this.chain()) {
      end = segment.watermark.offsetLast + 1;
      if (!segment.sealed) break;
    }
    return end;
  }

  step(): void {
    this.now += this.prng.int(20);
    const roll = this.prng.int(1000);
    if (roll < 300) this.reserve();
    else if (roll < 550) {
      this.producerAct(this.pickProducer());
      this.producerAct(this.pickProducer());
    }
    else if (roll < 650) this.completePersist();
    else if (roll < 690) this.failPersist();
    else if (roll < 770) this.expire();
    else if (roll < 850) this.writeFill();
    else if (roll < 910) this.completeAllocation();
    else if (roll < 940) this.replayStale();
    else if (roll < 970) this.retryCommit();
    else if (roll < 997) this.staleEpochCommit();
    else this.restart();
    this.checkState();
  }

  reserve(): void {
    const records = 1 + this.prng.int(20);
    const huge = this.prng.chance(0.01);
    const bytes = huge ? SEGMENT + 1 + this.prng.int(1000) : 61 + 7 * records + this.prng.int(6000);
    const name = `p${this.producerCount++}`;
    let result;
    try {
      result = this.sequencer.reserve({ bytes, records, producer: name, now: this.now });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'PMQ_ERR_BUSY') {
        check(this.sequencer.reservationsInFlight() >= RESERVATIONS_MAX, 'busy only when full');
        this.stats.busy += 1;
        return;
      }
      if (code === 'PMQ_ERR_RESERVATION_INVALID' && !recordBatchSizeReachable(bytes, records)) {
        return; // no batch of that many records has exactly that size: nothing could fill it
      }
      check(code === 'PMQ_ERR_RECORD_TOO_LARGE' && huge, 'unexpected reserve error', { code });
      this.stats.tooLarge += 1;
      return;
    }
    check(!huge, 'a batch larger than a segment was placed');
    if (result.kind === 'need-segment') {
      const last = this.chain().at(-1);
      const want = { chainPosition: last === undefined ? 0 : last.chainPosition + 1,
        baseOffset: this.offsetExpected };
      check(result.chainPosition === want.chainPosition && result.baseOffset === want.baseOffset,
        'need-segment continues the chain', { result, want });
      this.allocation = want;
      this.issue(result.persist);
      return;
    }
    this.placed(result.reservation, name);
  }

  placed(r: Reservation, name: string): void {
    const segment = this.storage.get(r.segmentId);
    check(segment !== undefined && !segment.sealed, 'placed in a live unsealed segment', r);
    check(segment === this.chain().at(-1), 'placed in the last segment of the chain', r);
    check(r.baseOffset === this.offsetExpected, 'offsets dense', { r, want: this.offsetExpected });
    check(r.position === this.positionExpected.get(r.segmentId), 'positions contiguous', r);
    check(r.position >= segment.watermark.position, 'never over durable bytes', r);
    check(r.position + r.bytes <= segment.sizeBytes, 'inside the segment', r);
    check(r.epoch === this.epoch, 'epoch', r);
    this.offsetExpected += r.records;
    this.positionExpected.set(r.segmentId, r.position + r.bytes);
    const roll = this.prng.int(100);
    const fate: Fate = roll < 90 ? 'commit' : roll < 94 ? 'slow'
      : roll < 97 ? 'die-after-write' : 'die-before-write';
    const actAt = this.now + (fate === 'slow' ? 150 + this.prng.int(250) : this.prng.int(60));
    const tag = tagOf(r);
    this.producers.set(tag, { name, reservation: r, tag, fate, actAt });
    this.stats.reserved += 1;
  }

  pickProducer(): Producer | undefined {
    const ready = [...this.producers.values()].filter((p) => p.actAt <= this.now);
    return ready[this.prng.int(ready.length)];
  }

  producerAct(producer: Producer | undefined): void {
    if (producer === undefined) return;
    this.producers.delete(producer.tag);
    if (producer.fate === 'die-before-write') return;
    const r = producer.reservation;
    if (!this.revoked.has(producer.tag)) {
      this.write(r.segmentId, { position: r.position, bytes: r.bytes, baseOffset: r.baseOffset,
        records: r.records, tag: producer.tag, fill: false });
    }
    if (producer.fate === 'die-after-write') return;
    const result = this.sequencer.commit(r, this.now);
    if (result.kind === 'committed') {
      check(!this.fillTags.has(producer.tag), 'commit accepted after expiry', r);
      this.committed.add(producer.tag);
      if (this.retryPool.length < 200) this.retryPool.push(r);
      this.issue(result.persist);
      return;
    }
    check(result.kind === 'refused', 'a first commit is never durable already', result);
    check(this.fillTags.has(producer.tag) && result.revoke === producer.name,
      'refused only after expiry, naming the producer to revoke', { r, result });
    this.stats.lateRefused += 1;
  }

  /** A write lands in storage; only above the durable watermark, never into a sealed segment. */
  write(segmentId: string, batch: StoredBatch): void {
    const segment = this.storage.get(segmentId);
    check(segment !== undefined && !segment.sealed, 'write into a live unsealed segment', batch);
    check(batch.position >= segment.watermark.position, 'write above the watermark', batch);
    const end = batch.position + batch.bytes;
    segment.content = segment.content.filter((b) => b.position + b.bytes <= batch.position ||
      b.position >= end);
    segment.content.push(batch);
    segment.content.sort((a, b) => a.position - b.position);
  }

  /** What a storage node would check, plus what the reference model knows is written. */
  checkPersist(request: PersistRequest): StoredSegment {
    const segment = this.storage.get(request.segmentId);
    check(segment !== undefined && !segment.sealed, 'persist a live unsealed segment', request);
    check(this.chain().every((s) => s.chainPosition >= segment.chainPosition || s.sealed),
      'earlier segments are sealed before a later one persists', request);
    const { position, offsetLast } = segment.watermark;
    check(request.positionEnd >= position && request.positionEnd <= segment.sizeBytes,
      'persist within the segment, not backwards', { request, position });
    let at = position;
    let offset = offsetLast;
    for (const batch of segment.content) {
      if (batch.position + batch.bytes <= position || batch.position >= request.positionEnd) {
        continue;
      }
      check(batch.position === at && batch.baseOffset === offset + 1, 'persisted bytes tile',
        { batch, at, offset });
      check(batch.fill ? this.fillWritten.has(batch.tag) : this.committed.has(batch.tag),
        'only committed batches and written fills become durable', batch);
      at += batch.bytes;
      offset += batch.records;
    }
    check(at === request.positionEnd && offset === request.offsetLast, 'persist ends on the ' +
      'last written batch', { request, at, offset });
    return segment;
  }

  issue(request: PersistRequest | null): void {
    if (request === null) return;
    check(this.persistInFlight === null, 'one persist at a time', { request });
    this.checkPersist(request);
    this.persistInFlight = request;
    this.stats.persists += 1;
    // Adversary: the last reply for this segment repeats while its seal is in flight.
    const last = this.replies.at(-1);
    if (request.seal && last?.segmentId === request.segmentId) {
      if (last.positionEnd === request.positionEnd) this.stats.sealRaces += 1;
      this.expectIgnored(last);
    }
  }

  applyAtStorage(request: PersistRequest): void {
    const segment = this.checkPersist(request);
    segment.watermark = { position: request.positionEnd, offsetLast: request.offsetLast };
    segment.sealed = request.seal;
  }

  completePersist(): void {
    const request = this.persistInFlight;
    if (request === null) return;
    this.persistInFlight = null;
    this.applyAtStorage(request);
    this.replies.push(request);
    const result = this.sequencer.persisted(request);
    check(result.sealed === (request.seal ? request.segmentId : null), 'sealed reported', result);
    for (const ack of result.acks) this.checkAck(ack);
    for (const ref of result.filled) {
      check(this.fillTags.has(tagOf(ref)), 'filled names a fill', ref);
      this.stats.filled += 1;
    }
    this.issue(result.persist);
    if (this.prng.chance(0.1)) this.expectIgnored(request);
  }

  checkAck(ack: Ack): void {
    const tag = tagOf(ack);
    check(!this.acked.has(tag), 'acknowledged twice', ack);
    check(!this.fillTags.has(tag) && this.committed.has(tag), 'ack only committed, unfilled', ack);
    const segment = this.storage.get(ack.segmentId);
    check(segment !== undefined && ack.position + ack.bytes <= segment.watermark.position,
      'ack only under the durable watermark', ack);
    check(ack.baseOffset + ack.records <= this.storagePrefixEnd(), 'ack inside durable prefix',
      ack);
    this.acked.set(tag, ack);
    this.stats.acked += 1;
  }

  expectIgnored(request: PersistRequest): void {
    const result = this.sequencer.persisted(request);
    check(result.acks.length === 0 && result.filled.length === 0 && result.persist === null &&
      result.sealed === null, 'a repeated or stale reply changes nothing', request);
    this.stats.staleReplies += 1;
  }

  failPersist(): void {
    const request = this.persistInFlight;
    if (request === null) return;
    this.persistInFlight = null;
    const result = this.sequencer.persistFailed(request);
    check(result.persist !== null && result.persist.positionEnd >= request.positionEnd,
      'a failed persist is issued again', { request, result });
    this.issue(result.persist);
  }

  expire(): void {
    for (const fill of this.sequencer.expire(this.now).fills) {
      const tag = tagOf(fill.ref);
      check(!this.committed.has(tag) && !this.fillTags.has(tag), 'expire uncommitted once', fill);
      this.revoked.add(tag);
      this.fillTags.add(tag);
      this.fillsPending.push(fill);
    }
  }

  writeFill(): void {
    const index = this.prng.int(this.fillsPending.length);
    const fill = this.fillsPending[index];
    if (fill === undefined) return;
    this.fillsPending.splice(index, 1);
    const tag = tagOf(fill.ref);
    this.write(fill.segmentId, { position: fill.position, bytes: fill.bytes,
      baseOffset: fill.baseOffset, records: fill.records, tag, fill: true });
    this.fillWritten.add(tag);
    this.issue(this.sequencer.fillWritten(fill.ref).persist);
  }

  allocateAtStorage(want: { chainPosition: number; baseOffset: number }): StoredSegment {
    check(this.chain().every((s) => s.chainPosition !== want.chainPosition),
      'chain place is free', want);
    const segment: StoredSegment = { id: `seg${this.segmentCount++}`, ...want, sizeBytes: SEGMENT,
      watermark: { position: 0, offsetLast: want.baseOffset - 1 }, sealed: false, content: [] };
    this.storage.set(segment.id, segment);
    this.stats.segments += 1;
    return segment;
  }

  completeAllocation(): void {
    if (this.allocation === null) return;
    const segment = this.allocateAtStorage(this.allocation);
    this.allocation = null;
    this.sequencer.segmentAdded({ segmentId: segment.id, chainPosition: segment.chainPosition,
      baseOffset: segment.baseOffset, sizeBytes: segment.sizeBytes });
    this.positionExpected.set(segment.id, 0);
  }

  replayStale(): void {
    // Recent replies half the time: a repeat racing the next request is the dangerous kind.
    const count = this.replies.length;
    const index = this.prng.chance(0.5) ? count - 1 - this.prng.int(3) : this.prng.int(count);
    const request = this.replies[index];
    if (request !== undefined) this.expectIgnored(request);
  }

  retryCommit(): void {
    const r = this.retryPool[this.prng.int(this.retryPool.length)];
    if (r === undefined) return;
    const result = this.sequencer.commit(r, this.now);
    const ack = this.acked.get(tagOf(r));
    if (ack === undefined) {
      check(result.kind === 'committed' && result.persist === null, 'retry before ack', result);
    } else {
      check(result.kind === 'durable' && result.ack.baseOffset === ack.baseOffset,
        'retry after ack answers the ack', result);
    }
  }

  staleEpochCommit(): void {
    const r = this.staleRefs[this.prng.int(this.staleRefs.length)];
    if (r === undefined) return;
    const result = this.sequencer.commit(r, this.now);
    check(result.kind === 'refused' && result.revoke === null, 'old epoch refused', result);
  }

  /** The broker crashes: what was in flight at storage lands or not; then recovery. */
  restart(): void {
    if (this.persistInFlight !== null && this.prng.chance(0.5)) {
      this.applyAtStorage(this.persistInFlight);
    }
    if (this.allocation !== null && this.prng.chance(0.5)) this.allocateAtStorage(this.allocation);
    this.persistInFlight = null;
    this.allocation = null;
    this.fillsPending = [];
    for (const p of this.producers.values()) {
      if (this.staleRefs.length < 100) this.staleRefs.push(p.reservation);
    }
    this.staleRefs.push(...this.retryPool.slice(0, 20));
    this.producers.clear();
    this.retryPool = [];
    this.epoch += 1;
    const restored: RestoredSegment[] = this.chain().map((s) => ({ segmentId: s.id,
      chainPosition: s.chainPosition, baseOffset: s.baseOffset, sizeBytes: s.sizeBytes,
      watermark: s.watermark, sealed: s.sealed }));
    const { sequencer, orphans } = Sequencer.restore(this.config(), restored);
    for (const id of orphans) {
      const orphan = this.storage.get(id);
      check(orphan !== undefined && !orphan.sealed && orphan.watermark.position === 0,
        'orphans are empty', { id });
      this.storage.delete(id);
      this.stats.orphans += 1;
    }
    this.sequencer = sequencer;
    this.offsetExpected = this.storagePrefixEnd();
    for (const s of this.storage.values()) this.positionExpected.set(s.id, s.watermark.position);
    for (const ack of this.acked.values()) this.checkDurable(ack);
    this.stats.restores += 1;
  }

  checkDurable(ack: Ack): void {
    const segment = this.storage.get(ack.segmentId);
    const batch = segment?.content.find((b) => b.position === ack.position);
    check(segment !== undefined && batch !== undefined && batch.tag === tagOf(ack) &&
      batch.baseOffset === ack.baseOffset && batch.records === ack.records &&
      ack.position + ack.bytes <= segment.watermark.position,
    'an acknowledged batch stays durable and intact', ack);
  }

  checkState(): void {
    const seq = this.sequencer;
    check(seq.highWatermark() === this.storagePrefixEnd(), 'high watermark is the durable prefix',
      { hw: seq.highWatermark(), storage: this.storagePrefixEnd() });
    check(seq.offsetNext() === this.offsetExpected, 'offsetNext', { got: seq.offsetNext() });
    check(seq.reservationsInFlight() <= RESERVATIONS_MAX, 'in-flight limit');
    for (const view of seq.segments()) {
      const stored = this.storage.get(view.segmentId);
      check(stored !== undefined, 'sequencer segment exists in storage', view);
      check(view.durable.position === stored.watermark.position &&
        view.durable.offsetLast === stored.watermark.offsetLast &&
        (view.state === 'sealed') === stored.sealed, 'durable state matches storage', view);
      check(view.durable.position <= view.written.position &&
        view.written.position <= view.positionNext && view.positionNext <= view.sizeBytes,
      'durable ≤ written ≤ handed out ≤ size', view);
    }
  }

  /** Producers that will commit do; the rest expire and are filled; persists drain. */
  drain(): void {
    for (let round = 0; round < 1000; round += 1) {
      this.now += 50;
      for (const p of [...this.producers.values()].sort((a, b) => a.actAt - b.actAt)) {
        if (p.actAt <= this.now) this.producerAct(p);
      }
      this.expire();
      while (this.fillsPending.length > 0) this.writeFill();
      while (this.persistInFlight !== null) this.completePersist();
      this.checkState();
      if (this.producers.size === 0 && this.sequencer.reservationsInFlight() === 0) return;
    }
    check(false, 'drain did not settle', { inFlight: this.sequencer.reservationsInFlight() });
  }

  /** Walks storage: durable batches tile every segment and the offsets, acks are among them. */
  checkFinal(): void {
    let offset = this.chain()[0]?.baseOffset ?? 0;
    const durableTags = new Set<string>();
    for (const segment of this.chain()) {
      check(segment.baseOffset === offset, 'segments follow in offsets', { id: segment.id });
      let at = 0;
      for (const batch of segment.content) {
        if (batch.position >= segment.watermark.position) break;
        check(batch.position === at && batch.baseOffset === offset, 'durable batches tile', batch);
        check(!durableTags.has(batch.tag), 'a batch durable once', batch);
        durableTags.add(batch.tag);
        at += batch.bytes;
        offset += batch.records;
      }
      check(at === segment.watermark.position && offset === segment.watermark.offsetLast + 1,
        'watermark on the last durable batch', { id: segment.id });
    }
    check(offset === this.sequencer.highWatermark(), 'durable offsets end at the high watermark');
    for (const ack of this.acked.values()) {
      this.checkDurable(ack);
      check(durableTags.has(tagOf(ack)) && !this.fillTags.has(tagOf(ack)), 'ack durable', ack);
    }
  }
}

function seeds(): number[] {
  const fixed = process.env.PMQ_SEED ?? process.env.PMQ_TEST_SEED;
  if (fixed !== undefined) return [Number(fixed)];
  return Array.from({ length: 6 }, () => Math.floor(Math.random() * 0x1_0000_0000));
}

for (const seed of seeds()) {
  t.test(`sequencer random workload (seed ${seed}; replay with PMQ_SEED=${seed})`, (t) => {
    const simulation = new Simulation(seed);
    let step = 0;
    try {
      for (; step < STEPS; step += 1) simulation.step();
      simulation.drain();
      simulation.checkFinal();
    } catch (error) {
      t.fail(`step ${step}: ${(error as Error).message}`);
      t.end();
      return;
    }
    const { stats } = simulation;
    t.ok(stats.acked > 0 && stats.filled > 0 && stats.segments > 2, 'the workload did things');
    t.comment(JSON.stringify(stats));
    t.end();
  });
}
