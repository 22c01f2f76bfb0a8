/**
 * The broker's fencing state: once a storage node refuses this broker's epoch as stale (or
 * reports a higher one), a newer broker owns the cluster and this one must acknowledge nothing
 * more (docs/broker.md, "Start and fencing").
 *
 * `trip(why)` is the one way in (the storage pool calls it, once); from then on `check()`
 * throws PMQ_ERR_FENCED, and every request still in flight under `guard()` (pending commits,
 * parked fetch long polls, metadata writes waiting for their fsync) is answered PMQ_ERR_FENCED
 * at once, whatever its handler does later. Appends waiting for their ack are not under
 * guard() (no promise per append, issue 11): broker.ts answers them behind `fenced()` and fails
 * them all from its trip listener, to the same effect. The metadata store asks `fenced()` before it
 * writes (metadata-store.ts), so no metadata file changes after the trip.
 *
 * Concurrency: JS thread only. State: the settlers of the guarded requests in flight, each
 * removed when its request settles.
 */
import { PmqError } from '../common/errors.js';

/** What a fenced broker answers every request with (docs/error-codes.md). */
export function fencedError(epoch: number): PmqError {
  return new PmqError('PMQ_ERR_FENCED', `this broker (epoch ${epoch}) was fenced by a newer ` +
    'broker: reconnect to the current broker', { retriable: true });
}

export class Fence {
  #why: string | null = null;
  readonly #inFlight = new Set<(error: PmqError) => void>();
  readonly #listeners = new Set<(why: string) => void>();

  constructor(private readonly epoch: () => number) {}

  /** Why this broker was fenced, or null while it is not. */
  get why(): string | null {
    return this.#why;
  }

  /** The refusal every request gets once fenced, or null while this broker is current. */
  fenced(): PmqError | null {
    return this.#why === null ? null : fencedError(this.epoch());
  }

  /** Throws PMQ_ERR_FENCED once fenced. */
  check(): void {
    const error = this.fenced();
    if (error !== null) throw error;
  }

  /** Called once, with why, when the fence trips. */
  onTrip(listener: (why: string) => void): void {
    this.#listeners.add(listener);
  }

  /**
   * Fences this broker: answers every guarded request in flight with PMQ_ERR_FENCED, then
   * tells the listeners. Returns false (and does nothing) when it was fenced already.
   */
  trip(why: string): boolean {
    if (this.#why !== null) return false;
    this.#why = why;
    const error = fencedError(this.epoch());
    const settlers = [...this.#inFlight];
    this.#inFlight.clear();
    for (const settle of settlers) settle(error);
    for (const listener of this.#listeners) listener(why);
    return true;
  }

  /**
   * guard() without a promise for `work` that answers at once (most requests: no promise and
   * no closures per message, issue 11): its value or its throw, or PMQ_ERR_FENCED thrown when
   * fenced before it ran or by the time it returned. A promise from `work` is guarded as by
   * guard().
   */
  guardNow<T>(work: () => T | Promise<T>): T | Promise<T> {
    this.check();
    let value: T | Promise<T>;
    try {
      value = work();
    } catch (failure) {
      this.check();  // fenced while it ran: the refusal wins, as in guard()
      throw failure;
    }
    if (value instanceof Promise) {
      const promise = value;
      return this.guard(() => promise);
    }
    this.check();
    return value;
  }

  /** `work`'s outcome, unless the fence trips first: then PMQ_ERR_FENCED at once. */
  guard<T>(work: () => T | Promise<T>): Promise<T> {
    const error = this.fenced();
    if (error !== null) return Promise.reject(error);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settleFenced = (fenced: PmqError): void => {
        settled = true;
        reject(fenced);
      };
      this.#inFlight.add(settleFenced);
      const finish = (ok: boolean, value: unknown): void => {
        this.#inFlight.delete(settleFenced);
        if (settled) return;
        settled = true;
        if (ok) resolve(value as T);
        else reject(value as Error);
      };
      try {
        Promise.resolve(work()).then((value) => finish(true, value),
          (failure: unknown) => finish(false, failure));
      } catch (failure) {
        finish(false, failure);
      }
    });
  }
}
