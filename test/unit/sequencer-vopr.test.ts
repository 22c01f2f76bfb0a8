// VOPR in miniature: one sequencer driven by a seeded random workload against a simulated
// storage node that checks every persist request the way the region store would, and a
// reference model of what the sequencer must answer. Six producers lease write ranges, plan
// batches in them and write and append those in random order (some late, some never: written
// and abandoned, or skipped), repeat appends, send wild batches (outside the lease,
// overlapping, leaving gaps of 1..67 bytes), release their leases or let them expire; at the
// in-flight limit only the batch that unblocks the durable prefix is taken; segments fill up or are
// sealed on purpose (their leases closed, the holes filled) and roll; persists complete late,
// fail, and their replies are repeated and replayed stale (with an adversary for the seal
// race); the broker restarts now and then (restore from the durable segment tables, every
// lease in flight lost). After every step the sequencer's answers and state are compared with
// the model and storage: refusals, lease placement, fills exactly the gaps, offsets dense and
// following positions, one patch per piece with the offset its ack later carries, each
// appended batch acknowledged exactly once in offset order, fills never, the durable prefix
// never moving back. Invariant aborts fail the seed at their step. At the end (every lease
// closed, every persist done) every batch appended since the last restart is acknowledged and
// the durable pieces tile the chain. The seed is in the test name; PMQ_SEED=<seed> replays one
// run.
import t from 'tap';

import {
  type Ack, copyPersistRequest, FILL_BYTES_MIN, type Fill, fillRecords, type LeaseResult,
  type PersistRequest, type ReservationRef, type RestoredSegment, Sequencer, type SequencerConfig,
  type Watermark,
} from '../../broker-node/sequencer.js';
import { setFatalSink } from '../../common/invariant.js';
import { type Prng, prngFrom } from '../fixtures/record-batch-random.js';
import {
  recordBatchSizeBytesMin, recordBatchSizeReachable,
} from '../../common/record-batch/batch-size.js';

const SEGMENT = 64 * 1024;
const TIMEOUT_MS = 300;
/** A lease held back others this long without an append is cut (below TIMEOUT_MS). */
const BLOCKING_IDLE_MS = 60;
/** Leases given while another producer holds one are at most this (or their batch). */
const CONTENDED_BYTES = 2048;
const RESERVATIONS_MAX = 40;
const STEPS = 4000;
const PRODUCERS = 6;
const LEASES_PER_PRODUCER = 2;
const BATCH_BYTES_MAX = 0x7fff_ffff;

interface StoredBatch {
  position: number; bytes: number; records: number; fill: boolean;
  /** Who wrote these bytes (a producer's write, or a fill). */
  writeId: string;
  /** The batch's ref once appended (a fill's at once); null while only written. */
  ref: string | null;
  /** Patched by a persist; null until then. */
  baseOffset: number | null;
}
type ModelState = 'active' | 'sealing' | 'sealed';
interface StoredSegment {
  id: string; chainPosition: number; baseOffset: number; sizeBytes: number;
  watermark: Watermark; sealed: boolean; content: StoredBatch[];
  /** The model of the sequencer's segment: how far leases went, and its state. */
  positionNext: number; state: ModelState;
}
type Fate = 'append' | 'late' | 'skip' | 'write-only';
interface Planned { position: number; bytes: number; records: number; fate: Fate;
  writeId: string | null }
interface AppendedBatch { ref: string; bytes: number; records: number }
interface SimLease {
  ref: ReservationRef; producer: string; segmentId: string; position: number; end: number;
  plan: Planned[]; appended: Map<number, AppendedBatch>; activeAt: number;
  /** Open in the sequencer (the model's view; the producer does not know). */
  open: boolean; releaseWhenDone: boolean;
}
interface Producer { name: string; leases: SimLease[] }
type Expected =
  | { kind: 'expired' } | { kind: 'invalid' } | { kind: 'again'; batch: AppendedBatch }
  | { kind: 'busy' } | { kind: 'appended' };

