/**
 * Consumers' subscriptions at the broker (docs/broker.md, "Subscriptions"): a client session
 * subscribes per partition (at most BROKER_LIMITS.subscriptionsPerSessionMax, ids of its own
 * choosing); whenever that partition's durable head moves (an acknowledgement, a filled hole, a
 * seal), the broker pushes the head to each subscription as a one-way `watermark` message.
 *
 * Bounded per client, whatever the produce rate: at most one push in flight per subscription
 * (a send the transport has not completed; a client that stops reading keeps it pending).
 * Advances meanwhile only mark the subscription dirty; when the send completes, the partition's
 * *latest* head is sent if it differs from the last one sent. So a subscriber costs the broker
 * O(its subscriptions), never a queue that grows with the partition's traffic.
 *
 * Lifecycle: a subscription ends on `unsubscribe`, when its session ends (endpoint closed),
 * when its partition closes (topic deleted), and all at once when the broker is fenced or stops
 * (`clear`; nothing is pushed after). A failed send ends nothing: the endpoint's close does.
 * Concurrency: JS thread only. No I/O of its own: `send` is the control channel's notify.
 *
 * Allocation (issue 11): an advance reads the partition's head once into a scratch record, and
 * each subscription compares it with its own `sent` record and refills its own push body; the
 * completion callbacks are made once per subscription and handed to the send (no promise):
 * a push allocates nothing.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body } from '../common/wire/messages.js';
import type { Endpoint } from '../native/transport.js';

/** A partition's durable head: what a push carries besides the subscription and epoch. */
export type Head = Omit<Body<'watermark'>, 'subscription' | 'epoch'>;

/**
 * Where heads come from (a Partition): fills `into` with the durable head and returns true, or
 * returns false while there is nothing to push (no segment). Allocates nothing.
 */
export interface HeadSource { headInto(into: Head): boolean }

/**
 * Sends one push; exactly one of `sent` and `failed` runs once the send is over, never before
 * this returns. `body` is the subscription's own record, refilled for its next push only after
 * that: encode (or copy) it before.
 */
export type PushSend = (ep: Endpoint, body: Body<'watermark'>, sent: () => void,
  failed: (error: unknown) => void) => void;

interface Subscription {
  readonly id: number;
  readonly ep: Endpoint;
  readonly source: HeadSource;
  /** The head last sent (or answered at subscribe), if hasSent: a push goes only if it differs. */
  readonly sent: Head;
  hasSent: boolean;
  /** The push message, refilled per push: never while one is in flight. */
  readonly body: Body<'watermark'>;
  inFlight: boolean;
  dirty: boolean;
  live: boolean;
  /** A push's completion, made once per subscription. */
  readonly onSent: () => void;
  readonly onFailed: (error: unknown) => void;
}

const emptyHead = (): Head => ({ chainPosition: 0, position: 0, offsetLast: -1, sealed: false,
  highWatermark: 0 });

function copyHead(into: Head, from: Head): void {
  into.chainPosition = from.chainPosition;
  into.position = from.position;
  into.offsetLast = from.offsetLast;
  into.sealed = from.sealed;
  into.highWatermark = from.highWatermark;
}

interface SessionSubscriptions {
  readonly sessionId: number;
  readonly byId: Map<number, Subscription>;
}

export interface SubscriptionStats {
  /** Subscriptions live now. */
  live: number;
  /** Pushes handed to the transport, and advances folded into a later push. */
  pushed: number;
  coalesced: number;
  /** Pushes handed to the transport and not completed yet (≤ live). */
  inFlight: number;
}

function sameHead(a: Head, b: Head): boolean {
  return a.highWatermark === b.highWatermark && a.chainPosition === b.chainPosition &&
    a.position === b.position && a.sealed === b.sealed;
}

export class Subscriptions {
  readonly #byEndpoint = new Map<Endpoint, SessionSubscriptions>();
  /** Per source, its live subscriptions (an array: iterating a Set makes an iterator). */
  readonly #bySource = new Map<HeadSource, Subscription[]>();
  /** The head of the source being advanced (read once per advance, not per subscriber). */
  readonly #head: Head = emptyHead();
  #stopped = false;
  #pushed = 0;
  #coalesced = 0;
  #inFlight = 0;
  #live = 0;

  constructor(private readonly send: PushSend, private readonly epoch: () => number,
    private readonly log: Logger) {}

  /** Refuses early (PMQ_ERR_LIMIT) a new id beyond the session's limit; `add` checks again. */
  checkRoom(ep: Endpoint, id: number): void {
    const session = this.#byEndpoint.get(ep);
    if (session === undefined || session.byId.has(id)) return;
    if (session.byId.size >= BROKER_LIMITS.subscriptionsPerSessionMax) {
      throw new PmqError('PMQ_ERR_LIMIT', `a session holds at most ` +
        `${BROKER_LIMITS.subscriptionsPerSessionMax} subscriptions: unsubscribe some, or ` +
        'fetch the rest with fetchView');
    }
  }

