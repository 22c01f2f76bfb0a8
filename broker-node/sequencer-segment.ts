/**
 * One segment as the sequencer sees it: how far positions were handed out (positionNext), how
 * far the bytes are written by producers or fillers without a gap (written), how far they are
 * durable on the storage node (durable), and the reservations not yet durable, in position
 * order. Pure state, owned by one Sequencer; every change keeps
 *   durable.position ≤ written.position ≤ positionNext ≤ sizeBytes,
 * and the pending reservations tile [durable.position, positionNext) back to back.
 */
import { invariant } from '../common/invariant.js';
import {
  emptyWatermark,
  type PersistRequest, type ProducerId, type ReservationRef, type SegmentAdded, type SegmentId,
  type SegmentState, type SegmentView, type Watermark,
} from './sequencer-types.js';

/**
 * reserved: handed out, not written yet. committed: the producer wrote it. filling: expired,
 * the broker is writing a control batch over it. filled: the control batch is written.
 */
export type InFlightState = 'reserved' | 'committed' | 'filling' | 'filled';

/** A reservation between reserve and durability. */
export interface InFlight {
  readonly ref: ReservationRef;
  readonly producer: ProducerId;
  readonly segment: SequencedSegment;
  readonly position: number;
  readonly bytes: number;
  readonly baseOffset: number;
  readonly records: number;
  readonly reservedAtMs: number;
  state: InFlightState;
}

export function isWritten(state: InFlightState): boolean {
  return state === 'committed' || state === 'filled';
}

export class SequencedSegment {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly sizeBytes: number;
  state: SegmentState;
  positionNext: number;
  /** The offset the next reservation in this segment starts at. */
  offsetNext: number;
  written: Watermark;
  durable: Watermark;
  /** The one persist request issued and not yet answered. */
  persisting: PersistRequest | null = null;
  /** Not yet durable, in position order; the first #writtenCount are written. */
  #pending: InFlight[] = [];
  #writtenCount = 0;

  constructor(added: SegmentAdded, durable: Watermark, state: SegmentState) {
    this.segmentId = added.segmentId;
    this.chainPosition = added.chainPosition;
    this.baseOffset = added.baseOffset;
    this.sizeBytes = added.sizeBytes;
    this.state = state;
    this.durable = durable;
    this.written = durable;
    this.positionNext = durable.position;
    this.offsetNext = durable.offsetLast + 1;
    invariant(durable.position <= added.sizeBytes, 'durable watermark inside the segment',
      { segmentId: added.segmentId, position: durable.position, sizeBytes: added.sizeBytes });
    invariant(durable.position > 0 || durable.offsetLast === added.baseOffset - 1,
      'empty segment has offsetLast baseOffset - 1', { segmentId: added.segmentId });
  }

  static empty(added: SegmentAdded): SequencedSegment {
    return new SequencedSegment(added, emptyWatermark(added.baseOffset), 'active');
  }

  roomBytes(): number {
    return this.sizeBytes - this.positionNext;
  }

  /** Appends a reservation at positionNext; the caller checked that it fits. */
  place(entry: InFlight): void {
    invariant(this.state === 'active', 'place only into the active segment',
      { segmentId: this.segmentId, state: this.state });
    invariant(entry.position === this.positionNext && entry.baseOffset === this.offsetNext,
      'reservations are contiguous in positions and offsets',
      { position: entry.position, positionNext: this.positionNext });
    invariant(entry.bytes > 0 && entry.position + entry.bytes <= this.sizeBytes,
      'reservation inside the segment', { position: entry.position, bytes: entry.bytes });
    this.#pending.push(entry);
    this.positionNext += entry.bytes;
    this.offsetNext += entry.records;
  }

  /** Moves `written` over every written reservation that follows it; true when it moved. */
  advanceWritten(): boolean {
    const before = this.written.position;
    for (;;) {
      const next = this.#pending[this.#writtenCount];
      if (next === undefined || !isWritten(next.state)) break;
      invariant(next.position === this.written.position &&
        next.baseOffset === this.written.offsetLast + 1,
      'written prefix is contiguous', { segmentId: this.segmentId, position: next.position });
      this.written = { position: next.position + next.bytes,
        offsetLast: next.baseOffset + next.records - 1 };
      this.#writtenCount += 1;
    }
    invariant(this.written.position <= this.positionNext, 'written within handed out',
      { written: this.written.position, positionNext: this.positionNext });
    return this.written.position !== before;
  }

  /** The persist this segment needs now, or null (one in flight, or nothing new). */
  persistDue(): PersistRequest | null {
    if (this.state === 'sealed' || this.persisting !== null) return null;
    invariant(this.durable.position <= this.written.position, 'durable within written',
      { segmentId: this.segmentId });
    const seal = this.state === 'sealing' && this.written.position === this.positionNext;
    if (this.written.position === this.durable.position && !seal) return null;
    return {
      segmentId: this.segmentId, chainPosition: this.chainPosition,
      positionEnd: this.written.position, offsetLast: this.written.offsetLast, seal,
    };
  }

  /**
   * The storage node made `request` durable. Returns the reservations now entirely under the
   * durable watermark, in order; they leave the pending list.
   */
  applyPersisted(request: PersistRequest): InFlight[] {
    invariant(request.positionEnd >= this.durable.position &&
      request.offsetLast >= this.durable.offsetLast, 'durable watermark only grows',
    { segmentId: this.segmentId, position: request.positionEnd, durable: this.durable.position });
    invariant(request.positionEnd <= this.written.position, 'durable only over written bytes',
      { segmentId: this.segmentId, position: request.positionEnd });
    this.durable = { position: request.positionEnd, offsetLast: request.offsetLast };
    this.persisting = null;
    if (request.seal) {
      invariant(this.state === 'sealing' && this.durable.position === this.positionNext,
        'seal only a sealing segment at its end', { segmentId: this.segmentId });
      this.state = 'sealed';
    }
    let count = 0;
    while (count < this.#writtenCount) {
      const entry = this.#pending[count];
      invariant(entry !== undefined, 'written count within pending', { count });
      if (entry.position + entry.bytes > this.durable.position) break;
      count += 1;
    }
    const durableEntries = this.#pending.slice(0, count);
    this.#pending = this.#pending.slice(count);
    this.#writtenCount -= count;
    invariant(this.#pending[0] === undefined || this.#pending[0].position === this.durable.position,
      'durable watermark lies on a batch boundary', { segmentId: this.segmentId });
    return durableEntries;
  }

  pendingCount(): number {
    return this.#pending.length;
  }

  view(): SegmentView {
    return {
      segmentId: this.segmentId, chainPosition: this.chainPosition, baseOffset: this.baseOffset,
      sizeBytes: this.sizeBytes, state: this.state, positionNext: this.positionNext,
      durable: this.durable, written: this.written, persistInFlight: this.persisting,
    };
  }
}
