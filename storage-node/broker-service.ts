/**
 * The storage node's side of the broker → storage requests (docs/wire-protocol.md, "Broker →
 * storage" and "Storage node behaviour"): epochs, segment allocation, grants, persists, frees.
 *
 * Every request came over the wire, so every field is checked here (or by the region store)
 * and a bad one is answered with an error code, state unchanged; the node never crashes on a
 * request. invariant() restates only what our own state must satisfy.
 *
 * Epochs: the newest epoch seen is the region's (durable in its superblock). A request below it
 * is refused with PMQ_ERR_EPOCH_STALE; above it, PMQ_ERR_EPOCH_FUTURE unless it is storageHello
 * or epochRaise, which raise it: first durably in the region, then in the native grant table
 * (grants of older epochs stop working at once), then every older grant is revoked.
 *
 * Authentication (broker-auth.ts): every request here is served only on an endpoint whose
 * peer proved it holds the cluster key; storageHello is that proof. A refusal before it is
 * PMQ_ERR_AUTH and names neither the epoch nor anything of the region.
 *
 * Epoch raises are bounded: at most EPOCH_RAISE_STEP_MAX above the node's epoch and never
 * above EPOCH_MAX (the broker's ids must stay safe integers): PMQ_ERR_EPOCH_RANGE.
 *
 * Concurrency: JS thread only; epoch raises run one at a time, in arrival order.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { EPOCH_MAX, EPOCH_RAISE_STEP_MAX } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body, Message } from '../common/wire/messages.js';
import type { Endpoint, Transport } from '../native/transport.js';
import type { ControlChannel, Handler, Reply } from '../rpc/control-channel.js';
import { joinChunks, toChunks } from '../common/wire/chunks.js';
import type { BrokerAuth } from './broker-auth.js';
import { MetadataLog } from './metadata-log.js';
import { readablePrefix, type GrantRegistry } from './grant-registry.js';
import type { PersistQueue } from './persist-queue.js';
import type { RegionStore, SegmentInfo } from './region-store.js';

const DONE: Reply<'done'> = { kind: 'done', body: {} };

/** The broker's requests that need an authenticated endpoint (storageHello is the proof). */
type BrokerRequest = 'epochRaise' | 'segmentAllocate' | 'grantCreate' | 'grantRevoke' |
  'persist' | 'segmentFree' | 'metaAppend' | 'metaRead';

export function segmentEntryBody(segment: SegmentInfo): Body<'segment'> {
  invariant(segment.state !== 'free', 'only live segments are described', { ...segment });
  return { segmentIndex: segment.segmentIndex, state: segment.state, topic: segment.topic,
    partition: segment.partition, chainPosition: segment.chainPosition,
    baseOffset: segment.baseOffset, sizeBytes: segment.sizeBytes, address: segment.address,
    position: segment.watermark.position, offsetLast: segment.watermark.offsetLast,
    epoch: segment.epoch };
}

export class BrokerService {
  readonly #store: RegionStore;
  readonly #transport: Transport;
  readonly #grants: GrantRegistry;
  readonly #persists: PersistQueue;
  readonly #log: Logger;
  readonly #auth: BrokerAuth;
  readonly #metadata: MetadataLog;
  /** Epoch raises and metadata log calls, one at a time, in arrival order. */
  #serial: Promise<void> = Promise.resolve();

  constructor(parts: { store: RegionStore; transport: Transport; grants: GrantRegistry;
    persists: PersistQueue; auth: BrokerAuth; log: Logger }) {
    this.#store = parts.store;
    this.#transport = parts.transport;
    this.#grants = parts.grants;
    this.#persists = parts.persists;
    this.#log = parts.log;
    this.#auth = parts.auth;
    this.#metadata = new MetadataLog(parts.store);
  }

