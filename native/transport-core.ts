/**
 * The state behind native/transport.ts: endpoints, requests in flight, grants, listeners, and
 * the one function that receives native events (after the worker's progress has returned, on
 * the JS thread). Requests keep their buffer referenced until they settle; a validated write
 * or read settles when both its send has completed and the storage peer's reply has arrived.
 */
import { ArgumentError, isErrorCode, NativeError, PmqError, type ErrorCode } from
  '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { IntMap } from '../common/int-map.js';
import { EventKind } from './binding-transport.js';
import type { GrantTable } from './grant-table.js';
import type { DirectKey, Endpoint, MessageHandler, TransportEvents } from './transport.js';

/** Reply status (native/transport.h Status) → error code. Index = status. */
export const REPLY_CODES: readonly ('' | ErrorCode)[] = [
  '', 'PMQ_ERR_GRANT_UNKNOWN', 'PMQ_ERR_GRANT_OUT_OF_RANGE', 'PMQ_ERR_GRANT_DIRECTION',
  'PMQ_ERR_GRANT_REVOKED', 'PMQ_ERR_GRANT_STALE_EPOCH', 'PMQ_ERR_REQUEST_MALFORMED',
  'PMQ_ERR_TRANSFER_FAILED', 'PMQ_ERR_NO_MEMORY_ATTACHED',
];

const REPLY_MESSAGES = [
  '', 'no such grant', 'outside the grant', 'the grant does not allow this direction',
  'the grant was revoked', 'stale epoch', 'malformed request', 'transfer failed',
  'the peer exposes no memory',
];

/** ucs_status_t UCS_ERR_REJECTED, negated: a rendezvous the storage peer refused. */
const STATUS_REJECTED = 23;

/** A validated access refused by the storage peer; `code` says why (docs/error-codes.md). */
export class AccessError extends PmqError {
  constructor(status: number) {
    const code = REPLY_CODES[status] || 'PMQ_ERR_REQUEST_MALFORMED';
    // Refused as sent: asking again unchanged gets the same answer. The client library decides
    // what to retry (a new grant; TRANSFER_FAILED maps to a retriable NotConnectedError).
    super(code, `validated access refused by the peer: ${REPLY_MESSAGES[status] ?? status}`,
      { retriable: false });
  }
}

/** A code from a native event: '' (none: a graceful close, a success) or a catalogue code. */
function nativeCode(text: string): ErrorCode | '' {
  // Guarded: invariant()'s fields literal would be made per native event (issue 11).
  if (!(text === '' || isErrorCode(text))) {
    invariant(false, 'native codes come from common/error-codes.ts', { code: text });
  }
  return text;
}

/** The code of a native failure event: never empty. */
function failureCode(code: ErrorCode | ''): ErrorCode {
  invariant(code !== '', 'a native failure carries a code');
  return code;
}

export interface Pending {
  /** direct: a put, get or flush of direct mode; settles like a send, on UCX's completion. */
  kind: 'send' | 'write' | 'read' | 'direct';
  ep: Endpoint;
  /** Referenced until the request settles: UCX reads or writes it until then. */
  buffer: Uint8Array;
  /** A gathered write's pieces (writeValidatedIov): referenced until it settles, as `buffer`. */
  pieces?: readonly Uint8Array[];
  header?: Uint8Array;
  sendDone: boolean;
  /** Rejected by its endpoint's close before UCX was done with the buffer: kept until then. */
  orphaned?: boolean;
  sendError?: PmqError & { status?: number };
  reply: number;
  resolve: () => void;
  reject: (error: Error) => void;
  /** A post(): back to the pool once settled and UCX is done with its bytes. */
  pooled?: boolean;
}

/** Pooled post() records kept for reuse; more in flight at once are allocated and dropped. */
export const POSTS_POOLED_MAX = 1024;
const EMPTY = new Uint8Array(0);
export const NOTHING = (): void => undefined;

type Listeners = { [K in keyof TransportEvents]: Set<TransportEvents[K]> };

