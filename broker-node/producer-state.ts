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
import { IntMap } from '../common/int-map.js';
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

/**
 * One producer's last batches, oldest first, as a ring of SLOT_FIELDS numbers per batch in one
 * Float64Array allocated when the producer is first seen: recording a batch writes numbers, it
 * allocates no entry object, no ref key string and no Map entry that would outlive a few
 * scavenges (issue 11). The producers form a doubly linked list in least recently used order,
 * so touching one moves two pointers instead of deleting and re-inserting a Map entry.
 */
class Producer {
  readonly slots: Float64Array;
  /** Index of the oldest batch, and how many are held (≤ capacity). */
  first = 0;
  count = 0;
  sequenceNext = 0;
  /** Batches appended and not durable yet (their refs are in ProducerStates.#pending). */
  inFlight = 0;
  older: Producer | null = null;
  newer: Producer | null = null;

  constructor(readonly id: number, readonly capacity: number) {
    this.slots = new Float64Array(capacity * SLOT_FIELDS);
  }

  /** Offset into slots of the `index`th oldest batch. */
  at(index: number): number {
    const slot = this.first + index;
    return (slot < this.capacity ? slot : slot - this.capacity) * SLOT_FIELDS;
  }
}

const SLOT_FIELDS = 5;
const BASE_SEQUENCE = 0;
const RECORDS = 1;
/** -1 until durable. */
const BASE_OFFSET = 2;
/** The batch's ReservationRef; REF_NONE for batches restored from storage (durable). */
const REF_EPOCH = 3;
const REF_ID = 4;
const REF_NONE = -1;

const NEW: SequenceCheck = Object.freeze({ kind: 'new' });

export interface ProducerStateLimits {
  readonly batchesPerProducer: number;
  readonly producersMax: number;
}

export class ProducerStateError extends PmqError {}

const sequenceEnd = (baseSequence: number, records: number): number =>
  (baseSequence + records) % SEQUENCE_MODULUS;
/** True when sequence `a` lies ahead of `b` (within half the sequence space). */
const isAhead = (a: number, b: number): boolean => {
  const distance = (a - b + SEQUENCE_MODULUS) % SEQUENCE_MODULUS;
  return distance > 0 && distance < SEQUENCE_MODULUS / 2;
};

export class ProducerStates {
  readonly #limits: ProducerStateLimits;
  readonly #producers = new Map<number, Producer>();
  /** Least recently used first (the eviction order), and the most recently used. */
  #oldest: Producer | null = null;
  #newest: Producer | null = null;
  /** The producer of each batch appended and not yet durable, by ref id (numbers: no keys). */
  readonly #pending = new IntMap<Producer>();
  #pendingEpoch = -1;

  constructor(limits: ProducerStateLimits = PRODUCER_LIMITS) {
    if (!(Number.isSafeInteger(limits.batchesPerProducer) && limits.batchesPerProducer >= 1 &&
        Number.isSafeInteger(limits.producersMax) && limits.producersMax >= 1)) {
      invariant(false, 'limits', { ...limits });
    }
    this.#limits = limits;
  }

  /** What to do with an append of `records` records from `producerId` at `sequence`. */
  check(producerId: number, sequence: number, records: number): SequenceCheck {
    if (producerId < 0) return NEW;
    if (!Number.isSafeInteger(sequence) || sequence < 0 || sequence >= SEQUENCE_MODULUS) {
      throw new ProducerStateError('PMQ_ERR_LEASE_INVALID', `sequence ${sequence} of ` +
        `producer ${producerId} must be 0..2^31-1 (-1 only without a producer id)`);
    }
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return NEW;
    this.#touch(producer);
    const same = this.#find(producer, sequence);
    const { slots } = producer;
    if (same >= 0 && slots[same + RECORDS] === records) {
      const baseOffset = slots[same + BASE_OFFSET]!;
      if (baseOffset >= 0) return { kind: 'duplicate', baseOffset };
      if (slots[same + REF_ID] === REF_NONE) {
        invariant(false, 'restored batches are durable', { producerId, sequence });
      }
      return { kind: 'in-flight', ref: { epoch: slots[same + REF_EPOCH]!,
        id: slots[same + REF_ID]! } };
    }
    if (same < 0 && sequence === producer.sequenceNext) return NEW;
    throw new ProducerStateError('PMQ_ERR_OUT_OF_ORDER_SEQUENCE', `producer ${producerId} ` +
      `sent sequence ${sequence} (${records} records) but the partition expects ` +
      `${producer.sequenceNext}${same < 0 ? '' : ` (sequence ${sequence} was a ` +
      `batch of ${slots[same + RECORDS]} records)`}: batches were lost or reordered; the ` +
      'producer must re-initialise (producerInit) and send again');
  }

