/**
 * The producer: `send()` places records on partitions (explicit partition, else the key's
 * murmur2 partition as Kafka, else the sticky partitioner), batches them per partition (up to
 * `maxBatchBytes`, waiting up to `lingerMs` for more), and hands each batch to its partition's
 * PartitionSender. `send()` resolves with one `{ topic, partition, offset }` per record, in
 * the order given, once every record is acknowledged (acks 'all': durable; acks 'none': written
 * to the storage node, not yet durable).
 *
 * Backpressure: the records of unacknowledged sends are counted against `maxInFlightBytes`
 * (by an upper bound of their encoded size); a send that does not fit waits, in FIFO order,
 * so memory never grows without bound and sends keep their order. `flush()` sends what is
 * batched and waits for everything in flight; `close()` flushes, then refuses new sends.
 * Concurrency: JS thread only.
 */
import { ArgumentError, PmqError } from '../common/errors.js';
import { PRODUCER_BATCH_BYTES_DEFAULT, PRODUCER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { partitionForKey } from '../common/partitioner.js';
import {
  RECORD_BATCH_HEADER_SIZE_BYTES, type RecordInput,
} from '../common/record-batch/index.js';
import {
  Accumulator, recordSizeBytesMax, StickyPartitioner, type PartitionSlot, type ProducerBatch,
  type RecordSink,
} from './accumulator.js';
import {
  PartitionSender, type IdentitySource, type ProducerIdentity, type SenderOptions,
  type ZeroCopyWrites,
} from './batch-sender.js';
import type { Connection } from './connection.js';
import { ClosedError, PartitionOutOfRangeError, RecordTooLargeError } from './errors.js';
import { BufferPool, ByteBudget } from './flow-control.js';
import type { Metadata } from './metadata.js';
import {
  partitionKey, toRecordInput, type ProducerRecord, type RecordMetadata,
} from './records.js';

export interface ProducerOptions {
  /** 'all' (default): resolve once durable. 'none': once written, before durability. */
  acks?: 'all' | 'none';
  /**
   * A batch is sent when the next record would make it larger. Default 256 KiB
   * (PRODUCER_BATCH_BYTES_DEFAULT, why there). A batch is sent earlier when lingerMs expires,
   * so a larger cap adds no latency at low rates.
   */
  maxBatchBytes?: number;
  /** How long a batch waits for more records. Default 5 ms; 0 = the same event-loop turn. */
  lingerMs?: number;
  /** Bytes of unacknowledged records before send() waits. Default 32 MiB. */
  maxInFlightBytes?: number;
  /** Batches of one partition in flight at once. Default 5; 1 = strict order on retries. */
  maxInFlightBatches?: number;
  /** Largest encoded batch (hence record) sent. Default 1 MiB. */
  maxRecordBatchBytes?: number;
  /**
   * Write range asked for per lease and partition (docs/clients.md, "Leases"): larger means
   * fewer lease round trips, but an unused rest holds back other producers of the partition
   * until it is released. Default 4 MiB (at least one largest batch).
   */
  leaseBytes?: number;
  /**
   * Record values of at least this many bytes are sent from the caller's own buffer, without
   * a copy (docs/clients.md, "Zero copy"): leave them unchanged until send() resolves. Default
   * 256 KiB (ZERO_COPY_MIN_BYTES_DEFAULT); Infinity copies every value.
   */
  zeroCopyMinBytes?: number;
  /**
   * How a batch with uncopied values is written: 'pieces' (default: one validated write per
   * piece, each large value by rendezvous straight from its buffer) or 'iov' (one write whose
   * payload UCX gathers; on UCX 1.13 through bounce buffers). docs/clients.md, "Zero copy".
   */
  zeroCopyWrites?: ZeroCopyWrites;
  /** Retries of a retriable failure, per request and per batch. Default 5. */
  retries?: number;
  /** First retry delay, doubled each time. Default 100 ms. */
  retryBackoffMs?: number;
  /**
   * Send producerId/sequence so that retries are stored once (docs/clients.md). Default: true
   * with acks 'all'. Needs maxInFlightBatches ≤ 5 (what the broker remembers per producer).
   */
  idempotent?: boolean;
}

export interface SendInput {
  topic: string;
  records: ProducerRecord[];
  /** All records to this partition; default: by key, or sticky for keyless records. */
  partition?: number;
}

/** Collects the results of one send() call. */
interface SendSink {
  results: RecordMetadata[];
  remaining: number;
  settled: boolean;
  resolve: (results: RecordMetadata[]) => void;
  reject: (error: Error) => void;
}

const KIB = 1024;
/** The broker's producer state covers this window of batches per partition (PRODUCER_LIMITS). */
const PRODUCER_BATCHES_REMEMBERED = PRODUCER_LIMITS.inFlightWindowMax;
const MIB = 1024 * KIB;
/**
 * Below this a value is copied into the batch: each uncopied value costs a validated write of
 * its own (a message and a reply), which on loopback beat a copy only from ~256 KiB on
 * (docs/clients.md, "Zero copy", measured).
 */
export const ZERO_COPY_MIN_BYTES_DEFAULT = 256 * KIB;

function positive(name: string, value: number | undefined, fallback: number, min = 1): number {
  const chosen = value ?? fallback;
  if (!Number.isSafeInteger(chosen) || chosen < min) {
    throw new ArgumentError(`${name} must be an integer ≥ ${min}, got ${String(value)}`);
  }
  return chosen;
}

function zeroCopyWrites(value: ZeroCopyWrites | undefined): ZeroCopyWrites {
  if (value === undefined || value === 'pieces' || value === 'iov') return value ?? 'pieces';
  throw new ArgumentError(`zeroCopyWrites must be 'pieces' or 'iov', got ${String(value)}`);
}

function senderOptions(options: ProducerOptions, requestTimeoutMs: number): SenderOptions {
  if (options.acks !== undefined && options.acks !== 'all' && options.acks !== 'none') {
    throw new ArgumentError(`acks must be 'all' or 'none', got ${String(options.acks)}`);
  }
  const acks = options.acks ?? 'all';
  return {
    acks,
    idempotent: options.idempotent ?? acks === 'all',
    maxInFlightBatches: positive('maxInFlightBatches', options.maxInFlightBatches, 5),
    maxRecordBatchBytes: positive('maxRecordBatchBytes', options.maxRecordBatchBytes, MIB,
      RECORD_BATCH_HEADER_SIZE_BYTES + 8),
    leaseBytes: positive('leaseBytes', options.leaseBytes, 4 * MIB, 1),
    zeroCopyMinBytes: options.zeroCopyMinBytes === Infinity ? Infinity
      : positive('zeroCopyMinBytes', options.zeroCopyMinBytes, ZERO_COPY_MIN_BYTES_DEFAULT, 1),
    zeroCopyWrites: zeroCopyWrites(options.zeroCopyWrites),
    retries: positive('retries', options.retries, 5, 0),
    retryBackoffMs: positive('retryBackoffMs', options.retryBackoffMs, 100, 0),
    requestTimeoutMs,
  };
}

export class Producer {
  private readonly accumulator: Accumulator<SendSink>;
  private readonly sticky = new StickyPartitioner();
  private readonly budget: ByteBudget;
  private readonly pool: BufferPool;
  private readonly senders = new Map<string, PartitionSender<SendSink>>();
  private readonly senderOptions: SenderOptions;
  private readonly lingerMs: number;
  private identity: Promise<ProducerIdentity> | undefined;
  /** What `identity` resolved to. */
  private identityKnown: ProducerIdentity | undefined;
  private readonly idempotent: boolean;
  private readonly identitySource: IdentitySource = {
    get: () => this.producerIdentity(),
    forget: (producerId) => this.forgetIdentity(producerId),
  };
  /** The pending linger wake-up: a timer, or an immediate when a batch is due now. */
  private lingerTimer: { cancel(): void } | undefined;
  private batchesInFlight = 0;
  private batchesDispatchedCount = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(private readonly connection: Connection, private readonly metadata: Metadata,
    private readonly options: ProducerOptions, requestTimeoutMs: number,
    private readonly log: Logger, private readonly onClose: () => void) {
    this.senderOptions = senderOptions(options, requestTimeoutMs);
    this.idempotent = this.senderOptions.idempotent;
    if (this.idempotent && this.senderOptions.maxInFlightBatches > PRODUCER_BATCHES_REMEMBERED) {
      throw new ArgumentError(`an idempotent producer keeps at most ` +
        `${PRODUCER_BATCHES_REMEMBERED} batches per partition in flight (maxInFlightBatches ` +
        `${this.senderOptions.maxInFlightBatches}): lower it, or set idempotent: false`);
    }
    // A batch must fit one segment: the broker refuses larger ones (PMQ_ERR_RECORD_TOO_LARGE).
    const segmentBytes = connection.segmentSizeBytes > 0 ? connection.segmentSizeBytes
      : Number.POSITIVE_INFINITY;
    const maxBatchBytes = Math.min(segmentBytes,
      positive('maxBatchBytes', options.maxBatchBytes, PRODUCER_BATCH_BYTES_DEFAULT));
    this.accumulator = new Accumulator(maxBatchBytes);
    this.lingerMs = positive('lingerMs', options.lingerMs, 5, 0);
    this.budget = new ByteBudget(positive('maxInFlightBytes', options.maxInFlightBytes,
      32 * MIB));
    this.pool = new BufferPool(this.budget.limitBytes);
  }

  /** Sends records; resolves with each record's partition and offset, in the given order. */
  async send(input: SendInput): Promise<RecordMetadata[]> {
    if (this.closed) throw new ClosedError('the producer');
    // Nothing of `input` is kept across the awaits: the caller's record objects can die young.
    const { topic, records, partition } = checkSendInput(input);
    const prepared = prepareRecords(records);
    const largest = prepared.largestBytes + RECORD_BATCH_HEADER_SIZE_BYTES;
    if (largest > this.senderOptions.maxRecordBatchBytes) {
      throw new RecordTooLargeError(`a record of up to ${largest} bytes (with its batch ` +
        `header) exceeds maxRecordBatchBytes ${this.senderOptions.maxRecordBatchBytes}`);
    }
    const partitionCount = await this.metadata.partitionCount(topic);
    if (partition !== undefined && partition >= partitionCount) {
      throw new PartitionOutOfRangeError(topic, partition, partitionCount);
    }
    const { totalBytes } = prepared;
    await this.budget.acquire(totalBytes);
    if (this.closed) {
      this.budget.release(totalBytes);
      throw new ClosedError('the producer');
    }
    return new Promise<RecordMetadata[]>((resolve, reject) => {
      const count = prepared.inputs.length;
      const sink: SendSink = { results: new Array<RecordMetadata>(count), remaining: count,
        settled: false, resolve, reject };
      this.append(topic, partition, partitionCount, prepared, sink);
      this.scheduleLinger();
    });
  }

  /** Batches a send's records, sending the batches they fill. */
  private append(topic: string, partition: number | undefined, partitionCount: number,
    prepared: PreparedRecords, sink: SendSink): void {
    const now = Date.now();
    const { inputs, sizes } = prepared;
    // One send to one partition: a single slot for all its records.
    const fixed = partition === undefined ? undefined : this.accumulator.slot(topic, partition);
    for (let index = 0; index < inputs.length; index += 1) {
      const record = inputs[index]!;
      const slot = fixed ?? this.accumulator.slot(topic, record.key instanceof Uint8Array
        ? partitionForKey(record.key, partitionCount)
        : this.sticky.partition(topic, partitionCount));
      const closed = this.accumulator.append(slot, record, sizes[index]!, sink, index, now);
      if (closed !== undefined) this.dispatch(closed);
    }
  }

  /** Sends everything batched, then waits until every batch in flight has settled. */
  /** Batches handed to their partition's sender so far (each one append; retries aside). */
  get batchesDispatched(): number {
    return this.batchesDispatchedCount;
  }

  async flush(): Promise<void> {
    this.drain(-1);
    if (this.batchesInFlight === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Flushes, refuses further sends, and gives its leases back (waiting for the broker's answer,
   * at most RELEASE_ON_CLOSE_TIMEOUT_MS). The client stays open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await Promise.all([...this.senders.values()].map((sender) => sender.close()));
    this.onClose();
  }

  /** A slot whose sender is busy keeps its batch open past its linger (PartitionSender.ready). */
  private readonly held = (slot: PartitionSlot<SendSink>): boolean =>
    this.senders.get(partitionKey(slot.topic, slot.partition))?.ready === false;

  private scheduleLinger(): void {
    if (this.lingerTimer !== undefined) return;
    // Held batches need no timer: the batch that frees their sender drains them (batchDone).
    const oldest = this.accumulator.oldestCreatedAtMs(this.held);
    if (oldest === undefined) return;
    const delayMs = Math.max(0, oldest + this.lingerMs - Date.now());
    const wake = (): void => {
      this.lingerTimer = undefined;
      this.drain(this.lingerMs);
      this.scheduleLinger();
    };
    // A batch due now goes after this turn's sends (setImmediate), not after setTimeout's
    // 1 ms minimum, which with lingerMs 0 added a millisecond to every batch.
    if (delayMs === 0) {
      const immediate = setImmediate(wake);
      this.lingerTimer = { cancel: () => clearImmediate(immediate) };
    } else {
      const timer = setTimeout(wake, delayMs);
      this.lingerTimer = { cancel: () => clearTimeout(timer) };
    }
  }

  private drain(lingerMs: number): void {
    for (const batch of this.accumulator.drain(Date.now(), lingerMs, this.held)) {
      this.dispatch(batch);
    }
    if (this.accumulator.openBatches === 0 && this.lingerTimer !== undefined) {
      this.lingerTimer.cancel();
      this.lingerTimer = undefined;
    }
  }

  private dispatch(batch: ProducerBatch<SendSink>): void {
    this.sticky.batchClosed(batch.topic, batch.partition);
    this.batchesInFlight += 1;
    this.batchesDispatchedCount += 1;
    this.sender(batch.topic, batch.partition).enqueue(batch);
  }

  private sender(topic: string, partition: number): PartitionSender<SendSink> {
    const key = partitionKey(topic, partition);
    let sender = this.senders.get(key);
    if (sender === undefined) {
      sender = new PartitionSender(topic, partition, this.connection, this.pool,
        this.identitySource, this.senderOptions, {
          written: (batch, baseOffset) => this.written(batch, baseOffset),
          failed: (batch, error) => this.failed(batch, error),
          done: (batch) => this.batchDone(batch),
        }, this.log.child({ topic, partition }));
      this.senders.set(key, sender);
    }
    return sender;
  }

  /** The producer id for idempotence, asked once (-1 when disabled). */
  private producerIdentity(): Promise<ProducerIdentity> {
    if (!this.idempotent) {
      return Promise.resolve({ producerId: -1, producerEpoch: -1 });
    }
    this.identity ??= this.connection.call('producerInit', {}, 'producerId',
      { what: 'initialising the producer' }).then(
      (reply) => {
        this.identityKnown = { producerId: reply.producerId, producerEpoch: reply.producerEpoch };
        return this.identityKnown;
      },
      (error: unknown) => {
        this.identity = undefined;
        throw error;
      });
    return this.identity;
  }

  private forgetIdentity(producerId: number): void {
    if (this.identityKnown?.producerId !== producerId) return;
    this.identity = undefined;
    this.identityKnown = undefined;
  }

  private written(batch: ProducerBatch<SendSink>, baseOffset: number): void {
    const { topic, partition } = batch;
    // -1 (acks 'none'): offsets are not known when the write completes; every record gets -1.
    const step = baseOffset < 0 ? 0 : 1;
    let offset = baseOffset;
    for (const { sink, index, count } of batch.sinks) {
      if (sink.settled) {
        offset += step * count;
        continue;
      }
      for (let i = index; i < index + count; i += 1) {
        sink.results[i] = { topic, partition, offset };
        offset += step;
      }
      sink.remaining -= count;
      if (sink.remaining === 0) {
        sink.settled = true;
        sink.resolve(sink.results);
      }
    }
  }

  private failed(batch: ProducerBatch<SendSink>, error: PmqError): void {
    if (error.code === 'PMQ_ERR_UNKNOWN_TOPIC') this.metadata.forget(batch.topic);
    const reportedSent = batch.sinks.every((run) => resultsKnown(run));
    for (const { sink } of batch.sinks) {
      if (sink.settled) continue;
      sink.settled = true;
      sink.reject(error);
    }
    if (reportedSent) {
      this.log.warn({ topic: batch.topic, partition: batch.partition, code: error.code },
        'batch failed after it was reported sent (acks none)');
    }
  }

  private batchDone(batch: ProducerBatch<SendSink>): void {
    this.budget.release(batch.sizeBytesMax - RECORD_BATCH_HEADER_SIZE_BYTES);
    this.batchesInFlight -= 1;
    if (this.accumulator.openBatches > 0) {
      // A sender may have room now: lingered batches held open for it go (or get a timer).
      this.drain(this.lingerMs);
      this.scheduleLinger();
    }
    if (this.batchesInFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Whether every record of the run has its result (acks 'none' reports before the commit). */
function resultsKnown({ sink, index, count }: RecordSink<SendSink>): boolean {
  for (let i = index; i < index + count; i += 1) {
    if (sink.results[i] === undefined) return false;
  }
  return true;
}

/** A send's records in the codec's shape, with their size bounds. */
interface PreparedRecords {
  inputs: RecordInput[];
  /** recordSizeBytesMax of each input: what the budget holds is what the batches release. */
  sizes: number[];
  totalBytes: number;
  largestBytes: number;
}

/** Converts and validates every record (throws on the first invalid one) and sizes it. */
function prepareRecords(records: readonly ProducerRecord[]): PreparedRecords {
  // Sized up front: growing them would allocate (and collect) twice per record.
  const inputs = new Array<RecordInput>(records.length);
  const sizes = new Array<number>(records.length);
  let totalBytes = 0;
  let largestBytes = 0;
  for (let index = 0; index < records.length; index += 1) {
    const input = toRecordInput(records[index]!);
    const size = recordSizeBytesMax(input);
    inputs[index] = input;
    sizes[index] = size;
    totalBytes += size;
    if (size > largestBytes) largestBytes = size;
  }
  return { inputs, sizes, totalBytes, largestBytes };
}

function checkSendInput(input: SendInput): SendInput {
  if (typeof input !== 'object' || input === null || typeof input.topic !== 'string' ||
      input.topic.length === 0) {
    throw new ArgumentError('send() needs { topic, records }');
  }
  if (!Array.isArray(input.records) || input.records.length === 0) {
    throw new ArgumentError('send() needs at least one record');
  }
  const { partition } = input;
  if (partition !== undefined && (!Number.isSafeInteger(partition) || partition < 0)) {
    throw new ArgumentError(`partition must be an integer ≥ 0, got ${String(partition)}`);
  }
  return input;
}
