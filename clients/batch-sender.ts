/**
 * Sends one partition's batches: encode → place in the session's lease → write → append →
 * acked. Two sequential round trips per batch (the write to the storage node, the append to
 * the broker); the lease itself (one broker round trip, with one grant creation on the
 * storage node) is taken once per `leaseBytes` of batches (docs/clients.md, "Leases").
 *
 * Each batch is encoded once, straight into a pooled buffer, with baseOffset 0 (zero copy: but
 * for record values of at least `zeroCopyMinBytes`, which are written from the caller's own
 * buffers, one validated write per piece; docs/clients.md, "Zero copy"): offsets are
 * assigned by the broker when the batch is appended (in position order) and patched into the
 * header by the storage node before it persists (the CRC does not cover the field). Batches
 * are placed back to back in the lease, in send order, and their appends are sent in that
 * order too (so an idempotent producer's sequences arrive in order); up to
 * `maxInFlightBatches` batches of a partition are in flight. A placement always leaves the
 * lease's rest either empty or large enough for the control batch that fills it when the lease
 * ends (FILL_BYTES_MIN).
 *
 * Retries (up to `retries`, exponential backoff from `retryBackoffMs`): a retriable append
 * failure repeats the append (an exact repeat is answered like the first); a failed write, a
 * closed lease or a lost grant starts the batch over in a new lease (the abandoned bytes are
 * filled by the broker). A batch that starts over while later batches of the partition are in
 * flight lands after them, as in Kafka without idempotence: set maxInFlightBatches to 1 for
 * strict order under failures.
 *
 * Idempotence (producerId ≥ 0): each batch carries the partition's next sequence, fixed at
 * encode time, and every retry sends the same one, so the broker stores it once: a retry of a
 * batch already appended is answered `duplicate` with its original offset (the retry's copy is
 * filled over). PMQ_ERR_OUT_OF_ORDER_SEQUENCE (the broker lost track of this producer's
 * sequence) drops the producer id: the batch is encoded again under a new one (sequences
 * restart at 0) and sent again.
 *
 * An idle sender (nothing queued or in flight for LEASE_IDLE_RELEASE_MS) releases its lease:
 * until then, the rest of its lease holds back other producers' batches placed after it. A
 * lease the broker answered `leaseEnd` for (its segment is full, or another producer's lease
 * waits behind a large rest of it) is released as soon as the sender is idle.
 */
import { PmqError, type ErrorCode } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import {
  encodePlannedRecordBatchGather, encodePlannedRecordBatchInto, gatherCopiedBytes,
  planRecordBatch, type EncodeOptions,
} from '../common/record-batch/index.js';
import type { Body } from '../common/wire/messages.js';
import type { Endpoint, GrantRef } from '../native/transport.js';
import type { ProducerBatch } from './accumulator.js';
import type { Connection } from './connection.js';
import { RecordTooLargeError, toClientError } from './errors.js';
import type { BufferPool } from './flow-control.js';

/** docs/clients.md, "Zero copy": which is cheaper depends on UCX's protocols (measured). */
export type ZeroCopyWrites = 'pieces' | 'iov';

/** How long a closing producer waits for each lease's release (a broker away costs no more). */
export const RELEASE_ON_CLOSE_TIMEOUT_MS = 2000;

export interface SenderOptions {
  acks: 'all' | 'none';
  idempotent: boolean;
  maxInFlightBatches: number;
  maxRecordBatchBytes: number;
  /** The write range asked for per lease (the broker may give less: a segment's room). */
  leaseBytes: number;
  /** Record values of at least this many bytes are sent from the caller's buffer, uncopied. */
  zeroCopyMinBytes: number;
  /** How a batch with uncopied values is written: one write per piece, or one iov write. */
  zeroCopyWrites: ZeroCopyWrites;
  retries: number;
  retryBackoffMs: number;
  requestTimeoutMs: number;
}

export interface ProducerIdentity { producerId: number; producerEpoch: number }

/** The producer's id for idempotence: asked once, forgotten after an out-of-order answer. */
export interface IdentitySource {
  get(): Promise<ProducerIdentity>;
  /** Drops `producerId` (if still current): the next get() asks the broker for a new one. */
  forget(producerId: number): void;
}

/** What the producer does when a batch settles. baseOffset -1: not known (acks 'none'). */
export interface BatchOutcome<S> {
  written(batch: ProducerBatch<S>, baseOffset: number): void;
  failed(batch: ProducerBatch<S>, error: PmqError): void;
  done(batch: ProducerBatch<S>): void;
}

