/**
 * A client's connections: the broker's control endpoint and the storage nodes' data endpoints.
 *
 * Lifecycle: the control channel owns its transport's message handler, and one UCX worker
 * serves any number of clients, so both live in a process-wide `SharedTransport` that the
 * first client opens and the last client's close() closes (reference counted). Every client
 * of a process therefore shares one transport; its options are the first client's (a later
 * client asking for different ones gets an ArgumentError). It is the clients' own: other
 * transports of the process (a storage node's, a broker's, a test's) are separate ones.
 *
 * Reconnection: the broker endpoint is connected on the first request and again on the next
 * request after it closed; a request that fails because the broker is gone rejects with
 * NotConnectedError (retriable). Storage endpoints are connected on demand, by nodeId, from the
 * list the broker's `welcome` gave; `reads` (storage-reads.ts) reads segments over them, validated
 * or direct by the `dataPath` option. Concurrency: JS thread only.
 *
 * Pushes (docs/clients.md, "How a consumer waits"): consumers' partition readers register a
 * listener per subscription (`addSubscription`: ids unique in this connection); a `watermark`
 * push is delivered to its subscription only when it came from this connection's current
 * broker endpoint at the broker's epoch: a push for an unknown subscription, from another
 * endpoint or epoch, is dropped. When the broker endpoint closes, every subscription is told
 * (`ended`): the broker forgot them with the session.
 *
 * Sessions (docs/clients.md, "Authentication and sessions"): with `auth`, every broker
 * connection authenticates (SCRAM, clients/auth.ts) before hello. Each hello opens a broker
 * session (`session` counts them) whose ticket the client keeps, refreshing it (ticketRefresh)
 * when less than TICKET_REFRESH_MS is left; a storage endpoint is used only after it was bound
 * to the current session (`sessionBind`), and is bound again after a reconnection.
 *
 * Fixed layout (docs/wire-protocol.md, "Fixed-layout messages"): once a `leased` reply told a
 * topic's id, append, lease and leaseRelease of that topic go in the fixed layout, naming it
 * by the id. The ids are forgotten with the broker connection, and a topic's id when the broker
 * answers PMQ_ERR_UNKNOWN_TOPIC (deleted, maybe created again: the next request goes by name).
 */
