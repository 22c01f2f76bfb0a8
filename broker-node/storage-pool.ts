/**
 * The broker's connections to its storage nodes (the `--storage` list): hello, fencing, the
 * segment tables read at start, placement of new segments, and reconnection.
 *
 * Lifecycle: start() connects to every node (retrying until BROKER_LIMITS.storageStartTimeoutMs:
 * recovery needs every segment table), sends `storageHello`, takes the broker's fencing epoch
 * as 1 + the highest epoch any node has seen and raises every node to it (`epochRaise`). From
 * then on every request carries that epoch. A node that goes away is reconnected every
 * BROKER_LIMITS.storageReconnectMs (hello, then epochRaise again); meanwhile requests to it fail
 * at once with the retriable PMQ_ERR_STORAGE_UNAVAILABLE. A node that reports a higher epoch,
 * or refuses ours as stale (PMQ_ERR_EPOCH_STALE on any request, hello, epochRaise or
 * reconnect), means a newer broker owns the cluster: onFenced() is called, exactly once, and
 * from then on every request fails at once with PMQ_ERR_FENCED; this broker must stop.
 *
 * Every connection first proves both ways that the peer holds the cluster key
 * (storage-auth.ts); a node that does not is a start-up error, as is a node that refuses our
 * epoch as out of range (PMQ_ERR_EPOCH_RANGE): neither gets better by retrying.
 *
 * Concurrency: JS thread only.
 */
import { type ClusterKey, randomGrantKey } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS, EPOCH_MAX } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { HostPort } from '../common/units.js';
import type { Body, Message, RequestKind } from '../common/wire/messages.js';
import type { Endpoint, Transport } from '../native/transport.js';
import type { ControlChannel, ReplyCallback } from '../rpc/control-channel.js';
import { fencedError } from './fence.js';
import { helloWithKey } from './storage-auth.js';

export type StorageInfo = Message<'storageInfo'>;
export type SegmentEntryMessage = Body<'segment'>;

/** Requests to storage whose body carries the broker's epoch (filled in by the pool). */
type EpochRequest = Exclude<RequestKind, 'storageHello' | 'epochRaise' | 'hello' | 'topicCreate' |
  'topicDelete' | 'topicList' | 'topicDescribe' | 'producerInit' | 'lease' | 'append' |
  'leaseRelease' |
  'fetchView' | 'offsetCommit' | 'offsetFetch' | 'authStart' | 'authFinish' | 'ticketRefresh' |
  'brokerAuth' | 'sessionBind' | 'directKey' | 'quarantineList' | 'quarantineFree' |
  'subscribe' | 'unsubscribe' | 'topicAlterConfig'>;
type WithoutEpoch<K extends EpochRequest> = Omit<Body<K>, 'epoch'>;

interface StorageNodeState {
  readonly address: HostPort;
  nodeId: number;
  regionId: string;
  /** The largest segment the node allocates; the smallest (a first segment). */
  segmentSizeBytes: number;
  segmentSizeBytesMin: number;
  /** The node's data area, and the bytes of it this broker knows to be in segments. */
  dataSizeBytes: number;
  bytesUsed: number;
  /** Segment-table entries (the most segments at once), and those in use. */
  segmentCount: number;
  segmentsUsed: number;
  /** Free segments data may not take: the metadata log's next snapshot needs one. */
  segmentsReserved: number;
  ep: Endpoint | null;
  reconnecting: boolean;
}

export const STORAGE_REQUEST_TIMEOUT_MS = 10_000;

const shareUsed = (node: StorageNodeState): number =>
  node.dataSizeBytes > 0 ? node.bytesUsed / node.dataSizeBytes : 1;

function isStale(error: unknown): boolean {
  return error instanceof PmqError && error.code === 'PMQ_ERR_EPOCH_STALE';
}

function unavailable(node: StorageNodeState, why: string): PmqError {
  return new PmqError('PMQ_ERR_STORAGE_UNAVAILABLE', `storage node ${node.nodeId} at ` +
    `${node.address.host}:${node.address.port} is ${why}: retry shortly`, { retriable: true });
}

/**
 * The epoch a storage node said it is at, from its PMQ_ERR_EPOCH_STALE refusal ("… at epoch
 * N …"), or null for any other error. The refusal has no field for it in WIRE_VERSION 1.
 */
