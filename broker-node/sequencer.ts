/**
 * The sequencer of one partition: a pure state machine (no I/O, no timers, no clock: time is
 * an argument, from a monotonic clock). The broker calls it from one thread and carries out
 * what it returns: persist requests to the storage node, acknowledgements to producers,
 * segment allocations, hole fills and grant revocations. docs/sequencer.md has the model.
 *
 * Lifecycle: `Sequencer.create` for a new partition, `Sequencer.restore` from the storage
 * nodes' segment tables after a broker restart (a new epoch: reservations of the old
 * instance are gone and their commits refused). Durability: nothing is acknowledged before
 * the storage node reports the watermark covering it durable (`persisted`); the sequencer
 * asks for persists in chain order, one at a time, so the durable part of a partition is
 * always a prefix: sealed segments, then the head segment up to its durable watermark.
 */
import { invariant } from '../common/invariant.js';
import { LIMITS, SEQUENCER_LIMITS } from '../common/limits.js';
import { RECORD_BATCH_SIZE_BYTES_MAX } from '../common/record-batch/layout.js';
import { recordBatchSizeBytesMin, recordBatchSizeReachable } from './batch-size.js';
import { restoreChain } from './sequencer-restore.js';
import { type InFlight, SequencedSegment } from './sequencer-segment.js';
import {
  type Ack, type CommitResult, type Fill, type FetchView, type PersistedResult,
  type PersistRequest, type ProducerId, type ReservationRef, type ReserveRequest,
  type ReserveResult, type RestoredSegment, type SegmentAdded, type SegmentId,
  type SegmentView, SequencerError, type SequencerConfig,
} from './sequencer-types.js';

export * from './sequencer-types.js';

/** Records per batch: Kafka's lastOffsetDelta is an int32. */
const RECORDS_PER_BATCH_MAX = 0x7fff_ffff;

/** What happened to a reservation after it left the in-flight set. */
type Outcome = { kind: 'acked'; ack: Ack } | { kind: 'expired'; producer: ProducerId };

interface Settings {
  readonly segmentSizeBytes: number;
  readonly reservationTimeoutMs: number;
  readonly reservationsMax: number;
}

function settingsFrom(config: SequencerConfig): Settings {
  const timeoutMs = config.reservationTimeoutMs ?? SEQUENCER_LIMITS.reservationTimeoutMsDefault;
  const reservationsMax = config.reservationsMax ?? SEQUENCER_LIMITS.reservationsMax;
  const fields = { ...config };
  invariant(Number.isSafeInteger(config.epoch) && config.epoch >= 0, 'epoch', fields);
  invariant(Number.isSafeInteger(config.segmentSizeBytes) &&
    config.segmentSizeBytes >= LIMITS.segmentSizeBytesMin &&
    config.segmentSizeBytes <= LIMITS.segmentSizeBytesMax, 'segment size within limits', fields);
  invariant(timeoutMs >= SEQUENCER_LIMITS.reservationTimeoutMsMin &&
    timeoutMs <= SEQUENCER_LIMITS.reservationTimeoutMsMax, 'timeout within limits', fields);
  invariant(Number.isSafeInteger(reservationsMax) && reservationsMax >= 1 &&
    reservationsMax <= SEQUENCER_LIMITS.reservationsMax, 'reservationsMax within limits', fields);
  return { segmentSizeBytes: config.segmentSizeBytes, reservationTimeoutMs: timeoutMs,
    reservationsMax };
}

function ackOf(entry: InFlight): Ack {
  return { ...entry.ref, producer: entry.producer, segmentId: entry.segment.segmentId,
    position: entry.position, bytes: entry.bytes, baseOffset: entry.baseOffset,
    records: entry.records };
}

function expired(message: string): SequencerError {
  return new SequencerError('PMQ_ERR_RESERVATION_EXPIRED', `${message}: reserve again and ` +
    'write the batch again');
}

const PERSISTED_NOTHING: PersistedResult = { acks: [], filled: [], persist: null, sealed: null };

export class Sequencer {
  readonly epoch: number;
  readonly #settings: Settings;
  /** The chain, oldest first; chainPositions are consecutive. */
  readonly #segments: SequencedSegment[];
  readonly #byId = new Map<SegmentId, SequencedSegment>();
  /** Index of the first unsealed segment: the only one whose watermark may move. */
  #head = 0;
  /** Offset of the first record of an empty chain. */
  readonly #offsetFirst: number;
  /** Reservations not yet durable, by id; insertion order is reservation (= time) order. */
  readonly #inFlight = new Map<number, InFlight>();
  readonly #outcomes = new Map<number, Outcome>();
  #idNext = 1;
  #nowLast = Number.NEGATIVE_INFINITY;

