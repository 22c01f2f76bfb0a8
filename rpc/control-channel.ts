/**
 * Request/reply over the transport's two-sided messages, for every role: a storage node and a
 * broker serve requests, a broker and clients send them (a process may do both on one
 * transport). Owns the transport's message handler.
 *
 * Bad input from a peer, two grades (docs/wire-protocol.md, "Control messages"):
 * - a msgpack map with a valid uint32 `id` that fails the schema (a bad field, an unknown kind,
 *   another version) is answered with `error` PMQ_ERR_PROTOCOL naming the problem, and the
 *   connection stays; a malformed reply fails the request it answers instead. After more than
 *   MALFORMED_IN_A_ROW_MAX of them in a row from one endpoint, that endpoint is closed;
 * - anything less (a bad frame header, not msgpack, not a map, no usable id) closes that
 *   endpoint at once.
 * Either way the process keeps serving every other peer. A reply nobody asked for is logged
 * and ignored. A handler's PmqError becomes an `error` reply; anything else thrown by a handler
 * is our bug and aborts through invariant().
 *
 * One-way messages (ONE_WAY_KINDS, id 0: the broker's pushes) go to the kind's listeners and
 * are never answered; on a node that listens to no such kind they count as malformed (answered
 * PMQ_ERR_PROTOCOL, towards the MALFORMED_IN_A_ROW_MAX drop), as any unexpected message.
 *
 * Fixed-layout messages (WIRE_VERSION 8, common/wire/fixed.ts: append, lease, leaseRelease and
 * their replies, the watermark push) share the channel: the frame header's format byte tells
 * them apart, and failures are graded and counted exactly as msgpack's. A fixed request goes to
 * its `handleFixed` handler in the decoder's reused object, synchronously (the handler reads
 * it before it awaits anything), and is answered in the fixed layout from one reused buffer
 * (an `error` stays msgpack). Replies and pushes in the fixed layout reach callers and
 * listeners as ordinary messages (copied: callers keep them).
 */
