/**
 * One segment as the sequencer sees it: how far positions were handed out (positionNext), how
 * far the bytes are written without a gap and have offsets (written), how far they are durable
 * on the storage node (durable), and what lies between durable and positionNext, in position
 * order: pieces (batches producers appended, fills over holes) and open leases (write ranges a
 * producer still writes into). Pure state, owned by one Sequencer; every change keeps
 *   durable.position ≤ written.position ≤ positionNext ≤ sizeBytes,
 * and the pending entries tile [durable.position, positionNext) back to back (a lease covers
 * [front, end), the batches appended ahead of its front included).
 *
 * Offsets are not handed out with the space: a piece gets its baseOffset when the written
 * prefix reaches it (advanceWritten), so offsets follow positions whatever order producers
 * append in, and the storage node patches them into the batch headers before it persists.
 */
import { invariant } from '../common/invariant.js';
import type { BatchLog } from './batch-log.js';
import type { IntMap } from '../common/int-map.js';
import {
  emptyWatermark,
  type OffsetPatch, type PersistRequest, type ProducerId, type ReservationRef, type SegmentAdded,
  type SegmentId, type SegmentState, type SegmentView, type Watermark,
} from './sequencer-types.js';

/**
 * written: a batch its producer wrote and appended. filling: a hole the broker is writing a
 * control batch over. filled: that control batch is written.
 */
export type PieceState = 'written' | 'filling' | 'filled';

/**
 * A batch between append and durability, or a fill. It is its own ref and carries its segment's
 * fields too, so that a durable batch is its own Ack (sequencer-types.ts): acknowledging
 * allocates no record per batch (issue 11). Fields only: no reference to its lease (a cycle
 * through lease.ahead would make it unprintable in an invariant's fields).
 */
export class Piece implements ReservationRef {
  /** -1 until the written prefix reaches the piece. */
  baseOffset = -1;

  constructor(
    readonly kind: 'batch' | 'fill',
    readonly epoch: number,
    readonly id: number,
    /** The lease the batch was appended to (fills: their lease too). */
    readonly leaseId: number,
    readonly segmentId: SegmentId,
    /** The lease's producer: whose grant covers the piece. */
    readonly producer: ProducerId,
    readonly segment: SequencedSegment,
    readonly position: number,
    readonly bytes: number,
    readonly records: number,
    public state: PieceState,
  ) {}

  /** The piece is its own ref (no second record per batch: issue 11). */
  get ref(): ReservationRef {
    return this;
  }
}

/** A write range of one producer: [front, end) not yet split into pieces. */
export interface LeaseEntry {
  readonly kind: 'lease';
  readonly ref: ReservationRef;
  readonly producer: ProducerId;
  /** Who asked for it (LeaseRequest.holder): other holders' leases make a partition contended. */
  readonly holder: string;
  readonly segment: SequencedSegment;
  readonly position: number;
  readonly end: number;
  /** Everything below front is pieces already; the lease covers [front, end). */
  front: number;
  /** Batches appended past front, in position order. */
  readonly ahead: Piece[];
  /**
   * The batches appended to the lease and not yet durable, by position; the durable ones are
   * in `durable` (created at the first). Exact retries find theirs in one or the other.
   */
  readonly batches: IntMap<Piece>;
  durable: BatchLog | null;
  activeAtMs: number;
  open: boolean;
}

type Pending = Piece | LeaseEntry;

/**
 * A persist request the sequencer refills (issue 11: no request or patch records per batch).
 * The Sequencer alternates two of them, so a request stays as issued until the persist after
 * the next one is due: callers read it while it is in flight and compare it with its answer,
 * and copy it to keep it longer (sequencer-types.ts, PersistRequest).
 */
export class PersistRecord implements PersistRequest {
  segmentId: SegmentId = '';
  chainPosition = 0;
  positionEnd = 0;
  offsetLast = -1;
  seal = false;
  /** Emptied and refilled from the spare records (emptyArray: its backing store stays). */
  readonly patches: OffsetPatch[] = [];
  /** Every patch record made so far, for the next requests: never shrunk. */
  readonly #spare: MutablePatch[] = [];

