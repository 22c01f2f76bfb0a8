/**
 * The sequencer's vocabulary: what goes in, what comes out, and the errors it replies with.
 * No state lives here; broker-node/sequencer.ts holds it. docs/sequencer.md explains the model.
 */
import { PmqError, type ErrorCode } from '../common/errors.js';
import type { Watermark } from '../common/layout.js';

export type { Watermark };

/**
 * Names one segment. Opaque to the sequencer, which only compares it: the broker's segment
 * allocator makes it (storage node id and segment index today, a replica list later).
 */
export type SegmentId = string;

/** Names the producer (connection and producer id) whose storage grant covers a reservation. */
export type ProducerId = string;

export type SegmentState = 'active' | 'sealing' | 'sealed';

export interface SequencerConfig {
  /**
   * The broker's fencing epoch. Reservations carry it: a commit naming another epoch was made
   * by an earlier broker instance and is refused.
   */
  readonly epoch: number;
  /** Size of the segments the broker allocates for this partition (a region's geometry). */
  readonly segmentSizeBytes: number;
  /** Default SEQUENCER_LIMITS.reservationTimeoutMsDefault. */
  readonly reservationTimeoutMs?: number;
  /** Default SEQUENCER_LIMITS.reservationsMax. */
  readonly reservationsMax?: number;
  /** Offset of a new partition's first record (default 0). Ignored by restore. */
  readonly offsetFirst?: number;
}

/** Identifies a reservation across broker restarts: ids restart, epochs never go down. */
export interface ReservationRef {
  readonly epoch: number;
  readonly id: number;
}

/** What a producer is told: write `bytes` at `position` of `segmentId`, offsets from base. */
export interface Reservation extends ReservationRef {
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly baseOffset: number;
  readonly bytes: number;
  readonly records: number;
}

export interface ReserveRequest {
  readonly bytes: number;
  readonly records: number;
  readonly producer: ProducerId;
  /** Milliseconds on a monotonic clock; never goes down between calls. */
  readonly now: number;
}

/**
 * Ask the storage node to persist `segmentId` up to `positionEnd` (data first, then the
 * watermark). `seal`: this is the segment's final watermark; persist it with sealSegment.
 */
export interface PersistRequest {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly positionEnd: number;
  readonly offsetLast: number;
  readonly seal: boolean;
}

export type ReserveResult =
  | { readonly kind: 'reserved'; readonly reservation: Reservation }
  | {
    /**
     * The active segment has no room (it is now sealing) or there is none: allocate the
     * segment at chainPosition with baseOffset, call segmentAdded, then reserve again. Every
     * reserve answers the same until then; the caller allocates once per chainPosition.
     */
    readonly kind: 'need-segment';
    readonly chainPosition: number;
    readonly baseOffset: number;
    /** Sealing made a persist due (the segment's seal, when all of it was durable already). */
    readonly persist: PersistRequest | null;
  };

/** A batch now entirely under the durable watermark: tell its producer. */
export interface Ack extends ReservationRef {
  readonly producer: ProducerId;
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly bytes: number;
  readonly baseOffset: number;
  readonly records: number;
}

export type CommitResult =
  /** Written; acknowledged when a later `persisted` covers it. */
  | { readonly kind: 'committed'; readonly persist: PersistRequest | null }
  /** A retried commit of a batch acknowledged already: send this acknowledgement again. */
  | { readonly kind: 'durable'; readonly ack: Ack }
  /**
   * Refused with PMQ_ERR_RESERVATION_EXPIRED. `revoke`: the producer whose storage grant the
   * broker must revoke (it wrote into a hole that was filled), when the sequencer knows it.
   */
  | { readonly kind: 'refused'; readonly error: PmqError; readonly revoke: ProducerId | null };

export interface PersistedResult {
  /** Acknowledge these producers, in offset order. Never the same reservation twice. */
  readonly acks: readonly Ack[];
  /** Filled holes now durable: nobody to acknowledge. */
  readonly filled: readonly ReservationRef[];
  /** The next (coalesced) persist to issue, if one is due. */
  readonly persist: PersistRequest | null;
  /** A sealing segment whose final watermark is now durable. */
  readonly sealed: SegmentId | null;
}

/**
 * An expired reservation. The broker revokes `revoke`'s storage grant first (so the late
 * producer cannot overwrite it), writes a control batch of exactly `bytes` bytes and
 * `records` offsets from `baseOffset` at `position`, then calls fillWritten(ref).
 */
export interface Fill {
  readonly ref: ReservationRef;
  readonly revoke: ProducerId;
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly bytes: number;
  readonly baseOffset: number;
  readonly records: number;
}

export interface SegmentAdded {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly sizeBytes: number;
}

/** One segment-table entry as read from a storage node at recovery. */
export interface RestoredSegment extends SegmentAdded {
  readonly watermark: Watermark;
  readonly sealed: boolean;
}

/** Where a consumer reads `offset`: scan segmentId from position 0, never past watermark. */
export interface FetchView {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly watermark: Watermark;
  /** No more data will appear in this segment: continue at the next chainPosition. */
  readonly sealed: boolean;
}

/** Read-only view of one segment, for tests, metrics and the admin API. */
export interface SegmentView extends SegmentAdded {
  readonly state: SegmentState;
  readonly positionNext: number;
  readonly durable: Watermark;
  readonly written: Watermark;
  readonly persistInFlight: PersistRequest | null;
}

/** The catalogue's codes (common/error-codes.ts) the sequencer refuses with. */
export type SequencerErrorCode = Extract<ErrorCode,
  | 'PMQ_ERR_RECORD_TOO_LARGE'
  | 'PMQ_ERR_RESERVATION_INVALID'
  | 'PMQ_ERR_BUSY'
  | 'PMQ_ERR_RESERVATION_EXPIRED'
  | 'PMQ_ERR_CHAIN_INVALID'
  | 'PMQ_ERR_OFFSET_OUT_OF_RANGE'>;

/** A request the sequencer refuses; the connection layer turns it into an error reply. */
export class SequencerError extends PmqError {
  declare readonly code: SequencerErrorCode;

  constructor(code: SequencerErrorCode, message: string, opts: { retriable?: boolean } = {}) {
    super(code, message, opts);
  }
}

/** The empty watermark of a segment starting at baseOffset (docs/region-format.md). */
export function emptyWatermark(baseOffset: number): Watermark {
  return { position: 0, offsetLast: baseOffset - 1 };
}
