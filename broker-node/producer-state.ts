/**
 * Idempotent producers' state of one partition (Kafka's KIP-98 idea, adapted to leases):
 * per producer id, the sequences of its last few batches (PRODUCER_LIMITS.batchesPerProducer)
 * with their base offsets once durable. Pure: no I/O, no clock; the partition calls it from
 * one thread, around the sequencer.
 *
 * An append names (producerId, baseSequence, records). `check` decides:
 * - a sequence this producer already appended: the retry of that batch — `in-flight` (wait
 *   for the original's ack) or `duplicate` (answer the original base offset); either way the
 *   retry's own copy is not stored (an appended batch is never lost before it is durable, so
 *   its sequences are never free again);
 * - the producer's next sequence: `new`;
 * - anything else: PMQ_ERR_OUT_OF_ORDER_SEQUENCE.
 * An unknown producer (new, evicted, or older than what recovery scanned) starts at whatever
 * sequence it sends: the broker cannot tell a first batch from a retry it has forgotten.
 *
 * Durability: this state is memory only. At broker start it is rebuilt from the headers of the
 * partition's last durable batches (`restoreBatch`, in log order; broker-node/producer-scan.ts).
 * Sequences are int32 and wrap at 2^31, as Kafka's.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { PRODUCER_LIMITS } from '../common/limits.js';
import type { ReservationRef } from './sequencer-types.js';

export const SEQUENCE_MODULUS = 0x8000_0000;

export type SequenceCheck =
  /** Append a new batch, then call `appended`. */
  | { readonly kind: 'new' }
  /** The batch is durable at baseOffset: reply with it, write nothing. */
  | { readonly kind: 'duplicate'; readonly baseOffset: number }
  /** The batch was appended and is not durable yet: wait for `ref`'s ack. */
  | { readonly kind: 'in-flight'; readonly ref: ReservationRef };

export interface BatchSequence {
  readonly baseSequence: number;
  readonly records: number;
  /** -1 until the batch is durable. */
  readonly baseOffset: number;
}

/** A durable batch's header, as recovery reads it from storage. */
export interface RestoredBatch extends BatchSequence {
  readonly producerId: number;
}

interface Entry {
  readonly baseSequence: number;
  readonly records: number;
  baseOffset: number;
  readonly producerId: number;
  /** Null for batches restored from storage. */
  readonly ref: ReservationRef | null;
  durable: boolean;
}

interface Producer {
  /** Oldest first; at most batchesPerProducer. */
  readonly batches: Entry[];
  sequenceNext: number;
}

export interface ProducerStateLimits {
  readonly batchesPerProducer: number;
  readonly producersMax: number;
}

export class ProducerStateError extends PmqError {}

const refKey = (ref: ReservationRef): string => `${ref.epoch}/${ref.id}`;
const sequenceEnd = (batch: { baseSequence: number; records: number }): number =>
  (batch.baseSequence + batch.records) % SEQUENCE_MODULUS;
/** True when sequence `a` lies ahead of `b` (within half the sequence space). */
const isAhead = (a: number, b: number): boolean => {
  const distance = (a - b + SEQUENCE_MODULUS) % SEQUENCE_MODULUS;
  return distance > 0 && distance < SEQUENCE_MODULUS / 2;
};

export class ProducerStates {
  readonly #limits: ProducerStateLimits;
  /** Insertion order is least recently used first (eviction order). */
  readonly #producers = new Map<number, Producer>();
  readonly #byRef = new Map<string, Entry>();

  constructor(limits: ProducerStateLimits = PRODUCER_LIMITS) {
    if (!(limits.batchesPerProducer >= 1 && limits.producersMax >= 1)) {
      invariant(false, 'limits', { ...limits });
    }
    this.#limits = limits;
  }