import { ArgumentError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { PmqError } from '../common/errors.js';
import { topicNameMessage, topicNameProblem } from '../common/topic-name.js';
import type { Body, Message, MessageKind, RequestKind } from '../common/wire/messages.js';
import { Transport, type Endpoint, type TransportOptions } from '../native/transport.js';
import { CONTROL_SHARED_PAYLOAD_BYTES, ControlChannel } from '../rpc/control-channel.js';
import { ScramClient, type ClientAuth } from './auth.js';
import { ClosedError, NotConnectedError, toClientError, type ErrorContext } from './errors.js';
import { StorageReads, type DataPath } from './storage-reads.js';

/**
 * A topic name outside the rule (common/topic-name.ts) never leaves the client: the broker
 * would refuse it; the caller learns at once what to fix (PMQ_ERR_ARGUMENT, with the rule).
 */
function checkTopicName(body: object): void {
  if (!('topic' in body)) return;
  const { topic } = body as { topic: unknown };
  const problem = topicNameProblem(topic);
  if (problem !== null) throw new ArgumentError(topicNameMessage(topic, problem));
}

interface SharedTransport {
  transport: Transport;
  channel: ControlChannel;
  options: TransportOptions;
  users: number;
}

let shared: SharedTransport | undefined;

/** Requests sent in the fixed layout once their topic's id is known. */
const FIXED_BY_TOPIC: ReadonlySet<RequestKind> = new Set<RequestKind>(['append', 'lease',
  'leaseRelease']);

function acquireTransport(options: TransportOptions, log: Logger): SharedTransport {
  if (shared !== undefined) {
    const same = (options.transports ?? shared.options.transports) ===
      shared.options.transports && (options.netDevices ?? shared.options.netDevices) ===
      shared.options.netDevices && (options.direct ?? false) === (shared.options.direct ?? false)
      && (options.busyPoll ?? false) === (shared.options.busyPoll ?? false);
    if (!same) {
      throw new ArgumentError('this process already has a pmq transport with other options ' +
        `(${JSON.stringify(shared.options)}; direct: dataPath other than 'validated'): all ` +
        'clients of a process share one');
    }
    shared.users += 1;
    return shared;
  }
  // The control channel is the only message handler, and it copies what it keeps.
  const transport = Transport.open({ ...options, sharedHeaders: true,
    sharedPayloadBytesMax: CONTROL_SHARED_PAYLOAD_BYTES,
    ucxLogVerbose: log.isLevelEnabled('debug') });
  const channel = new ControlChannel(transport, log.child({ component: 'control' }));
  shared = { transport, channel, options, users: 1 };
  return shared;
}

function releaseTransport(): void {
  if (shared === undefined) return;
  shared.users -= 1;
  if (shared.users > 0) return;
  shared.transport.close();
  shared = undefined;
}

export interface BrokerAddress { host: string; port: number }
export interface StorageNode { nodeId: number; host: string; port: number }

export interface ConnectionOptions {
  brokers: readonly BrokerAddress[];
  clientId: string;
  role: 'producer' | 'consumer' | 'admin';
  /** How consumers read from storage nodes (storage-reads.ts). Non-validated opens the
   *  transport with `direct: true`. */
  dataPath: DataPath;
  transport: TransportOptions;
  requestTimeoutMs: number;
  log: Logger;
  /** SCRAM-SHA-256 credentials; none: the broker must run without --auth-file. */
  auth?: ClientAuth;
}

/** A ticket with less than this left is refreshed before it is presented. */
export const TICKET_REFRESH_MS = 60_000;

interface Bound { connecting: Promise<Endpoint>; session: number; ready: Promise<Endpoint> }

/** A subscription's client side (partition-reader.ts). */
export interface PushListener {
  push(message: Body<'watermark'>): void;
  /** The broker connection closed: the subscription is gone with its session. */
  ended(): void;
}

/** What this connection sent and received, for diagnostics and tests (`client.stats()`). */
export interface ConnectionStats {
  /** Requests sent to the broker, by kind. */
  requests: Record<string, number>;
  /** Pushes delivered to a subscription, and dropped (unknown, stale or foreign). */
  pushes: number;
  pushesDropped: number;
  /** Requests sent in the fixed layout (append, lease, leaseRelease naming a topic id). */
  fixedRequests: number;
}

export function parseBroker(text: string): BrokerAddress {
  const match = /^(.+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port < 1 || port > 65535) {
    throw new ArgumentError(`broker address ${JSON.stringify(text)} must be host:port`);
  }
  return { host: match[1]!, port };
}

export class Connection {
  private readonly shared: SharedTransport;
  private broker: Promise<Endpoint> | undefined;
  private brokerEp: Endpoint | undefined;
  private storageNodes = new Map<number, StorageNode>();
  private readonly storage = new Map<number, Promise<Endpoint>>();
  /** Storage endpoints bound to a session (sessionBind), by node id. */
  private readonly bound = new Map<number, Bound>();
  private readonly scram: ScramClient | undefined;
  private ticket: { bytes: Uint8Array; expiresAt: number } | undefined;
  private closed = false;
  /** Counts broker sessions (hellos answered): a reconnection starts a new one. */
  session = 0;
  brokerEpoch = 0;
  /** The broker's smallest segment size (a batch must fit one); 0 when it did not know. */
  segmentSizeBytes = 0;
  /** The data path of every read from storage nodes. */
  readonly reads: StorageReads;
  private readonly subscriptions = new Map<number, PushListener>();
  /** Topic ids the current broker connection told (leased), by topic name. */
  private readonly topicIds = new Map<string, number>();
  private nextSubscription = 1;
  private readonly stopListening: () => void;
  private readonly counts: ConnectionStats = { requests: {}, pushes: 0, pushesDropped: 0,
    fixedRequests: 0 };

  constructor(private readonly options: ConnectionOptions) {
    this.shared = acquireTransport({ ...options.transport,
      direct: options.dataPath !== 'validated' }, options.log);
    this.shared.transport.on('closed', this.onClosed);
    this.reads = new StorageReads(this, options.dataPath,
      options.log.child({ component: 'reads' }));
    this.scram = options.auth === undefined ? undefined : new ScramClient(options.auth);
    this.stopListening = this.shared.channel.listen('watermark', (ep, message) => {
      if (ep !== this.brokerEp) return; // another client's broker connection, or a stale one
      const listener = this.subscriptions.get(message.subscription);
      if (listener === undefined || message.epoch !== this.brokerEpoch) {
        this.counts.pushesDropped += 1;
        return;
      }
      this.counts.pushes += 1;
      listener.push(message);
    });
  }

  /** The id this client says hello with (a group member's id starts with it). */
  get clientId(): string {
    return this.options.clientId;
  }

  /** A new subscription id whose pushes go to `listener` (sent by the caller's `subscribe`). */
  addSubscription(listener: PushListener): number {
    const id = this.nextSubscription;
    this.nextSubscription += 1;
    this.subscriptions.set(id, listener);
    return id;
  }

  /** Pushes for `id` are dropped from now on. */
  forgetSubscription(id: number): void {
    this.subscriptions.delete(id);
  }

  stats(): ConnectionStats {
    return { ...this.counts, requests: { ...this.counts.requests } };
  }

  get transport(): Transport {
    return this.shared.transport;
  }

  /** Resolves once the broker has answered hello (connecting if needed). */
  async ready(): Promise<void> {
    if (this.closed) throw new ClosedError('the client');
    await this.brokerEndpoint();
  }

  /** Sends a request to the broker; maps every failure onto the client's typed errors. */
  async request<K extends RequestKind>(kind: K, body: Body<K>, context: ErrorContext,
    timeoutMs = this.options.requestTimeoutMs): Promise<Message> {
    if (this.closed) throw new ClosedError('the client');
    checkTopicName(body);
    const ep = await this.brokerEndpoint();
    this.counts.requests[kind] = (this.counts.requests[kind] ?? 0) + 1;
    const topic = FIXED_BY_TOPIC.has(kind) ? (body as unknown as { topic: string }).topic
      : undefined;
    const topicId = topic === undefined ? undefined : this.topicIds.get(topic);
    if (topicId !== undefined) this.counts.fixedRequests += 1;
    try {
      const reply = await this.shared.channel.request(ep, kind, body, timeoutMs, topicId);
      if (reply.kind === 'leased' && topic !== undefined && ep === this.brokerEp) {
        this.topicIds.set(topic, reply.topicId);
      }
      return reply;
    } catch (error) {
      if (topic !== undefined && error instanceof PmqError &&
          error.code === 'PMQ_ERR_UNKNOWN_TOPIC') {
        this.topicIds.delete(topic);
      }
      throw toClientError(error, context);
    }
  }

  /** A reply of the expected kind, or an error naming what came instead. */
  async call<K extends RequestKind, R extends MessageKind>(kind: K, body: Body<K>, reply: R,
    context: ErrorContext, timeoutMs?: number): Promise<Message<R>> {
    const message = await this.request(kind, body, context, timeoutMs);
    if (message.kind !== reply) {
      throw toClientError(new Error(`${kind} answered by ${message.kind}, expected ${reply}`),
        context);
    }
    return message as Message<R>;
  }

  /** A request to a storage node over its (connected) endpoint: a reply of kind `reply`. */
  async requestStorage<K extends RequestKind, R extends MessageKind>(ep: Endpoint, kind: K,
    body: Body<K>, reply: R, context: ErrorContext): Promise<Message<R>> {
    if (this.closed) throw new ClosedError('the client');
    let message: Message;
    try {
      message = await this.shared.channel.request(ep, kind, body, this.options.requestTimeoutMs);
    } catch (error) {
      throw toClientError(error, context);
    }
    if (message.kind !== reply) {
      throw toClientError(new Error(`${kind} answered by ${message.kind}, expected ${reply}`),
        context);
    }
    return message as Message<R>;
  }

  /** The endpoint to a storage node, connected on first use, bound to the current session. */
  storageEndpoint(nodeId: number): Promise<Endpoint> {
    const connecting = this.storageConnection(nodeId);
    const known = this.bound.get(nodeId);
    if (known?.connecting === connecting && known.session === this.session) return known.ready;
    const session = this.session;
    const ready = connecting.then(async (ep) => {
      await this.requestStorage(ep, 'sessionBind', { ticket: await this.freshTicket() }, 'done',
        { what: `binding the session to storage node ${nodeId}` });
      return ep;
    });
    const bound = { connecting, session, ready };
    this.bound.set(nodeId, bound);
    ready.catch(() => { if (this.bound.get(nodeId) === bound) this.bound.delete(nodeId); });
    return ready;
  }

  private storageConnection(nodeId: number): Promise<Endpoint> {
    const known = this.storage.get(nodeId);
    if (known !== undefined) return known;
    const node = this.storageNodes.get(nodeId);
    if (node === undefined) {
      return Promise.reject(new NotConnectedError(`storage node ${nodeId} is not in the ` +
        'broker\'s list'));
    }
    const connecting = this.connect(node.host, node.port, `storage node ${nodeId}`);
    this.storage.set(nodeId, connecting);
    connecting.catch(() => this.storage.delete(nodeId));
    return connecting;
  }

  /** The session's ticket, refreshed first when less than TICKET_REFRESH_MS is left. */
  private async freshTicket(): Promise<Uint8Array> {
    await this.brokerEndpoint();
    const ticket = this.ticket;
    if (ticket !== undefined && ticket.expiresAt - performance.now() >= TICKET_REFRESH_MS) {
      return ticket.bytes;
    }
    const reply = await this.call('ticketRefresh', {}, 'ticket',
      { what: 'refreshing the session ticket' });
    this.ticket = { bytes: reply.ticket, expiresAt: performance.now() + reply.expiresInMs };
    return reply.ticket;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reads.close();
    this.stopListening();
    this.endSubscriptions();
    this.shared.transport.off('closed', this.onClosed);
    const endpoints = [this.broker, ...this.storage.values()];
    this.broker = undefined;
    this.storage.clear();
    this.bound.clear();
    await Promise.all(endpoints.map(async (pending) => {
      const ep = await pending?.catch(() => undefined);
      if (ep !== undefined) await this.closeQuietly(ep);
    }));
    releaseTransport();
  }

  /** The broker forgot every subscription of the session: each listener learns it. */
  private endSubscriptions(): void {
    const listeners = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const listener of listeners) listener.ended();
  }

  /** Closes an endpoint unless the transport already closed it. */
  private async closeQuietly(ep: Endpoint): Promise<void> {
    if (!this.shared.transport.openEndpoints().includes(ep)) return;
    await this.shared.transport.closeEndpoint(ep).catch(() => undefined);
  }

  private brokerEndpoint(): Promise<Endpoint> {
    if (this.broker !== undefined) return this.broker;
    const attempt = this.helloBroker();
    this.broker = attempt;
    attempt.catch(() => { if (this.broker === attempt) this.broker = undefined; });
    return attempt;
  }

  /** Tries the bootstrap brokers in order; the first that answers `hello` is the broker. */
  private async helloBroker(): Promise<Endpoint> {
    let last: unknown;
    for (const { host, port } of this.options.brokers) {
      let ep: Endpoint | undefined;
      try {
        ep = await this.connect(host, port, `broker ${host}:${port}`);
        if (this.scram !== undefined) {
          await this.scram.authenticate(this.shared.channel, ep, this.options.requestTimeoutMs);
        }
        const welcome = await this.shared.channel.request(ep, 'hello',
          { clientId: this.options.clientId, role: this.options.role },
          this.options.requestTimeoutMs);
        if (welcome.kind !== 'welcome') throw new Error(`hello answered by ${welcome.kind}`);
        this.brokerEpoch = welcome.brokerEpoch;
        this.segmentSizeBytes = welcome.segmentSizeBytes;
        this.storageNodes = new Map(welcome.storageNodes.map((node) => [node.nodeId, node]));
        this.ticket = { bytes: welcome.ticket,
          expiresAt: performance.now() + welcome.ticketExpiresInMs };
        this.session += 1;
        this.brokerEp = ep;
        this.topicIds.clear();
        return ep;
      } catch (error) {
        last = error;
        if (ep !== undefined) await this.closeQuietly(ep);
      }
    }
    throw toClientError(last, { what: 'connecting to the broker' });
  }

  private async connect(host: string, port: number, what: string): Promise<Endpoint> {
    try {
      return await this.shared.transport.connect(host, port);
    } catch (error) {
      throw new NotConnectedError(`cannot connect to ${what} at ${host}:${port}`,
        { cause: error });
    }
  }

  private readonly onClosed = (ep: Endpoint): void => {
    if (ep === this.brokerEp) {
      this.brokerEp = undefined;
      this.broker = undefined;
      this.options.log.warn({ ep }, 'broker connection closed');
      this.endSubscriptions();
    }
    for (const [nodeId, pending] of this.storage) {
      void pending.then((known) => {
        if (known === ep && this.storage.get(nodeId) === pending) this.storage.delete(nodeId);
      }, () => undefined);
    }
  };
}
