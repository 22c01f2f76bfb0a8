/**
 * The control channel's requests awaiting their reply, allocating nothing per request in steady
 * state (issue 11): records come from a pool, the table is an IntMap (ids rise by one), and the
 * callbacks the transport needs for a record's send are made once per record, not per request.
 *
 * A record is back in the pool only when both are over: its request is settled (reply, error,
 * timeout, its connection gone) and the transport is done with its send (`sent` or `failed`
 * ran). Released earlier, a late `failed` of an old send would fail the request that reuses the
 * record. A persist frame's buffer rides on the record until its send is done, then goes back
 * to the frame pool (a failed send drops it: UCX may still read it).
 */
import { IntMap } from '../common/int-map.js';
import { invariant } from '../common/invariant.js';
import { PmqError } from '../common/errors.js';
import type { Message, RequestKind } from '../common/wire/messages.js';
import type { PersistFrameBuffer, PersistFramePool } from '../common/wire/persist-frame.js';
import type { Endpoint } from '../native/transport.js';

/** Who waits for a request's outcome: exactly one of the two runs, once. */
export interface ReplyCallback {
  onReply(reply: Message): void;
  onError(error: Error): void;
  /**
   * onReply reads the reply before it returns and keeps nothing of it: the channel may then
   * hand it a record it refills (a `persisted` reply, one per batch: issue 11). Otherwise
   * every reply is the callback's to keep.
   */
  readonly readsReplyAtOnce?: boolean;
}

export interface PendingRequest {
  id: number;
  ep: Endpoint;
  kind: RequestKind;
  callback: ReplyCallback | null;
  /** performance.now() after which the request fails with PMQ_ERR_TIMEOUT. */
  deadline: number;
  timeoutMs: number;
  /** The transport holds this record's send (neither `sent` nor `sendFailed` ran yet). */
  sending: boolean;
  frame: PersistFrameBuffer | null;
  /** For transport.post: made once per record. */
  readonly sent: () => void;
  readonly sendFailed: (error: unknown) => void;
}

/** Records kept for reuse; more requests in flight at once are made and dropped. */
export const PENDING_POOLED_MAX = 1024;

export class PendingRequests {
  readonly #table = new IntMap<PendingRequest>();
  readonly #pool: PendingRequest[] = [];

  /** `failedToSend(request, error)`: the send of a request still waiting failed (settle it). */
  constructor(private readonly frames: PersistFramePool,
    private readonly failedToSend: (request: PendingRequest, error: unknown) => void) {}

  get size(): number {
    return this.#table.size;
  }

  /** A record for request `id`, in the table (its send not started yet: call sending()). */
  add(id: number, ep: Endpoint, kind: RequestKind, callback: ReplyCallback, timeoutMs: number):
    PendingRequest {
    const request = this.#pool.pop() ?? this.#make();
    request.id = id;
    request.ep = ep;
    request.kind = kind;
    request.callback = callback;
    request.timeoutMs = timeoutMs;
    request.deadline = performance.now() + timeoutMs;
    request.sending = true;
    this.#table.set(id, request);
    return request;
  }

  get(id: number): PendingRequest | undefined {
    return this.#table.get(id);
  }

  /** Takes the request out of the table and returns its callback (null: already settled). */
  settle(request: PendingRequest): ReplyCallback | null {
    const callback = request.callback;
    if (callback === null) return null;
    this.#table.delete(request.id);
    request.callback = null;
    if (!request.sending) this.#release(request);
    return callback;
  }

  /** The requests matching `test` (a fresh array only when some do): timeouts, closed peers. */
  select(test: (request: PendingRequest, now: number) => boolean): PendingRequest[] {
    const now = performance.now();
    let any = false;
    this.#table.forEach((request) => { if (!any && test(request, now)) any = true; });
    if (!any) return [];
    return this.#table.values().filter((request) => test(request, now));
  }

  #make(): PendingRequest {
    const request: PendingRequest = { id: 0, ep: 0 as Endpoint, kind: 'hello', callback: null,
      deadline: 0, timeoutMs: 0, sending: false, frame: null,
      sent: () => {
        request.sending = false;
        if (request.frame !== null) this.frames.release(request.frame);
        request.frame = null;
        if (request.callback === null) this.#release(request);
      },
      sendFailed: (error: unknown) => {
        request.sending = false;
        request.frame = null;  // UCX may still read it: left to the collector
        // Still waiting: failedToSend settles it, which releases the record (no send left).
        if (request.callback !== null) this.failedToSend(request, error);
        else this.#release(request);
      } };
    return request;
  }

  #release(request: PendingRequest): void {
    if (request.sending || request.callback !== null) {
      invariant(false, 'a pending request is reused only once settled and sent',
        { id: request.id });
    }
    if (this.#pool.length >= PENDING_POOLED_MAX) return;
    this.#pool.push(request);
  }
}

export function timeoutError(request: PendingRequest): PmqError {
  return new PmqError('PMQ_ERR_TIMEOUT', `no reply to ${request.kind} within ` +
    `${request.timeoutMs} ms`, { retriable: true });
}
