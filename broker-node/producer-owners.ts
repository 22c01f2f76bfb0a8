/**
 * Which user each producer id was issued to (producerInit), so that an authenticated session
 * cannot append under another user's producer id: with it, a hijacker's batch would take the
 * victim's next sequence, and the victim's own batch would be answered `duplicate` with the
 * hijacker's offset and never stored. Memory only, for this broker's life: ids issued by an
 * earlier broker (restored from batch headers) have no known owner and are not checked, so
 * an idempotent retry across a broker restart still works. Bounded: the oldest entries are
 * forgotten first (their producers then count as unknown, as after a restart).
 */
import { PmqError } from '../common/errors.js';

/** ~100 B per entry: 100 000 issued ids ≈ 10 MiB at most. */
const OWNERS_MAX = 100_000;

export class ProducerOwners {
  readonly #owners = new Map<number, string>();

  issued(producerId: number, principal: string): void {
    this.#owners.set(producerId, principal);
    if (this.#owners.size > OWNERS_MAX) {
      const oldest = this.#owners.keys().next();
      if (oldest.done !== true) this.#owners.delete(oldest.value);
    }
  }

  /** Throws PMQ_ERR_DENIED when `producerId` was issued to another user than `principal`. */
  check(producerId: number, principal: string): void {
    if (producerId < 0) return;
    const owner = this.#owners.get(producerId);
    if (owner === undefined || owner === principal) return;
    throw new PmqError('PMQ_ERR_DENIED', `producer id ${producerId} was issued to another ` +
      'user: take your own with producerInit');
  }
}