function staleEpochOf(error: unknown): number | null {
  if (!(error instanceof PmqError) || error.code !== 'PMQ_ERR_EPOCH_STALE') return null;
  const match = /at epoch (\d+)/.exec(error.message);
  return match === null ? null : Number(match[1]);
}

/** A broker epoch above EPOCH_MAX would overflow its ids: a start-up error. */
function checkEpochInRange(epoch: number, why: string): number {
  if (epoch > EPOCH_MAX) {
    throw new PmqError('PMQ_ERR_EPOCH_RANGE', `the broker would start at epoch ${epoch}, above ` +
      `the largest epoch ${EPOCH_MAX} its ids allow (${why})`);
  }
  return epoch;
}

export class StoragePool {
  #epoch = 0;
  /**
   * This broker process among all brokers ever: a storage node lets only the instance that
   * raised it to its epoch hello again at that epoch, so two brokers never share an epoch.
   */
  readonly instance = randomGrantKey();
  readonly #nodes: StorageNodeState[];
  readonly #byNodeId = new Map<number, StorageNodeState>();
  readonly #upListeners = new Set<(nodeId: number) => void>();
  #closed = false;
  #fenced = false;
  /** requestTo's callbacks, each wrapped once to fence on a stale refusal. */
  readonly #fencing = new WeakMap<ReplyCallback, ReplyCallback>();