interface Encoded {
  /** Pooled: the whole batch, or (zero copy) the part of it that was copied. */
  buffer: Uint8Array;
  /** Zero copy: the batch in order, views of `buffer` and the records' large values. */
  pieces: Uint8Array[] | null;
  sizeBytes: number;
  producerId: number;
  baseSequence: number;
}

/** A lease this sender holds: where its next batch goes, and what is still being written. */
interface HeldLease {
  readonly body: Body<'leased'>;
  readonly session: number;
  /** Bytes of the lease placed so far. */
  used: number;
  /** Placements whose append is not issued yet (nor given up). */
  unsent: number;
  /** Wakes the lease's retirement once `unsent` reaches 0. */
  onDrained: (() => void) | null;
  /** The broker said its segment is full (acked.leaseEnd): place nothing more in it. */
  ending: boolean;
}

/** One batch's place: its lease, segment position and region address. */
interface Placement {
  readonly lease: HeldLease;
  readonly position: number;
  readonly address: number;
  /** Resolves once the append of the placement before it was issued (or given up). */
  readonly turn: Promise<void>;
  /** Issued (or given up): lets the next placement's append go. */
  readonly issued: () => void;
  done: boolean;
}

const RETRY_AS_NEW_BATCH = new Set<ErrorCode>(['PMQ_ERR_LEASE_EXPIRED',
  'PMQ_ERR_GRANT_REVOKED', 'PMQ_ERR_GRANT_UNKNOWN', 'PMQ_ERR_FENCED']);

/** What a batch meets when the broker closed its lease under it. */
const LEASE_CLOSED = new Set<ErrorCode>(['PMQ_ERR_LEASE_EXPIRED', 'PMQ_ERR_GRANT_REVOKED']);

/** Kafka's sequences are int32 and wrap. */
const SEQUENCE_MODULUS = 0x8000_0000;

/**
 * The smallest rest of a lease the broker can fill (a one-record control batch): a placement
 * leaves 0 or at least this many bytes (broker-node/sequencer.ts, FILL_BYTES_MIN).
 */
export const LEASE_REST_BYTES_MIN = 68;

