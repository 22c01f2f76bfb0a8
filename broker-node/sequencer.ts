/**
 * The sequencer of one partition: a pure state machine (no I/O, no timers, no clock: time is
 * an argument, from a monotonic clock). The broker calls it from one thread and carries out
 * what it returns: persist requests to the storage node, acknowledgements to producers,
 * segment allocations, hole fills and grant revocations. docs/sequencer.md has the model.
 *
 * Lifecycle: `Sequencer.create` for a new partition, `Sequencer.restore` from the storage
 * nodes' segment tables after a broker restart (a new epoch: leases of the old instance are
 * gone and appends to them refused). Durability: nothing is acknowledged before
 * the storage node reports the watermark covering it durable (`persisted`); the sequencer
 * asks for persists in chain order, one at a time, so the durable part of a partition is
 * always a prefix: sealed segments, then the head segment up to its durable watermark.
 */
import { invariant } from '../common/invariant.js';
import { LIMITS, SEQUENCER_LIMITS } from '../common/limits.js';
import { RECORD_BATCH_SIZE_BYTES_MAX } from '../common/record-batch/layout.js';
import {
  recordBatchSizeBytesMin, recordBatchSizeReachable,
} from '../common/record-batch/batch-size.js';
import { BatchLog, type LoggedBatch } from './batch-log.js';
import { IntMap } from '../common/int-map.js';
import { OutcomeRing } from './outcome-ring.js';
import { restoreChain } from './sequencer-restore.js';
import {
  emptyArray, type LeaseEntry, PersistRecord, Piece, SequencedSegment,
} from './sequencer-segment.js';
import {
  type Ack, type AppendRequest, type AppendResult, type DurableHead, type Fill, type FetchView,
  type LeaseRequest, type LeaseResult, type PersistedResult, type PersistRequest, type ProducerId,
  type ReservationRef, type RestoredSegment, type SegmentAdded, type SegmentId, type SegmentView,
  SequencerError, type SequencerConfig,
} from './sequencer-types.js';

export * from './sequencer-types.js';

/** Records per batch: Kafka's lastOffsetDelta is an int32. */
const RECORDS_PER_BATCH_MAX = 0x7fff_ffff;

interface Settings {
  readonly segmentSizeBytes: number;
  readonly reservationTimeoutMs: number;
  readonly reservationsMax: number;
  /** Segments per lease at least: a lease is at most 1/leaseFraction of its segment. */
  readonly leaseFraction: number;
  readonly leaseContendedBytes: number;
  readonly leaseBlockingIdleMs: number;
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
  const leaseFraction = config.leaseFraction ?? LEASES_PER_SEGMENT_MIN;
  invariant(Number.isSafeInteger(leaseFraction) && leaseFraction >= 1, 'leaseFraction', fields);
  const leaseContendedBytes = config.leaseContendedBytes ??
    SEQUENCER_LIMITS.leaseContendedBytesDefault;
  invariant(Number.isSafeInteger(leaseContendedBytes) && leaseContendedBytes >= 0,
    'leaseContendedBytes', fields);
  const leaseBlockingIdleMs = config.leaseBlockingIdleMs ??
    SEQUENCER_LIMITS.leaseBlockingIdleMsDefault;
  invariant(Number.isFinite(leaseBlockingIdleMs) && leaseBlockingIdleMs >= 0,
    'leaseBlockingIdleMs', fields);
  return { segmentSizeBytes: config.segmentSizeBytes, reservationTimeoutMs: timeoutMs,
    reservationsMax, leaseFraction, leaseContendedBytes, leaseBlockingIdleMs };
}

/** A durable batch of an open lease's log as an Ack (a fresh object: retries only). */
function loggedAck(lease: LeaseEntry, batch: LoggedBatch): Ack {
  return { epoch: lease.ref.epoch, id: batch.id, producer: lease.producer,
    segmentId: lease.segment.segmentId, position: batch.position, bytes: batch.bytes,
    baseOffset: batch.baseOffset, records: batch.records };
}

function expired(message: string): SequencerError {
  return new SequencerError('PMQ_ERR_LEASE_EXPIRED', `${message}: lease again and write the ` +
    'batch again', { retriable: true });
}

