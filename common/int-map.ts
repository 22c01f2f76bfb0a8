/**
 * A map from non-negative integer keys (ref ids, positions) to values, for per-batch and
 * per-request tables (the broker's, the control channel's and the transport's pending requests):
 * one set and one delete per batch or request in flight. A Map allocates on that churn: its table
 * shrinks (a new table) when a delete leaves it a quarter full and grows again (another) on the
 * next set, so a table that swings between 0 and 2 entries allocated on most operations (issue
 * 11). This one is open addressing with linear probing in a Float64Array of keys and a packed
 * array of values, grows at half full and never shrinks: steady-state set/delete allocate
 * nothing once it has reached its peak size.
 *
 * Deletion shifts the following entries of the probe run back (no tombstones), so lookups stay
 * short whatever the churn.
 */
import { invariant } from './invariant.js';

const EMPTY = -1;
const CAPACITY_MIN = 8;

export class IntMap<V> {
  #keys: Float64Array;
  #values: (V | undefined)[];
  #mask: number;
  /** 32 - log2(slots): the product's top bits are the home slot. */
  #shift: number;
  #size = 0;

  constructor(capacity = CAPACITY_MIN) {
    let slots = CAPACITY_MIN;
    while (slots < capacity * 2) slots *= 2;
    this.#keys = new Float64Array(slots).fill(EMPTY);
    this.#values = new Array<V | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#shift = 32 - Math.log2(slots);
  }

  get size(): number {
    return this.#size;
  }

  /** Slots allocated (a power of two, at least twice the largest size reached). */
  get capacity(): number {
    return this.#mask + 1;
  }

  get(key: number): V | undefined {
    const slot = this.#find(key);
    return slot < 0 ? undefined : this.#values[slot];
  }

  has(key: number): boolean {
    return this.#find(key) >= 0;
  }

  set(key: number, value: V): this {
    if (!(Number.isSafeInteger(key) && key >= 0)) {
      invariant(false, 'IntMap keys are non-negative integers', { key });
    }
    let slot = this.#home(key);
    for (;;) {
      const found = this.#keys[slot]!;
      if (found === key) {
        this.#values[slot] = value;
        return this;
      }
      if (found === EMPTY) break;
      slot = (slot + 1) & this.#mask;
    }
    this.#keys[slot] = key;
    this.#values[slot] = value;
    this.#size += 1;
    if (this.#size * 2 > this.#mask + 1) this.#grow();
    return this;
  }

  delete(key: number): boolean {
    let slot = this.#find(key);
    if (slot < 0) return false;
    this.#size -= 1;
    // Backward shift: move each later entry of the run into the hole if its home allows.
    for (let next = (slot + 1) & this.#mask; ; next = (next + 1) & this.#mask) {
      const moving = this.#keys[next]!;
      if (moving === EMPTY) break;
      const home = this.#home(moving);
      // `moving` may fill the hole unless its home lies cyclically in (slot, next].
      const homeAfterHole = slot <= next ? home > slot && home <= next
        : home > slot || home <= next;
      if (homeAfterHole) continue;
      this.#keys[slot] = moving;
      this.#values[slot] = this.#values[next];
      slot = next;
    }
    this.#keys[slot] = EMPTY;
    this.#values[slot] = undefined;
    return true;
  }

  /** Calls `fn` for each entry (in no particular order); `fn` must not change the map. */
  forEach(fn: (value: V, key: number) => void): void {
    const size = this.#size;
    for (let slot = 0; slot <= this.#mask; slot += 1) {
      const key = this.#keys[slot]!;
      if (key !== EMPTY) fn(this.#values[slot] as V, key);
    }
    invariant(this.#size === size, 'IntMap unchanged during forEach');
  }

  /** The keys (a fresh array: for rare paths, which may then change the map). */
  keys(): number[] {
    const keys: number[] = [];
    this.forEach((_value, key) => keys.push(key));
    return keys;
  }

  /** The values (a fresh array: for rare paths, which may then change the map). */
  values(): V[] {
    const values: V[] = [];
    this.forEach((value) => values.push(value));
    return values;
  }

  clear(): void {
    this.#keys.fill(EMPTY);
    this.#values.fill(undefined);
    this.#size = 0;
  }

  #home(key: number): number {
    // Fibonacci hashing (the product's top bits: keys that share their low bits, as positions
    // of equal-sized batches do, still spread), the high 32 bits folded in first.
    const low = key >>> 0;
    const high = (key - low) / 0x1_0000_0000;
    return Math.imul(low ^ Math.imul(high, 0x27d4eb2d), 0x9e3779b1) >>> this.#shift;
  }

  #find(key: number): number {
    let slot = this.#home(key);
    for (;;) {
      const found = this.#keys[slot]!;
      if (found === key) return slot;
      if (found === EMPTY) return -1;
      slot = (slot + 1) & this.#mask;
    }
  }

  #grow(): void {
    const keys = this.#keys;
    const values = this.#values;
    const slots = (this.#mask + 1) * 2;
    this.#keys = new Float64Array(slots).fill(EMPTY);
    this.#values = new Array<V | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#shift = 32 - Math.log2(slots);
    this.#size = 0;
    for (let slot = 0; slot < keys.length; slot += 1) {
      const key = keys[slot]!;
      if (key !== EMPTY) this.set(key, values[slot] as V);
    }
  }
}