  /** Patch number `index`, refilled. */
  patchAt(index: number, piece: Piece): OffsetPatch {
    let patch = this.#spare[index];
    if (patch === undefined) {
      patch = { position: 0, baseOffset: -1, bytes: 0, records: 0 };
      this.#spare.push(patch);
    }
    patch.position = piece.position;
    patch.baseOffset = piece.baseOffset;
    patch.bytes = piece.bytes;
    patch.records = piece.records;
    return patch;
  }
}

interface MutablePatch { position: number; baseOffset: number; bytes: number; records: number }

/**
 * Empties an array and keeps its backing store: V8 drops the store when length is set to 0
 * (and splice allocates), so the next push would allocate a new one; pop does neither.
 */
export function emptyArray(array: unknown[]): void {
  while (array.length > 0) array.pop();
}

/**
 * Inserts into / removes from the middle of an array in place. Array.prototype.splice returns
 * an array of what it removed, a fresh one per call even when nothing was removed: per append
 * that was two allocations (issue 11). push and pop only grow or trim the backing store.
 */
function insertAt<T>(array: T[], index: number, value: T): void {
  array.push(value);
  for (let at = array.length - 1; at > index; at -= 1) array[at] = array[at - 1]!;
  array[index] = value;
}

function removeAt<T>(array: T[], index: number): void {
  for (let at = index; at < array.length - 1; at += 1) array[at] = array[at + 1]!;
  array.pop();
}

export function isWritten(piece: Pending): piece is Piece {
  return piece.kind !== 'lease' && (piece.state === 'written' || piece.state === 'filled');
}

export class SequencedSegment {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly sizeBytes: number;
  state: SegmentState;
  positionNext: number;
  /**
   * Refilled in place as they advance (no record per batch, issue 11): read them, never keep
   * them; view() and fetchView hand out copies.
   */
  readonly written: { position: number; offsetLast: number };
  readonly durable: { position: number; offsetLast: number };
  /** The one persist request issued and not yet answered. */
  persisting: PersistRequest | null = null;
  /** Not yet durable, in position order; the first #writtenCount are written pieces. */
  #pending: Pending[] = [];
  #writtenCount = 0;

  constructor(added: SegmentAdded, durable: Watermark, state: SegmentState) {
    this.segmentId = added.segmentId;
    this.chainPosition = added.chainPosition;
    this.baseOffset = added.baseOffset;
    this.sizeBytes = added.sizeBytes;
    this.state = state;
    this.durable = { position: durable.position, offsetLast: durable.offsetLast };
    this.written = { position: durable.position, offsetLast: durable.offsetLast };
    this.positionNext = durable.position;
    if (!(durable.position <= added.sizeBytes)) {
      invariant(false, 'durable watermark inside the segment',
        { segmentId: added.segmentId, position: durable.position, sizeBytes: added.sizeBytes });
    }
    if (!(durable.position > 0 || durable.offsetLast === added.baseOffset - 1)) {
      invariant(false, 'empty segment has offsetLast baseOffset - 1',
        { segmentId: added.segmentId });
    }
  }

  static empty(added: SegmentAdded): SequencedSegment {
    return new SequencedSegment(added, emptyWatermark(added.baseOffset), 'active');
  }

  roomBytes(): number {
    return this.sizeBytes - this.positionNext;
  }

  /** Every position handed out is written: the offset after the segment's last is known. */
  fullyWritten(): boolean {
    return this.written.position === this.positionNext;
  }

  /** Appends a lease at positionNext; the caller checked that it fits. */
  placeLease(lease: LeaseEntry): void {
    if (this.state !== 'active') {
      invariant(false, 'leases only in the active segment',
        { segmentId: this.segmentId, state: this.state });
    }
    if (!(lease.position === this.positionNext && lease.front === lease.position &&
        lease.end > lease.position && lease.end <= this.sizeBytes)) {
      invariant(false, 'lease at positionNext, inside',
        { position: lease.position, end: lease.end, positionNext: this.positionNext });
    }
    this.#pending.push(lease);
    this.positionNext = lease.end;
  }