  register(channel: ControlChannel): void {
    channel.handle('brokerAuth', (ep, m) => this.#auth.challenge(ep, m));
    channel.handle('storageHello', async (ep, m) => {
      this.#auth.acceptHello(ep, m); // PMQ_ERR_AUTH before anything else is looked at
      const reply = await this.storageHello(m);
      this.#markOwner(ep, m.instance);
      return reply;
    });
    channel.handle('epochRaise', async (ep, m) => {
      const instance = this.#auth.require(ep, 'epochRaise');
      await this.raiseEpoch(m.epoch, instance);
      this.#markOwner(ep, instance);
      return DONE;
    });
    // Only the instance that raised the node to its epoch is served: an epoch has one owner.
    const broker = <K extends Exclude<BrokerRequest, 'epochRaise'>>(kind: K,
      serve: (m: Message<K>) => Reply | Promise<Reply>): void => {
      const handler: Handler<K> = (ep: Endpoint, m: Message<K>) => {
        const instance = this.#auth.require(ep, kind);
        if (instance !== this.#store.ownerInstance) {
          throw staleEpoch(m.epoch, this.#store.epoch, 'raised by another broker instance');
        }
        return serve(m);
      };
      channel.handle(kind, handler);
    };
    broker('segmentAllocate', (m) => this.segmentAllocate(m));
    broker('grantCreate', (m) => this.grantCreate(m));
    broker('grantRevoke', (m) => this.grantRevoke(m));
    broker('persist', (m) => this.persist(m));
    broker('segmentFree', (m) => this.segmentFree(m));
    broker('metaAppend', (m) => this.#inTurn(async () => {
      this.#checkEpoch(m.epoch);
      const use = await this.#metadata.append(m.epoch, joinChunks(m.chunks), m.snapshot);
      return { kind: 'metaAppended', body: use };
    }));
    broker('metaRead', (m) => this.#inTurn(() => {
      this.#checkEpoch(m.epoch);
      const { framed, ...rest } = this.#metadata.read(m.from);
      return Promise.resolve({ kind: 'metaValues', body: { chunks: toChunks(framed), ...rest } });
    }));
  }

  async storageHello(m: Message<'storageHello'>): Promise<Reply<'storageInfo'>> {
    await this.raiseEpoch(m.epoch, m.instance);
    const sb = this.#store.superblock;
    const segments = this.#store.segments().filter((s) => s.state !== 'free')
      .map(segmentEntryBody);
    return { kind: 'storageInfo', body: { nodeId: sb.nodeId, regionId: sb.regionId,
      epoch: sb.epoch, segmentSizeBytes: sb.segmentSizeBytes,
      segmentSizeBytesMin: sb.segmentSizeBytesMin, dataSizeBytes: this.#store.dataSizeBytes,
      segmentCount: sb.segmentCount, segments } };
  }

  /**
   * Raises the epoch to `epoch` for broker `instance`; refuses a lower epoch, and the same
   * epoch from any instance but the one that raised the node to it (epochs are never reused:
   * a broker that is not the owner must go higher, which fences the owner).
   */
  raiseEpoch(epoch: number, instance: number): Promise<void> {
    return this.#inTurn(() => this.#raiseNow(epoch, instance));
  }

  /**
   * The native persist path serves only endpoints of the instance that owns the epoch (the
   * check `broker()` makes for JS); a raise clears them all first (#raiseNow).
   */
  #markOwner(ep: Endpoint, instance: number): void {
    if (instance !== 0 && instance === this.#store.ownerInstance) {
      this.#transport.setPersistOwner(ep, true);
    }
  }

  /** Runs `work` after every raise and metadata call before it has finished. */
  #inTurn<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(work);
    this.#serial = run.then(() => undefined, () => undefined);
    return run;
  }

  async #raiseNow(epoch: number, instance: number): Promise<void> {
    const before = this.#store.epoch;
    if (epoch < before) throw staleEpoch(epoch, before);
    if (epoch === before) {
      if (instance !== 0 && instance === this.#store.ownerInstance) return;
      throw staleEpoch(epoch, before, 'raised by another broker instance');
    }
    if (epoch > EPOCH_MAX || epoch - before > EPOCH_RAISE_STEP_MAX) {
      throw new PmqError('PMQ_ERR_EPOCH_RANGE', `epoch ${epoch} is out of range: this node ` +
        `is at epoch ${before}, a raise may add at most ${EPOCH_RAISE_STEP_MAX} and no epoch ` +
        `may exceed ${EPOCH_MAX}`);
    }
    this.#transport.clearPersistOwners();                  // 0. no native persist meanwhile
    await this.#store.raiseEpoch(epoch, instance);         // 1. durable in the superblock
    invariant(this.#store.epoch === epoch, 'region epoch raised', { epoch });
    this.#transport.raiseEpoch(epoch);                     // 2. older grants are stale now
    await this.#grants.revokeOlderThan(epoch);             // 3. and gone, none in flight
    this.#log.info({ epoch, before }, 'epoch raised');
  }

  async segmentAllocate(m: Message<'segmentAllocate'>): Promise<Reply<'segment'>> {
    this.#checkEpoch(m.epoch);
    try {
      const segment = await this.#store.allocateSegment({ topic: m.topic,
        partition: m.partition, chainPosition: m.chainPosition, baseOffset: m.baseOffset,
        epoch: m.epoch, sizeBytesMin: m.sizeBytesMin });
      this.#log.info({ segment: segment.segmentIndex, topic: m.topic, partition: m.partition,
        chainPosition: m.chainPosition, baseOffset: m.baseOffset, address: segment.address,
        sizeBytes: segment.sizeBytes }, 'segment allocated');
      return { kind: 'segment', body: segmentEntryBody(segment) };
    } catch (error) {
      if (error instanceof PmqError && error.code === 'PMQ_ERR_REGION_FULL') {
        // Final, not retriable: only a free (a deleted topic, retention) makes room, and
        // waiting for one would keep the producer from hearing it (issue 12).
        throw new PmqError(error.code, `${error.message}: free sealed segments the partitions ` +
          'no longer need (segmentFree), allocate on another storage node, or restart this ' +
          'node on a larger region', { retriable: false, cause: error });
      }
      throw error;
    }
  }

  grantCreate(m: Message<'grantCreate'>): Reply<'done'> {
    this.#checkEpoch(m.epoch);
    const segment = this.#store.segment(m.segmentIndex); // PMQ_ERR_SEGMENT_UNKNOWN
    const at = `grant ${m.grantId} on segment ${m.segmentIndex}`;
    if (m.grantId < 1) throw new PmqError('PMQ_ERR_GRANT_INVALID', `${at}: grant ids start at 1`);
    if (m.session < 1 || m.key < 1) {
      throw new PmqError('PMQ_ERR_GRANT_INVALID', `${at}: a grant needs a session and a key ` +
        '(both ≥ 1)');
    }
    if (segment.state === 'free' || (m.direction === 'write' && segment.state !== 'active')) {
      throw new PmqError('PMQ_ERR_SEGMENT_STATE', `${at}: a ${m.direction} grant needs ` +
        `${m.direction === 'write' ? 'an active' : 'an active or sealed'} segment; it is ` +
        segment.state);
    }
    if (m.sizeBytes < 1 || m.position > segment.sizeBytes ||
        m.sizeBytes > segment.sizeBytes - m.position) {
      throw new PmqError('PMQ_ERR_GRANT_RANGE', `${at}: [${m.position}, +${m.sizeBytes}) is ` +
        `not a non-empty range inside the segment's ${segment.sizeBytes} bytes`);
    }
    if (m.direction === 'write' && m.position < segment.watermark.position) {
      throw new PmqError('PMQ_ERR_GRANT_RANGE', `${at}: a write grant at ${m.position} would ` +
        `cover durable bytes (the watermark is at ${segment.watermark.position})`);
    }
    const address = segment.address + m.position;
    invariant(address + m.sizeBytes <= segment.address + segment.sizeBytes,
      'a grant stays inside its segment', { grantId: m.grantId, address });
    // A read grant reads only durable bytes: up to the watermark now, further as it moves
    // (PersistQueue raises it after each persist).
    const readableBytes = m.direction === 'write' ? m.sizeBytes : readablePrefix(
      { address, sizeBytes: m.sizeBytes }, segment.address + segment.watermark.position);
    this.#grants.create({ grantId: m.grantId, epoch: m.epoch, segmentIndex: m.segmentIndex,
      address, sizeBytes: m.sizeBytes, direction: m.direction, session: m.session, key: m.key,
      readableBytes });
    this.#log.debug({ grant: m.grantId, segment: m.segmentIndex, position: m.position,
      sizeBytes: m.sizeBytes, direction: m.direction, session: m.session }, 'grant created');
    return DONE;
  }

  async grantRevoke(m: Message<'grantRevoke'>): Promise<Reply<'done'>> {
    this.#checkEpoch(m.epoch);
    await this.#grants.revoke(m.grantId);
    this.#log.debug({ grant: m.grantId }, 'grant revoked');
    return DONE;
  }

  async persist(m: Message<'persist'>): Promise<Reply<'persisted'>> {
    this.#checkEpoch(m.epoch);
    const result = await this.#persists.persist({ segmentIndex: m.segmentIndex,
      position: m.position, offsetLast: m.offsetLast, seal: m.seal, epoch: m.epoch,
      patches: m.patches });
    if (result.sealed) {
      this.#log.info({ segment: m.segmentIndex, position: m.position,
        offsetLast: m.offsetLast }, 'segment sealed');
    }
    return { kind: 'persisted', body: result };
  }

  async segmentFree(m: Message<'segmentFree'>): Promise<Reply<'done'>> {
    this.#checkEpoch(m.epoch);
    this.#store.segment(m.segmentIndex); // PMQ_ERR_SEGMENT_UNKNOWN
    if (this.#persists.busy(m.segmentIndex)) {
      throw new PmqError('PMQ_ERR_SEGMENT_BUSY', `segment ${m.segmentIndex} has a persist in ` +
        'flight: free it after the reply', { retriable: true });
    }
    await this.#grants.revokeSegment(m.segmentIndex);
    await this.#store.freeSegment(m.segmentIndex, m.epoch);
    this.#log.info({ segment: m.segmentIndex }, 'segment freed');
    return DONE;
  }

  /** Requests other than hello/raise carry exactly the newest epoch. */
  #checkEpoch(epoch: number): void {
    const current = this.#store.epoch;
    if (epoch < current) throw staleEpoch(epoch, current);
    if (epoch > current) {
      throw new PmqError('PMQ_ERR_EPOCH_FUTURE', `epoch ${epoch} is above this node's ` +
        `${current}: send storageHello or epochRaise first`);
    }
  }
}

function staleEpoch(epoch: number, current: number, how = ''): PmqError {
  return new PmqError('PMQ_ERR_EPOCH_STALE', `epoch ${epoch} is fenced: this storage node is ` +
    `at epoch ${current}${how === '' ? '' : `, ${how}`} (a newer broker owns it)`);
}
