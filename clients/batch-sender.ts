/**
 * Sends one partition's batches: encode → reserve → write → commit → acked.
 *
 * Each batch is encoded once, straight into a pooled buffer (its exact size is what `reserve`
 * asks for), gets the sequencer's baseOffset patched in (setBaseOffset; the CRC does not cover
 * it), and is written with writeValidated to the storage node at the reserved address under
 * the reservation's grant. Up to `maxInFlightBatches` batches of a partition are in flight;
 * their `reserve` requests are issued one after another, so offsets follow send order.
 *
 * Retries (up to `retries`, exponential backoff from `retryBackoffMs`): a retriable reserve
 * failure repeats the reserve; a failed write or an expired reservation starts the batch over
 * with a new reserve (the abandoned reservation expires and the broker fills it); a commit
 * whose reply was lost is repeated (commits are idempotent at the sequencer). A batch that
 * starts over while later batches of the partition are in flight lands after them, as in
 * Kafka without idempotence: set maxInFlightBatches to 1 for strict order under failures.
 *
 * Idempotence (producerId ≥ 0): each batch carries the partition's next sequence, fixed at
 * encode time, and every retry of the batch (reserve, or starting over) sends the same one, so
 * the broker stores it once: a retry of a batch already durable is answered `duplicate` with
 * its original offset (nothing is written or committed again). PMQ_ERR_OUT_OF_ORDER_SEQUENCE
 * (the broker lost track of this producer's sequence) drops the producer id: the batch is
 * encoded again under a new one (sequences restart at 0) and sent again.
 */
import { PmqError, type ErrorCode } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import {
  encodePlannedRecordBatchInto, planRecordBatch, setBaseOffset, type EncodeOptions,
} from '../common/record-batch/index.js';
import type { Body, Message } from '../common/wire/messages.js';
import type { ProducerBatch } from './accumulator.js';
import type { Connection } from './connection.js';
import { RecordTooLargeError, toClientError } from './errors.js';
import type { BufferPool } from './flow-control.js';

export interface SenderOptions {
  acks: 'all' | 'none';
  idempotent: boolean;
  maxInFlightBatches: number;
  maxRecordBatchBytes: number;
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

type ReserveAnswer = Message<'reserved'> | Message<'duplicate'>;

/** What the producer does when a batch settles. */
export interface BatchOutcome<S> {
  written(batch: ProducerBatch<S>, baseOffset: number): void;
  failed(batch: ProducerBatch<S>, error: PmqError): void;
  done(batch: ProducerBatch<S>): void;
}

interface Encoded {
  buffer: Uint8Array;
  sizeBytes: number;
  producerId: number;
  baseSequence: number;
}

const RETRY_AS_NEW_BATCH = new Set<ErrorCode>(['PMQ_ERR_RESERVATION_EXPIRED',
  'PMQ_ERR_GRANT_REVOKED', 'PMQ_ERR_GRANT_UNKNOWN', 'PMQ_ERR_FENCED']);

/** Kafka's sequences are int32 and wrap. */
const SEQUENCE_MODULUS = 0x8000_0000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class PartitionSender<S> {
  private readonly queue: ProducerBatch<S>[] = [];
  private inFlight = 0;
  /** Start order of the batches not yet settled (ascending), and the next one's. */
  private readonly unsettled: number[] = [];
  private ordinalNext = 0;
  private reserveTurn: Promise<unknown> = Promise.resolve();
  /** The next sequence of `sequenceOwner` (a producer id) on this partition. */
  private sequence = 0;
  private sequenceOwner = -1;

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
    for (;;) {
      if (!this.hasRoom() || this.queue.length === 0) return;
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

  /** Encodes the batch into a pooled buffer; the exact size is what reserve asks for. */
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
    // Planned once: the plan's exact size is both what reserve asks for and what is written.
    const plan = planRecordBatch(batch.records, options);
    const { sizeBytes } = plan;
    if (sizeBytes > this.options.maxRecordBatchBytes) {
      throw new RecordTooLargeError(`a batch of ${sizeBytes} bytes exceeds maxRecordBatchBytes ` +
        `${this.options.maxRecordBatchBytes}`);
    }
    const buffer = this.pool.take(sizeBytes);
    encodePlannedRecordBatchInto(buffer, 0, plan);
    return { buffer, sizeBytes, producerId: identity.producerId, baseSequence };
  }

  /**
   * Reserve, write, commit; starts over after a failed write or a lost reservation. Reserve
   * and commit retry their own request first, so their failures start over only when the
   * reservation itself is gone.
   */
  private async deliver(batch: ProducerBatch<S>, encoded: Encoded): Promise<number> {
    for (let attempt = 0; ; attempt += 1) {
      let stage: 'request' | 'write' = 'request';
      let session = -1;
      try {
        const reserved = await this.reserveInTurn(batch, encoded);
        session = this.connection.session;
        if (reserved.kind === 'duplicate') {
          // Durable already (an earlier attempt's ack was lost): store nothing again.
          if (this.options.acks === 'none') this.outcome.written(batch, reserved.baseOffset);
          return reserved.baseOffset;
        }
        setBaseOffset(encoded.buffer, 0, reserved.baseOffset);
        stage = 'write';
        const ep = await this.connection.storageEndpoint(reserved.nodeId);
        await this.connection.transport.writeValidated(ep, { id: reserved.grantId,
          epoch: reserved.grantEpoch, key: reserved.grantKey }, reserved.address, encoded.buffer,
            0, encoded.sizeBytes);
        stage = 'request';
        if (this.options.acks === 'none') this.outcome.written(batch, reserved.baseOffset);
        await this.commit(reserved);
        return reserved.baseOffset;
      } catch (error) {
        const mapped = toClientError(error, { what: 'sending a batch', topic: this.topic,
          partition: this.partition });
        // A commit refused because the broker connection (its session) changed since the
        // reserve: reserve again from the new session, which takes the reservation over.
        const again = RETRY_AS_NEW_BATCH.has(mapped.code) ||
          (stage === 'write' && mapped.retriable) ||
          (mapped.code === 'PMQ_ERR_DENIED' && session >= 0 &&
            session !== this.connection.session);
        if (!again || attempt >= this.options.retries) throw mapped;
        this.log.debug({ code: mapped.code, attempt }, 'batch retried');
        await sleep(this.options.retryBackoffMs * 2 ** attempt);
      }
    }
  }

  /** Reserves after every earlier batch of this partition has reserved (offsets in order). */
  private reserveInTurn(batch: ProducerBatch<S>, encoded: Encoded): Promise<ReserveAnswer> {
    const body: Body<'reserve'> = { topic: this.topic, partition: this.partition,
      bytes: encoded.sizeBytes, records: batch.records.length, producerId: encoded.producerId,
      sequence: encoded.baseSequence };
    const context = { what: 'reserving', topic: this.topic, partition: this.partition };
    const turn = this.reserveTurn.then(() => this.withRetries('reserve', async () => {
      const reply = await this.connection.request('reserve', body, context);
      if (reply.kind === 'reserved' || reply.kind === 'duplicate') return reply;
      throw toClientError(new Error(`reserve answered by ${reply.kind}`), context);
    }));
    this.reserveTurn = turn.catch(() => undefined);
    return turn;
  }

  private commit(reserved: Message<'reserved'>): Promise<Message<'acked'>> {
    return this.withRetries('commit', () => this.connection.call('commit', {
      topic: this.topic, partition: this.partition, epoch: reserved.epoch,
      reservationId: reserved.reservationId }, 'acked', { what: 'committing',
      topic: this.topic, partition: this.partition }));
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