  private constructor(config: SequencerConfig, segments: SequencedSegment[], offsetFirst: number) {
    this.epoch = config.epoch;
    this.#settings = settingsFrom(config);
    this.#segments = segments;
    this.#offsetFirst = offsetFirst;
    for (const segment of segments) this.#byId.set(segment.segmentId, segment);
    while (this.#segments[this.#head]?.state === 'sealed') this.#head += 1;
    invariant(Number.isSafeInteger(offsetFirst) && offsetFirst >= 0, 'offsetFirst',
      { offsetFirst });
    invariant(this.#byId.size === segments.length, 'segment ids unique');
  }

  /** A new, empty partition: the first reserve asks for chainPosition 0. */
  static create(config: SequencerConfig): Sequencer {
    return new Sequencer(config, [], config.offsetFirst ?? 0);
  }

  /**
   * Rebuilds from the storage nodes' segment tables (one partition's entries, any order).
   * Throws PMQ_ERR_CHAIN_INVALID when they do not form one chain. `orphans`: empty segments
   * past the restored active one, to be freed before their chain places are allocated again.
   */
  static restore(config: SequencerConfig, restored: readonly RestoredSegment[]):
    { sequencer: Sequencer; orphans: SegmentId[] } {
    const chain = restoreChain(restored);
    const first = chain.segments[0];
    const sequencer = new Sequencer(config, chain.segments, first?.baseOffset ?? 0);
    return { sequencer, orphans: chain.orphans };
  }

  /** Hands out room for one batch, or says which segment to allocate first. */
  reserve(request: ReserveRequest): ReserveResult {
    this.#observe(request.now);
    const last = this.#segments[this.#segments.length - 1];
    const active = last?.state === 'active' ? last : null;
    this.#checkReserve(request, active?.sizeBytes ?? this.#settings.segmentSizeBytes);
    if (active === null || active.roomBytes() < request.bytes) {
      if (active !== null) active.state = 'sealing';
      return { kind: 'need-segment', chainPosition: this.#chainPositionNext(),
        baseOffset: this.offsetNext(), persist: this.#takePersist() };
    }
    const entry: InFlight = {
      ref: { epoch: this.epoch, id: this.#idNext }, producer: request.producer, segment: active,
      position: active.positionNext, bytes: request.bytes, baseOffset: active.offsetNext,
      records: request.records, reservedAtMs: request.now, state: 'reserved',
    };
    invariant(Number.isSafeInteger(entry.baseOffset + entry.records), 'offsets below 2^53',
      { baseOffset: entry.baseOffset });
    this.#idNext += 1;
    active.place(entry);
    this.#inFlight.set(entry.ref.id, entry);
    const { ref, position, bytes, baseOffset, records } = entry;
    return { kind: 'reserved', reservation: { ...ref, segmentId: active.segmentId, position,
      baseOffset, bytes, records } };
  }

  /** The broker allocated the segment a `need-segment` asked for. */
  segmentAdded(added: SegmentAdded): void {
    const last = this.#segments[this.#segments.length - 1];
    invariant(last === undefined || last.state !== 'active', 'a segment is added after a seal',
      { segmentId: added.segmentId });
    invariant(added.chainPosition === this.#chainPositionNext() &&
      added.baseOffset === this.offsetNext(), 'added segment continues the chain',
    { ...added, chainPositionNext: this.#chainPositionNext(), offsetNext: this.offsetNext() });
    invariant(Number.isSafeInteger(added.sizeBytes) &&
      added.sizeBytes >= LIMITS.segmentSizeBytesMin &&
      added.sizeBytes <= LIMITS.segmentSizeBytesMax, 'segment size within limits', { ...added });
    invariant(!this.#byId.has(added.segmentId), 'segment added once', { ...added });
    const segment = SequencedSegment.empty(added);
    this.#segments.push(segment);
    this.#byId.set(segment.segmentId, segment);
  }

  /** The producer wrote its batch. Commits may come in any order; a retry is harmless. */
  commit(ref: ReservationRef, now: number): CommitResult {
    this.#observe(now);
    if (ref.epoch !== this.epoch) {
      return { kind: 'refused', revoke: null,
        error: expired(`reservation ${ref.id} of epoch ${ref.epoch} is from an earlier broker`) };
    }
    const entry = this.#inFlight.get(ref.id);
    if (entry !== undefined) {
      if (entry.state === 'reserved') {
        entry.state = 'committed';
        entry.segment.advanceWritten();
        return { kind: 'committed', persist: this.#takePersist() };
      }
      if (entry.state === 'committed') return { kind: 'committed', persist: null };
      return { kind: 'refused', revoke: entry.producer,
        error: expired(`reservation ${ref.id} expired and its hole is being filled`) };
    }
    const outcome = this.#outcomes.get(ref.id);
    if (outcome?.kind === 'acked') return { kind: 'durable', ack: outcome.ack };
    if (outcome?.kind === 'expired') {
      return { kind: 'refused', revoke: outcome.producer,
        error: expired(`reservation ${ref.id} expired and its hole was filled`) };
    }
    const what = Number.isSafeInteger(ref.id) && ref.id >= 1 && ref.id < this.#idNext
      ? 'is no longer remembered' : 'was never issued';
    return { kind: 'refused', revoke: null, error: expired(`reservation ${ref.id} ${what}`) };
  }

  /**
   * Where a reservation stands (idempotent retries ask): in flight (its state), `acked`,
   * `expired`, or `unknown` (another epoch, never issued, or no longer remembered).
   */
  reservationState(ref: ReservationRef): InFlight['state'] | Outcome['kind'] | 'unknown' {
    if (ref.epoch !== this.epoch) return 'unknown';
    return this.#inFlight.get(ref.id)?.state ?? this.#outcomes.get(ref.id)?.kind ?? 'unknown';
  }

  /**
   * Reservations older than the timeout and not committed become fills. Revoke each fill's
   * producer, write the control batch, then call fillWritten.
   */
  expire(now: number): { fills: Fill[] } {
    this.#observe(now);
    const fills: Fill[] = [];
    for (const entry of this.#inFlight.values()) {
      if (entry.reservedAtMs + this.#settings.reservationTimeoutMs > now) break;
      if (entry.state !== 'reserved') continue;
      entry.state = 'filling';
      fills.push({ ref: entry.ref, revoke: entry.producer, segmentId: entry.segment.segmentId,
        position: entry.position, bytes: entry.bytes, baseOffset: entry.baseOffset,
        records: entry.records });
    }
    return { fills };
  }

  /** The broker wrote the control batch of a fill. */
  fillWritten(ref: ReservationRef): { persist: PersistRequest | null } {
    const entry = this.#inFlight.get(ref.id);
    invariant(ref.epoch === this.epoch && entry !== undefined && entry.state === 'filling',
      'fillWritten names a fill that expire() returned', { ...ref, state: entry?.state });
    entry.state = 'filled';
    entry.segment.advanceWritten();
    return { persist: this.#takePersist() };
  }

  /**
   * The storage node made `done` (a request this sequencer issued) durable. Replies to older
   * requests, duplicates and requests of an earlier instance are ignored.
   */
  persisted(done: PersistRequest): PersistedResult {
    const segment = this.#byId.get(done.segmentId);
    if (segment === undefined || this.#isStale(segment, done)) return PERSISTED_NOTHING;
    const request = segment.persisting;
    invariant(request !== null && request.positionEnd === done.positionEnd &&
      request.offsetLast === done.offsetLast && request.seal === done.seal,
    'persisted() answers the request in flight', { ...done, inFlight: request });
    invariant(segment === this.#segments[this.#head], 'only the head segment persists',
      { segmentId: segment.segmentId });
    const acks: Ack[] = [];
    const filled: ReservationRef[] = [];
    for (const entry of segment.applyPersisted(request)) {
      invariant(entry.state === 'committed' || entry.state === 'filled', 'durable means written',
        { id: entry.ref.id, state: entry.state });
      this.#inFlight.delete(entry.ref.id);
      if (entry.state === 'committed') {
        const ack = ackOf(entry);
        acks.push(ack);
        this.#remember(entry.ref.id, { kind: 'acked', ack });
      } else {
        filled.push(entry.ref);
        this.#remember(entry.ref.id, { kind: 'expired', producer: entry.producer });
      }
    }
    let sealed: SegmentId | null = null;
    if (segment.state === 'sealed') {
      sealed = segment.segmentId;
      invariant(segment.pendingCount() === 0, 'a sealed segment has nothing pending');
      this.#head += 1;
    }
    return { acks, filled, persist: this.#takePersist(), sealed };
  }

  /** The storage node failed `done` (not fenced: then stop the sequencer): issue it again. */
  persistFailed(done: PersistRequest): { persist: PersistRequest | null } {
    const segment = this.#byId.get(done.segmentId);
    const request = segment?.persisting ?? null;
    if (segment === undefined || request === null || request.positionEnd !== done.positionEnd ||
        request.seal !== done.seal) {
      return { persist: null };
    }
    segment.persisting = null;
    return { persist: this.#takePersist() };
  }

  /**
   * Where a consumer reads `offset`, and how far (the durable watermark, never further).
   * Null while the partition has no segment yet: nothing to read, ask again later.
   */
  fetchView(offset: number): FetchView | null {
    const highWatermark = this.highWatermark();
    const lowest = this.#segments[0]?.baseOffset ?? this.#offsetFirst;
    if (!Number.isSafeInteger(offset) || offset < lowest || offset > highWatermark) {
      throw new SequencerError('PMQ_ERR_OFFSET_OUT_OF_RANGE', `offset ${offset} outside ` +
        `${lowest}..${highWatermark}: fetch from the high watermark or the first offset held`);
    }
    // Visible: the sealed segments and the head. The last one starting at or before offset.
    let low = 0;
    let high = Math.min(this.#head, this.#segments.length - 1);
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if ((this.#segments[middle]?.baseOffset ?? Infinity) <= offset) low = middle;
      else high = middle - 1;
    }
    const segment = this.#segments[low];
    if (segment === undefined) return null;
    invariant(segment.baseOffset <= offset && offset <= segment.durable.offsetLast + 1,
      'fetch view covers the offset', { offset, segmentId: segment.segmentId });
    return { segmentId: segment.segmentId, chainPosition: segment.chainPosition,
      baseOffset: segment.baseOffset, watermark: segment.durable,
      sealed: segment.state === 'sealed' };
  }

  /** The offset after the durable prefix: consumers see offsets below it. */
  highWatermark(): number {
    const head = this.#segments[Math.min(this.#head, this.#segments.length - 1)];
    return head === undefined ? this.#offsetFirst : head.durable.offsetLast + 1;
  }

  /** The offset the next reservation starts at. */
  offsetNext(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last === undefined ? this.#offsetFirst : last.offsetNext;
  }

  reservationsInFlight(): number {
    return this.#inFlight.size;
  }

  segments(): SegmentView[] {
    return this.#segments.map((segment) => segment.view());
  }

  #observe(now: number): void {
    invariant(Number.isFinite(now) && now >= this.#nowLast, 'time is monotonic',
      { now, nowLast: this.#nowLast });
    this.#nowLast = now;
  }

  #checkReserve(request: ReserveRequest, segmentSizeBytes: number): void {
    const { bytes, records } = request;
    const countValid = Number.isSafeInteger(records) && records >= 1 &&
      records <= RECORDS_PER_BATCH_MAX;
    const sizeBytesMin = countValid ? recordBatchSizeBytesMin(records) : Number.NaN;
    if (!countValid || !Number.isSafeInteger(bytes) || bytes < sizeBytesMin) {
      throw new SequencerError('PMQ_ERR_RESERVATION_INVALID', `reserve of ${bytes} bytes for ` +
        `${records} records: records must be 1..${RECORDS_PER_BATCH_MAX} and a RecordBatch v2 ` +
        `of that many records needs at least ${sizeBytesMin} bytes`);
    }
    if (!recordBatchSizeReachable(bytes, records)) {
      throw new SequencerError('PMQ_ERR_RESERVATION_INVALID', `no RecordBatch v2 of ${records} ` +
        `record is exactly ${bytes} bytes long (a record's length varint skips this size): ` +
        'fix the producer\'s size computation');
    }
    const limit = Math.min(segmentSizeBytes, RECORD_BATCH_SIZE_BYTES_MAX);
    if (bytes > limit) {
      throw new SequencerError('PMQ_ERR_RECORD_TOO_LARGE', `batch of ${bytes} bytes exceeds ` +
        `the ${limit}-byte limit (the partition's segment size): split it into smaller ` +
        'batches (lower batch.size / max.request.size) or use larger segments');
    }
    if (this.#inFlight.size >= this.#settings.reservationsMax) {
      throw new SequencerError('PMQ_ERR_BUSY', `partition has ${this.#inFlight.size} ` +
        'reservations in flight (the maximum): retry after some are committed',
      { retriable: true });
    }
  }

  #chainPositionNext(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last === undefined ? 0 : last.chainPosition + 1;
  }

  /** The persist due now, marked in flight: only the head segment, one request at a time. */
  #takePersist(): PersistRequest | null {
    const head = this.#segments[this.#head];
    if (head === undefined) return null;
    const request = head.persistDue();
    if (request !== null) head.persisting = request;
    invariant(this.#head === 0 || this.#segments[this.#head - 1]?.state === 'sealed',
      'segments before the head are sealed', { head: this.#head });
    return request;
  }

  /** An answer to a request older than the durable watermark (or a repeat): ignore it. */
  #isStale(segment: SequencedSegment, done: PersistRequest): boolean {
    if (segment.state === 'sealed') return true;
    if (done.positionEnd > segment.durable.position) return false;
    const request = segment.persisting;
    const sealAnswer = done.seal && request !== null && request.seal &&
      request.positionEnd === done.positionEnd;
    return !sealAnswer;
  }

  #remember(id: number, outcome: Outcome): void {
    this.#outcomes.set(id, outcome);
    if (this.#outcomes.size <= SEQUENCER_LIMITS.outcomesRememberedMax) return;
    const oldest = this.#outcomes.keys().next();
    if (oldest.done !== true) this.#outcomes.delete(oldest.value);
  }
}
