/**
 * The durable batches of one open lease, by position, so that an exact retry of an append
 * long since acknowledged still finds its ack (docs/sequencer.md, "Retried appends"). A lease
 * of 4 MiB holds thousands of small batches and lives for seconds: as Piece objects in a Map
 * (what it was) every one of them was promoted to the old generation and died there when the
 * lease closed, so the broker's old generation grew with the produce rate (issue 11). Here a
 * batch is five numbers in one Float64Array that doubles when full: O(log n) allocations per
 * lease, none per batch, nothing for the collector to trace.
 *
 * Batches are added as they become durable, which within a segment is position order (the
 * durable part is a prefix), so the log stays sorted and lookups are a binary search.
 */
import { invariant } from '../common/invariant.js';

const FIELDS = 5;
const POSITION = 0;
const BYTES = 1;
const RECORDS = 2;
const BASE_OFFSET = 3;
const ID = 4;
const CAPACITY_FIRST = 16;

/** One batch as the log answers it; a caller-owned record that `find` fills. */
export interface LoggedBatch {
  position: number;
  bytes: number;
  records: number;
  baseOffset: number;
  id: number;
}

export class BatchLog {
  #slots = new Float64Array(CAPACITY_FIRST * FIELDS);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  add(position: number, bytes: number, records: number, baseOffset: number, id: number): void {
    const count = this.#count;
    if (count > 0) {
      const last = (count - 1) * FIELDS;
      const lastEnd = this.#slots[last + POSITION]! + this.#slots[last + BYTES]!;
      if (!(position >= lastEnd)) {
        invariant(false, 'a lease\'s batches become durable in position order',
          { position, lastEnd });
      }
    }
    if ((count + 1) * FIELDS > this.#slots.length) {
      const grown = new Float64Array(this.#slots.length * 2);
      grown.set(this.#slots);
      this.#slots = grown;
    }
    const at = count * FIELDS;
    this.#slots[at + POSITION] = position;
    this.#slots[at + BYTES] = bytes;
    this.#slots[at + RECORDS] = records;
    this.#slots[at + BASE_OFFSET] = baseOffset;
    this.#slots[at + ID] = id;
    this.#count = count + 1;
  }

  /** Fills `into` with the batch at exactly `position` and returns true, or returns false. */
  find(position: number, into: LoggedBatch): boolean {
    let low = 0;
    let high = this.#count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = middle * FIELDS;
      const found = this.#slots[at + POSITION]!;
      if (found < position) low = middle + 1;
      else if (found > position) high = middle - 1;
      else {
        into.position = found;
        into.bytes = this.#slots[at + BYTES]!;
        into.records = this.#slots[at + RECORDS]!;
        into.baseOffset = this.#slots[at + BASE_OFFSET]!;
        into.id = this.#slots[at + ID]!;
        return true;
      }
    }
    return false;
  }
}