  /** The sequencer took the batch `check` called new. */
  appended(producerId: number, baseSequence: number, records: number,
    ref: ReservationRef): void {
    if (producerId < 0) return;
    const producer = this.#producer(producerId);
    if (!(baseSequence === producer.sequenceNext || producer.count === 0)) {
      invariant(false, 'a new batch continues the sequence',
        { producerId, baseSequence, sequenceNext: producer.sequenceNext });
    }
    if (this.#pendingEpoch !== ref.epoch) {
      // Refs are of the partition's one sequencer: a second epoch would alias ids.
      if (this.#pending.size !== 0) {
        invariant(false, 'pending refs of one epoch',
          { epoch: ref.epoch, pendingEpoch: this.#pendingEpoch });
      }
      this.#pendingEpoch = ref.epoch;
    }
    if (this.#pending.has(ref.id)) {
      invariant(false, 'a ref is appended once', { id: ref.id });
    }
    producer.sequenceNext = sequenceEnd(baseSequence, records);
    this.#append(producer, baseSequence, records, -1, ref.epoch, ref.id);
    this.#pending.set(ref.id, producer);
    producer.inFlight += 1;
  }

  /** The batch is durable (acknowledged) at baseOffset: a retry now gets `duplicate`. */
  durable(ref: ReservationRef, baseOffset: number): void {
    if (ref.epoch !== this.#pendingEpoch) return;
    const producer = this.#pending.get(ref.id);
    if (producer === undefined) return;
    this.#pending.delete(ref.id);
    producer.inFlight -= 1;
    const { slots } = producer;
    for (let index = 0; index < producer.count; index += 1) {
      const at = producer.at(index);
      if (slots[at + REF_ID] === ref.id && slots[at + REF_EPOCH] === ref.epoch) {
        slots[at + BASE_OFFSET] = baseOffset;
        return;
      }
    }
    invariant(false, 'a pending ref is in its producer\'s ring', { id: ref.id });
  }

  /** Recovery: one durable batch of the log, in log order. */
  restoreBatch(batch: RestoredBatch): void {
    if (batch.producerId < 0 || batch.baseSequence < 0) return;
    const producer = this.#producer(batch.producerId);
    const end = sequenceEnd(batch.baseSequence, batch.records);
    const furthest = producer.count === 0 || batch.baseSequence === producer.sequenceNext ||
      isAhead(end, producer.sequenceNext);
    if (furthest) producer.sequenceNext = end;
    this.#append(producer, batch.baseSequence, batch.records, batch.baseOffset, REF_NONE,
      REF_NONE);
  }

  /** For tests and metrics (allocates). */
  view(producerId: number): { sequenceNext: number; batches: BatchSequence[] } | undefined {
    const producer = this.#producers.get(producerId);
    if (producer === undefined) return undefined;
    const batches: BatchSequence[] = [];
    for (let index = 0; index < producer.count; index += 1) {
      const at = producer.at(index);
      batches.push({ baseSequence: producer.slots[at + BASE_SEQUENCE]!,
        records: producer.slots[at + RECORDS]!, baseOffset: producer.slots[at + BASE_OFFSET]! });
    }
    return { sequenceNext: producer.sequenceNext, batches };
  }

  get producers(): number {
    return this.#producers.size;
  }

  /** Batches appended and not yet durable, over all producers (for tests). */
  get pending(): number {
    return this.#pending.size;
  }

  #producer(producerId: number): Producer {
    if (!(Number.isSafeInteger(producerId) && producerId >= 0)) {
      invariant(false, 'producer id', { producerId });
    }
    let producer = this.#producers.get(producerId);
    if (producer === undefined) {
      producer = new Producer(producerId, this.#limits.batchesPerProducer);
      this.#producers.set(producerId, producer);
      this.#link(producer);
      this.#evictIdle();
    } else {
      this.#touch(producer);
    }
    return producer;
  }

  /** The slot offset of `sequence`'s batch, or -1 (newest first: a retry is a recent one). */
  #find(producer: Producer, sequence: number): number {
    for (let index = producer.count - 1; index >= 0; index -= 1) {
      const at = producer.at(index);
      if (producer.slots[at + BASE_SEQUENCE] === sequence) return at;
    }
    return -1;
  }

  /** Records a batch as the newest, overwriting the oldest when the ring is full. */
  #append(producer: Producer, baseSequence: number, records: number, baseOffset: number,
    refEpoch: number, refId: number): void {
    const { slots } = producer;
    if (producer.count === producer.capacity) {
      const oldest = producer.at(0);
      const oldestRef = slots[oldest + REF_ID]!;
      // Pushed out before it was durable: its durable() finds nothing to update.
      if (oldestRef !== REF_NONE && slots[oldest + BASE_OFFSET]! < 0 &&
          this.#pending.get(oldestRef) === producer) {
        this.#pending.delete(oldestRef);
        producer.inFlight -= 1;
      }
      producer.first = producer.first + 1 === producer.capacity ? 0 : producer.first + 1;
      producer.count -= 1;
    }
    const at = producer.at(producer.count);
    slots[at + BASE_SEQUENCE] = baseSequence;
    slots[at + RECORDS] = records;
    slots[at + BASE_OFFSET] = baseOffset;
    slots[at + REF_EPOCH] = refEpoch;
    slots[at + REF_ID] = refId;
    producer.count += 1;
    if (!(producer.count <= this.#limits.batchesPerProducer && producer.inFlight >= 0 &&
        producer.inFlight <= producer.count)) {
      invariant(false, 'batches bounded, in flight among them',
        { count: producer.count, inFlight: producer.inFlight });
    }
  }

