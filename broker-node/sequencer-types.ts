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
  /**
   * The largest segment the storage nodes allocate (a region's geometry): no batch may be
   * larger. Segments themselves are sized by the storage node (small first, growing; at least
   * the batch that asked for one), and each one's size comes with it (SegmentAdded).
   */
  readonly segmentSizeBytes: number;
  /** Default SEQUENCER_LIMITS.reservationTimeoutMsDefault. */
  readonly reservationTimeoutMs?: number;
  /** Default SEQUENCER_LIMITS.reservationsMax. */
  readonly reservationsMax?: number;
  /**
   * A lease is at most 1/leaseFraction of its segment (default 8): a full segment seals by
   * closing every lease in it, so leases as large as segments would close each other.
   */
  readonly leaseFraction?: number;
  /**
   * The most a lease is given while another producer holds an open lease in the partition
   * (default SEQUENCER_LIMITS.leaseContendedBytesDefault, never below the batch it is for):
   * offsets follow positions, so every batch behind a lease waits until all of the lease is
   * written, released or cut.
   */
  readonly leaseContendedBytes?: number;
  /**
   * A lease with no append for this long is cut (closed, its rest filled) when it holds back
   * something: a written batch behind it, or the seal of its full segment (default
   * SEQUENCER_LIMITS.leaseBlockingIdleMsDefault).
   */
  readonly leaseBlockingIdleMs?: number;
  /** Offset of a new partition's first record (default 0). Ignored by restore. */
  readonly offsetFirst?: number;
}

/** Identifies a reservation across broker restarts: ids restart, epochs never go down. */
export interface ReservationRef {
  readonly epoch: number;
  readonly id: number;
}

/** A producer's write range: batches go back to back from `position`, up to `bytes`. */
export interface Lease extends ReservationRef {
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly bytes: number;
}

export interface LeaseRequest {
  /** The range wanted; the lease may be smaller (the segment's room), never below bytesMin. */
  readonly bytes: number;
  /** The batch the producer must place next: a lease smaller than this is no use. */
  readonly bytesMin: number;
  readonly producer: ProducerId;
  /**
   * Who asks (the broker: the client session; default `producer`): leases of other holders
   * make the partition contended, one holder's own leases do not.
   */
  readonly holder?: string;
  /** Milliseconds on a monotonic clock; never goes down between calls. */
  readonly now: number;
}

/**
 * The baseOffset the storage node writes into the batch header at `position`, and what the
 * batch there must be (its producer said so): `bytes` long with `records` records.
 */
export interface OffsetPatch {
  readonly position: number;
  readonly baseOffset: number;
  readonly bytes: number;
  readonly records: number;
}

/**
 * Ask the storage node to persist `segmentId` up to `positionEnd`: patch each batch's
 * baseOffset, then the data, then the watermark. `seal`: this is the segment's final
 * watermark; persist it with sealSegment. `patches` covers every piece from the durable
 * watermark to positionEnd (a repeat patches the same offsets again).
 *
 * The sequencer refills its requests (two, in turn; issue 11): one stays as issued until the
 * persist after the next is due. Read it while it is in flight and when its answer comes; copy
 * it (copyPersistRequest) to keep it longer.
 */
export interface PersistRequest {
  readonly segmentId: SegmentId;
  readonly chainPosition: number;
  readonly positionEnd: number;
  readonly offsetLast: number;
  readonly seal: boolean;
  readonly patches: readonly OffsetPatch[];
}

/** A request as it is now, for a caller that keeps it past the next persist (tests). */
export function copyPersistRequest(request: PersistRequest): PersistRequest {
  return { ...request, patches: request.patches.map((patch) => ({ ...patch })) };
}

export type LeaseResult =
  | { readonly kind: 'leased'; readonly lease: Lease }
  | {
    /**
     * The active segment has no room (it is now sealing) or there is none: allocate the
     * segment at chainPosition with baseOffset, call segmentAdded, then lease again. Every
     * lease answers the same until then; the caller allocates once per chainPosition.
     */
    readonly kind: 'need-segment';
    readonly chainPosition: number;
    readonly baseOffset: number;
    /** The new segment must hold at least this: the batch that did not fit. */
    readonly sizeBytesMin: number;
    /** Sealing made a persist due (the segment's seal, when all of it was durable already). */
    readonly persist: PersistRequest | null;
  }
  | {
    /**
     * The full (sealing) segment's offsets are not final yet: leases in it are still open
     * with unwritten room (their appends answer `ending`, and they are released, used up or
     * expire), or fills are still being written. Lease again later.
     */
    readonly kind: 'wait';
    readonly persist: PersistRequest | null;
  };

/** What append did with a batch. */
export type AppendResult =
  /**
   * Written; acknowledged when a later `persisted` covers it. One record refilled by every
   * append that takes a batch (issue 11): read it before the next append (ref stays yours).
   */
  | { readonly kind: 'appended'; readonly ref: ReservationRef;
    readonly persist: PersistRequest | null }
  /** The same batch was appended before: its ack is `ack` (null: not durable yet, wait). */
  | { readonly kind: 'again'; readonly ref: ReservationRef; readonly ack: Ack | null }
  /** PMQ_ERR_LEASE_EXPIRED (retriable: lease again, write again) or PMQ_ERR_LEASE_INVALID. */
  | { readonly kind: 'refused'; readonly error: PmqError };

export interface AppendRequest {
  readonly lease: ReservationRef;
  readonly position: number;
  readonly bytes: number;
  readonly records: number;
  readonly now: number;
}

/** A batch now entirely under the durable watermark: tell its producer. */
export interface Ack extends ReservationRef {
  readonly producer: ProducerId;
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly bytes: number;
  readonly baseOffset: number;
  readonly records: number;
}

/**
 * Refilled by every persisted() call (issue 11: no arrays or result record per persist): read
 * it before the next call, copy what you keep (its acks themselves stay as they are).
 */
export interface PersistedResult {
  /** Acknowledge these producers, in offset order. Never the same batch twice. */
  readonly acks: readonly Ack[];
  /** Filled holes now durable: nobody to acknowledge. */
  readonly filled: readonly ReservationRef[];
  /** The next (coalesced) persist to issue, if one is due. */
  readonly persist: PersistRequest | null;
  /** A sealing segment whose final watermark is now durable. */
  readonly sealed: SegmentId | null;
}

/**
 * A hole of a closed lease (never appended). The broker revokes `revoke`'s storage grant
 * first (so the late producer cannot overwrite it), writes a control batch of exactly
 * `bytes` bytes and `records` records at `position` (its baseOffset is patched at persist),
 * then calls fillWritten(ref).
 */
export interface Fill {
  readonly ref: ReservationRef;
  readonly revoke: ProducerId;
  readonly segmentId: SegmentId;
  readonly position: number;
  readonly bytes: number;
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

/** The durable head as consumers are pushed it (durableHeadInto fills one). */
export interface DurableHead {
  chainPosition: number;
  /** The head segment's durable watermark. */
  position: number;
  offsetLast: number;
  sealed: boolean;
  highWatermark: number;
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
  | 'PMQ_ERR_LEASE_INVALID'
  | 'PMQ_ERR_BUSY'
  | 'PMQ_ERR_LEASE_EXPIRED'
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
