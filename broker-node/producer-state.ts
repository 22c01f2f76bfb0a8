/**
 * Idempotent producers' state of one partition (Kafka's KIP-98 idea, adapted to reservations):
 * per producer id, the sequences of its last few batches (PRODUCER_LIMITS.batchesPerProducer)
 * with their base offsets and whether they are durable yet. Pure: no I/O, no clock; the
 * partition calls it from one thread, around the sequencer.
 *
 * A reserve names (producerId, baseSequence, records). `check` decides:
 * - a sequence this producer already has in flight or durable: the retry of that batch —
 *   `in-flight` (the partition hands out the same reservation, or waits for its ack) or
 *   `duplicate` (answer the original base offset, store nothing);
 * - the producer's next sequence, or exactly the range of one of its expired reservations
 *   (a filled hole is not the producer's data): `new`;
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
  /** Reserve a new batch, then call `reserved`. */
  | { readonly kind: 'new' }
  /** The batch is durable at baseOffset: reply with it, write nothing. */
  | { readonly kind: 'duplicate'; readonly baseOffset: number }
  /** The batch's reservation is still in flight (reserved or committed): reuse `ref`. */
  | { readonly kind: 'in-flight'; readonly ref: ReservationRef; readonly baseOffset: number };

export interface BatchSequence {
  readonly baseSequence: number;
  readonly records: number;
  readonly baseOffset: number;
}

/** A durable batch's header, as recovery reads it from storage. */
export interface RestoredBatch extends BatchSequence {
  readonly producerId: number;
}

interface Entry extends BatchSequence {
  readonly producerId: number;
  /** Null for batches restored from storage. */
  readonly ref: ReservationRef | null;
  durable: boolean;
}

interface Producer {
  /** Oldest first; at most batchesPerProducer. */
  readonly batches: Entry[];
  /** Ranges of expired reservations, free to be reserved again (oldest first). */
  readonly released: BatchSequence[];
  sequenceNext: number;
}

export interface ProducerStateLimits {
  readonly batchesPerProducer: number;
  readonly producersMax: number;
}

export class ProducerStateError extends PmqError {}

const refKey = (ref: ReservationRef): string => `${ref.epoch}/${ref.id}`;
const sequenceEnd = (batch: BatchSequence): number =>
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
    invariant(limits.batchesPerProducer >= 1 && limits.producersMax >= 1, 'limits',
      { ...limits });
    this.#limits = limits;
  }

  /** What to do with a reserve of `records` records from `producerId` at `sequence`. */
  check(producerId: number, sequence: number, records: number): SequenceCheck {
    if (producerId < 0) return { kind: 'new' };
    if (!Number.isSafeInteger(sequence) || sequence < 0 || sequence >= SEQUENCE_MODULUS) {
      throw new ProducerStateError('PMQ_ERR_RESERVATION_INVALID', `sequence ${sequence} of ` +
        `producer ${producerId} must be 0..2^31-1 (-1 only without a producer id)`);
    }
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return { kind: 'new' };
    this.#touch(producerId, producer);
    const same = producer.batches.find((entry) => entry.baseSequence === sequence);
    if (same !== undefined && same.records === records) {
      if (same.durable) return { kind: 'duplicate', baseOffset: same.baseOffset };
      invariant(same.ref !== null, 'restored batches are durable', { producerId, sequence });
      return { kind: 'in-flight', ref: same.ref, baseOffset: same.baseOffset };
    }
    if (same === undefined && sequence === producer.sequenceNext) return { kind: 'new' };
    if (same === undefined && producer.released.some((range) =>
      range.baseSequence === sequence && range.records === records)) return { kind: 'new' };
    throw new ProducerStateError('PMQ_ERR_OUT_OF_ORDER_SEQUENCE', `producer ${producerId} ` +
      `sent sequence ${sequence} (${records} records) but the partition expects ` +
      `${producer.sequenceNext}${same === undefined ? '' : ` (sequence ${sequence} was a ` +
      `batch of ${same.records} records)`}: batches were lost or reordered; the producer ` +
      'must re-initialise (producerInit) and send again');
  }

  /** The sequencer reserved the batch `check` called new. */
  reserved(producerId: number, batch: BatchSequence, ref: ReservationRef): void {
    if (producerId < 0) return;
    const producer = this.#producer(producerId);
    const released = producer.released.findIndex((range) =>
      range.baseSequence === batch.baseSequence && range.records === batch.records);
    if (released >= 0) {
      producer.released.splice(released, 1);
    } else {
      invariant(batch.baseSequence === producer.sequenceNext || producer.batches.length === 0,
        'a new batch continues the sequence', { producerId, ...batch,
          sequenceNext: producer.sequenceNext });
      producer.sequenceNext = sequenceEnd(batch);
    }
    const entry: Entry = { ...batch, producerId, ref, durable: false };
    this.#append(producer, entry);
    this.#byRef.set(refKey(ref), entry);
  }

  /** The reservation is durable (acknowledged): a retry now gets `duplicate`. */
  durable(ref: ReservationRef): void {
    const entry = this.#byRef.get(refKey(ref));
    if (entry === undefined) return;
    this.#byRef.delete(refKey(ref));
    entry.durable = true;
  }

  /** The reservation expired (its hole is filled): its sequences may be reserved again. */
  released(ref: ReservationRef): void {
    const entry = this.#byRef.get(refKey(ref));
    if (entry === undefined) return;
    this.#byRef.delete(refKey(ref));
    invariant(!entry.durable, 'only a reservation not yet durable expires', { ...ref });
    const producer = this.#producers.get(entry.producerId);
    if (producer === undefined) return;
    const index = producer.batches.indexOf(entry);
    if (index >= 0) producer.batches.splice(index, 1);
    producer.released.push({ baseSequence: entry.baseSequence, records: entry.records,
      baseOffset: entry.baseOffset });
    if (producer.released.length > this.#limits.batchesPerProducer) producer.released.shift();
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
  view(producerId: number): { sequenceNext: number; batches: BatchSequence[];
    released: BatchSequence[] } | undefined {
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return undefined;
    return { sequenceNext: producer.sequenceNext, released: [...producer.released],
      batches: producer.batches.map(({ baseSequence, records, baseOffset }) =>
        ({ baseSequence, records, baseOffset })) };
  }

  get producers(): number {
    return this.#producers.size;
  }

  #producer(producerId: number): Producer {
    invariant(Number.isSafeInteger(producerId) && producerId >= 0, 'producer id', { producerId });
    let producer = this.#producers.get(producerId);
    if (producer === undefined) {
      producer = { batches: [], released: [], sequenceNext: 0 };
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
