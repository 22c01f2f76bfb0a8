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
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body } from '../common/wire/messages.js';
import type { Endpoint } from '../native/transport.js';

/** A partition's durable head: what a push carries besides the subscription and epoch. */
export type Head = Omit<Body<'watermark'>, 'subscription' | 'epoch'>;

/** Where heads come from (a Partition); null while there is nothing to push (no segment). */
export interface HeadSource { head(): Head | null }

export type PushSend = (ep: Endpoint, body: Body<'watermark'>) => Promise<void>;

interface Subscription {
  readonly id: number;
  readonly ep: Endpoint;
  readonly source: HeadSource;
  /** The head last sent (or answered at subscribe): a push goes out only when it differs. */
  sent: Head | null;
  inFlight: boolean;
  dirty: boolean;
  live: boolean;
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

function sameHead(a: Head | null, b: Head): boolean {
  return a !== null && a.highWatermark === b.highWatermark && a.chainPosition ===
    b.chainPosition && a.position === b.position && a.sealed === b.sealed;
}

export class Subscriptions {
  readonly #byEndpoint = new Map<Endpoint, SessionSubscriptions>();
  readonly #bySource = new Map<HeadSource, Set<Subscription>>();
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
    const subscription: Subscription = { id, ep, source, sent: answered, inFlight: false,
      dirty: false, live: true };
    session.byId.set(id, subscription);
    const set = this.#bySource.get(source) ?? new Set<Subscription>();
    set.add(subscription);
    this.#bySource.set(source, set);
    this.#live += 1;
    invariant(session.byId.size <= BROKER_LIMITS.subscriptionsPerSessionMax,
      'subscriptions per session stay bounded', { size: session.byId.size });
    this.#push(subscription);
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
    for (const subscription of [...this.#bySource.get(source) ?? []]) {
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
    const set = this.#bySource.get(source);
    if (set === undefined) return;
    for (const subscription of set) this.#push(subscription);
  }

  stats(): SubscriptionStats {
    return { live: this.#live, pushed: this.#pushed, coalesced: this.#coalesced,
      inFlight: this.#inFlight };
  }

  #push(subscription: Subscription): void {
    if (!subscription.live || this.#stopped) return;
    if (subscription.inFlight) {
      subscription.dirty = true;
      this.#coalesced += 1;
      return;
    }
    const head = subscription.source.head();
    if (head === null || sameHead(subscription.sent, head)) return;
    invariant(!subscription.inFlight, 'one push in flight per subscription at most',
      { id: subscription.id });
    subscription.sent = head;
    subscription.inFlight = true;
    subscription.dirty = false;
    this.#inFlight += 1;
    this.#pushed += 1;
    this.send(subscription.ep, { subscription: subscription.id, epoch: this.epoch(), ...head })
      .catch((error: unknown) => {
        // The endpoint is closing: its close ends the session and this subscription.
        this.log.debug({ ep: subscription.ep, err: String(error) }, 'push not sent');
      })
      .finally(() => {
        subscription.inFlight = false;
        this.#inFlight -= 1;
        if (subscription.dirty) this.#push(subscription);
      });
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
    const set = this.#bySource.get(subscription.source);
    set?.delete(subscription);
    if (set?.size === 0) this.#bySource.delete(subscription.source);
    this.#live -= 1;
  }
}