const tagOf = (r: ReservationRef): string => `${r.epoch}.${r.id}`;
const gapFillable = (bytes: number): boolean => bytes === 0 || bytes >= FILL_BYTES_MIN;

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
  writeCount = 0;
  readonly producers: Producer[] = [];
  /** Every open lease of this epoch, by ref tag. */
  readonly leases = new Map<string, SimLease>();
  /** Appended since the last restart (their pieces live in this sequencer), with their lease. */
  readonly appendedNow = new Map<string, SimLease>();
  readonly fillTags = new Set<string>();
  readonly fillWrittenNow = new Set<string>();
  /** Appended batches and fills of this epoch not yet reported durable. */
  readonly pendingPieces = new Set<string>();
  fillsPending: Fill[] = [];
  readonly acked = new Map<string, Ack>();
  ackOffsetLast = -1;
  /** The baseOffset each persist patched at a ref (never two different ones). */
  readonly patched = new Map<string, number>();
  persistInFlight: PersistRequest | null = null;
  readonly replies: PersistRequest[] = [];
  allocation: { chainPosition: number; baseOffset: number } | null = null;
  highWatermarkLast = 0;
  retryPool: { lease: SimLease; position: number }[] = [];
  staleLeases: SimLease[] = [];
  readonly stats = { leases: 0, appended: 0, appendedBytes: 0, acked: 0, again: 0, fills: 0,
    fillBytes: 0, fillBytesBy: {} as Record<string, number>, filled: 0, wild: 0, invalid: 0,
    appendBusy: 0, expiredRefusals: 0, expiredLeases: 0, released: 0, busy: 0, tooLarge: 0,
    waits: 0, givenBack: 0, segments: 0, restores: 0, orphans: 0, persists: 0, failedPersists: 0,
    staleReplies: 0, sealRaces: 0, contended: 0, blockingCuts: 0, ending: 0 };

  constructor(seed: number) {
    this.prng = prngFrom(seed);
    this.sequencer = Sequencer.create(this.config());
    for (let i = 0; i < PRODUCERS; i += 1) this.producers.push({ name: `p${i}`, leases: [] });
  }

  config(): SequencerConfig {
    return { epoch: this.epoch, segmentSizeBytes: SEGMENT, reservationTimeoutMs: TIMEOUT_MS,
      leaseFraction: 1, leaseContendedBytes: CONTENDED_BYTES,
      leaseBlockingIdleMs: BLOCKING_IDLE_MS, reservationsMax: RESERVATIONS_MAX };
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

  live(batch: StoredBatch): boolean {
    return batch.ref !== null &&
      (this.appendedNow.has(batch.ref) || this.fillWrittenNow.has(batch.ref));
  }

  /** How far a segment is written without a gap, and the offsets that gives (the model). */
  writtenPrefix(segment: StoredSegment): Watermark {
    let { position, offsetLast } = segment.watermark;
    for (const batch of segment.content) {
      if (batch.position + batch.bytes <= segment.watermark.position) continue;
      if (batch.position !== position || !this.live(batch)) break;
      position += batch.bytes;
      offsetLast += batch.records;
    }
    return { position, offsetLast };
  }

  inFlightModel(): number {
    return this.leases.size + this.pendingPieces.size;
  }

  step(): void {
    this.now += this.prng.int(20);
    const roll = this.prng.int(1000);
    if (roll < 150) this.leaseAct();
    else if (roll < 550) {
      this.producerAct();
      this.producerAct();
      this.producerAct();
    } else if (roll < 650) this.completePersist();
    else if (roll < 675) this.failPersist();
    else if (roll < 715) this.expire();
    else if (roll < 795) this.writeFill();
    else if (roll < 855) this.completeAllocation();
    else if (roll < 880) this.replayStale();
    else if (roll < 920) this.retryAppend();
    else if (roll < 970) this.wildAppend();
    else if (roll < 980) this.giveUp();
    else if (roll < 990) this.staleEpochAppend();
    else if (roll < 999) this.sealNow();
    else this.restart();
    this.checkState();
    this.checkEnding();
  }

  // --- leases ---------------------------------------------------------------------------

  leaseAct(): void {
    const producer = this.producers[this.prng.int(PRODUCERS)]!;
    if (producer.leases.length >= LEASES_PER_PRODUCER) return;
    const roll = this.prng.int(100);
    let bytesMin = FILL_BYTES_MIN + this.prng.int(this.prng.chance(0.8) ? 600 : 4000);
    if (roll === 0) bytesMin = SEGMENT + 1 + this.prng.int(1000);
    else if (roll === 1) bytesMin = this.prng.int(FILL_BYTES_MIN);
    else if (roll === 2) bytesMin += 0.5;
    let bytes = bytesMin + this.prng.int(this.prng.chance(0.9) ? 4000 : 16_000);
    if (roll === 3) bytes = this.prng.int(bytesMin);
    else if (roll === 4) bytes = SEGMENT * 2;
    this.requestLease(producer, bytes, bytesMin);
  }

  /** Asks for a lease and checks the answer against the model (refusal, lease or roll). */
  requestLease(producer: Producer, bytes: number, bytesMin: number): void {
    const request = { bytes, bytesMin, producer: producer.name, now: this.now };
    const last = this.chain().at(-1);
    const limit = Math.min(last?.sizeBytes ?? SEGMENT, BATCH_BYTES_MAX);
    let expectedError: string | null = null;
    if (!Number.isSafeInteger(bytesMin) || bytesMin < FILL_BYTES_MIN ||
        !Number.isSafeInteger(bytes)) {
      expectedError = 'PMQ_ERR_LEASE_INVALID';
    } else if (bytesMin > limit) expectedError = 'PMQ_ERR_RECORD_TOO_LARGE';
    else if (this.inFlightModel() >= RESERVATIONS_MAX) expectedError = 'PMQ_ERR_BUSY';
    let result;
    try {
      result = this.sequencer.lease(request);
    } catch (error) {
      const code = (error as { code?: string }).code;
      check(code === expectedError, 'lease refused as expected', { code, expectedError,
        request });
      if (code === 'PMQ_ERR_BUSY') this.stats.busy += 1;
      if (code === 'PMQ_ERR_RECORD_TOO_LARGE') this.stats.tooLarge += 1;
      return;
    }
    check(expectedError === null, 'lease refused', { expectedError, request, result });
    if (last !== undefined && last.state === 'active' &&
        last.sizeBytes - last.positionNext >= bytesMin) {
      check(result.kind === 'leased', 'a lease where there is room', { result, request });
      const lease = result.lease;
      const contended = [...this.leases.values()].some((l) => l.producer !== producer.name);
      const cap = contended ? Math.max(bytesMin, CONTENDED_BYTES) : Infinity;
      const want = { epoch: this.epoch, segmentId: last.id, position: last.positionNext,
        bytes: restFillable(Math.min(Math.max(bytes, bytesMin), last.sizeBytes - last.positionNext,
          limit, cap), bytesMin) };
      if (contended && want.bytes < Math.min(Math.max(bytes, bytesMin), limit)) {
        this.stats.contended += 1;
      }
      check(lease.epoch === want.epoch && lease.segmentId === want.segmentId &&
        lease.position === want.position && lease.bytes === want.bytes, 'lease placed',
      { lease, want });
      const tag = tagOf(lease);
      check(!this.leases.has(tag) && !this.appendedNow.has(tag) && !this.fillTags.has(tag),
        'a fresh ref', lease);
      last.positionNext += lease.bytes;
      const sim: SimLease = { ref: { epoch: lease.epoch, id: lease.id }, producer: producer.name,
        segmentId: lease.segmentId, position: lease.position, end: lease.position + lease.bytes,
        plan: this.plan(lease.position, lease.position + lease.bytes), appended: new Map(),
        activeAt: this.now, open: true, releaseWhenDone: this.prng.chance(0.8) };
      this.leases.set(tag, sim);
      producer.leases.push(sim);
      this.stats.leases += 1;
      return;
    }
    check(result.kind !== 'leased', 'no lease without room', { result, request });
    this.rolled(result, last);
  }

  /**
   * No room: the last segment seals; its leases stay open (their producers are told to end
   * them) and the seal waits until they are used up, released or expired.
   */
  rolled(result: Exclude<LeaseResult, { kind: 'leased' }>, last: StoredSegment | undefined):
    void {
    if (last !== undefined && last.state === 'active') last.state = 'sealing';
    if (last !== undefined) {
      for (const lease of this.leases.values()) {
        if (lease.segmentId !== last.id) continue;
        check(this.sequencer.leaseEnding(lease.ref), 'a lease in a full segment is ending',
          lease.ref);
      }
    }
    if (result.kind === 'wait') {
      check(last !== undefined && last.state === 'sealing' &&
        this.writtenPrefix(last).position < last.positionNext, 'wait while not fully written',
      { result });
      this.stats.waits += 1;
      this.issue(result.persist);
      return;
    }
    const written = last === undefined ? null : this.writtenPrefix(last);
    check(last === undefined || last.state === 'sealed' ||
      written?.position === last.positionNext, 'need-segment once fully written', { result });
    const want = { chainPosition: last === undefined ? 0 : last.chainPosition + 1,
      baseOffset: written === null ? 0 : written.offsetLast + 1 };
    check(result.chainPosition === want.chainPosition && result.baseOffset === want.baseOffset,
      'need-segment continues the chain', { result, want });
    check(this.allocation === null || (this.allocation.chainPosition === want.chainPosition &&
      this.allocation.baseOffset === want.baseOffset), 'the same allocation until added');
    this.allocation = want;
    this.issue(result.persist);
  }

  /**
   * A producer asks for just more than the room left, so the last segment seals now; half the
   * time after a quiet moment (fills written, persists done), so that it is durable already
   * and the seal goes out at once, at the position of the last reply (the seal race).
   */
  sealNow(): void {
    const last = this.chain().at(-1);
    if (last === undefined || last.state !== 'active' || last.positionNext === 0) return;
    if (this.prng.chance(0.5)) this.quiesce(last);
    const producer = this.producers[this.prng.int(PRODUCERS)]!;
    // Exactly the room now and then: that still fits (the edge of the rule).
    const bytesMin = last.sizeBytes - last.positionNext + (this.prng.chance(0.2) ? 0 : 1);
    if (bytesMin < FILL_BYTES_MIN || producer.leases.length >= LEASES_PER_PRODUCER) return;
    this.requestLease(producer, bytesMin, bytesMin);
  }

  /** The producers of `segment` finish and release their leases; fills and persists done. */
  quiesce(segment: StoredSegment): void {
    for (const producer of this.producers) {
      for (const lease of [...producer.leases]) {
        if (lease.segmentId !== segment.id) continue;
        for (let turns = lease.plan.length * 2; turns > 0 && lease.plan.length > 0 &&
          producer.leases.includes(lease); turns -= 1) {
          this.act(producer, lease, 0);
        }
        this.drop(producer, lease);
        this.release(lease);
      }
    }
    while (this.fillsPending.length > 0) this.writeFill();
    while (this.persistInFlight !== null) this.completePersist();
  }

  /** Batches and gaps tiling [position, end): every gap and batch is 0 or ≥ FILL_BYTES_MIN. */
  plan(position: number, end: number): Planned[] {
    const planned: Planned[] = [];
    let at = position;
    while (at < end) {
      const left = end - at;
      check(left >= FILL_BYTES_MIN, 'plan leaves only fillable rests', { left });
      if (this.prng.chance(0.06)) {
        let gap = this.prng.chance(0.3) ? FILL_BYTES_MIN : FILL_BYTES_MIN + this.prng.int(400);
        if (gap > left - FILL_BYTES_MIN) gap = left;
        at += gap;
        continue;
      }
      let records = 1 + this.prng.int(this.prng.chance(0.8) ? 3 : 30);
      if (recordBatchSizeBytesMin(records) > left) records = 1;
      let bytes = recordBatchSizeBytesMin(records) + this.prng.int(this.prng.chance(0.2) ? 3000 :
        800);
      if (bytes > left - FILL_BYTES_MIN) bytes = left;
      if (!recordBatchSizeReachable(bytes, records)) records = 2;
      const roll = this.prng.int(100);
      const fate: Fate = roll < 70 ? 'append' : roll < 88 ? 'late' : roll < 95 ? 'skip'
        : 'write-only';
      planned.push({ position: at, bytes, records, fate, writeId: null });
      at += bytes;
    }
    return planned;
  }

  /**
   * The model closes a lease: its gaps (never appended) become fills. `revoked` (its grant is
   * gone): a rest at the active segment's end goes back to the segment instead.
   */
  close(lease: SimLease, revoked = false): Fill[] {
    check(lease.open, 'close an open lease', lease.ref);
    lease.open = false;
    this.leases.delete(tagOf(lease.ref));
    const batches = [...lease.appended.entries()].sort((a, b) => a[0] - b[0]);
    let end = lease.end;
    const segment = this.storage.get(lease.segmentId)!;
    if (revoked && segment.state !== 'sealed' && segment.positionNext === lease.end) {
      const last = batches[batches.length - 1];
      end = last === undefined ? lease.position : last[0] + last[1].bytes;
      segment.positionNext = end;
      this.stats.givenBack += 1;
    }
    const gaps: Fill[] = [];
    let at = lease.position;
    for (const [position, batch] of [...batches, [end, null] as const]) {
      if (position > at) {
        gaps.push({ ref: { epoch: 0, id: 0 }, revoke: lease.producer, segmentId: lease.segmentId,
          position: at, bytes: position - at, records: fillRecords(position - at) });
      }
      if (batch !== null) at = position + batch.bytes;
    }
    return gaps;
  }

  /** Compares the fills the sequencer returned with the gaps the model predicted. */
  takeFills(predicted: Fill[], fills: readonly Fill[], what: string): void {
    const key = (f: Fill): string => `${f.segmentId}@${f.position}+${f.bytes}/${f.records}` +
      `:${f.revoke}`;
    const want = predicted.map(key).sort();
    const got = fills.map(key).sort();
    check(JSON.stringify(want) === JSON.stringify(got), `fills are exactly the gaps (${what})`,
      { want, got });
    for (const fill of fills) {
      const tag = tagOf(fill.ref);
      check(recordBatchSizeReachable(fill.bytes, fill.records), 'a control batch of exactly ' +
        'the bytes and records of a fill exists', fill);
      check(fill.ref.epoch === this.epoch && !this.fillTags.has(tag) &&
        !this.appendedNow.has(tag) && !this.leases.has(tag), 'a fill has a fresh ref', fill);
      check(this.sequencer.batchState(fill.ref) === 'unknown', 'a fill is no batch', fill);
      this.fillTags.add(tag);
      this.pendingPieces.add(tag);
      this.fillsPending.push(fill);
      this.stats.fills += 1;
      this.stats.fillBytes += fill.bytes;
      this.stats.fillBytesBy[what] = (this.stats.fillBytesBy[what] ?? 0) + fill.bytes;
    }
  }

  // --- producers ------------------------------------------------------------------------

  producerAct(): void {
    const producer = this.producers[this.prng.int(PRODUCERS)]!;
    const lease = producer.leases[this.prng.int(producer.leases.length)];
    if (lease === undefined) return;
    if (lease.plan.length === 0) {
      this.drop(producer, lease);
      if (lease.releaseWhenDone) this.release(lease);
      return;
    }
    const index = this.prng.int(lease.plan.length);
    this.act(producer, lease, index);
  }

  drop(producer: Producer, lease: SimLease): void {
    const at = producer.leases.indexOf(lease);
    if (at >= 0) producer.leases.splice(at, 1);
  }

  /** The producer carries out planned batch `index` of its lease. */
  act(producer: Producer, lease: SimLease, index: number): void {
    const planned = lease.plan[index]!;
    if (planned.fate === 'skip') {
      lease.plan.splice(index, 1);
      return;
    }
    if (planned.writeId === null && ['appended', 'busy'].includes(
      this.predictAppend(lease, planned.position, planned.bytes, planned.records).kind)) {
      // Only into its own unwritten range: a closed lease's grant is revoked, and nobody
      // writes over a batch already appended.
      planned.writeId = this.write(lease.segmentId, planned.position, planned.bytes,
        planned.records, null);
      if (planned.fate === 'late') return; // appended on a later turn
    }
    lease.plan.splice(index, 1);
    if (planned.fate === 'write-only') return; // written, then the producer died
    const outcome = this.append(lease, planned.position, planned.bytes, planned.records,
      planned.writeId);
    if (outcome === 'busy') lease.plan.push(planned); // again later
    if (outcome === 'refused') this.drop(producer, lease);
  }

  /** What the sequencer must answer to an append, from the model of the lease. */
  predictAppend(lease: SimLease, position: number, bytes: number, records: number): Expected {
    if (lease.ref.epoch !== this.epoch || !lease.open) return { kind: 'expired' };
    const known = lease.appended.get(position);
    if (known !== undefined && known.bytes === bytes && known.records === records) {
      return { kind: 'again', batch: known };
    }
    const countValid = Number.isSafeInteger(records) && records >= 1 && records <= 0x7fff_ffff;
    if (!countValid || !Number.isSafeInteger(bytes) || !recordBatchSizeReachable(bytes, records) ||
        !Number.isSafeInteger(position) || position < lease.position ||
        position + bytes > lease.end) {
      return { kind: 'invalid' };
    }
    let before = lease.position;
    let after = lease.end;
    for (const [at, batch] of lease.appended) {
      if (at < position + bytes && position < at + batch.bytes) return { kind: 'invalid' };
      if (at + batch.bytes <= position) before = Math.max(before, at + batch.bytes);
      else after = Math.min(after, at);
    }
    if (!gapFillable(position - before) || !gapFillable(after - position - bytes)) {
      return { kind: 'invalid' };
    }
    // At the limit only the batch at the written prefix of a segment durable up to it is
    // taken (it unblocks the rest).
    const segment = this.storage.get(lease.segmentId)!;
    const written = this.writtenPrefix(segment).position;
    if (this.inFlightModel() >= RESERVATIONS_MAX &&
        (position !== written || written !== segment.watermark.position)) {
      return { kind: 'busy' };
    }
    return { kind: 'appended' };
  }

  /** Appends and checks the answer against the model. */
  append(lease: SimLease, position: number, bytes: number, records: number,
    writeId: string | null): 'taken' | 'busy' | 'refused' {
    const expected = this.predictAppend(lease, position, bytes, records);
    const result = this.sequencer.append({ lease: lease.ref, position, bytes, records,
      now: this.now });
    const fields = { expected, result, lease: lease.ref, position, bytes, records };
    if (expected.kind === 'expired' || expected.kind === 'invalid') {
      const code = expected.kind === 'expired' ? 'PMQ_ERR_LEASE_EXPIRED' : 'PMQ_ERR_LEASE_INVALID';
      check(result.kind === 'refused' && result.error.code === code &&
        result.error.retriable === (expected.kind === 'expired'), 'append refused', fields);
      check(expected.kind === 'invalid' ||
        this.sequencer.appendedAt(lease.ref, position) === null, 'a closed lease has none');
      if (expected.kind === 'expired') this.stats.expiredRefusals += 1;
      else this.stats.invalid += 1;
      return 'refused';
    }
    if (expected.kind === 'busy') {
      check(result.kind === 'refused' && result.error.code === 'PMQ_ERR_BUSY' &&
        result.error.retriable, 'append refused: busy', fields);
      this.stats.appendBusy += 1;
      return 'busy';
    }
    if (expected.kind === 'again') {
      const ack = this.acked.get(expected.batch.ref) ?? null;
      check(result.kind === 'again' && tagOf(result.ref) === expected.batch.ref &&
        ackJson(result.ack) === ackJson(ack), 'a repeat answers again', fields);
      check(JSON.stringify(this.sequencer.appendedAt(lease.ref, position)) ===
        JSON.stringify(result.ref), 'appendedAt names the batch', fields);
      this.stats.again += 1;
      return 'taken';
    }
    check(result.kind === 'appended', 'append taken', fields);
    const tag = tagOf(result.ref);
    check(result.ref.epoch === this.epoch && !this.appendedNow.has(tag) &&
      !this.fillTags.has(tag) && !this.leases.has(tag), 'a batch has a fresh ref', fields);
    const segment = this.storage.get(lease.segmentId)!;
    const stored = segment.content.find((b) => b.position === position);
    check(writeId !== null && stored !== undefined && stored.writeId === writeId &&
      stored.bytes === bytes, 'an appended batch was written first', fields);
    stored.ref = tag;
    const batch = { ref: tag, bytes, records };
    lease.appended.set(position, batch);
    lease.activeAt = this.now;
    this.appendedNow.set(tag, lease);
    this.pendingPieces.add(tag);
    this.retryPool.push({ lease, position });
    if (this.retryPool.length > 300) this.retryPool.shift();
    check(this.sequencer.batchState(result.ref) === 'written', 'appended is written', fields);
    this.stats.appended += 1;
    this.stats.appendedBytes += bytes;
    this.issue(result.persist);
    return 'taken';
  }

  /**
   * A producer sends a batch nobody planned, anywhere in its lease or just outside, mostly a
   * gap of 0, 1, 67, 68 or 69 bytes from a batch or an edge on either side.
   */
  wildAppend(): void {
    const producer = this.producers[this.prng.int(PRODUCERS)]!;
    const lease = producer.leases[this.prng.int(producer.leases.length)];
    if (lease === undefined) return;
    const gaps = [0, 0, 1, 67, FILL_BYTES_MIN, FILL_BYTES_MIN + 1, this.prng.int(300), -1];
    const gap = (): number => gaps[this.prng.int(gaps.length)]!;
    const anchors = [lease.position, ...[...lease.appended].map(([at, b]) => at + b.bytes)];
    const position = this.prng.chance(0.2)
      ? lease.position + this.prng.int(lease.end - lease.position + 40) - 20
      : anchors[this.prng.int(anchors.length)]! + gap();
    const edges = [lease.end, ...lease.appended.keys()].filter((at) => at > position);
    let bytes = Math.min(...edges) - position - gap();
    if (bytes < FILL_BYTES_MIN || this.prng.chance(0.2)) {
      bytes = FILL_BYTES_MIN - 2 + this.prng.int(400);
    }
    const records = recordBatchSizeReachable(bytes, 1) || bytes < 75 ? 1 : 2;
    let writeId: string | null = null;
    if (this.predictAppend(lease, position, bytes, records).kind === 'appended') {
      writeId = this.write(lease.segmentId, position, bytes, records, null);
      lease.plan = lease.plan.filter((p) => p.position + p.bytes <= position ||
        p.position >= position + bytes);
    }
    this.stats.wild += 1;
    this.append(lease, position, bytes, records, writeId);
  }

  /** A producer resends a batch it appended (its reply was lost). */
  retryAppend(): void {
    const count = this.retryPool.length;
    // Recent ones half the time: their leases are still open, so the answer is `again`.
    const entry = this.retryPool[this.prng.chance(0.5) ? count - 1 - this.prng.int(5)
      : this.prng.int(count)];
    if (entry === undefined) return;
    const batch = entry.lease.appended.get(entry.position)!;
    this.append(entry.lease, entry.position, batch.bytes, batch.records, null);
  }

  /** A producer stops using a lease before its plan is done. */
  giveUp(): void {
    const producer = this.producers[this.prng.int(PRODUCERS)]!;
    const lease = producer.leases[this.prng.int(producer.leases.length)];
    if (lease === undefined) return;
    this.drop(producer, lease);
    this.release(lease);
  }

  release(lease: SimLease): void {
    const revoked = this.prng.chance(0.5);
    const predicted = lease.open && lease.ref.epoch === this.epoch
      ? this.close(lease, revoked) : [];
    const { fills, persist } = this.sequencer.release(lease.ref, this.now, { revoked });
    this.takeFills(predicted, fills, 'release');
    check(this.sequencer.leaseProducer(lease.ref) === null, 'released lease has no producer');
    this.stats.released += 1;
    this.issue(persist);
  }

  staleEpochAppend(): void {
    const lease = this.staleLeases[this.prng.int(this.staleLeases.length)];
    if (lease === undefined) return;
    const planned = lease.plan[0];
    const [position, bytes, records] = planned !== undefined
      ? [planned.position, planned.bytes, planned.records] : [lease.position, 100, 1];
    this.append(lease, position, bytes, records, null);
    check(this.sequencer.release(lease.ref, this.now).fills.length === 0,
      'an old epoch releases nothing');
  }

  expire(): void {
    // Often exactly at the next deadline: the boundary is where an off-by-one hides.
    const deadline = Math.min(...[...this.leases.values()].map((l) => l.activeAt + TIMEOUT_MS));
    if (this.prng.chance(0.5) && deadline >= this.now && deadline < this.now + 200) {
      this.now = deadline;
    }
    const before = [...this.leases.values()].filter((lease) => this.blocks(lease));
    const due = before.length === 0 ? null
      : Math.min(...before.map((lease) => lease.activeAt + BLOCKING_IDLE_MS));
    check(due === this.sequencer.blockingCutDueAt(),
      'the next blocking cut is due when the model says', { due,
        got: this.sequencer.blockingCutDueAt() });
    const predicted: Fill[] = [];
    let closed = 0;
    for (const lease of [...this.leases.values()]) {
      if (lease.activeAt + TIMEOUT_MS > this.now) continue;
      predicted.push(...this.close(lease));
      closed += 1;
    }
    const blocking = [...this.leases.values()].filter((lease) => this.blocks(lease));
    for (const lease of blocking) {
      if (lease.activeAt + BLOCKING_IDLE_MS > this.now) continue;
      predicted.push(...this.close(lease));
      this.stats.blockingCuts += 1;
    }
    this.takeFills(predicted, this.sequencer.expire(this.now).fills, 'expire');
    this.stats.expiredLeases += closed;
  }

  /**
   * Whether an open lease holds something back (the model of the sequencer's rule): its
   * segment is sealing (the seal waits for it), or a written piece not yet durable lies after
   * it (an appended batch or a written fill, waiting for its offsets).
   */
  blocks(lease: SimLease): boolean {
    const segment = this.storage.get(lease.segmentId)!;
    if (this.front(lease) === lease.end) return false; // all appended: nothing waits for it
    if (segment.state === 'sealing') return true;
    return segment.content.some((batch) => batch.position >= lease.end && this.live(batch) &&
      batch.ref !== null && this.pendingPieces.has(batch.ref));
  }

  /** The sequencer's front of a lease: its start plus the batches appended back to back. */
  front(lease: SimLease): number {
    let front = lease.position;
    while (lease.appended.has(front)) front += lease.appended.get(front)!.bytes;
    return front;
  }

  /** leaseEnding as the model says: closed, full segment, or a large rest holding others. */
  checkEnding(): void {
    for (const lease of this.leases.values()) {
      const segment = this.storage.get(lease.segmentId)!;
      const want = segment.state !== 'active' || (lease.end !== segment.positionNext &&
        lease.end - this.front(lease) > CONTENDED_BYTES);
      check(this.sequencer.leaseEnding(lease.ref) === want, 'leaseEnding as the model says',
        { ref: lease.ref, want });
      if (want && segment.state === 'active') this.stats.ending += 1;
    }
  }

  // --- storage --------------------------------------------------------------------------

  /** A write lands in storage; only above the durable watermark, never into a sealed segment. */
  write(segmentId: string, position: number, bytes: number, records: number,
    fillRef: string | null): string {
    const segment = this.storage.get(segmentId);
    const fields = { segmentId, position, bytes };
    check(segment !== undefined && !segment.sealed, 'write into a live unsealed segment', fields);
    check(position >= segment.watermark.position && position + bytes <= segment.sizeBytes,
      'write above the watermark, inside the segment', fields);
    const end = position + bytes;
    const writeId = fillRef ?? `w${this.writeCount++}`;
    segment.content = segment.content.filter((b) => b.position + b.bytes <= position ||
      b.position >= end);
    segment.content.push({ position, bytes, records, fill: fillRef !== null, writeId,
      ref: fillRef, baseOffset: null });
    segment.content.sort((a, b) => a.position - b.position);
    return writeId;
  }

  writeFill(): void {
    const index = this.prng.int(this.fillsPending.length);
    const fill = this.fillsPending[index];
    if (fill === undefined) return;
    this.fillsPending.splice(index, 1);
    const tag = tagOf(fill.ref);
    this.write(fill.segmentId, fill.position, fill.bytes, fill.records, tag);
    this.fillWrittenNow.add(tag);
    this.issue(this.sequencer.fillWritten(fill.ref).persist);
  }

  /** What a storage node would check, plus what the model knows is written and patched. */
  checkPersist(request: PersistRequest): StoredSegment {
    const segment = this.storage.get(request.segmentId);
    check(segment !== undefined && !segment.sealed, 'persist a live unsealed segment', request);
    check(request.chainPosition === segment.chainPosition, 'persist names the chain position');
    check(this.chain().every((s) => s.chainPosition >= segment.chainPosition || s.sealed),
      'earlier segments are sealed before a later one persists', request);
    const { position, offsetLast } = segment.watermark;
    check(request.positionEnd >= position && request.positionEnd <= segment.sizeBytes,
      'persist within the segment, not backwards', { request, position });
    check(!request.seal || (segment.state === 'sealing' &&
      request.positionEnd === segment.positionNext), 'a seal ends a sealing segment at its end',
    { request, state: segment.state, positionNext: segment.positionNext });
    let at = position;
    let offset = offsetLast;
    let patch = 0;
    for (const batch of segment.content) {
      if (batch.position + batch.bytes <= position) continue;
      if (batch.position >= request.positionEnd) break;
      check(batch.position === at && this.live(batch), 'persisted bytes tile, and are appended ' +
        'batches or written fills', { batch, at });
      const want = request.patches[patch];
      check(want !== undefined && want.position === at && want.baseOffset === offset + 1,
        'one patch per piece, offsets dense and following positions', { want, at, offset });
      const before = this.patched.get(batch.ref!);
      check(before === undefined || before === want.baseOffset, 'a piece is patched with one ' +
        'baseOffset only', { ref: batch.ref, before, want });
      this.patched.set(batch.ref!, want.baseOffset);
      at += batch.bytes;
      offset += batch.records;
      patch += 1;
    }
    check(at === request.positionEnd && offset === request.offsetLast &&
      patch === request.patches.length, 'persist ends on the last written piece',
    { request, at, offset });
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

  /** Storage carries out a persist: patch the headers, then move the watermark. */
  applyAtStorage(request: PersistRequest): StoredSegment {
    const segment = this.checkPersist(request);
    for (const patch of request.patches) {
      const batch = segment.content.find((b) => b.position === patch.position)!;
      batch.baseOffset = patch.baseOffset;
    }
    check(request.positionEnd >= segment.watermark.position &&
      request.offsetLast >= segment.watermark.offsetLast, 'a watermark never moves back');
    segment.watermark = { position: request.positionEnd, offsetLast: request.offsetLast };
    segment.sealed = request.seal;
    if (request.seal) segment.state = 'sealed';
    return segment;
  }

  completePersist(): void {
    const request = this.persistInFlight;
    if (request === null) return;
    this.persistInFlight = null;
    const from = this.storage.get(request.segmentId)!.watermark.position;
    const segment = this.applyAtStorage(request);
    this.replies.push(copyPersistRequest(request)); // the sequencer refills its own
    const result = this.sequencer.persisted(request);
    check(result.sealed === (request.seal ? request.segmentId : null), 'sealed reported', result);
    // Exactly the pieces now under the watermark are reported: batches acked, fills filled.
    const now = segment.content.filter((b) => b.position >= from &&
      b.position < request.positionEnd);
    const wantAcks = now.filter((b) => !b.fill).map((b) => b.ref);
    const wantFilled = now.filter((b) => b.fill).map((b) => b.ref);
    check(JSON.stringify(result.acks.map(tagOf)) === JSON.stringify(wantAcks),
      'acks: every batch under the new watermark, in offset order', { wantAcks, result });
    check(JSON.stringify(result.filled.map(tagOf)) === JSON.stringify(wantFilled),
      'filled: every fill under the new watermark', { wantFilled, result });
    for (const ack of result.acks) this.checkAck(ack);
    for (const ref of result.filled) {
      const tag = tagOf(ref);
      check(this.fillTags.has(tag) && this.pendingPieces.delete(tag), 'filled names a fill', ref);
      this.stats.filled += 1;
    }
    this.issue(result.persist);
    if (this.prng.chance(0.1)) this.expectIgnored(request);
  }

  checkAck(ack: Ack): void {
    const tag = tagOf(ack);
    const lease = this.appendedNow.get(tag);
    check(!this.acked.has(tag), 'acknowledged twice', ack);
    check(lease !== undefined && !this.fillTags.has(tag), 'ack only appended batches', ack);
    const batch = lease.appended.get(ack.position);
    check(batch !== undefined && batch.ref === tag && batch.bytes === ack.bytes &&
      batch.records === ack.records && ack.producer === lease.producer &&
      ack.segmentId === lease.segmentId, 'ack describes the batch appended', ack);
    const segment = this.storage.get(ack.segmentId);
    const stored = segment?.content.find((b) => b.position === ack.position);
    check(segment !== undefined && ack.position + ack.bytes <= segment.watermark.position &&
      stored?.ref === tag && stored.baseOffset === ack.baseOffset,
    'ack under the durable watermark, with the baseOffset its patch wrote', { ack, stored });
    check(ack.baseOffset > this.ackOffsetLast, 'acks in offset order',
      { ack, last: this.ackOffsetLast });
    check(ack.baseOffset + ack.records <= this.storagePrefixEnd(), 'ack inside durable prefix',
      ack);
    check(this.pendingPieces.delete(tag), 'an acked batch was pending', ack);
    this.ackOffsetLast = ack.baseOffset + ack.records - 1;
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
    check(result.persist !== null && result.persist.positionEnd >= request.positionEnd &&
      result.persist.segmentId === request.segmentId, 'a failed persist is issued again',
    { request, result });
    this.stats.failedPersists += 1;
    this.issue(result.persist);
  }

  replayStale(): void {
    // Recent replies half the time: a repeat racing the next request is the dangerous kind.
    const count = this.replies.length;
    const index = this.prng.chance(0.5) ? count - 1 - this.prng.int(3) : this.prng.int(count);
    const request = this.replies[index];
    if (request !== undefined) this.expectIgnored(request);
  }

  allocateAtStorage(want: { chainPosition: number; baseOffset: number }): StoredSegment {
    check(this.chain().every((s) => s.chainPosition !== want.chainPosition),
      'chain place is free', want);
    const segment: StoredSegment = { id: `seg${this.segmentCount++}`, ...want, sizeBytes: SEGMENT,
      watermark: { position: 0, offsetLast: want.baseOffset - 1 }, sealed: false, content: [],
      positionNext: 0, state: 'active' };
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
    for (const lease of this.leases.values()) lease.open = false;
    for (const producer of this.producers) {
      for (const lease of producer.leases) {
        if (this.staleLeases.length < 100) this.staleLeases.push(lease);
      }
      producer.leases = [];
    }
    this.leases.clear();
    this.retryPool = [];
    this.appendedNow.clear();
    this.fillWrittenNow.clear();
    this.pendingPieces.clear();
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
    for (const segment of this.storage.values()) {
      segment.positionNext = segment.watermark.position;
      segment.state = segment.sealed ? 'sealed' : 'active';
    }
    for (const ack of this.acked.values()) this.checkDurable(ack);
    this.stats.restores += 1;
  }

  checkDurable(ack: Ack): void {
    const segment = this.storage.get(ack.segmentId);
    const batch = segment?.content.find((b) => b.position === ack.position);
    check(segment !== undefined && batch !== undefined && batch.ref === tagOf(ack) &&
      batch.baseOffset === ack.baseOffset && batch.records === ack.records &&
      batch.bytes === ack.bytes && ack.position + ack.bytes <= segment.watermark.position,
    'an acknowledged batch stays durable and intact', ack);
  }

  checkState(): void {
    const seq = this.sequencer;
    const highWatermark = seq.highWatermark();
    check(highWatermark === this.storagePrefixEnd(), 'high watermark is the durable prefix',
      { highWatermark, storage: this.storagePrefixEnd() });
    check(highWatermark >= this.highWatermarkLast, 'the durable prefix never moves back',
      { highWatermark, before: this.highWatermarkLast });
    this.highWatermarkLast = highWatermark;
    // The push's head (allocation-free) is what a fetch at the high watermark sees.
    const head = { chainPosition: -1, position: -1, offsetLast: -2, sealed: false,
      highWatermark: -1 };
    const view = seq.fetchView(highWatermark);
    check(seq.durableHeadInto(head) === (view !== null) && (view === null ||
      (head.chainPosition === view.chainPosition && head.position === view.watermark.position &&
        head.offsetLast === view.watermark.offsetLast && head.sealed === view.sealed &&
        head.highWatermark === highWatermark)), 'durableHeadInto is fetchView(highWatermark)',
    { head, view });
    const chain = this.chain();
    const last = chain.at(-1);
    const offsetNext = last === undefined ? 0 : this.writtenPrefix(last).offsetLast + 1;
    check(seq.offsetNext() === offsetNext, 'offsetNext', { got: seq.offsetNext(), offsetNext });
    check(seq.reservationsInFlight() === this.inFlightModel(), 'leases and pieces in flight',
      { got: seq.reservationsInFlight(), model: this.inFlightModel() });
    const views = seq.segments();
    check(views.length === chain.length, 'the sequencer has the chain storage has',
      { views: views.length, chain: chain.length });
    views.forEach((view, index) => {
      const stored = chain[index]!;
      check(view.segmentId === stored.id && view.state === stored.state &&
        view.positionNext === stored.positionNext, 'segment as in the model', { view, stored:
        { id: stored.id, state: stored.state, positionNext: stored.positionNext } });
      check(view.durable.position === stored.watermark.position &&
        view.durable.offsetLast === stored.watermark.offsetLast &&
        (view.state === 'sealed') === stored.sealed, 'durable state matches storage', view);
      const written = this.writtenPrefix(stored);
      check(view.written.position === written.position &&
        view.written.offsetLast === written.offsetLast, 'written prefix as in the model',
      { view, written });
      check(view.durable.position <= view.written.position &&
        view.written.position <= view.positionNext && view.positionNext <= view.sizeBytes,
      'durable ≤ written ≤ handed out ≤ size', view);
      const inFlight = this.persistInFlight?.segmentId === view.segmentId
        ? this.persistInFlight : null;
      check(JSON.stringify(view.persistInFlight) === JSON.stringify(inFlight),
        'the persist in flight', { view, inFlight });
    });
    for (const lease of this.leases.values()) {
      check(seq.leaseProducer(lease.ref) === lease.producer, 'open lease', lease.ref);
    }
  }

  /** Producers finish their plans and release; the rest expire and are filled; persists drain. */
  drain(): void {
    for (let round = 0; round < 100; round += 1) {
      this.now += TIMEOUT_MS;
      for (const producer of this.producers) {
        for (const lease of [...producer.leases]) {
          // Each planned batch once a round ('late' ones twice): a busy one waits a round.
          for (let turns = lease.plan.length * 2; turns > 0 && lease.plan.length > 0 &&
            producer.leases.includes(lease); turns -= 1) {
            this.act(producer, lease, 0);
          }
          if (lease.plan.length > 0 && producer.leases.includes(lease)) continue;
          this.drop(producer, lease);
          if (lease.releaseWhenDone) this.release(lease);
        }
      }
      this.expire();
      while (this.fillsPending.length > 0) this.writeFill();
      while (this.persistInFlight !== null) this.completePersist();
      this.checkState();
      if (this.leases.size === 0 && this.sequencer.reservationsInFlight() === 0) return;
    }
    check(false, 'drain did not settle', { inFlight: this.sequencer.reservationsInFlight() });
  }

  /** Walks storage: durable pieces tile every segment and the offsets; acks are among them. */
  checkFinal(): void {
    let offset = this.chain()[0]?.baseOffset ?? 0;
    const durable = new Set<string>();
    for (const segment of this.chain()) {
      check(segment.baseOffset === offset, 'segments follow in offsets', { id: segment.id });
      let at = 0;
      for (const batch of segment.content) {
        if (batch.position >= segment.watermark.position) break;
        check(batch.position === at && batch.baseOffset === offset && batch.ref !== null,
          'durable pieces tile, patched', batch);
        check(!durable.has(batch.ref), 'a piece durable once', batch);
        durable.add(batch.ref);
        at += batch.bytes;
        offset += batch.records;
      }
      check(at === segment.watermark.position && offset === segment.watermark.offsetLast + 1,
        'watermark on the last durable piece', { id: segment.id });
    }
    check(offset === this.sequencer.highWatermark(), 'durable offsets end at the high watermark');
    for (const ack of this.acked.values()) {
      this.checkDurable(ack);
      check(durable.has(tagOf(ack)) && !this.fillTags.has(tagOf(ack)), 'ack durable', ack);
    }
    for (const tag of this.appendedNow.keys()) {
      check(this.acked.has(tag), 'every batch appended since the restart is acknowledged',
        { tag });
    }
    check(this.pendingPieces.size === 0, 'nothing pending');
  }
}

function seeds(): number[] {
  const fixed = process.env.PMQ_SEED ?? process.env.PMQ_TEST_SEED;
  if (fixed !== undefined) return [Number(fixed)];
  return Array.from({ length: 6 }, () => Math.floor(Math.random() * 0x1_0000_0000));
}

/** An ack's fields, in one order (persisted()'s acks are the sequencer's pieces, with more). */
function ackJson(ack: Ack | null): string {
  return ack === null ? 'null' : JSON.stringify([ack.epoch, ack.id, ack.producer, ack.segmentId,
    ack.position, ack.bytes, ack.baseOffset, ack.records]);
}

/**
 * Runs `fn` with the sequencer's invariant aborts turned into a Failure (with the invariant's
 * message), so that a broken rule fails the seed at its step instead of ending the process.
 */
function withInvariantsThrowing(fn: () => void): void {
  const abort = process.abort;
  let broken = '';
  setFatalSink((fields) => { broken = JSON.stringify(fields); });
  process.abort = (() => { throw new Failure(`invariant broken: ${broken}`); }) as
    typeof process.abort;
  try {
    fn();
  } finally {
    process.abort = abort;
    setFatalSink((fields, msg) => {
      process.stderr.write(`${JSON.stringify({ level: 'fatal', msg, ...fields })}\n`);
    });
  }
}

/** A lease never leaves 1..FILL_BYTES_MIN-1 bytes after its first batch. */
function restFillable(bytes: number, bytesMin: number): number {
  const rest = bytes - bytesMin;
  return rest === 0 || rest >= FILL_BYTES_MIN ? bytes : bytesMin;
}

for (const seed of seeds()) {
  t.test(`sequencer random workload (seed ${seed}; replay with PMQ_SEED=${seed})`, (t) => {
    const simulation = new Simulation(seed);
    let step = 0;
    try {
      withInvariantsThrowing(() => {
        for (; step < STEPS; step += 1) simulation.step();
        simulation.drain();
        simulation.checkFinal();
      });
    } catch (error) {
      t.fail(`step ${step}: ${(error as Error).message}`);
      t.end();
      return;
    }
    const { stats } = simulation;
    t.ok(stats.acked > 0 && stats.filled > 0 && stats.segments > 2 && stats.invalid > 0 &&
      stats.expiredLeases > 0 && stats.persists > 0 && stats.contended > 0 &&
      stats.blockingCuts > 0 && stats.ending > 0, 'the workload did things');
    t.comment(JSON.stringify(stats));
    t.end();
  });
}