export class TransportCore {
  protected listening = false;
  protected isClosed = false;
  protected readonly endpoints = new Set<Endpoint>();
  protected readonly connecting = new Map<Endpoint, {
    resolve: (ep: Endpoint) => void; reject: (error: Error) => void;
  }>();
  protected readonly closeWaiters = new Map<Endpoint, () => void>();
  /** By request id (ids rise by one per request: an IntMap, so churn allocates nothing). */
  protected readonly pending = new IntMap<Pending>();
  /** The native grant table's view (set by Transport once its handle exists). */
  protected grantTable: GrantTable | null = null;
  /** Endpoints bound to a client session (bindSession). */
  protected readonly sessions = new Map<Endpoint, number>();
  /** Direct mode, client side: imported keys and the range each was imported for. */
  protected readonly directKeys = new Map<DirectKey, { ep: Endpoint; address: number;
    length: number; }>();
  protected messageHandler: MessageHandler | undefined;
  protected memoryBytes = 0;
  protected epoch = 0;
  protected nextRequestId = 1;
  private readonly postPool: Pending[] = [];
  private readonly listeners: Listeners = { accepted: new Set(), closed: new Set(),
    error: new Set() };
  /** configurePersist's region handle and shared state, referenced while native uses them. */
  protected persistRefs: [unknown, Float64Array] | null = null;

  on<K extends keyof TransportEvents>(event: K, listener: TransportEvents[K]): this {
    this.listeners[event].add(listener);
    return this;
  }

  off<K extends keyof TransportEvents>(event: K, listener: TransportEvents[K]): this {
    this.listeners[event].delete(listener);
    return this;
  }

  /** Endpoints currently open (connected or accepted, not yet closed). */
  openEndpoints(): Endpoint[] {
    return [...this.endpoints];
  }

  /** A post()'s record: from the pool, or new when the pool is empty. */
  protected pooledSend(ep: Endpoint, header: Uint8Array, payload: Uint8Array,
    failed: (error: Error) => void, sent: () => void): Pending {
    const request = this.postPool.pop() ?? { kind: 'send', ep, buffer: payload, header,
      sendDone: false, orphaned: false, sendError: undefined, reply: -1, resolve: sent,
      reject: failed, pooled: true };
    request.ep = ep;
    request.buffer = payload;
    request.header = header;
    request.resolve = sent;
    request.reject = failed;
    return request;
  }