  constructor(private readonly transport: Transport, private readonly channel: ControlChannel,
    addresses: readonly HostPort[], private readonly key: ClusterKey,
    private readonly log: Logger, private readonly onFenced: (why: string) => void) {
    invariant(addresses.length > 0, 'at least one storage node');
    this.#nodes = addresses.map((address) => ({ address, nodeId: -1, regionId: '',
      segmentSizeBytes: 0, segmentSizeBytesMin: 0, dataSizeBytes: 0, bytesUsed: 0,
      segmentCount: 0, segmentsUsed: 0, segmentsReserved: 0, ep: null, reconnecting: false }));
    const onGone = (ep: Endpoint): void => this.#onEndpointGone(ep);
    transport.on('closed', onGone);
    transport.on('error', onGone);
  }

  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Connects, hellos and fences every node; returns their segment tables. storageHello raises
   * a node to the epoch it carries and refuses one at or below the node's (PMQ_ERR_EPOCH_STALE
   * names the node's epoch; the same epoch is accepted only from the instance that raised the
   * node to it), so the broker starts at 1 and, refused, starts again one above the epoch the
   * node named: above every epoch any node has seen, never one another broker had.
   */
  async start(): Promise<StorageInfo[]> {
    const deadline = Date.now() + BROKER_LIMITS.storageStartTimeoutMs;
    this.#epoch = 1;
    let infos: StorageInfo[] = [];
    for (let attempt = 0; ; attempt += 1) {
      try {
        infos = [];
        for (const node of this.#nodes) infos.push(await this.#helloUntil(node, deadline));
        break;
      } catch (error) {
        const nodeEpoch = staleEpochOf(error);
        if (nodeEpoch === null || attempt >= 8) throw error;
        this.log.warn({ epoch: this.#epoch, nodeEpoch }, 'a storage node is at a higher epoch');
        this.#epoch = checkEpochInRange(Math.max(this.#epoch, nodeEpoch) + 1,
          `a storage node is at epoch ${nodeEpoch}`);
        for (const node of this.#nodes) this.#forget(node);
      }
    }
    for (const [index, info] of infos.entries()) {
      const node = this.#nodes[index]!;
      if (this.#byNodeId.has(info.nodeId)) {
        throw new PmqError('PMQ_ERR_STORAGE_DUPLICATE', `storage nodes ${node.address.host}:` +
          `${node.address.port} and another have the same node id ${info.nodeId}: give each ` +
          'region its own node id (--node-id)');
      }
      this.#adopt(node, info);
    }
    invariant(infos.every((info) => info.epoch === this.#epoch), 'hello raised every node',
      { epoch: this.#epoch });
    for (const node of this.#nodes) await this.#raise(node);
    this.log.info({ epoch: this.#epoch, nodes: this.#nodes.length }, 'storage nodes fenced');
    return infos;
  }

  /** Nodes as clients see them (welcome). */
  nodes(): { nodeId: number; host: string; port: number }[] {
    return this.#nodes.map((node) => ({ nodeId: node.nodeId, ...node.address }));
  }

  /** The largest segment every node allocates: no batch may be larger. */
  segmentSizeBytesMax(): number {
    return Math.min(...this.#nodes.map((node) => node.segmentSizeBytes));
  }

  /**
   * Where the next segment (of at least `sizeBytes`) goes: the connected node with the
   * smallest share of its data area in use, among those not in `exclude` (nodes that just
   * answered PMQ_ERR_REGION_FULL). By this broker's count, which is an estimate (the
   * metadata log's segments are not in it): the node's own answer is final.
   */
  chooseNode(sizeBytes = 0, exclude?: ReadonlySet<number>): number {
    let best: StorageNodeState | null = null;
    for (const node of this.#nodes) {
      if (node.ep === null || exclude?.has(node.nodeId) === true ||
        node.segmentsUsed + node.segmentsReserved >= node.segmentCount ||
        node.dataSizeBytes - node.bytesUsed < Math.max(sizeBytes, node.segmentSizeBytesMin)) {
        continue;
      }
      if (best === null || shareUsed(node) < shareUsed(best)) best = node;
    }
    if (best === null) throw this.#noFreeSegment(exclude?.size ?? 0);
    return best.nodeId;
  }

  /**
   * How many more first (smallest) segments the connected nodes can give by this broker's
   * count: the topic-create warning compares partitions without a segment with it.
   */
  firstSegmentsFree(): number {
    let free = 0;
    for (const node of this.#nodes) {
      if (node.ep === null || node.segmentSizeBytesMin === 0) continue;
      const entries = node.segmentCount - node.segmentsUsed - node.segmentsReserved;
      const bytes = Math.floor((node.dataSizeBytes - node.bytesUsed) / node.segmentSizeBytesMin) -
        node.segmentsReserved;
      free += Math.max(0, Math.min(entries, bytes));
    }
    return free;
  }

  /** Why no node can take a segment: every connected region is full, or none is connected. */
  #noFreeSegment(refused: number): PmqError {
    const connected = this.#nodes.filter((node) => node.ep !== null);
    const away = this.#nodes.length - connected.length;
    if (connected.length === 0) {
      return new PmqError('PMQ_ERR_STORAGE_UNAVAILABLE', 'no storage node is connected: retry ' +
        'shortly, or start the storage nodes', { retriable: true });
    }
    const used = connected.reduce((sum, node) => sum + node.segmentsUsed +
      node.segmentsReserved, 0);
    const count = connected.reduce((sum, node) => sum + node.segmentCount, 0);
    const reserved = connected.reduce((sum, node) => sum + node.segmentsReserved, 0);
    const bytesFree = connected.reduce((sum, node) => sum + node.dataSizeBytes - node.bytesUsed,
      0);
    // Final (not retriable): space comes back only when segments are freed (a topic deleted,
    // retention), so the producer is told now rather than after its retries (issue 12).
    return new PmqError('PMQ_ERR_REGION_FULL', `region full: the connected storage nodes have ` +
      `no room for another segment (${used} of ${count} segment entries in use` +
      (reserved > 0 ? `, ${reserved} kept free for the metadata log` : '') +
      `, about ${bytesFree} bytes free` +
      (refused > 0 ? `, ${refused} node(s) answered region full` : '') + ')' +
      (away > 0 ? `, ${away} storage node(s) not connected` : '') +
      ': delete topics (or let retention free segments), add storage nodes, or use larger ' +
      'regions', { retriable: false });
  }

  /**
   * Keeps `count` free segments of a node from data: the metadata log rotates into a new
   * segment before it frees the old one, so a region full of data must still have one.
   */
  reserveSegments(nodeId: number, count: number): void {
    this.#node(nodeId).segmentsReserved = count;
  }

  /** Counts a segment of `sizeBytes` allocated (+1) or freed (-1) on a node, for placement. */
  countSegment(nodeId: number, delta: 1 | -1, sizeBytes: number): void {
    const node = this.#node(nodeId);
    node.segmentsUsed += delta;
    node.bytesUsed = Math.max(0, node.bytesUsed + delta * sizeBytes);
    invariant(node.segmentsUsed >= 0 && node.segmentsUsed <= node.segmentCount,
      'segments used within the region', { nodeId, used: node.segmentsUsed });
  }

  /** The endpoint to a node, for validated writes (hole fillers). */
  endpoint(nodeId: number): Endpoint {
    const node = this.#node(nodeId);
    if (node.ep === null) throw unavailable(node, 'not connected');
    return node.ep;
  }

  /** Called with a node id each time a node is (re)connected and fenced. */
  onUp(listener: (nodeId: number) => void): void {
    this.#upListeners.add(listener);
  }

  /** Sends a request with the broker's epoch; fails fast while the node is away. */
  async request<K extends EpochRequest>(nodeId: number, kind: K, body: WithoutEpoch<K>):
    Promise<Message> {
    const node = this.#node(nodeId);
    if (this.#fenced) throw fencedError(this.#epoch);
    if (node.ep === null) throw unavailable(node, 'not connected');
    try {
      return await this.channel.request(node.ep, kind,
        { ...body, epoch: this.#epoch } as unknown as Body<K>, STORAGE_REQUEST_TIMEOUT_MS);
    } catch (error) {
      if (isStale(error)) {
        this.#fence(`storage node ${nodeId} refused epoch ${this.#epoch} on ${kind}: ` +
          `${(error as PmqError).message}`);
        throw fencedError(this.#epoch);
      }
      throw error;
    }
  }

  /**
   * request() for a caller with one long-lived callback (issue 11: the partitions' persists; no
   * promise or closure per request). `body` is the caller's record, reused: the broker's epoch
   * is written into it here. Exactly one of the callback's functions runs, never before this
   * returns; a refusal as stale fences this broker, as request() does.
   */
  requestTo<K extends EpochRequest>(nodeId: number, kind: K, body: Body<K> & { epoch: number },
    callback: ReplyCallback): void {
    const node = this.#node(nodeId);
    const fencing = this.#fencingCallback(callback);
    if (this.#fenced || node.ep === null) {
      const error = this.#fenced ? fencedError(this.#epoch) : unavailable(node, 'not connected');
      queueMicrotask(() => fencing.onError(error));
      return;
    }
    (body as { epoch: number }).epoch = this.#epoch;
    this.channel.requestTo(node.ep, kind, body as Body<K>, fencing, STORAGE_REQUEST_TIMEOUT_MS);
  }

  /** `callback` wrapped to fence on a stale refusal: made once per callback, then reused. */
  #fencingCallback(callback: ReplyCallback): ReplyCallback {
    const known = this.#fencing.get(callback);
    if (known !== undefined) return known;
    const wrapped: ReplyCallback = {
      readsReplyAtOnce: callback.readsReplyAtOnce,
      onReply: (reply) => callback.onReply(reply),
      onError: (error) => {
        if (!isStale(error)) {
          callback.onError(error);
          return;
        }
        this.#fence(`a storage node refused epoch ${this.#epoch}: ${error.message}`);
        callback.onError(fencedError(this.#epoch));
      },
    };
    this.#fencing.set(callback, wrapped);
    return wrapped;
  }

  close(): void {
    this.#closed = true;
  }

  /** The one way to fencing: stops reconnecting, calls onFenced once. */
  #fence(why: string): void {
    if (this.#fenced) return;
    this.#fenced = true;
    this.#closed = true;
    this.onFenced(why);
  }

  #node(nodeId: number): StorageNodeState {
    const node = this.#byNodeId.get(nodeId);
    // Guarded: invariant()'s fields literal would be made per request (issue 11).
    if (node === undefined) invariant(false, 'known storage node', { nodeId });
    return node;
  }

  #forget(node: StorageNodeState): void {
    if (node.ep !== null) this.transport.closeEndpoint(node.ep).catch(() => undefined);
    node.ep = null;
  }

  #adopt(node: StorageNodeState, info: StorageInfo): void {
    node.nodeId = info.nodeId;
    node.regionId = info.regionId;
    node.segmentSizeBytes = info.segmentSizeBytes;
    node.segmentSizeBytesMin = info.segmentSizeBytesMin;
    node.dataSizeBytes = info.dataSizeBytes;
    node.segmentCount = info.segmentCount;
    node.segmentsUsed = info.segments.length;
    node.bytesUsed = info.segments.reduce((sum, segment) => sum + segment.sizeBytes, 0);
    this.#byNodeId.set(info.nodeId, node);
  }

  async #hello(node: StorageNodeState): Promise<StorageInfo> {
    const ep = await this.transport.connect(node.address.host, node.address.port);
    try {
      const reply = await helloWithKey(this.channel, ep, this.key,
        { epoch: this.#epoch, instance: this.instance },
        `${node.address.host}:${node.address.port}`, STORAGE_REQUEST_TIMEOUT_MS);
      node.ep = ep;
      return reply;
    } catch (error) {
      this.transport.closeEndpoint(ep).catch(() => undefined);
      throw error;
    }
  }

  async #helloUntil(node: StorageNodeState, deadline: number): Promise<StorageInfo> {
    const startedAtMs = Date.now();
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.#hello(node);
      } catch (error) {
        if (staleEpochOf(error) !== null) throw error;
        if (error instanceof PmqError && error.code === 'PMQ_ERR_AUTH') throw error;
        if (error instanceof PmqError && error.code === 'PMQ_ERR_EPOCH_RANGE') {
          throw new PmqError(error.code, `storage node ${node.address.host}:` +
            `${node.address.port} refused epoch ${this.#epoch}: ${error.message}. Is --data-dir ` +
            'from another cluster, or was the storage region re-created? Start the broker on ' +
            'the data directory of this cluster', { cause: error });
        }
        if (Date.now() >= deadline || this.#closed) {
          throw new PmqError('PMQ_ERR_STORAGE_UNAVAILABLE', `storage node ${node.address.host}:` +
            `${node.address.port} did not answer storageHello: start it (recovery needs every ` +
            'storage node), or fix --storage', { cause: error });
        }
        // Said at warn at once and every ~5 s (not per 500 ms retry): the broker opens its
        // port only after recovery, which needs every storage node.
        this.log[attempt % 10 === 0 ? 'warn' : 'debug']({ ...node.address, err: String(error),
          waitedMs: Date.now() - startedAtMs, givingUpInMs: deadline - Date.now() },
        'storage node not ready');
        await new Promise((resolve) => setTimeout(resolve, BROKER_LIMITS.storageReconnectMs));
      }
    }
  }

  async #raise(node: StorageNodeState): Promise<void> {
    invariant(node.ep !== null, 'raise on a connected node');
    await this.channel.request(node.ep, 'epochRaise', { epoch: this.#epoch },
      STORAGE_REQUEST_TIMEOUT_MS);
  }

  #onEndpointGone(ep: Endpoint): void {
    const node = this.#nodes.find((candidate) => candidate.ep === ep);
    if (node === undefined) return;
    node.ep = null;
    this.log.warn({ nodeId: node.nodeId, ...node.address }, 'storage node gone');
    this.#reconnectLater(node);
  }

  #reconnectLater(node: StorageNodeState): void {
    if (node.reconnecting || this.#closed) return;
    node.reconnecting = true;
    setTimeout(() => { void this.#reconnect(node); }, BROKER_LIMITS.storageReconnectMs);
  }

  async #reconnect(node: StorageNodeState): Promise<void> {
    node.reconnecting = false;
    if (this.#closed) return;
    try {
      const info = await this.#hello(node);
      if (info.epoch > this.#epoch) {
        this.#forget(node);
        this.#fence(`storage node ${info.nodeId} has epoch ${info.epoch} > ${this.#epoch}`);
        return;
      }
      if (info.nodeId !== node.nodeId || info.regionId !== node.regionId) {
        this.log.error({ expected: node.nodeId, got: info.nodeId, regionId: info.regionId },
          'storage node came back with another region; not using it');
        node.ep = null;
        return;
      }
      if (info.epoch < this.#epoch) await this.#raise(node);
      this.log.info({ nodeId: node.nodeId }, 'storage node reconnected');
      for (const listener of this.#upListeners) listener(node.nodeId);
    } catch (error) {
      if (node.ep !== null) this.transport.closeEndpoint(node.ep).catch(() => undefined);
      node.ep = null;
      if (isStale(error)) {
        this.#fence(`storage node ${node.nodeId} refused epoch ${this.#epoch} on reconnect: ` +
          `${(error as PmqError).message}`);
        return;
      }
      this.log.debug({ nodeId: node.nodeId, err: String(error) }, 'storage reconnect failed');
      this.#reconnectLater(node);
    }
  }
}