/** An idle sender gives its lease back after this long (other producers wait behind it). */
export const LEASE_IDLE_RELEASE_MS = 50;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class PartitionSender<S> {
  private readonly queue: ProducerBatch<S>[] = [];
  private inFlight = 0;
  /** Start order of the batches not yet settled (ascending), and the next one's. */
  private readonly unsettled: number[] = [];
  private ordinalNext = 0;
  /** The next sequence of `sequenceOwner` (a producer id) on this partition. */
  private sequence = 0;
  private sequenceOwner = -1;
  private lease: HeldLease | null = null;
  /** Placements happen one at a time, in start order (a new lease may be awaited). */
  private placeTurn: Promise<unknown> = Promise.resolve();
  /** The issue signal of the latest placement: the next one's append waits for it. */
  private lastIssued: Promise<void> = Promise.resolve();
  private idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly topic: string, private readonly partition: number,
    private readonly connection: Connection, private readonly pool: BufferPool,
    private readonly identity: IdentitySource,
    private readonly options: SenderOptions, private readonly outcome: BatchOutcome<S>,
    private readonly log: Logger) {}

  enqueue(batch: ProducerBatch<S>): void {
    this.queue.push(batch);
    this.pump();
  }

  get busy(): boolean {
    return this.inFlight > 0 || this.queue.length > 0;
  }

  /**
   * A batch handed over now would start at once: room in the window and nothing queued. While
   * not, the producer keeps a lingering batch open, so records arriving meanwhile join it
   * instead of queueing up as many small batches (Kafka's accumulator does the same).
   */
  get ready(): boolean {
    return this.queue.length === 0 && this.hasRoom();
  }

  /**
   * Gives the lease back (the producer closes); resolves once the broker took it back, or
   * failed to, or after RELEASE_ON_CLOSE_TIMEOUT_MS: so a sender that leases next (another
   * producer of this client) is not placed behind a rest still held. Never rejects.
   */
  close(): Promise<void> {
    return this.releaseLease(RELEASE_ON_CLOSE_TIMEOUT_MS);
  }

  private hasRoom(): boolean {
    const oldest = this.unsettled[0] ?? this.ordinalNext;
    return this.options.idempotent
      ? this.ordinalNext - oldest < this.options.maxInFlightBatches
      : this.inFlight < this.options.maxInFlightBatches;
  }

  /**
   * Starts queued batches while fewer than maxInFlightBatches run. Idempotent: as a window, a
   * batch starts only within maxInFlightBatches of the oldest unsettled one, so a batch that
   * keeps retrying is never pushed out of the broker's producer state (PRODUCER_LIMITS).
   */
  private pump(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    for (;;) {
      if (!this.hasRoom() || this.queue.length === 0) break;
      const batch = this.queue.shift()!;
      const ordinal = this.ordinalNext;
      this.ordinalNext += 1;
      this.unsettled.push(ordinal);
      this.inFlight += 1;
      void this.run(batch).finally(() => {
        this.inFlight -= 1;
        this.unsettled.splice(this.unsettled.indexOf(ordinal), 1);
        this.outcome.done(batch);
        this.pump();
      });
    }
    if (!this.busy && this.lease !== null && this.lease.ending) {
      // The broker asked for it back (others wait behind it): no reason to keep it.
      void this.releaseLease();
    } else if (!this.busy && this.lease !== null) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        if (!this.busy) void this.releaseLease();
      }, LEASE_IDLE_RELEASE_MS);
      this.idleTimer.unref?.();
    }
  }

  private async run(batch: ProducerBatch<S>): Promise<void> {
    let encoded: Encoded | undefined;
    try {
      for (let attempt = 0; ; attempt += 1) {
        const identity = await this.identity.get();
        encoded = this.encode(batch, identity);
        try {
          const baseOffset = await this.deliver(batch, encoded);
          if (this.options.acks === 'all') this.outcome.written(batch, baseOffset);
          return;
        } catch (error) {
          if (!(error instanceof PmqError) || error.code !== 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE' ||
              attempt >= this.options.retries) throw error;
          this.log.warn({ producerId: identity.producerId, err: error.message },
            'sequence refused, new producer id');
          this.identity.forget(identity.producerId);
          this.pool.give(encoded.buffer);
          encoded = undefined;
        }
      }
    } catch (error) {
      this.outcome.failed(batch, toClientError(error, { what: `producing to ${this.topic}/` +
        `${this.partition}`, topic: this.topic, partition: this.partition }));
    } finally {
      if (encoded !== undefined) this.pool.give(encoded.buffer);
    }
  }

  /** Encodes the batch into a pooled buffer (baseOffset 0: the storage node patches it). */
  private encode(batch: ProducerBatch<S>, identity: ProducerIdentity): Encoded {
    if (identity.producerId !== this.sequenceOwner) {
      this.sequenceOwner = identity.producerId;
      this.sequence = 0;
    }
    const baseSequence = identity.producerId < 0 ? -1 : this.sequence;
    const options: EncodeOptions = { timestampDefault: Date.now(),
      producerId: identity.producerId, producerEpoch: identity.producerEpoch, baseSequence };
    if (identity.producerId >= 0) {
      this.sequence = (this.sequence + batch.records.length) % SEQUENCE_MODULUS;
    }
    const plan = planRecordBatch(batch.records, options);
    const { sizeBytes } = plan;
    if (sizeBytes > this.options.maxRecordBatchBytes) {
      throw new RecordTooLargeError(`a batch of ${sizeBytes} bytes exceeds maxRecordBatchBytes ` +
        `${this.options.maxRecordBatchBytes}`);
    }
    const referenceMinBytes = this.options.zeroCopyMinBytes;
    if (batch.valueBytesMax >= referenceMinBytes) {
      const buffer = this.pool.take(gatherCopiedBytes(plan, referenceMinBytes));
      const pieces = encodePlannedRecordBatchGather(buffer, plan, referenceMinBytes);
      return { buffer, pieces, sizeBytes, producerId: identity.producerId, baseSequence };
    }
    const buffer = this.pool.take(sizeBytes);
    encodePlannedRecordBatchInto(buffer, 0, plan);
    return { buffer, pieces: null, sizeBytes, producerId: identity.producerId, baseSequence };
  }

  /**
   * Place, write, append; starts over in a new lease after a failed write or a lost lease.
   * The append retries its own request first, so its failures start over only when the lease
   * itself is gone.
   */
  private async deliver(batch: ProducerBatch<S>, encoded: Encoded): Promise<number> {
    let reported = false; // acks 'none': written() once, whatever the retries
    for (let attempt = 0; ; attempt += 1) {
      let stage: 'request' | 'write' = 'request';
      let placement: Placement | undefined;
      try {
        placement = await this.placeInTurn(encoded.sizeBytes);
        const { body } = placement.lease;
        stage = 'write';
        const ep = await this.connection.storageEndpoint(body.nodeId);
        const grant = { id: body.grantId, epoch: body.grantEpoch, key: body.grantKey };
        if (encoded.pieces === null) {
          await this.connection.transport.writeValidated(ep, grant, placement.address,
            encoded.buffer, 0, encoded.sizeBytes);
        } else if (this.options.zeroCopyWrites === 'iov') {
          await this.connection.transport.writeValidatedIov(ep, grant, placement.address,
            encoded.pieces);
        } else {
          await this.writePieces(ep, grant, placement.address, encoded.pieces);
        }
        stage = 'request';
        if (this.options.acks === 'none' && !reported) {
          reported = true;
          this.outcome.written(batch, -1);
        }
        return await this.append(batch, encoded, placement);
      } catch (error) {
        if (placement !== undefined) this.settle(placement);
        const mapped = toClientError(error, { what: 'sending a batch', topic: this.topic,
          partition: this.partition });
        const again = RETRY_AS_NEW_BATCH.has(mapped.code) ||
          (stage === 'write' && mapped.retriable) ||
          (mapped.code === 'PMQ_ERR_DENIED' && placement !== undefined &&
            placement.lease.session !== this.connection.session);
        if (again && placement !== undefined) this.dropLease(placement.lease);
        if (!again || attempt >= this.options.retries) throw mapped;
        this.log.debug({ code: mapped.code, attempt }, 'batch retried');
        // A lease closed under the batch (expired, its segment full) is routine: no backoff.
        const routine = attempt === 0 && LEASE_CLOSED.has(mapped.code);
        if (!routine) await sleep(this.options.retryBackoffMs * 2 ** attempt);
      }
    }
  }

  /**
   * Zero copy ('pieces'): each piece is its own validated write, at its place in the batch's
   * range (the storage node sees the same contiguous bytes as from one write), so each large
   * value moves by rendezvous straight from the caller's buffer. The default over one iov
   * write: UCX 1.13 sends an iov through bounce buffers, a copy inside UCX (docs/clients.md,
   * "Zero copy"). All writes settle before this does, failed or not: none still reads the
   * caller's buffers or the pooled one when the batch settles or starts over.
   */
  private async writePieces(ep: Endpoint, grant: GrantRef, address: number,
    pieces: readonly Uint8Array[]): Promise<void> {
    const { transport } = this.connection;
    // async: a write refused at once (its endpoint closed meanwhile) rejects like the others
    // instead of throwing past the writes already in flight.
    const write = async (at: number, piece: Uint8Array): Promise<void> =>
      transport.writeValidated(ep, grant, at, piece, 0, piece.byteLength);
    const writes: Promise<void>[] = [];
    let at = address;
    for (const piece of pieces) {
      if (piece.byteLength === 0) continue; // a write of nothing is refused (and means nothing)
      writes.push(write(at, piece));
      at += piece.byteLength;
    }
    const results = await Promise.allSettled(writes);
    for (const result of results) {
      if (result.status === 'rejected') throw result.reason;
    }
  }

  /** Issues the append after the previous placement's, then waits for the ack. */
  private async append(batch: ProducerBatch<S>, encoded: Encoded, placement: Placement):
    Promise<number> {
    await placement.turn;
    const { body } = placement.lease;
    const request: Body<'append'> = { topic: this.topic, partition: this.partition,
      epoch: body.epoch, leaseId: body.leaseId, position: placement.position,
      bytes: encoded.sizeBytes, records: batch.records.length, producerId: encoded.producerId,
      sequence: encoded.baseSequence };
    const context = { what: 'appending', topic: this.topic, partition: this.partition };
    let first = true;
    const reply = await this.withRetries('append', async () => {
      const sending = this.connection.request('append', request, context);
      if (first) {
        first = false;
        this.settle(placement);
      }
      return sending;
    });
    // The segment is full and waits for its leases to end: the next batch takes a new lease.
    if (reply.kind === 'acked' && reply.leaseEnd) placement.lease.ending = true;
    if (reply.kind === 'acked' || reply.kind === 'duplicate') return reply.baseOffset;
    throw toClientError(new Error(`append answered by ${reply.kind}`), context);
  }

  /** The placement's append is issued, or it was given up: the next one may go. */
  private settle(placement: Placement): void {
    if (placement.done) return;
    placement.done = true;
    placement.issued();
    const { lease } = placement;
    lease.unsent -= 1;
    if (lease.unsent === 0 && lease.onDrained !== null) lease.onDrained();
  }

  /** The next place for `bytes`, in start order; leases again when the lease is full. */
  private placeInTurn(bytes: number): Promise<Placement> {
    const turn = this.placeTurn.then(() => this.place(bytes));
    this.placeTurn = turn.catch(() => undefined);
    return turn;
  }

  private async place(bytes: number): Promise<Placement> {
    let lease = this.lease;
    if (lease !== null && (lease.session !== this.connection.session || !fits(lease, bytes))) {
      await this.retire(lease);
      lease = null;
    }
    if (lease === null) lease = await this.takeLease(bytes);
    const position = lease.body.position + lease.used;
    const address = lease.body.address + lease.used;
    lease.used += bytes;
    lease.unsent += 1;
    let issued!: () => void;
    const signal = new Promise<void>((resolve) => { issued = resolve; });
    const placement: Placement = { lease, position, address, turn: this.lastIssued, issued,
      done: false };
    this.lastIssued = signal;
    return placement;
  }

  /** Waits until every placement in `lease` has issued its append, then forgets it. */
  private async retire(lease: HeldLease): Promise<void> {
    if (this.lease === lease) this.lease = null;
    this.released = { epoch: lease.body.epoch, leaseId: lease.body.leaseId,
      session: lease.session };
    if (lease.unsent > 0) {
      await new Promise<void>((resolve) => { lease.onDrained = resolve; });
    }
  }

  /** Asks for a lease of at least `bytesMin`, releasing the one retired before it. */
  private async takeLease(bytesMin: number): Promise<HeldLease> {
    const released = this.released;
    this.released = null;
    const session = this.connection.session;
    const context = { what: 'leasing', topic: this.topic, partition: this.partition };
    const bytes = Math.max(this.options.leaseBytes, bytesMin);
    let body: Body<'leased'>;
    try {
      body = await this.withRetries('lease', () => this.connection.call('lease', {
        topic: this.topic, partition: this.partition,
        bytes, bytesMin,
        releaseEpoch: released?.epoch ?? 0,
        releaseId: released !== null && released.session === this.connection.session
          ? released.leaseId : -1 }, 'leased', context));
    } catch (error) {
      this.released ??= released; // released with the next lease request, or expired
      throw error;
    }
    const lease: HeldLease = { body, session, used: 0, unsent: 0, onDrained: null,
      ending: false };
    this.lease = lease;
    return lease;
  }

  /** The lease the next lease request gives back (the broker fills its rest). */
  private released: { epoch: number; leaseId: number; session: number } | null = null;

  /**
   * Gives up a lease a batch failed in: released (its unwritten rest would hold back the
   * batch's retry, placed after it, until the lease expired), unless it is already closed.
   */
  private dropLease(lease: HeldLease): void {
    if (this.lease !== lease) return;
    void this.releaseLease();
  }

  /** Gives the current lease back now (idle or closing); failures only cost the broker time. */
  private releaseLease(timeoutMs?: number): Promise<void> {
    const lease = this.lease;
    if (lease === null) return Promise.resolve();
    this.lease = null;
    if (lease.session !== this.connection.session) return Promise.resolve();
    return this.connection.call('leaseRelease', { topic: this.topic, partition: this.partition,
      epoch: lease.body.epoch, leaseId: lease.body.leaseId }, 'done', { what: 'releasing a lease',
      topic: this.topic, partition: this.partition }, timeoutMs).then(() => undefined,
      (error: unknown) => {
        this.log.debug({ err: String(error) }, 'lease not released (the broker expires it)');
      });
  }

  /** Repeats a request while it fails retriably (timeouts, broker busy or reconnecting). */
  private async withRetries<T>(what: string, request: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await request();
      } catch (error) {
        if (!(error instanceof PmqError) || !error.retriable ||
            RETRY_AS_NEW_BATCH.has(error.code) || attempt >= this.options.retries) throw error;
        this.log.debug({ what, code: error.code, attempt }, 'request retried');
        await sleep(this.options.retryBackoffMs * 2 ** attempt);
      }
    }
  }
}

/** Whether `bytes` more fit the lease and leave a rest the broker can fill. */
function fits(lease: HeldLease, bytes: number): boolean {
  if (lease.ending) return false;
  const rest = lease.body.sizeBytes - lease.used - bytes;
  return rest === 0 || rest >= LEASE_REST_BYTES_MIN;
}