  /**
   * A batch appended to `lease` (the caller checked that it lies inside, overlaps nothing and
   * leaves fillable gaps). At the lease's front it becomes a piece of its own, with every
   * batch appended ahead that now follows on.
   */
  append(lease: LeaseEntry, piece: Piece): void {
    if (!(lease.open && piece.position >= lease.front &&
        piece.position + piece.bytes <= lease.end)) {
      invariant(false, 'append inside the open lease',
        { position: piece.position, end: lease.end });
    }
    let index = 0;
    while (index < lease.ahead.length && lease.ahead[index]!.position <= piece.position) {
      index += 1;
    }
    insertAt(lease.ahead, index, piece);
    lease.batches.set(piece.position, piece);
    const at = this.#pending.indexOf(lease);
    if (!(at >= 0)) {
      invariant(false, 'an open lease with room is pending', { position: lease.position });
    }
    let split = 0;
    while (lease.ahead[0]?.position === lease.front) {
      const next = lease.ahead.shift()!;
      insertAt(this.#pending, at + split, next);
      split += 1;
      lease.front += next.bytes;
    }
    if (lease.front === lease.end) removeAt(this.#pending, at + split);
    this.advanceWritten();
  }

  /**
   * Ends a lease: its gaps (never appended) become fills of `fillRef`'s making, in position
   * order among the batches appended ahead. Returns the fills.
   */
  closeLease(lease: LeaseEntry, giveBack: boolean,
    fill: (position: number, bytes: number) => Piece): Piece[] {
    if (!lease.open) {
      invariant(false, 'a lease closes once', { position: lease.position });
    }
    lease.open = false;
    const at = this.#pending.indexOf(lease);
    if (at < 0) {
      if (!(lease.front === lease.end && lease.ahead.length === 0)) {
        invariant(false, 'a lease leaves the ' + 'pending list only when all of it is appended',
          { position: lease.position });
      }
      return [];
    }
    // The rest after the last batch appended, when it ends the segment's handed-out space,
    // goes back to the segment: the next lease starts there (or, in a full segment, the seal
    // ends there), no fill needed.
    const last = lease.ahead[lease.ahead.length - 1];
    const restStart = last === undefined ? lease.front : last.position + last.bytes;
    let end = lease.end;
    if (giveBack && this.state !== 'sealed' && lease.end === this.positionNext &&
        at === this.#pending.length - 1) {
      end = restStart;
      this.positionNext = restStart;
    }
    const pieces: Piece[] = [];
    const fills: Piece[] = [];
    let position = lease.front;
    for (const batch of [...lease.ahead, null]) {
      const gapEnd = batch === null ? end : batch.position;
      if (gapEnd > position) {
        const hole = fill(position, gapEnd - position);
        pieces.push(hole);
        fills.push(hole);
      }
      if (batch !== null) {
        pieces.push(batch);
        position = batch.position + batch.bytes;
      }
    }
    lease.ahead.length = 0;
    lease.front = lease.end;
    this.#pending.splice(at, 1, ...pieces);
    this.advanceWritten();
    return fills;
  }

  /**
   * The open leases that hold something back here: in a sealing segment all of them (the seal
   * waits for each), else those with a written piece after them (it waits for offsets). Adds
   * them to `into` when given and returns the earliest last activity among them (Infinity:
   * none). Allocates nothing: the broker asks after every append.
   */
  blockingLeases(into: LeaseEntry[] | null): number {
    if (this.state === 'sealed') return Infinity;
    let earliest = Infinity;
    // The open leases met since the last written piece: blocking only if one follows.
    let metCount = 0;
    let metEarliest = Infinity;
    for (let index = this.#writtenCount; index < this.#pending.length; index += 1) {
      const entry = this.#pending[index]!;
      // Batches appended ahead of a lease's front wait for the leases before it too.
      if (entry.kind === 'lease' ? entry.ahead.length > 0 : isWritten(entry)) {
        earliest = Math.min(earliest, metEarliest);
        metCount = 0;
        metEarliest = Infinity;
      }
      if (entry.kind === 'lease' && entry.open) {
        into?.push(entry);
        metCount += 1;
        metEarliest = Math.min(metEarliest, entry.activeAtMs);
      }
    }
    if (this.state === 'sealing') return Math.min(earliest, metEarliest);
    if (into !== null) into.length -= metCount;
    return earliest;
  }

  /** Moves `written` over every written piece that follows it, giving each its offsets. */
  advanceWritten(): boolean {
    const before = this.written.position;
    for (;;) {
      const next = this.#pending[this.#writtenCount];
      if (next === undefined || !isWritten(next)) break;
      if (next.position !== this.written.position) {
        invariant(false, 'written prefix is contiguous',
          { segmentId: this.segmentId, position: next.position });
      }
      next.baseOffset = this.written.offsetLast + 1;
      if (!Number.isSafeInteger(next.baseOffset + next.records)) {
        invariant(false, 'offsets below 2^53', { baseOffset: next.baseOffset });
      }
      this.written.position = next.position + next.bytes;
      this.written.offsetLast = next.baseOffset + next.records - 1;
      this.#writtenCount += 1;
    }
    if (!(this.written.position <= this.positionNext)) {
      invariant(false, 'written within handed out',
        { written: this.written.position, positionNext: this.positionNext });
    }
    return this.written.position !== before;
  }

  /** The persist this segment needs now, or null (one in flight, or nothing new). */
  persistDue(into: PersistRecord): PersistRequest | null {
    if (this.state === 'sealed' || this.persisting !== null) return null;
    if (!(this.durable.position <= this.written.position)) {
      invariant(false, 'durable within written', { segmentId: this.segmentId });
    }
    const seal = this.state === 'sealing' && this.written.position === this.positionNext;
    if (this.written.position === this.durable.position && !seal) return null;
    const { patches } = into;
    emptyArray(patches);
    for (let index = 0; index < this.#writtenCount; index += 1) {
      patches.push(into.patchAt(index, this.#pending[index] as Piece));
    }
    into.segmentId = this.segmentId;
    into.chainPosition = this.chainPosition;
    into.positionEnd = this.written.position;
    into.offsetLast = this.written.offsetLast;
    into.seal = seal;
    return into;
  }

  /**
   * The storage node made `request` durable. Writes the pieces now entirely under the durable
   * watermark to `into` from index 0, in order, and returns how many; they leave the pending
   * list. (`into` is the caller's scratch: written by index, it grows only past its peak.)
   */
  applyPersisted(request: PersistRequest, into: (Piece | null)[]): number {
    if (!(request.positionEnd >= this.durable.position &&
        request.offsetLast >= this.durable.offsetLast)) {
      invariant(false, 'durable watermark only grows',
        { segmentId: this.segmentId, position: request.positionEnd,
          durable: this.durable.position });
    }
    if (!(request.positionEnd <= this.written.position)) {
      invariant(false, 'durable only over written bytes',
        { segmentId: this.segmentId, position: request.positionEnd });
    }
    this.durable.position = request.positionEnd;
    this.durable.offsetLast = request.offsetLast;
    this.persisting = null;
    if (request.seal) {
      if (!(this.state === 'sealing' && this.durable.position === this.positionNext)) {
        invariant(false, 'seal only a sealing segment at its end', { segmentId: this.segmentId });
      }
      this.state = 'sealed';
    }
    let count = 0;
    while (count < this.#writtenCount) {
      const entry = this.#pending[count] as Piece;
      if (entry.position + entry.bytes > this.durable.position) break;
      count += 1;
    }
    for (let index = 0; index < count; index += 1) {
      const piece = this.#pending[index] as Piece;
      if (index < into.length) into[index] = piece;
      else into.push(piece);
    }
    // In place (splice would return a fresh array of them): shift the rest down.
    const rest = this.#pending.length - count;
    for (let index = 0; index < rest; index += 1) {
      this.#pending[index] = this.#pending[index + count]!;
    }
    this.#pending.length = rest;
    this.#writtenCount -= count;
    const first = this.#pending[0];
    if (!(first === undefined ||
        (first.kind === 'lease' ? first.front : first.position) === this.durable.position)) {
      invariant(false, 'durable watermark lies on a batch boundary', { segmentId: this.segmentId });
    }
    return count;
  }

  pendingCount(): number {
    return this.#pending.length;
  }

  view(): SegmentView {
    return {
      segmentId: this.segmentId, chainPosition: this.chainPosition, baseOffset: this.baseOffset,
      sizeBytes: this.sizeBytes, state: this.state, positionNext: this.positionNext,
      durable: { ...this.durable }, written: { ...this.written },
      persistInFlight: this.persisting,
    };
  }
}