  /** Returns a settled post()'s record to the pool (dropping its references first). */
  private release(id: number, request: Pending): void {
    if (request.pooled !== true || this.postPool.length >= POSTS_POOLED_MAX) return;
    // Reused while its id is still pending, a record would be settled by the old send's
    // completion: the new send's bytes released early, its `failed` called for another's fate.
    if (!(this.pending.get(id) !== request && (request.sendDone || request.orphaned === true))) {
      invariant(false, 'a pooled send is released once settled and UCX is done with it', { id });
    }
    request.buffer = EMPTY;
    request.header = EMPTY;
    request.resolve = NOTHING;
    request.reject = NOTHING;
    request.sendDone = false;
    request.orphaned = false;
    request.sendError = undefined;
    this.postPool.push(request);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  protected checkOpen(): void {
    if (this.isClosed) throw new PmqError('PMQ_ERR_TRANSPORT_CLOSED', 'transport closed');
  }

  protected checkEndpoint(ep: Endpoint): void {
    this.checkOpen();
    if (!Number.isSafeInteger(ep)) throw new ArgumentError('endpoint must be an Endpoint');
    if (!this.endpoints.has(ep)) {
      // The caller's own endpoint: the same call fails again (not the catalogue's default).
      throw new PmqError('PMQ_ERR_ENDPOINT_CLOSED', `endpoint ${ep} is not open`,
        { retriable: false });
    }
  }

  protected readonly onNativeEvent = (kind: number, ep: number, id: number, status: number,
    nativeText: string, text: string, header: Uint8Array | undefined,
    payload: Uint8Array | number | undefined): Uint8Array | undefined => {
    const endpoint = ep as Endpoint;
    const code = nativeCode(nativeText);
    switch (kind) {
      case EventKind.accepted:
        this.endpoints.add(endpoint);
        for (const listener of this.listeners.accepted) listener(endpoint, text);
        return undefined;
      case EventKind.connected:
        this.connecting.get(endpoint)?.resolve(endpoint);
        this.connecting.delete(endpoint);
        return undefined;
      case EventKind.closed:
        this.onClosed(endpoint, code, text);
        return undefined;
      case EventKind.error:
        this.onError(endpoint, new PmqError(failureCode(code), text, { retriable: true }));
        return undefined;
      case EventKind.place:
        return this.onPlace(endpoint, header, payload);
      case EventKind.message:
        this.onMessage(endpoint, status, code, text, header, payload);
        return undefined;
      case EventKind.sendDone:
        this.onSendDone(id, status, code, text);
        return undefined;
      case EventKind.reply:
        this.onReply(endpoint, id, status);
        return undefined;
      case EventKind.revokeDone:
        this.grantTable?.revokeDone(id);
        return undefined;
      default:
        invariant(false, 'unknown native transport event', { kind });
    }
  };

  private onClosed(ep: Endpoint, code: ErrorCode | '', reason: string): void {
    this.endpoints.delete(ep);
    this.sessions.delete(ep);
    for (const [key, entry] of this.directKeys) {  // native destroyed them with the endpoint
      if (entry.ep === ep) this.directKeys.delete(key);
    }
    const error = new PmqError(code === '' ? 'PMQ_ERR_ENDPOINT_CLOSED' : code,
      `endpoint closed: ${reason}`, { retriable: true });
    this.connecting.get(ep)?.reject(error);
    this.connecting.delete(ep);
    for (const id of this.pending.keys()) {
      const request = this.pending.get(id)!;
      if (request.ep !== ep || request.orphaned === true) continue;
      if (request.sendDone) this.pending.delete(id); else request.orphaned = true;
      request.reject(error);
      if (request.sendDone) this.release(id, request);
    }
    this.closeWaiters.get(ep)?.();
    this.closeWaiters.delete(ep);
    for (const listener of this.listeners.closed) listener(ep, code, reason);
  }

  private onError(ep: Endpoint, error: PmqError): void {
    // The native side is closing the endpoint already; `closed` follows.
    this.endpoints.delete(ep);
    this.connecting.get(ep)?.reject(error);
    this.connecting.delete(ep);
    for (const listener of this.listeners.error) listener(ep, error);
  }

  private onPlace(ep: Endpoint, header: Uint8Array | undefined,
    payload: Uint8Array | number | undefined): Uint8Array | undefined {
    invariant(header !== undefined && typeof payload === 'number', 'place event shape');
    const chosen = this.messageHandler?.place?.(ep, header, payload);
    if (chosen !== undefined && (!(chosen instanceof Uint8Array) ||
        chosen.byteLength !== payload)) {
      throw new ArgumentError(`place() must return a Uint8Array of ${payload} bytes`);
    }
    return chosen;
  }

  private onMessage(ep: Endpoint, status: number, code: ErrorCode | '', text: string,
    header: Uint8Array | undefined, payload: Uint8Array | number | undefined): void {
    if (status !== 0) {
      const error = new PmqError(failureCode(code), `message lost: ${text}`,
        { retriable: true });
      for (const listener of this.listeners.error) listener(ep, error);
      return;
    }
    invariant(header !== undefined && payload instanceof Uint8Array, 'message event shape');
    this.messageHandler?.deliver(ep, header, payload);
  }

  private onSendDone(id: number, status: number, code: ErrorCode | '', text: string): void {
    const request = this.pending.get(id);
    if (request === undefined) return;
    if (request.orphaned === true) {  // already rejected; UCX is done with the buffer now
      this.pending.delete(id);
      this.release(id, request);
      return;
    }
    request.sendDone = true;
    if (status !== 0) {
      const error = request.kind === 'direct' && code === 'PMQ_ERR_DIRECT_FAILED'
        ? new NativeError(code, 'direct access failed (its endpoint fails with it)', text)
        : new PmqError(failureCode(code), text, { retriable: true });
      request.sendError = Object.assign(error, { status });
    }
    this.settle(id, request);
  }

  private onReply(ep: Endpoint, id: number, status: number): void {
    const request = this.pending.get(id);
    if (request === undefined || request.orphaned === true) return;
    // A reply settles only a validated request made on the endpoint it came from: a peer
    // cannot answer another peer's requests (or our sends) by guessing request ids.
    if (request.ep !== ep || (request.kind !== 'write' && request.kind !== 'read')) return;
    request.reply = status;
    this.settle(id, request);
  }

  private settle(id: number, request: Pending): void {
    const error = request.sendError;
    const noReply = request.kind === 'send' || request.kind === 'direct';
    if (noReply || (error !== undefined && error.status !== STATUS_REJECTED)) {
      if (!request.sendDone) return;
      this.pending.delete(id);
      if (error === undefined) request.resolve(); else request.reject(error);
      this.release(id, request);
      return;
    }
    if (!request.sendDone || request.reply < 0) return;
    this.pending.delete(id);
    if (request.reply === 0) request.resolve(); else request.reject(new AccessError(request.reply));
  }

  protected failEverything(error: PmqError): void {
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
    for (const waiter of this.connecting.values()) waiter.reject(error);
    this.connecting.clear();
    for (const resolve of this.closeWaiters.values()) resolve();
    this.closeWaiters.clear();
    this.grantTable?.settleAll();
    this.endpoints.clear();
    this.sessions.clear();
    this.directKeys.clear();
  }
}