  /** What to do with an append of `records` records from `producerId` at `sequence`. */
  check(producerId: number, sequence: number, records: number): SequenceCheck {
    if (producerId < 0) return { kind: 'new' };
    if (!Number.isSafeInteger(sequence) || sequence < 0 || sequence >= SEQUENCE_MODULUS) {
      throw new ProducerStateError('PMQ_ERR_LEASE_INVALID', `sequence ${sequence} of ` +
        `producer ${producerId} must be 0..2^31-1 (-1 only without a producer id)`);
    }
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return { kind: 'new' };
    this.#touch(producerId, producer);
    const same = producer.batches.find((entry) => entry.baseSequence === sequence);
    if (same !== undefined && same.records === records) {
      if (same.durable) return { kind: 'duplicate', baseOffset: same.baseOffset };
      if (same.ref === null) {
        invariant(false, 'restored batches are durable', { producerId, sequence });
      }
      return { kind: 'in-flight', ref: same.ref };
    }
    if (same === undefined && sequence === producer.sequenceNext) return { kind: 'new' };
    throw new ProducerStateError('PMQ_ERR_OUT_OF_ORDER_SEQUENCE', `producer ${producerId} ` +
      `sent sequence ${sequence} (${records} records) but the partition expects ` +
      `${producer.sequenceNext}${same === undefined ? '' : ` (sequence ${sequence} was a ` +
      `batch of ${same.records} records)`}: batches were lost or reordered; the producer ` +
      'must re-initialise (producerInit) and send again');
  }

  /** The sequencer took the batch `check` called new. */
  appended(producerId: number, batch: { baseSequence: number; records: number },
    ref: ReservationRef): void {
    if (producerId < 0) return;
    const producer = this.#producer(producerId);
    if (!(batch.baseSequence === producer.sequenceNext || producer.batches.length === 0)) {
      invariant(false, 'a new batch continues the sequence',
        { producerId, baseSequence: batch.baseSequence, sequenceNext: producer.sequenceNext });
    }
    producer.sequenceNext = sequenceEnd(batch);
    const entry: Entry = { baseSequence: batch.baseSequence, records: batch.records,
      baseOffset: -1, producerId, ref, durable: false };
    this.#append(producer, entry);
    this.#byRef.set(refKey(ref), entry);
  }

  /** The batch is durable (acknowledged) at baseOffset: a retry now gets `duplicate`. */
  durable(ref: ReservationRef, baseOffset: number): void {
    const entry = this.#byRef.get(refKey(ref));
    if (entry === undefined) return;
    this.#byRef.delete(refKey(ref));
    entry.baseOffset = baseOffset;
    entry.durable = true;
  }

  /** Recovery: one durable batch of the log, in log order. */
  restoreBatch(batch: RestoredBatch): void {
    if (batch.producerId < 0 || batch.baseSequence < 0) return;
    const producer = this.#producer(batch.producerId);
    const known = producer.batches.length > 0;
    if (!known || batch.baseSequence === producer.sequenceNext ||
        isAhead(sequenceEnd(batch), producer.sequenceNext)) {
      producer.sequenceNext = sequenceEnd(batch);
    }
    const entry: Entry = { baseSequence: batch.baseSequence, records: batch.records,
      baseOffset: batch.baseOffset, producerId: batch.producerId, ref: null, durable: true };
    this.#append(producer, entry);
  }

  /** For tests and metrics. */
  view(producerId: number): { sequenceNext: number; batches: BatchSequence[] } | undefined {
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return undefined;
    return { sequenceNext: producer.sequenceNext,
      batches: producer.batches.map(({ baseSequence, records, baseOffset }) =>
        ({ baseSequence, records, baseOffset })) };
  }

  get producers(): number {
    return this.#producers.size;
  }

  #producer(producerId: number): Producer {
    if (!(Number.isSafeInteger(producerId) && producerId >= 0)) {
      invariant(false, 'producer id', { producerId });
    }
    let producer = this.#producers.get(producerId);
    if (producer === undefined) {
      producer = { batches: [], sequenceNext: 0 };
      this.#producers.set(producerId, producer);
      this.#evictIdle();
    }
    this.#touch(producerId, producer);
    return producer;
  }

  #append(producer: Producer, entry: Entry): void {
    producer.batches.push(entry);
    while (producer.batches.length > this.#limits.batchesPerProducer) {
      const oldest = producer.batches.shift();
      if (oldest?.ref !== null && oldest?.ref !== undefined) this.#byRef.delete(refKey(oldest.ref));
    }
    invariant(producer.batches.length <= this.#limits.batchesPerProducer, 'batches bounded');
  }

  #touch(producerId: number, producer: Producer): void {
    this.#producers.delete(producerId);
    this.#producers.set(producerId, producer);
  }

  /** Forgets the least recently used producers beyond producersMax (they become unknown). */
  #evictIdle(): void {
    while (this.#producers.size > this.#limits.producersMax) {
      const [producerId, producer] = this.#producers.entries().next().value as [number, Producer];
      for (const entry of producer.batches) {
        if (entry.ref !== null) this.#byRef.delete(refKey(entry.ref));
      }
      this.#producers.delete(producerId);
    }
  }
}
