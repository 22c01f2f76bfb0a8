/**
 * The sequencer's remembered acknowledgements (SEQUENCER_LIMITS.outcomesRememberedMax): the
 * last `capacity` acked batches, oldest overwritten first, in typed arrays allocated once.
 *
 * Why not a Map of objects (what it was): every ack added an entry object and an Ack that lived
 * for `capacity` more acks — long enough at any rate to survive two scavenges, be promoted and
 * die in the old generation — and the Map's deletes rehashed its table. That was the broker's
 * main source of full (mark-compact) collections under load (issue 11). Here remembering writes
 * numbers into slots; the two strings per entry (producer, segment id) are shared with the
 * lease and segment, not made per batch.
 *
 * Lookups scan newest first (at most `capacity` slots): they serve retried appends and
 * duplicates, never the steady-state path (the partition asks the in-flight set first).
 */
import { invariant } from '../common/invariant.js';
import type { Ack } from './sequencer-types.js';

export class OutcomeRing {
  readonly capacity: number;
  readonly #ids: Float64Array;
  readonly #epochs: Float64Array;
  readonly #positions: Float64Array;
  readonly #bytes: Float64Array;
  readonly #baseOffsets: Float64Array;
  readonly #records: Float64Array;
  readonly #producers: string[];
  readonly #segmentIds: string[];
  /** The slot the next entry goes to. */
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    invariant(Number.isSafeInteger(capacity) && capacity >= 1, 'outcome ring capacity',
      { capacity });
    this.capacity = capacity;
    this.#ids = new Float64Array(capacity);
    this.#epochs = new Float64Array(capacity);
    this.#positions = new Float64Array(capacity);
    this.#bytes = new Float64Array(capacity);
    this.#baseOffsets = new Float64Array(capacity);
    this.#records = new Float64Array(capacity);
    // Filled up front: a packed array of strings that never changes its shape.
    this.#producers = new Array<string>(capacity).fill('');
    this.#segmentIds = new Array<string>(capacity).fill('');
  }

  get size(): number {
    return this.#size;
  }

  /** Remembers `ack` (copied: the caller may drop or reuse it); evicts the oldest when full. */
  remember(ack: Ack): void {
    const slot = this.#next;
    this.#ids[slot] = ack.id;
    this.#epochs[slot] = ack.epoch;
    this.#positions[slot] = ack.position;
    this.#bytes[slot] = ack.bytes;
    this.#baseOffsets[slot] = ack.baseOffset;
    this.#records[slot] = ack.records;
    this.#producers[slot] = ack.producer;
    this.#segmentIds[slot] = ack.segmentId;
    this.#next = slot + 1 === this.capacity ? 0 : slot + 1;
    if (this.#size < this.capacity) this.#size += 1;
  }

  /** Whether the ack of batch `id` of `epoch` is still remembered. */
  has(epoch: number, id: number): boolean {
    return this.#find(epoch, id) >= 0;
  }

  /** A copy of batch `id`'s ack (a fresh object: rare path), or null when forgotten. */
  get(epoch: number, id: number): Ack | null {
    const slot = this.#find(epoch, id);
    if (slot < 0) return null;
    return { epoch, id, producer: this.#producers[slot]!, segmentId: this.#segmentIds[slot]!,
      position: this.#positions[slot]!, bytes: this.#bytes[slot]!,
      baseOffset: this.#baseOffsets[slot]!, records: this.#records[slot]! };
  }

  /** The slot of batch `id`, newest first, or -1. */
  #find(epoch: number, id: number): number {
    let slot = this.#next;
    for (let seen = 0; seen < this.#size; seen += 1) {
      slot = slot === 0 ? this.capacity - 1 : slot - 1;
      if (this.#ids[slot] === id && this.#epochs[slot] === epoch) return slot;
    }
    return -1;
  }
}
