/**
 * A free list of mutable records, for state the broker makes per batch in steady state (issue
 * 11: allocation-free control path). A record handed out is the caller's until it releases it;
 * released, it goes back to the list (up to `kept`) and is handed out again.
 *
 * Reuse must never be observed: a record's `generation` goes up at every release, so a holder
 * that remembered the generation it was handed can check, before reading, that the record is
 * still its own (`checkLive`), and releasing twice is caught. Both are invariants: only our own
 * logic can get them wrong.
 */
import { invariant } from '../common/invariant.js';

export interface Pooled {
  /** Goes up at every release: a holder's (record, generation) pair is stale once it differs. */
  generation: number;
  live: boolean;
}

export class RecordPool<T extends Pooled> {
  readonly #free: T[] = [];
  #made = 0;
  #live = 0;

  /**
   * `make`: a fresh record (live false, generation 0). `reset`: clears what a released record
   * must not keep alive (callbacks, references). `kept`: at most this many wait in the list.
   */
  constructor(private readonly make: () => T, private readonly reset: (record: T) => void,
    private readonly kept: number) {
    invariant(Number.isSafeInteger(kept) && kept >= 0, 'pool size', { kept });
  }

  acquire(): T {
    const record = this.#free.pop() ?? this.#make();
    if (record.live) invariant(false, 'a pooled record is handed out once at a time');
    record.live = true;
    this.#live += 1;
    return record;
  }

  /** Gives `record` back; the holder must not touch it after this. */
  release(record: T): void {
    if (!record.live) {
      invariant(false, 'a pooled record is released once', { generation: record.generation });
    }
    record.live = false;
    record.generation += 1;
    this.#live -= 1;
    this.reset(record);
    if (this.#free.length < this.kept) this.#free.push(record);
  }

  /** Records made in all (a steady state makes none). */
  get made(): number {
    return this.#made;
  }

  /** Records handed out and not released. */
  get live(): number {
    return this.#live;
  }

  #make(): T {
    this.#made += 1;
    return this.make();
  }
}

/** Aborts unless `record` is still the one handed out at `generation` (not released since). */
export function checkLive(record: Pooled, generation: number, what: string): void {
  if (!(record.live && record.generation === generation)) {
    invariant(false, 'a pooled record is used after its release',
      { what, generation, now: record.generation, live: record.live });
  }
}