  /** Makes `producer` the most recently used. */
  #touch(producer: Producer): void {
    if (this.#newest === producer) return;
    this.#unlink(producer);
    this.#link(producer);
  }

  #link(producer: Producer): void {
    producer.older = this.#newest;
    producer.newer = null;
    if (this.#newest !== null) this.#newest.newer = producer;
    this.#newest = producer;
    this.#oldest ??= producer;
  }

  #unlink(producer: Producer): void {
    if (producer.older !== null) producer.older.newer = producer.newer;
    else this.#oldest = producer.newer;
    if (producer.newer !== null) producer.newer.older = producer.older;
    else this.#newest = producer.older;
    producer.older = null;
    producer.newer = null;
  }

  /** Forgets the least recently used producers beyond producersMax (they become unknown). */
  #evictIdle(): void {
    while (this.#producers.size > this.#limits.producersMax) {
      const producer = this.#oldest;
      if (producer === null) {
        invariant(false, 'the recency list holds every producer',
          { producers: this.#producers.size });
      }
      for (let index = 0; index < producer.count && producer.inFlight > 0; index += 1) {
        const refId = producer.slots[producer.at(index) + REF_ID]!;
        if (refId !== REF_NONE && this.#pending.get(refId) === producer) {
          this.#pending.delete(refId);
          producer.inFlight -= 1;
        }
      }
      this.#unlink(producer);
      this.#producers.delete(producer.id);
    }
  }
}