  /**
   * Subscribes `ep`'s session to `source`. `answered`: the head the subscribe reply carries;
   * if the head is already past it (it moved while the reply's read grant was made), that is
   * pushed at once. An id already subscribed in the session is replaced.
   */
  add(ep: Endpoint, sessionId: number, id: number, source: HeadSource,
    answered: Head | null): void {
    if (this.#stopped) return; // fenced or stopping: its clients reconnect elsewhere
    this.checkRoom(ep, id);
    let session = this.#byEndpoint.get(ep);
    if (session !== undefined && session.sessionId !== sessionId) {
      this.#dropSession(ep); // a new session on the endpoint (authenticated since)
      session = undefined;
    }
    if (session === undefined) {
      session = { sessionId, byId: new Map() };
      this.#byEndpoint.set(ep, session);
    }
    const old = session.byId.get(id);
    if (old !== undefined) this.#drop(session, old);
    const subscription = this.#make(id, ep, source);
    if (answered !== null) {
      copyHead(subscription.sent, answered);
      subscription.hasSent = true;
    }
    session.byId.set(id, subscription);
    const list = this.#bySource.get(source) ?? [];
    list.push(subscription);
    this.#bySource.set(source, list);
    this.#live += 1;
    invariant(session.byId.size <= BROKER_LIMITS.subscriptionsPerSessionMax,
      'subscriptions per session stay bounded', { size: session.byId.size });
    this.#push(subscription, null);
  }

  /** Unsubscribes one id of the endpoint's session (unknown: nothing). */
  remove(ep: Endpoint, id: number): void {
    const session = this.#byEndpoint.get(ep);
    const subscription = session?.byId.get(id);
    if (session !== undefined && subscription !== undefined) this.#drop(session, subscription);
  }

  /** A session ended (its endpoint closed, or it was reset): its subscriptions end. */
  endSession(sessionId: number): void {
    for (const [ep, session] of this.#byEndpoint) {
      if (session.sessionId === sessionId) this.#dropSession(ep);
    }
  }

  endEndpoint(ep: Endpoint): void {
    this.#dropSession(ep);
  }

  /** The source closed (topic deleted): its subscribers learn it on their next fetchView. */
  dropSource(source: HeadSource): void {
    for (const subscription of [...this.#bySource.get(source) ?? []]) { // a copy: #drop edits
      const session = this.#byEndpoint.get(subscription.ep);
      if (session !== undefined) this.#drop(session, subscription);
    }
  }

  /** Fenced or stopping: every subscription ends and nothing is pushed any more. */
  clear(): void {
    this.#stopped = true;
    for (const ep of [...this.#byEndpoint.keys()]) this.#dropSession(ep);
  }

  /** `source`'s durable head moved: push it to each subscriber (coalesced). */
  advanced(source: HeadSource): void {
    const list = this.#bySource.get(source);
    if (list === undefined || this.#stopped) return;
    const head = this.#head;
    if (!source.headInto(head)) return;
    // #push edits no list (a subscription ends only on an endpoint's or source's close).
    for (let index = 0; index < list.length; index += 1) this.#push(list[index]!, head);
  }

  stats(): SubscriptionStats {
    return { live: this.#live, pushed: this.#pushed, coalesced: this.#coalesced,
      inFlight: this.#inFlight };
  }

  #make(id: number, ep: Endpoint, source: HeadSource): Subscription {
    const subscription: Subscription = { id, ep, source, sent: emptyHead(), hasSent: false,
      body: { subscription: id, epoch: 0, ...emptyHead() }, inFlight: false, dirty: false,
      live: true,
      onSent: () => this.#completed(subscription),
      onFailed: (error: unknown) => {
        // The endpoint is closing: its close ends the session and this subscription.
        this.log.debug({ ep: subscription.ep, err: String(error) }, 'push not sent');
        this.#completed(subscription);
      } };
    return subscription;
  }

  /** Pushes `head` (the source's, read by the caller; null: read it here) if it is news. */
  #push(subscription: Subscription, head: Head | null): void {
    if (!subscription.live || this.#stopped) return;
    if (subscription.inFlight) {
      subscription.dirty = true;
      this.#coalesced += 1;
      return;
    }
    if (head === null) {
      head = this.#head;
      if (!subscription.source.headInto(head)) return;
    }
    if (subscription.hasSent && sameHead(subscription.sent, head)) return;
    // Guarded by an if: invariant()'s fields literal would be made on every call.
    if (subscription.inFlight) {
      invariant(false, 'one push in flight per subscription at most, so its body is never ' +
        'refilled while sent', { id: subscription.id });
    }
    copyHead(subscription.sent, head);
    subscription.hasSent = true;
    const { body } = subscription;
    body.epoch = this.epoch();
    copyHead(body, head);
    subscription.inFlight = true;
    subscription.dirty = false;
    this.#inFlight += 1;
    this.#pushed += 1;
    this.send(subscription.ep, body, subscription.onSent, subscription.onFailed);
  }

  #completed(subscription: Subscription): void {
    subscription.inFlight = false;
    this.#inFlight -= 1;
    if (subscription.dirty) this.#push(subscription, null);
  }

  #dropSession(ep: Endpoint): void {
    const session = this.#byEndpoint.get(ep);
    if (session === undefined) return;
    for (const subscription of [...session.byId.values()]) this.#drop(session, subscription);
    this.#byEndpoint.delete(ep);
  }

  #drop(session: SessionSubscriptions, subscription: Subscription): void {
    if (!subscription.live) return;
    subscription.live = false;
    session.byId.delete(subscription.id);
    if (session.byId.size === 0) this.#byEndpoint.delete(subscription.ep);
    const list = this.#bySource.get(subscription.source);
    const at = list?.indexOf(subscription) ?? -1;
    if (list !== undefined && at >= 0) {
      list[at] = list[list.length - 1]!;
      list.pop();
      if (list.length === 0) this.#bySource.delete(subscription.source);
    }
    this.#live -= 1;
  }
}