function invalid(message: string): SequencerError {
  return new SequencerError('PMQ_ERR_LEASE_INVALID', message);
}

/**
 * The smallest hole a fill can cover: a one-record control batch. Every size from here on is
 * some control batch of one record or, where a record's length varint skips the size, of two
 * (batch-size.ts), so gaps of 0 or at least this many bytes can always be filled.
 */
export const FILL_BYTES_MIN = recordBatchSizeBytesMin(1);

/** Records of the control batch that fills `bytes` exactly (1, or 2 where 1 cannot). */
export function fillRecords(bytes: number): number {
  return recordBatchSizeReachable(bytes, 1) ? 1 : 2;
}

const gapFillable = (bytes: number): boolean => bytes === 0 || bytes >= FILL_BYTES_MIN;

/** By default a lease is at most 1/8 of its segment (see #checkLease). */
const LEASES_PER_SEGMENT_MIN = 8;

/** Shared by every answer without fills (most): frozen, so no caller can add to it. */
const NO_FILLS: readonly ReservationRef[] = Object.freeze([]);
const PERSISTED_NOTHING: PersistedResult = Object.freeze({ acks: Object.freeze([]),
  filled: NO_FILLS, persist: null, sealed: null });

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
  /** Open leases, by id. */
  readonly #leases = new Map<number, LeaseEntry>();
  /** Pieces (batches and fills) not yet durable, by id. */
  readonly #pieces = new IntMap<Piece>();
  /** Acks remembered after their batch left #pieces (retries and duplicates ask). */
  readonly #outcomes = new OutcomeRing(SEQUENCER_LIMITS.outcomesRememberedMax);
  /**
   * Scratch for the pieces a persist made durable, cleared slot by slot before persisted()
   * returns; never shortened, so it allocates only when a persist covers more than ever before.
   */
  readonly #durableScratch: (Piece | null)[] = [];
  /** Scratch for lookups in a lease's BatchLog (retries). */
  readonly #logged: LoggedBatch = { position: 0, bytes: 0, records: 0, baseOffset: 0, id: 0 };
  /** What append() answers when it takes the batch, refilled by each (AppendResult). */
  readonly #appended: { kind: 'appended'; ref: ReservationRef; persist: PersistRequest | null } =
    { kind: 'appended', ref: { epoch: 0, id: 0 }, persist: null };
  /** What persisted() answers, refilled by each call (PersistedResult). */
  readonly #persistedResult: { acks: Ack[]; filled: ReservationRef[];
    persist: PersistRequest | null; sealed: SegmentId | null } =
    { acks: [], filled: [], persist: null, sealed: null };
  /** The two persist requests, refilled in turn (#takePersist; PersistRecord). */
  readonly #persistRecords = [new PersistRecord(), new PersistRecord()] as const;
  #persistRecordNext: 0 | 1 = 0;
  #idNext = 1;
  #nowLast = Number.NEGATIVE_INFINITY;

  private constructor(config: SequencerConfig, segments: SequencedSegment[], offsetFirst: number) {
    this.epoch = config.epoch;
    this.#settings = settingsFrom(config);
    this.#segments = segments;
    this.#offsetFirst = offsetFirst;
    for (const segment of segments) this.#byId.set(segment.segmentId, segment);
    while (this.#segments[this.#head]?.state === 'sealed') this.#head += 1;
    if (!(Number.isSafeInteger(offsetFirst) && offsetFirst >= 0)) {
      invariant(false, 'offsetFirst', { offsetFirst });
    }
    invariant(this.#byId.size === segments.length, 'segment ids unique');
  }

  /** A new, empty partition: the first lease asks for chainPosition 0. */
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

  /**
   * Hands out a write range, or says which segment to allocate first, or to wait while the
   * full segment's leases end and its holes are filled.
   */
  lease(request: LeaseRequest): LeaseResult {
    this.#observe(request.now);
    const last = this.#segments[this.#segments.length - 1];
    let bytesMax = this.#checkLease(request, last?.sizeBytes ?? this.#settings.segmentSizeBytes);
    const holder = request.holder ?? request.producer;
    if (this.#contended(holder)) {
      bytesMax = Math.min(bytesMax, Math.max(request.bytesMin, this.#settings.leaseContendedBytes));
    }
    if (last?.state === 'active' && last.roomBytes() >= request.bytesMin) {
      const bytes = this.#leaseBytes(bytesMax, request.bytesMin, last.roomBytes());
      const entry: LeaseEntry = { kind: 'lease', ref: this.#ref(), producer: request.producer,
        holder, segment: last, position: last.positionNext, end: last.positionNext + bytes,
        front: last.positionNext, ahead: [], batches: new IntMap(), durable: null,
        activeAtMs: request.now, open: true };
      last.placeLease(entry);
      this.#leases.set(entry.ref.id, entry);
      return { kind: 'leased', lease: { ...entry.ref, segmentId: last.segmentId,
        position: entry.position, bytes } };
    }
    // Full: no more leases in it. Its offsets are final once every lease in it is used up or
    // closed and its holes are filled; the leases are not closed here (their batches in flight
    // would be refused and retried out of order): appends tell their holders to end them.
    if (last?.state === 'active') last.state = 'sealing';
    if (last !== undefined && last.state === 'sealing' && !last.fullyWritten()) {
      return { kind: 'wait', persist: this.#takePersist() };
    }
    return { kind: 'need-segment', chainPosition: this.#chainPositionNext(),
      baseOffset: this.offsetNext(), sizeBytesMin: request.bytesMin,
      persist: this.#takePersist() };
  }

  /** The broker allocated the segment a `need-segment` asked for. */
  segmentAdded(added: SegmentAdded): void {
    const last = this.#segments[this.#segments.length - 1];
    if (!(last === undefined || (last.state !== 'active' && last.fullyWritten()))) {
      invariant(false, 'a segment is added after a seal, once the sealing segment is fully written',
        { segmentId: added.segmentId });
    }
    if (!(added.chainPosition === this.#chainPositionNext() &&
        added.baseOffset === this.offsetNext())) {
      invariant(false, 'added segment continues the chain',
        { ...added, chainPositionNext: this.#chainPositionNext(), offsetNext: this.offsetNext() });
    }
    if (!(Number.isSafeInteger(added.sizeBytes) && added.sizeBytes >= LIMITS.segmentSizeBytesMin &&
        added.sizeBytes <= LIMITS.segmentSizeBytesMax)) {
      invariant(false, 'segment size within limits', { ...added });
    }
    if (this.#byId.has(added.segmentId)) {
      invariant(false, 'segment added once', { ...added });
    }
    const segment = SequencedSegment.empty(added);
    this.#segments.push(segment);
    this.#byId.set(segment.segmentId, segment);
  }

  /**
   * A producer wrote a batch into its lease and says where. Batches of a lease may be
   * appended in any order; an exact repeat (a retry) answers `again`.
   */
  append(request: AppendRequest): AppendResult {
    this.#observe(request.now);
    const { lease: ref, position, bytes, records } = request;
    if (ref.epoch !== this.epoch) {
      return { kind: 'refused', error: expired(`lease ${ref.id} of epoch ${ref.epoch} is from ` +
        'an earlier broker') };
    }
    const lease = this.#leases.get(ref.id);
    if (lease === undefined) {
      return { kind: 'refused', error: expired(`lease ${ref.id} is closed (expired, released ` +
        'or its segment full)') };
    }
    const known = lease.batches.get(position);
    if (known !== undefined && known.bytes === bytes && known.records === records) {
      return { kind: 'again', ref: known.ref, ack: null }; // not durable yet
    }
    // Durable already: its ack, even once the outcome is no longer remembered (a long lease
    // outlives outcomesRememberedMax other acks).
    const logged = this.#logged;
    if (known === undefined && lease.durable?.find(position, logged) === true &&
        logged.bytes === bytes && logged.records === records) {
      return { kind: 'again', ref: { epoch: ref.epoch, id: logged.id },
        ack: loggedAck(lease, logged) };
    }
    const refusal = this.#checkAppend(lease, position, bytes, records);
    if (refusal !== null) return { kind: 'refused', error: refusal };
    // At the limit, one batch is still taken: the one at the written prefix of a segment that
    // is durable up to it. Nothing else could make that segment's pieces durable and bring the
    // count down (the pieces behind a hole wait for it), so refusing it would stall the
    // partition until the lease expired. Once it is in, a persist is due and the rest waits.
    const { written, durable } = lease.segment;
    const unblocks = position === written.position && written.position === durable.position;
    if (this.reservationsInFlight() >= this.#settings.reservationsMax && !unblocks) {
      return { kind: 'refused', error: new SequencerError('PMQ_ERR_BUSY', 'partition has ' +
        `${this.reservationsInFlight()} leases and batches in flight (the maximum): append ` +
        'again after some are durable', { retriable: true }) };
    }
    const piece = new Piece('batch', this.epoch, this.#nextId(), lease.ref.id,
      lease.segment.segmentId, lease.producer, lease.segment, position, bytes, records, 'written');
    lease.activeAtMs = request.now;
    this.#pieces.set(piece.ref.id, piece);
    lease.segment.append(lease, piece);
    const appended = this.#appended;
    appended.ref = piece.ref;
    appended.persist = this.#takePersist();
    return appended;
  }

  /**
   * The producer is done with a lease (or the broker ends it: the producer's session ended, a
   * duplicate was written into it). Its gaps become fills. Unknown or closed: nothing.
   */
  release(ref: ReservationRef, now: number, options: { revoked?: boolean } = {}):
    { fills: Fill[]; persist: PersistRequest | null } {
    this.#observe(now);
    const lease = ref.epoch === this.epoch ? this.#leases.get(ref.id) : undefined;
    if (lease === undefined) return { fills: [], persist: null };
    const fills = this.#close(lease, options.revoked === true);
    return { fills, persist: this.#takePersist() };
  }

  /** The batch appended at `position` of an open lease, or null. */
  appendedAt(lease: ReservationRef, position: number): ReservationRef | null {
    if (lease.epoch !== this.epoch) return null;
    const open = this.#leases.get(lease.id);
    if (open === undefined) return null;
    const known = open.batches.get(position);
    if (known !== undefined) return known.ref;
    return open.durable?.find(position, this.#logged) === true
      ? { epoch: lease.epoch, id: this.#logged.id } : null;
  }

  /**
   * Whether a lease's producer should place no more batches in it: it is closed, its segment
   * is full (the seal waits for its leases to be released or used up), or another lease was
   * placed after it while more than a contended lease's worth of it is unwritten (the batches
   * there wait for all of it).
   */
  leaseEnding(ref: ReservationRef): boolean {
    if (ref.epoch !== this.epoch) return true;
    const lease = this.#leases.get(ref.id);
    if (lease === undefined || lease.segment.state !== 'active') return true;
    return lease.end !== lease.segment.positionNext &&
      lease.end - lease.front > this.#settings.leaseContendedBytes;
  }

  /** Whether an open lease is all appended: closing it fills nothing and gives nothing back. */
  leaseUsedUp(ref: ReservationRef): boolean {
    if (ref.epoch !== this.epoch) return false;
    const lease = this.#leases.get(ref.id);
    return lease !== undefined && lease.front === lease.end && lease.ahead.length === 0;
  }

  /** The producer that holds an open lease (its grant's name), or null. */
  leaseProducer(ref: ReservationRef): ProducerId | null {
    if (ref.epoch !== this.epoch) return null;
    return this.#leases.get(ref.id)?.producer ?? null;
  }

  /**
   * Where a batch stands (idempotent retries ask): `written` (appended, not yet durable),
   * `acked`, or `unknown` (another epoch, a fill, or no longer remembered).
   */
  batchState(ref: ReservationRef): 'written' | 'acked' | 'unknown' {
    if (ref.epoch !== this.epoch) return 'unknown';
    const piece = this.#pieces.get(ref.id);
    if (piece !== undefined) return piece.kind === 'batch' ? 'written' : 'unknown';
    return this.#outcomes.has(ref.epoch, ref.id) ? 'acked' : 'unknown';
  }

  /** The ack of a durable batch still remembered, or null. */
  ackOf(ref: ReservationRef): Ack | null {
    if (ref.epoch !== this.epoch) return null;
    return this.#outcomes.get(ref.epoch, ref.id);
  }

  /**
   * Leases without an append for the timeout are closed, and so are those idle for
   * leaseBlockingIdleMs that hold something back (#blockingLeases): revoke each fill's
   * producer, write the control batch, then call fillWritten.
   */
  expire(now: number): { fills: Fill[] } {
    this.#observe(now);
    const fills: Fill[] = [];
    for (const lease of [...this.#leases.values()]) {
      if (lease.activeAtMs + this.#settings.reservationTimeoutMs > now) continue;
      fills.push(...this.#close(lease));
    }
    for (const lease of this.#blockingLeases()) {
      if (lease.activeAtMs + this.#settings.leaseBlockingIdleMs > now) continue;
      fills.push(...this.#close(lease));
    }
    return { fills };
  }

  /**
   * When expire() will next cut a lease that holds something back (it may become busy again
   * meanwhile), or null while none does. The broker arms one timer for it.
   */
  blockingCutDueAt(): number | null {
    if (this.#leases.size === 0) return null;
    let earliest = Infinity;
    for (let index = this.#head; index < this.#segments.length; index += 1) {
      earliest = Math.min(earliest, this.#segments[index]!.blockingLeases(null));
    }
    return earliest === Infinity ? null : earliest + this.#settings.leaseBlockingIdleMs;
  }

  /** The broker wrote the control batch of a fill. */
  fillWritten(ref: ReservationRef): { persist: PersistRequest | null } {
    const piece = this.#pieces.get(ref.id);
    if (!(ref.epoch === this.epoch && piece !== undefined && piece.kind === 'fill' &&
        piece.state === 'filling')) {
      invariant(false, 'fillWritten names a fill that the sequencer returned',
        { ...ref, state: piece?.state });
    }
    piece.state = 'filled';
    piece.segment.advanceWritten();
    return { persist: this.#takePersist() };
  }

  /**
   * The storage node made `done` (a request this sequencer issued) durable. Replies to older
   * requests, duplicates and requests of an earlier instance are ignored.
   *
   * The acks are the durable pieces themselves (no record per batch: issue 11), and the answer
   * is one record refilled by every call: read it before the next, copy what you keep.
   */
  persisted(done: PersistRequest): PersistedResult {
    const segment = this.#byId.get(done.segmentId);
    if (segment === undefined || this.#isStale(segment, done)) return PERSISTED_NOTHING;
    const request = segment.persisting;
    if (!(request !== null && request.positionEnd === done.positionEnd &&
        request.offsetLast === done.offsetLast && request.seal === done.seal)) {
      invariant(false, 'persisted() answers the request in flight', { ...done, inFlight: request });
    }
    if (segment !== this.#segments[this.#head]) {
      invariant(false, 'only the head segment persists', { segmentId: segment.segmentId });
    }
    const result = this.#persistedResult;
    const { acks, filled } = result;
    emptyArray(acks);
    emptyArray(filled);
    const durable = this.#durableScratch;
    const count = segment.applyPersisted(request, durable);
    for (let index = 0; index < count; index += 1) {
      const piece = durable[index]!;
      durable[index] = null; // kept no longer than this call
      this.#pieces.delete(piece.id);
      if (piece.kind === 'batch') {
        this.#logDurable(piece);
        acks.push(piece);
        this.#outcomes.remember(piece);
      } else {
        filled.push({ epoch: piece.epoch, id: piece.id }); // fills are rare: a plain ref
      }
    }
    let sealed: SegmentId | null = null;
    if (segment.state === 'sealed') {
      sealed = segment.segmentId;
      invariant(segment.pendingCount() === 0, 'a sealed segment has nothing pending');
      this.#head += 1;
    }
    result.persist = this.#takePersist();
    result.sealed = sealed;
    return result;
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
    const segment = this.#visibleSegmentOf(offset);
    if (segment === undefined) return null;
    if (!(segment.baseOffset <= offset && offset <= segment.durable.offsetLast + 1)) {
      invariant(false, 'fetch view covers the offset', { offset, segmentId: segment.segmentId });
    }
    return { segmentId: segment.segmentId, chainPosition: segment.chainPosition,
      baseOffset: segment.baseOffset, watermark: { ...segment.durable },
      sealed: segment.state === 'sealed' };
  }

  /**
   * fetchView(highWatermark()) as a consumer's push carries it, without allocating (issue 11:
   * the broker asks after every persist): fills `into` and returns true, or returns false
   * while there is no segment.
   */
  durableHeadInto(into: DurableHead): boolean {
    // The segment highWatermark() reads is the last visible one starting at or before it
    // (the one fetchView(highWatermark) finds): the head, or the last when all are sealed.
    const segment = this.#segments[Math.min(this.#head, this.#segments.length - 1)];
    if (segment === undefined) return false;
    const highWatermark = segment.durable.offsetLast + 1;
    into.chainPosition = segment.chainPosition;
    into.position = segment.durable.position;
    into.offsetLast = segment.durable.offsetLast;
    into.sealed = segment.state === 'sealed';
    into.highWatermark = highWatermark;
    return true;
  }

  /** The offset after the durable prefix: consumers see offsets below it. */
  highWatermark(): number {
    const head = this.#segments[Math.min(this.#head, this.#segments.length - 1)];
    return head === undefined ? this.#offsetFirst : head.durable.offsetLast + 1;
  }

  /**
   * The log start (Kafka's logStartOffset): the first offset the partition still holds, the
   * baseOffset of its oldest segment. Retention moves it forward (dropOldest), never back.
   */
  logStartOffset(): number {
    return this.#segments[0]?.baseOffset ?? this.#offsetFirst;
  }

  /**
   * The oldest segment if retention may free it: sealed durably (so nothing in it is pending
   * and its offsets are final), no lease still open in it (a used-up lease stays open until its
   * producer releases it or it expires: its retries are answered from it), and not the last of
   * the chain (the last one carries the partition's next baseOffset and chainPosition across
   * restarts: a chain is never emptied). Null otherwise.
   */
  oldestRetirable(): SegmentView | null {
    const oldest = this.#segments[0];
    if (oldest === undefined || this.#segments.length < 2 || oldest.state !== 'sealed') {
      return null;
    }
    for (const lease of this.#leases.values()) {
      if (lease.segment === oldest) return null;
    }
    return oldest.view();
  }

  /**
   * Retention freed the oldest segment on its storage node: forget it; the log start moves to
   * the next segment's baseOffset. Only what oldestRetirable() named.
   */
  dropOldest(segmentId: SegmentId): void {
    const oldest = this.#segments[0];
    if (!(oldest !== undefined && oldest.segmentId === segmentId && oldest.state === 'sealed' &&
        this.#segments.length >= 2 && this.#head >= 1)) {
      invariant(false, 'only the oldest sealed segment, never the last, is dropped',
        { segmentId, oldest: oldest?.segmentId, count: this.#segments.length, head: this.#head });
    }
    invariant(oldest.pendingCount() === 0, 'a dropped segment has nothing pending', { segmentId });
    for (const lease of this.#leases.values()) {
      invariant(lease.segment !== oldest, 'no open lease in a dropped segment', { segmentId });
    }
    const logStartBefore = this.logStartOffset();
    this.#segments.shift();
    this.#byId.delete(segmentId);
    this.#head -= 1;
    invariant(this.logStartOffset() >= logStartBefore, 'the log start only moves forward',
      { segmentId, logStartBefore, logStart: this.logStartOffset() });
  }

  /** The offset after the last one handed out (the next segment's baseOffset once full). */
  offsetNext(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last === undefined ? this.#offsetFirst : last.written.offsetLast + 1;
  }

  /** Open leases and pieces not yet durable: what the partition holds in memory. */
  reservationsInFlight(): number {
    return this.#pieces.size + this.#leases.size;
  }

  segments(): SegmentView[] {
    return this.#segments.map((segment) => segment.view());
  }

  /** Of the visible segments (the sealed ones and the head), the last starting at or before. */
  #visibleSegmentOf(offset: number): SequencedSegment | undefined {
    let low = 0;
    let high = Math.min(this.#head, this.#segments.length - 1);
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if ((this.#segments[middle]?.baseOffset ?? Infinity) <= offset) low = middle;
      else high = middle - 1;
    }
    return this.#segments[low];
  }

  #observe(now: number): void {
    if (!(Number.isFinite(now) && now >= this.#nowLast)) {
      invariant(false, 'time is monotonic', { now, nowLast: this.#nowLast });
    }
    this.#nowLast = now;
  }

  /** Whether another holder has an open lease in the partition. */
  #contended(holder: string): boolean {
    for (const lease of this.#leases.values()) {
      if (lease.holder !== holder) return true;
    }
    return false;
  }

  /**
   * Open leases that hold something back: a written batch placed after them (it waits for all
   * of the lease), or the seal of their full segment (the next segment waits for it).
   */
  #blockingLeases(): LeaseEntry[] {
    if (this.#leases.size === 0) return [];
    const blocking: LeaseEntry[] = [];
    for (let index = this.#head; index < this.#segments.length; index += 1) {
      this.#segments[index]!.blockingLeases(blocking);
    }
    return blocking;
  }

  #ref(): ReservationRef {
    return { epoch: this.epoch, id: this.#nextId() };
  }

  #nextId(): number {
    const id = this.#idNext;
    this.#idNext += 1;
    return id;
  }

  /**
   * Checks a lease request (a producer's numbers); returns the lease size to aim for in a
   * segment of `segmentSizeBytes`. A batch may be as large as the largest segment: one that
   * does not fit the current (smaller) segment gets a new one that holds it.
   */
  #checkLease(request: LeaseRequest, segmentSizeBytes: number): number {
    const { bytes, bytesMin } = request;
    const limit = Math.min(this.#settings.segmentSizeBytes, RECORD_BATCH_SIZE_BYTES_MAX);
    if (!Number.isSafeInteger(bytesMin) || bytesMin < FILL_BYTES_MIN ||
        !Number.isSafeInteger(bytes)) {
      throw invalid(`lease of ${bytes} bytes for a batch of ${bytesMin}: both must be whole ` +
        `numbers and a batch at least ${FILL_BYTES_MIN} bytes (one record)`);
    }
    if (bytesMin > limit) {
      throw new SequencerError('PMQ_ERR_RECORD_TOO_LARGE', `batch of ${bytesMin} bytes exceeds ` +
        `the ${limit}-byte limit (the largest segment): split it into smaller ` +
        'batches (lower batch.size / max.request.size) or use larger segments');
    }
    if (this.reservationsInFlight() >= this.#settings.reservationsMax) {
      throw new SequencerError('PMQ_ERR_BUSY', `partition has ${this.reservationsInFlight()} ` +
        'leases and batches in flight (the maximum): retry after some are durable',
      { retriable: true });
    }
    // Not past the largest batch either: a hole can be as large as its lease, and its fill is
    // one control batch (segments may be larger than a batch can be). And at most a fraction
    // of the segment: a full segment seals by closing every lease in it, so a lease as large
    // as the segment would be closed by the next producer's lease, and that one by the next.
    const cap = Math.max(bytesMin, Math.floor(segmentSizeBytes / this.#settings.leaseFraction));
    return Math.min(Math.max(bytes, bytesMin), limit, cap);
  }

  /**
   * The size of a lease for `bytesMin` in `room`: what #checkLease allowed, cut to the room,
   * and never leaving 1..FILL_BYTES_MIN-1 bytes after the first batch (no batch could follow
   * there, and no control batch could fill it).
   */
  #leaseBytes(bytesMax: number, bytesMin: number, room: number): number {
    const bytes = Math.min(bytesMax, room);
    return gapFillable(bytes - bytesMin) ? bytes : bytesMin;
  }

  /** Why an append cannot be taken (a producer's numbers), or null. */
  #checkAppend(lease: LeaseEntry, position: number, bytes: number, records: number):
    SequencerError | null {
    const countValid = Number.isSafeInteger(records) && records >= 1 &&
      records <= RECORDS_PER_BATCH_MAX;
    const sizeBytesMin = countValid ? recordBatchSizeBytesMin(records) : Number.NaN;
    if (!countValid || !Number.isSafeInteger(bytes) || bytes < sizeBytesMin ||
        !recordBatchSizeReachable(bytes, records)) {
      return invalid(`append of ${bytes} bytes for ${records} records: records must be ` +
        `1..${RECORDS_PER_BATCH_MAX} and some RecordBatch v2 of that many records exactly ` +
        `that long (at least ${sizeBytesMin} bytes)`);
    }
    if (!Number.isSafeInteger(position) || position < lease.front ||
        position + bytes > lease.end) {
      return invalid(`append at ${position} of ${bytes} bytes lies outside the unwritten part ` +
        `${lease.front}..${lease.end} of lease ${lease.ref.id}`);
    }
    // Loops, not find/reduce with closures: this runs per append (issue 11).
    let nextStart = lease.end;
    let previousEnd = lease.front;
    for (let index = 0; index < lease.ahead.length; index += 1) {
      const other = lease.ahead[index]!;
      if (other.position < position) previousEnd = other.position + other.bytes;
      if (other.position + other.bytes > position) {
        nextStart = other.position;
        break;
      }
    }
    if (nextStart < position + bytes || previousEnd > position) {
      return invalid(`append at ${position} of ${bytes} bytes overlaps a batch appended before`);
    }
    if (!gapFillable(position - previousEnd) || !gapFillable(nextStart - position - bytes)) {
      return invalid(`append at ${position} of ${bytes} bytes leaves a gap of 1..` +
        `${FILL_BYTES_MIN - 1} bytes in lease ${lease.ref.id}, which no batch can fill: ` +
        `place batches back to back and leave 0 or at least ${FILL_BYTES_MIN} bytes`);
    }
    return null;
  }

  /**
   * Closes an open lease: its gaps become fills (returned, state filling). `revoked`: its grant
   * is revoked already, so an unwritten rest at the active segment's end is given back
   * instead of filled (nothing can land there any more).
   */
  #close(lease: LeaseEntry, revoked = false): Fill[] {
    this.#leases.delete(lease.ref.id);
    const pieces = lease.segment.closeLease(lease, revoked, (position, bytes) => {
      const piece = new Piece('fill', this.epoch, this.#nextId(), lease.ref.id,
        lease.segment.segmentId, lease.producer, lease.segment, position, bytes,
        fillRecords(bytes), 'filling');
      this.#pieces.set(piece.ref.id, piece);
      return piece;
    });
    return pieces.map((piece) => ({ ref: { epoch: piece.epoch, id: piece.id },
      revoke: piece.producer,
      segmentId: piece.segment.segmentId, position: piece.position, bytes: piece.bytes,
      records: piece.records }));
  }

  #chainPositionNext(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last === undefined ? 0 : last.chainPosition + 1;
  }

  /** The persist due now, marked in flight: only the head segment, one request at a time. */
  #takePersist(): PersistRequest | null {
    const head = this.#segments[this.#head];
    if (head === undefined) return null;
    // The record not in flight now: the other one may still be read by whoever issued it.
    const record = this.#persistRecords[this.#persistRecordNext];
    const request = head.persistDue(record);
    if (request !== null) this.#persistRecordNext = this.#persistRecordNext === 0 ? 1 : 0;
    if (request !== null) head.persisting = request;
    if (!(this.#head === 0 || this.#segments[this.#head - 1]?.state === 'sealed')) {
      invariant(false, 'segments before the head are sealed', { head: this.#head });
    }
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

  /**
   * A durable batch moves from its open lease's in-flight map to the lease's log (a closed
   * lease is not asked any more: nothing to keep).
   */
  #logDurable(piece: Piece): void {
    const lease = this.#leases.get(piece.leaseId);
    if (lease === undefined) return;
    if (lease.batches.get(piece.position) !== piece) {
      invariant(false, 'an open lease knows its batches in flight',
        { leaseId: piece.leaseId, position: piece.position });
    }
    lease.batches.delete(piece.position);
    lease.durable ??= new BatchLog();
    lease.durable.add(piece.position, piece.bytes, piece.records, piece.baseOffset, piece.id);
  }
}