import { isErrorCode, PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import type { Logger } from '../common/log.js';
import {
  decodeFrame, encodeMessage, FRAME_HEADER, ProtocolError,
} from '../common/wire/codec.js';
import {
  FixedDecoder, FixedEncoder, fixedCopy, isFixedFrame, isFixedKind, type FixedMessage,
  type FixedRequestKind,
} from '../common/wire/fixed.js';
import {
  ONE_WAY_ID, ONE_WAY_KINDS, REPLY_KINDS, type Body, type Message, type MessageKind,
  type OneWayKind, type ReplyKind, type RequestKind,
} from '../common/wire/messages.js';
import {
  decodePersistFrame, emptyPersistedMessage, encodePersistFrameInto, isPersistFrameHeader, PERSIST_FRAME_HEADER,
  PersistFramePool,
} from '../common/wire/persist-frame.js';
import type { Endpoint, Transport } from '../native/transport.js';
import {
  PendingRequests, timeoutError, type PendingRequest, type ReplyCallback,
} from './pending-requests.js';

export type { ReplyCallback } from './pending-requests.js';

export interface Reply<K extends ReplyKind = ReplyKind> { kind: K; body: Body<K> }
export type Handler<K extends RequestKind> =
  (ep: Endpoint, request: Message<K>) => Reply | Promise<Reply>;
export type OneWayListener<K extends OneWayKind> = (ep: Endpoint, message: Message<K>) => void;
/**
 * What a fixed-layout handler returns when it answers later itself, with answerFixed() or
 * answerError() exactly once (issue 11: an append waits for durability with no promise).
 */
export const DEFERRED: unique symbol = Symbol('pmq.deferredReply');
export type Deferred = typeof DEFERRED;
/**
 * A fixed-layout request's handler: `request` is the decoder's reused object, valid until the
 * handler returns or first awaits (read every field before that).
 */
export type FixedHandler<K extends FixedRequestKind> =
  (ep: Endpoint, request: FixedMessage<K>) => Reply | Promise<Reply> | Deferred;
/** The payload of every fixed-layout message (its fields travel in the header). */
const EMPTY = new Uint8Array(0);

/**
 * How often pending requests are checked for their deadline. No timer per request (a Timeout
 * object and a timer-list entry per message; issue 11): one sweep timer runs while any request
 * is pending, so a timeout fires up to this much late. Only a sweep that finds none pending
 * stops it: stopped by the last reply, it would start again (a new Timeout) for the next
 * request, which under steady load is every request.
 */
export const TIMEOUT_SWEEP_MS = 25;

export const REQUEST_TIMEOUT_MS_DEFAULT = 10_000;
/**
 * Schema-failing messages tolerated in a row from one endpoint (each answered); one more closes
 * it. A peer of another version learns why from the first reply; a peer that keeps going is
 * broken or hostile, and answering it forever would cost us more than it.
 */
export const MALFORMED_IN_A_ROW_MAX = 16;

/**
 * Told of every request this channel serves (docs/metrics.md): `served` when its answer goes
 * out (not for DEFERRED ones: whoever answers them times them), `errorSent` for every error
 * reply. Called on the hot path: implementations add to preallocated cells, nothing more.
 */
export interface ChannelObserver {
  served(kind: MessageKind, startedMs: number): void;
  errorSent(code: string): void;
}
const REQUEST_ID_MAX = 0xffffffff;

/**
 * The sharedPayloadBytesMax the roles open their transports with (the channel is their only
 * message handler): a persisted reply (32 bytes) and other small frames arrive without a new
 * Buffer each.
 */
export const CONTROL_SHARED_PAYLOAD_BYTES = 256;

export class ControlChannel {
  private readonly handlers = new Map<MessageKind, Handler<RequestKind>>();
  private readonly fixedHandlers = new Map<MessageKind, FixedHandler<FixedRequestKind>>();
  private readonly fixedDecoder = new FixedDecoder();
  /** Every `persisted` reply is decoded into this (ReplyCallback.readsReplyAtOnce). */
  private readonly persistedScratch = emptyPersistedMessage();
  /** One buffer for every fixed message sent (the transport copies a header when sending). */
  private readonly fixedEncoder = new FixedEncoder();
  /** Fixed-layout messages taken (decoded) and sent: what shows the fast path is in use. */
  readonly fixedCounts = { received: 0, sent: 0 };
  private readonly oneWay = new Map<MessageKind, Set<OneWayListener<OneWayKind>>>();
  private readonly frames = new PersistFramePool();
  private readonly pending = new PendingRequests(this.frames, (request, error) => {
    this.pending.settle(request)?.onError(asRetriable(error, `sending ${request.kind} failed`));
  });
  /** Schema-failing messages in a row, per endpoint that sent any (forgotten on close). */
  private readonly malformed = new Map<Endpoint, number>();
  private nextId = 1;
  private sweeper: NodeJS.Timeout | null = null;
  private observer: ChannelObserver | null = null;

  constructor(private readonly transport: Transport, private readonly log: Logger) {
    transport.setMessageHandler({
      deliver: (ep, header, payload) => this.onMessage(ep, header, payload),
    });
    transport.on('closed', (ep) => { this.malformed.delete(ep); this.failPending(ep, 'closed'); });
    transport.on('error', (ep) => { this.malformed.delete(ep); this.failPending(ep, 'failed'); });
  }

  /** Metrics: one observer (common/metrics.ts cells), set before serving. */
  observe(observer: ChannelObserver): void {
    this.observer = observer;
  }

  handle<K extends RequestKind>(kind: K, handler: Handler<K>): void {
    invariant(!this.handlers.has(kind), 'one handler per request kind', { kind });
    this.handlers.set(kind, handler as unknown as Handler<RequestKind>);
  }

  /** The handler of a request kind's fixed layout (the msgpack one is `handle`'s). */
  handleFixed<K extends FixedRequestKind>(kind: K, handler: FixedHandler<K>): void {
    invariant(!this.fixedHandlers.has(kind), 'one fixed handler per request kind', { kind });
    this.fixedHandlers.set(kind, handler as unknown as FixedHandler<FixedRequestKind>);
  }

  /** Adds a listener of a one-way kind (every client of a process has one); returns its remover. */
  listen<K extends OneWayKind>(kind: K, listener: OneWayListener<K>): () => void {
    const listeners = this.oneWay.get(kind) ?? new Set<OneWayListener<OneWayKind>>();
    this.oneWay.set(kind, listeners);
    const added = listener as unknown as OneWayListener<OneWayKind>;
    listeners.add(added);
    return () => { listeners.delete(added); };
  }

  /**
   * Sends a one-way message. Resolves once the transport completed the send: a peer that does
   * not read keeps it pending, which is what lets a sender keep one in flight per subscription.
   */
  notify<K extends OneWayKind>(ep: Endpoint, kind: K, body: Body<K>): Promise<void> {
    const fixed = isFixedKind(kind) ? this.fixedEncoder.encode(kind, ONE_WAY_ID, body) : null;
    if (fixed !== null) {
      this.fixedCounts.sent += 1;
      return this.sendRaw(ep, fixed, EMPTY);
    }
    return this.send(ep, encodeMessage(kind, ONE_WAY_ID, body));
  }

  /**
   * notify() for a sender that keeps its callbacks (issue 11: no promise per push): exactly one
   * of `sent` (the transport is done) and `failed` runs, never before this returns. Both should
   * be long-lived functions, not closures made per call.
   */
  notifyTo<K extends OneWayKind>(ep: Endpoint, kind: K, body: Body<K>, sent: () => void,
    failed: (error: unknown) => void): void {
    const fixed = isFixedKind(kind) ? this.fixedEncoder.encode(kind, ONE_WAY_ID, body) : null;
    if (fixed !== null) this.fixedCounts.sent += 1;
    try {
      if (fixed !== null) this.transport.post(ep, fixed, EMPTY, failed, sent);
      else this.transport.post(ep, FRAME_HEADER, encodeMessage(kind, ONE_WAY_ID, body), failed,
        sent);
    } catch (error) {
      queueMicrotask(() => failed(error));
    }
  }

  /**
   * Sends a request; resolves with its reply, rejects with the peer's error as a PmqError.
   * `topicId` (the broker's id of body.topic): send append, lease and leaseRelease in the fixed
   * layout, naming the topic by it (msgpack still when a field does not fit the layout).
   */
  request<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>,
    timeoutMs = REQUEST_TIMEOUT_MS_DEFAULT, topicId?: number): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      this.requestTo(ep, kind, body, { onReply: resolve, onError: reject }, timeoutMs, topicId);
    });
  }

  /**
   * request() for a caller that keeps one long-lived `callback` (issue 11: no promise, closure
   * or record per request; the broker's persists). Exactly one of its functions runs, once,
   * never before this returns. `body` is read before this returns: the caller may reuse it.
   */
  requestTo<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>,
    callback: ReplyCallback, timeoutMs = REQUEST_TIMEOUT_MS_DEFAULT, topicId?: number): void {
    const id = this.nextId;
    this.nextId = this.nextId === REQUEST_ID_MAX ? 1 : this.nextId + 1;
    const request = this.pending.add(id, ep, kind, callback, timeoutMs);
    this.sweeper ??= setInterval(() => this.sweep(), TIMEOUT_SWEEP_MS);
    const fixed = topicId !== undefined && isFixedKind(kind)
      ? this.fixedEncoder.encode(kind, id, body, topicId) : null;
    let payload: Uint8Array = EMPTY;
    let header: Uint8Array = FRAME_HEADER;
    if (fixed !== null) {
      this.fixedCounts.sent += 1;
      header = fixed;
    } else if (kind === 'persist') {
      // A persist frame (fixed layout): the storage node's native path serves it.
      const persist = body as Body<'persist'>;
      const frame = this.frames.acquire(persist.patches.length);
      encodePersistFrameInto(frame, id, persist);
      request.frame = frame;
      header = PERSIST_FRAME_HEADER;
      payload = frame.bytes;
    } else {
      payload = encodeMessage(kind, id, body);
    }
    // A synchronous failure (an endpoint closed meanwhile) settles the request from within:
    // deferred, so the callback never runs before requestTo returns.
    try {
      this.transport.post(ep, header, payload, request.sendFailed, request.sent);
    } catch (error) {
      queueMicrotask(() => request.sendFailed(error));
    }
  }

  /**
   * Sends without a promise (transport.post): the caller waits for the reply, not the send.
   * As send(), a closed endpoint's synchronous throw becomes `failed`.
   */
  private post(ep: Endpoint, bytes: Uint8Array, failed: (error: unknown) => void): void {
    this.postRaw(ep, FRAME_HEADER, bytes, failed);
  }

  private postRaw(ep: Endpoint, header: Uint8Array, payload: Uint8Array,
    failed: (error: unknown) => void): void {
    try {
      this.transport.post(ep, header, payload, failed);
    } catch (error) {
      failed(error);
    }
  }

  private send(ep: Endpoint, bytes: Uint8Array): Promise<void> {
    return this.sendRaw(ep, FRAME_HEADER, bytes);
  }

  private sendRaw(ep: Endpoint, header: Uint8Array, payload: Uint8Array): Promise<void> {
    // transport.send throws synchronously for an endpoint that closed meanwhile (a peer that
    // left before its reply); as a rejection it reaches the callers' catch instead of becoming
    // an unhandled rejection that would take the whole node down.
    try {
      return this.transport.send(ep, header, payload);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Fails every pending request whose deadline passed. */
  private sweep(): void {
    if (this.pending.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
      return;
    }
    for (const request of this.pending.select(isOverdue)) {
      this.pending.settle(request)?.onError(timeoutError(request));
    }
  }

  private onMessage(ep: Endpoint, header: Uint8Array, payload: Uint8Array): void {
    if (isFixedFrame(header)) {
      this.onFixed(ep, header, payload);
      return;
    }
    let message: Message;
    try {
      // msgpack hands out views into the bytes it decodes: a payload the transport may share
      // (CONTROL_SHARED_PAYLOAD_BYTES) is copied first. Persist frames decode by value.
      message = isPersistFrameHeader(header)
        ? decodePersistFrame(header, payload, this.persistedScratch)
        : decodeFrame(header, payload.byteLength <= CONTROL_SHARED_PAYLOAD_BYTES
          ? payload.slice() : payload);
    } catch (error) {
      invariant(error instanceof ProtocolError, 'the decoder throws only ProtocolError',
        { error: String(error) });
      this.onMalformed(ep, error);
      return;
    }
    if (ONE_WAY_KINDS.has(message.kind)) {
      this.onOneWay(ep, message as Message<OneWayKind>);
      return;
    }
    this.malformed.delete(ep);
    if (REPLY_KINDS.has(message.kind)) {
      this.onReply(ep, message);
      return;
    }
    this.serve(ep, message);
  }

  /**
   * A fixed-layout message: a request is served from the decoder's object (nothing allocated
   * to decode it); a reply or push is copied for whoever keeps it.
   */
  private onFixed(ep: Endpoint, header: Uint8Array, payload: Uint8Array): void {
    let message: FixedMessage;
    try {
      message = this.fixedDecoder.decode(header, payload);
    } catch (error) {
      invariant(error instanceof ProtocolError, 'the decoder throws only ProtocolError',
        { error: String(error) });
      this.onMalformed(ep, error);
      return;
    }
    this.fixedCounts.received += 1;
    if (ONE_WAY_KINDS.has(message.kind)) {
      this.onOneWay(ep, fixedCopy(message) as unknown as Message<OneWayKind>);
      return;
    }
    this.malformed.delete(ep);
    if (REPLY_KINDS.has(message.kind)) {
      this.onReply(ep, fixedCopy(message) as unknown as Message);
      return;
    }
    this.serveFixed(ep, message as FixedMessage<FixedRequestKind>);
  }

  /** serve() for a fixed-layout request; its reply goes out in the fixed layout too. */
  private serveFixed(ep: Endpoint, message: FixedMessage<FixedRequestKind>): void {
    const { id, kind } = message;
    const handler = this.fixedHandlers.get(kind);
    if (handler === undefined) {
      this.reply(ep, id, errorReply(new ProtocolError(`this node does not serve ${kind} in ` +
        'the fixed layout')));
      return;
    }
    const startedMs = this.observer === null ? 0 : performance.now();
    let answer: Reply | Promise<Reply> | Deferred;
    try {
      answer = handler(ep, message);
    } catch (error) {
      this.reply(ep, id, handlerError(kind, error));
      this.observer?.served(kind, startedMs);
      return;
    }
    if (answer === DEFERRED) return;
    if (!(answer instanceof Promise)) {
      this.replyFixed(ep, id, answer);
      this.observer?.served(kind, startedMs);
      return;
    }
    answer.then((reply) => this.replyFixed(ep, id, reply),
      (error: unknown) => this.reply(ep, id, handlerError(kind, error)))
      .finally(() => this.observer?.served(kind, startedMs));
  }

  /** A DEFERRED request's answer: `reply` in the fixed layout when it has one. */
  answerFixed(ep: Endpoint, id: number, reply: Reply): void {
    this.replyFixed(ep, id, reply);
  }

  /** A DEFERRED request's failure. */
  answerError(ep: Endpoint, id: number, error: PmqError): void {
    this.reply(ep, id, errorReply(error));
  }

  /** A reply in the fixed layout when it has one (an `error` has not: msgpack). */
  private replyFixed(ep: Endpoint, id: number, reply: Reply): void {
    const fixed = isFixedKind(reply.kind) ? this.fixedEncoder.encode(reply.kind, id, reply.body)
      : null;
    if (fixed === null) {
      this.reply(ep, id, reply);
      return;
    }
    this.fixedCounts.sent += 1;
    this.postRaw(ep, fixed, EMPTY, this.replyNotSent);
  }

  /** Hands a one-way message to its listeners; with none, it is as unexpected as a bad field. */
  private onOneWay(ep: Endpoint, message: Message<OneWayKind>): void {
    const listeners = this.oneWay.get(message.kind);
    if (listeners === undefined || listeners.size === 0) {
      const error = new ProtocolError(`this node takes no ${message.kind}`);
      error.replyTo = { id: message.id, kind: message.kind };
      this.onMalformed(ep, error);
      return;
    }
    this.malformed.delete(ep);
    for (const listener of listeners) listener(ep, message);
  }

  /** Answers a schema-failing message (or fails the request it replies to), or drops the peer. */
  private onMalformed(ep: Endpoint, error: ProtocolError): void {
    const replyTo = error.replyTo;
    if (replyTo === null) {
      this.dropPeer(ep, error);
      return;
    }
    // A well-formed request naming an impossible value (PMQ_ERR_ARGUMENT: a topic name outside
    // the rule) costs one reply, as any request does: it does not count towards dropping.
    const count = (this.malformed.get(ep) ?? 0) + (error.code === 'PMQ_ERR_ARGUMENT' ? 0 : 1);
    if (count > MALFORMED_IN_A_ROW_MAX) {
      this.dropPeer(ep, new ProtocolError(`${count} malformed messages in a row, the last: ` +
        error.message));
      return;
    }
    this.malformed.set(ep, count);
    this.log.debug({ ep, err: error.message, count }, 'malformed message answered');
    if (replyTo.kind !== null && REPLY_KINDS.has(replyTo.kind as MessageKind)) {
      const request = this.pending.get(replyTo.id);
      if (request !== undefined && request.ep === ep) this.pending.settle(request)?.onError(error);
      return;
    }
    const reply = errorReply(error);
    this.send(ep, encodeMessage(reply.kind, replyTo.id, reply.body)).catch((sendError: unknown) => {
      this.log.debug({ ep, err: String(sendError) }, 'reply not sent');
    });
  }

  private onReply(ep: Endpoint, message: Message): void {
    const request = this.pending.get(message.id);
    if (request === undefined || request.ep !== ep) {
      // A reply after its timeout is expected; anything else is not.
      this.log.debug({ ep, kind: message.kind, id: message.id }, 'reply without request');
      return;
    }
    const callback = this.pending.settle(request);
    if (callback === null) return;
    if (message.kind === 'error') {
      callback.onError(peerError(message.code, message.message, message.retriable));
    } else if (message === this.persistedScratch && callback.readsReplyAtOnce !== true) {
      callback.onReply({ ...this.persistedScratch });
    } else {
      callback.onReply(message);
    }
  }

  /**
   * Runs the request's handler and sends its reply. A handler that answers at once is not
   * awaited (no promise per message: issue 11); one that returns a promise is.
   */
  private serve(ep: Endpoint, message: Message): void {
    const handler = this.handlers.get(message.kind);
    if (handler === undefined) {
      this.reply(ep, message.id,
        errorReply(new ProtocolError(`this node does not serve ${message.kind}`)));
      return;
    }
    const startedMs = this.observer === null ? 0 : performance.now();
    let answer: Reply | Promise<Reply>;
    try {
      answer = handler(ep, message as Message<RequestKind>);
    } catch (error) {
      this.reply(ep, message.id, handlerError(message.kind, error));
      this.observer?.served(message.kind, startedMs);
      return;
    }
    if (!(answer instanceof Promise)) {
      this.reply(ep, message.id, answer);
      this.observer?.served(message.kind, startedMs);
      return;
    }
    answer.then((reply) => this.reply(ep, message.id, reply),
      (error: unknown) => this.reply(ep, message.id, handlerError(message.kind, error)))
      .finally(() => this.observer?.served(message.kind, startedMs));
  }

  private reply(ep: Endpoint, id: number, reply: Reply): void {
    if (reply.kind === 'error') this.observer?.errorSent((reply.body as Body<'error'>).code);
    this.post(ep, encodeMessage(reply.kind, id, reply.body as Body<typeof reply.kind>),
      this.replyNotSent);
  }

  /** One function for every reply's failure (transport.post wants a long-lived one). */
  private readonly replyNotSent = (error: unknown): void => {
    this.log.debug({ err: String(error) }, 'reply not sent');
  };

  private dropPeer(ep: Endpoint, error: unknown): void {
    this.log.warn({ ep, err: error instanceof Error ? error.message : String(error) },
      'malformed message, closing the connection');
    this.transport.closeEndpoint(ep).catch(() => undefined);
  }

  private failPending(ep: Endpoint, how: string): void {
    for (const request of this.pending.select((pending) => pending.ep === ep)) {
      this.pending.settle(request)?.onError(new PmqError('PMQ_ERR_PEER_GONE',
        `connection ${how} before the reply`, { retriable: true }));
    }
  }
}

/**
 * A peer's error reply as a PmqError. A code this version does not know (a peer of another pmq
 * version, or a hostile one) is PMQ_ERR_PROTOCOL naming it: codes come from the catalogue.
 */
export function peerError(code: string, message: string, retriable: boolean): PmqError {
  if (isErrorCode(code)) return new PmqError(code, message, { retriable });
  return new PmqError('PMQ_ERR_PROTOCOL', `the peer answered with the unknown error code ` +
    `${JSON.stringify(code.slice(0, 64))}: ${message}`, { retriable });
}

/** A handler's failure as its reply; anything but a PmqError is our bug. */
function handlerError(kind: string, error: unknown): Reply<'error'> {
  invariant(error instanceof PmqError, 'handlers throw only PmqError',
    { kind, error: String(error) });
  return errorReply(error);
}

export function errorReply(error: PmqError): Reply<'error'> {
  return { kind: 'error', body: { code: error.code, message: error.message,
    retriable: error.retriable } };
}

function isOverdue(request: PendingRequest, now: number): boolean {
  return request.deadline <= now;
}

function asRetriable(error: unknown, message: string): PmqError {
  if (error instanceof PmqError) return error;
  return new PmqError('PMQ_ERR_PEER_GONE', message, { cause: error, retriable: true });
}
