/**
 * One partition at the broker: its Sequencer (pure) plus everything the sequencer asks for,
 * carried out against the storage nodes: segment allocation and read grants, a write grant per
 * reservation, the one persist in flight, acknowledgements, hole fills, long polls.
 *
 * Lifecycle: `Partition.create` for a new topic's partition, `Partition.restore` from the
 * storage nodes' segment tables at broker start; `close()` when the topic is deleted (frees its
 * segments). Concurrency: JS thread only; the sequencer is called synchronously and every
 * persist it returns is sent at once (it keeps at most one in flight per partition).
 * Durability: a committer's `acked` is sent only after the storage node answered `persisted`
 * for a watermark covering its batch (the sequencer's acks); reads never go past the durable
 * watermark.
 */
import { BROKER_SESSION, randomGrantKey } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body } from '../common/wire/messages.js';
import type { Transport } from '../native/transport.js';
import { fillPartitionHole } from './partition-fill.js';
import { scanProducerBatches } from './producer-scan.js';
import { ProducerStates, type SequenceCheck } from './producer-state.js';
import {
  Sequencer, type Fill, type PersistRequest, type PersistedResult, type RestoredSegment,
  type SegmentId, type SegmentView, type SequencerConfig,
} from './sequencer.js';
import type { SegmentEntryMessage, StoragePool } from './storage-pool.js';

export interface PartitionDeps {
  readonly pool: StoragePool;
  readonly transport: Transport;
  readonly log: Logger;
  /** Broker-wide grant ids, unique across broker restarts (broker.ts). */
  readonly grantId: () => number;
  /** Monotonic milliseconds. */
  readonly now: () => number;
  readonly reservationTimeoutMs: number;
}

/** A grant as the client names it: id and secret key. */
export interface GrantHandle { readonly id: number; readonly key: number }

/**
 * Where a segment lives. `readGrants`: each session's read grant of the whole segment (a
 * grant is usable only on its session's endpoints), created on the session's first fetch and
 * revoked when the session ends or the segment is freed.
 */
export interface SegmentPlace {
  readonly nodeId: number;
  readonly segmentIndex: number;
  readonly address: number;
  readonly sizeBytes: number;
  readonly readGrants: Map<number, Promise<GrantHandle>>;
}

interface WriteGrant { readonly nodeId: number; readonly created: Promise<boolean> }
/**
 * Which client session a reservation belongs to (only its session may commit it), and what a
 * move to another session needs: the write grant's range. `grantId` is the grant in force;
 * `sequencerGrant` the one the sequencer names the reservation's producer by.
 */
interface Owner {
  sessionId: number;
  readonly epoch: number;
  readonly sequencerGrant: number;
  readonly nodeId: number;
  readonly segmentIndex: number;
  readonly position: number;
  readonly bytes: number;
}
interface Committer { resolve: (baseOffset: number) => void; reject: (error: Error) => void }
interface FetchWaiter { wake: () => void }

/** A reserve as the broker received it (wire message `reserve`). */
export interface ReserveInput {
  readonly bytes: number;
  readonly records: number;
  /** -1: not idempotent (sequence ignored). */
  readonly producerId: number;
  readonly sequence: number;
}

export type ReserveReply =
  | { kind: 'reserved'; body: Body<'reserved'> }
  | { kind: 'duplicate'; body: Body<'duplicate'> };

export const segmentIdOf = (nodeId: number, segmentIndex: number): SegmentId =>
  `${nodeId}/${segmentIndex}`;

export class Partition {
  readonly places = new Map<SegmentId, SegmentPlace>();
  readonly log: Logger;
  #sequencer: Sequencer | null;
  readonly #broken: PmqError | null;
  #allocating: { chainPosition: number; done: Promise<void> } | null = null;
  readonly #writeGrants = new Map<number, WriteGrant>();
  readonly #committers = new Map<number, Committer[]>();
  readonly #fetchWaiters = new Set<FetchWaiter>();
  /** Idempotent producers' sequences (docs/broker.md, "Producer state"). */
  readonly producers = new ProducerStates();
  /** The `reserved` reply of each reservation not yet durable: a retry gets it again. */
  readonly #reservedReplies = new Map<number, Promise<Body<'reserved'>>>();
  /** The session of each reservation not yet durable or expired, by reservation id. */
  readonly #owners = new Map<number, Owner>();
  /** A moved reservation's grant: the sequencer's producer grant → the grant in force. */
  readonly #movedGrants = new Map<number, number>();
  #closed = false;

  private constructor(readonly deps: PartitionDeps, readonly topic: string,
    readonly partition: number, sequencer: Sequencer | null, broken: PmqError | null) {
    this.#sequencer = sequencer;
    this.#broken = broken;
    this.log = deps.log.child({ topic, partition });
  }

  static config(deps: PartitionDeps): SequencerConfig {
    return { epoch: deps.pool.epoch, segmentSizeBytes: deps.pool.segmentSizeBytesMin(),
      reservationTimeoutMs: deps.reservationTimeoutMs };
  }

  static create(deps: PartitionDeps, topic: string, partition: number): Partition {
    return new Partition(deps, topic, partition, Sequencer.create(Partition.config(deps)), null);
  }

  /**
   * Rebuilds from the segment-table entries naming this partition (every node's). Orphans
   * (empty segments past the active one) are freed before it serves. A chain that does not
   * hold together leaves the partition unserved (every request: PMQ_ERR_PARTITION_UNAVAILABLE).
   */
  static async restore(deps: PartitionDeps, topic: string, partition: number,
    entries: readonly { nodeId: number; entry: SegmentEntryMessage }[]): Promise<Partition> {
    const restored: RestoredSegment[] = entries.map(({ nodeId, entry }) => ({
      segmentId: segmentIdOf(nodeId, entry.segmentIndex), chainPosition: entry.chainPosition,
      baseOffset: entry.baseOffset, sizeBytes: entry.sizeBytes, sealed: entry.state === 'sealed',
      watermark: { position: entry.position, offsetLast: entry.offsetLast },
    }));
    let chain: ReturnType<typeof Sequencer.restore>;
    try {
      chain = Sequencer.restore(Partition.config(deps), restored);
    } catch (error) {
      invariant(error instanceof PmqError, 'restore throws PmqError');
      const broken = new PmqError('PMQ_ERR_PARTITION_UNAVAILABLE', `${topic}/${partition} is ` +
        `not served: ${error.message}`, { cause: error });
      deps.log.error({ topic, partition, err: error.message }, 'partition not restored');
      return new Partition(deps, topic, partition, null, broken);
    }
    const self = new Partition(deps, topic, partition, chain.sequencer, null);
    for (const { nodeId, entry } of entries) {
      self.places.set(segmentIdOf(nodeId, entry.segmentIndex), { nodeId, readGrants: new Map(),
        segmentIndex: entry.segmentIndex, address: entry.address, sizeBytes: entry.sizeBytes });
    }
    for (const orphan of chain.orphans) await self.#freeSegment(orphan);
    await self.#restoreProducers();
    return self;
  }

  /** Why the partition is not served (its chain did not restore), or null. */
  get broken(): PmqError | null {
    return this.#broken;
  }

  get sequencer(): Sequencer {
    if (this.#broken !== null) throw this.#broken;
    if (this.#closed || this.#sequencer === null) throw this.#gone();
    return this.#sequencer;
  }

  /**
   * Room for one batch: a write grant over exactly its bytes, the offset of its first record.
   * An idempotent producer's retry of a batch in flight gets its reservation again (or, once
   * committed, waits for its ack); of a durable batch, `duplicate` with the original offset.
   * The reservation belongs to `sessionId`; a retry from another session (the producer
   * reconnected) moves it there (docs/broker.md, "Sessions").
   */
  async reserve(input: ReserveInput, sessionId: number): Promise<ReserveReply> {
    for (;;) {
      const check = this.producers.check(input.producerId, input.sequence, input.records);
      if (check.kind === 'duplicate') {
        return { kind: 'duplicate', body: { baseOffset: check.baseOffset } };
      }
      if (check.kind === 'in-flight') return this.#retryInFlight(check, sessionId);
      const grantId = this.deps.grantId();
      const result = this.sequencer.reserve({ bytes: input.bytes, records: input.records,
        producer: String(grantId), now: this.deps.now() });
      if (result.kind === 'need-segment') {
        if (result.persist !== null) this.#issuePersist(result.persist);
        await this.#allocate(result.chainPosition, result.baseOffset);
        continue;
      }
      const reservation = result.reservation;
      this.producers.reserved(input.producerId, { baseSequence: input.sequence,
        records: input.records, baseOffset: reservation.baseOffset }, reservation);
      const place = this.#place(reservation.segmentId);
      const owner: Owner = { sessionId, epoch: reservation.epoch, sequencerGrant: grantId,
        nodeId: place.nodeId, segmentIndex: place.segmentIndex, position: reservation.position,
        bytes: input.bytes };
      this.#owners.set(reservation.id, owner);
      const { grantKey, creating } = this.#createWriteGrant(grantId, owner);
      // A failure leaves the reservation to expire: its hole is filled like a dead producer's.
      const reply = creating.then(() => ({ epoch: reservation.epoch,
        reservationId: reservation.id, nodeId: place.nodeId, grantId, grantKey,
        grantEpoch: this.deps.pool.epoch, address: place.address + reservation.position,
        baseOffset: reservation.baseOffset }));
      this.#reservedReplies.set(reservation.id, reply);
      reply.catch(() => undefined);
      return { kind: 'reserved', body: await reply };
    }
  }

  /**
   * Resolves with the batch's base offset once it is durable (acks=all). Only the session
   * that holds the reservation may commit it (PMQ_ERR_DENIED, naming the reservation only).
   */
  commit(epoch: number, reservationId: number, sessionId: number): Promise<number> {
    const owner = this.#owners.get(reservationId);
    if (owner !== undefined && owner.epoch === epoch && owner.sessionId !== sessionId) {
      return Promise.reject(new PmqError('PMQ_ERR_DENIED', `reservation ${reservationId} of ` +
        `${this.topic}/${this.partition} belongs to another session: commit it from the ` +
        'connection that reserved it (a producer that reconnected reserves the batch again)'));
    }
    return this.#commit(epoch, reservationId);
  }

  #commit(epoch: number, reservationId: number): Promise<number> {
    const result = this.sequencer.commit({ epoch, id: reservationId }, this.deps.now());
    switch (result.kind) {
      case 'durable':
        return Promise.resolve(result.ack.baseOffset);
      case 'refused':
        if (result.revoke !== null) {
          // Best effort: a node away, restarted or at a newer epoch (this broker fenced) has
          // revoked the grant itself. Unhandled, the rejection would end the broker with code 1.
          const grantId = Number(result.revoke);
          this.revokeWriteGrant(grantId).catch((error: unknown) => {
            this.log.debug({ grantId, err: String(error) }, 'write grant not revoked');
          });
        }
        return Promise.reject(result.error);
      case 'committed':
        if (result.persist !== null) this.#issuePersist(result.persist);
        return new Promise((resolve, reject) => {
          const list = this.#committers.get(reservationId) ?? [];
          list.push({ resolve, reject });
          this.#committers.set(reservationId, list);
        });
      default:
        return result satisfies never;
    }
  }

  /** Expires old reservations and fills their holes (called by the broker's timer). */
  tick(): void {
    if (this.#sequencer === null || this.#closed) return;
    for (const fill of this.#sequencer.expire(this.deps.now()).fills) {
      this.producers.released(fill.ref);
      this.#reservedReplies.delete(fill.ref.id);
      this.#owners.delete(fill.ref.id);
      void this.#fill(fill);
    }
  }

  /** Parks until the high watermark passes `offset` or waitMs passes. */
  async waitForData(offset: number, waitMs: number): Promise<void> {
    if (waitMs <= 0 || this.sequencer.highWatermark() > offset) return;
    if (this.#fetchWaiters.size >= BROKER_LIMITS.fetchWaitersMax) return;
    await new Promise<void>((resolve) => {
      const waiter: FetchWaiter = { wake: () => {
        clearTimeout(timer);
        this.#fetchWaiters.delete(waiter);
        resolve();
      } };
      const timer = setTimeout(waiter.wake, Math.min(waitMs, BROKER_LIMITS.fetchWaitMsMax));
      this.#fetchWaiters.add(waiter);
    });
  }

  /**
   * A storage node came back (reconnected and fenced): if it restarted, its grant table is
   * empty, so the read grants cached for its segments name nothing and every consumer read
   * under them is refused. Forget them; the next fetchView creates fresh ones.
   */
  forgetReadGrants(nodeId: number): void {
    for (const place of this.places.values()) {
      if (place.nodeId === nodeId) place.readGrants.clear();
    }
  }

  /**
   * A session's read grant of a whole segment (created on its first use; the storage node
   * bounds its reads by the segment's durable watermark). `session`: the client's, or
   * BROKER_SESSION for the broker's own reads.
   */
  readGrant(place: SegmentPlace, session: number): Promise<GrantHandle> {
    const known = place.readGrants.get(session);
    if (known !== undefined) return known;
    const handle = { id: this.deps.grantId(), key: randomGrantKey() };
    const creating = this.deps.pool.request(place.nodeId, 'grantCreate', { grantId: handle.id,
      session, key: handle.key, segmentIndex: place.segmentIndex, position: 0,
      sizeBytes: place.sizeBytes, direction: 'read' }).then(() => handle);
    place.readGrants.set(session, creating);
    creating.catch(() => {
      if (place.readGrants.get(session) === creating) place.readGrants.delete(session);
    });
    return creating;
  }

  /** A client session ended: its read grants are revoked (best effort) and forgotten. */
  endSession(session: number): void {
    for (const place of this.places.values()) {
      const grant = place.readGrants.get(session);
      if (grant === undefined) continue;
      place.readGrants.delete(session);
      void grant.then((handle) => revokeGrant(this.deps.pool, place.nodeId, handle.id))
        .catch(() => undefined); // a node away or restarted forgot it anyway
    }
  }

  place(segmentId: SegmentId): SegmentPlace {
    return this.#place(segmentId);
  }

  /**
   * Revokes a producer's write grant (idempotent); waits for its creation first. `grantId`
   * may be the sequencer's name of a moved reservation's grant: the one in force is revoked.
   */
  async revokeWriteGrant(sequencerGrant: number): Promise<void> {
    const grantId = this.#movedGrants.get(sequencerGrant) ?? sequencerGrant;
    const grant = this.#writeGrants.get(grantId);
    if (grant === undefined) return;
    const created = await grant.created;
    if (!created) {
      this.#writeGrants.delete(grantId);
      return;
    }
    await revokeGrant(this.deps.pool, grant.nodeId, grantId);
    this.#writeGrants.delete(grantId);
  }

  /** Topic deleted: fail waiters, revoke grants, free every segment (best effort). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const list of this.#committers.values()) {
      for (const committer of list) committer.reject(this.#gone());
    }
    this.#committers.clear();
    for (const waiter of [...this.#fetchWaiters]) waiter.wake();
    for (const grantId of [...this.#writeGrants.keys()]) {
      await this.revokeWriteGrant(grantId).catch(() => undefined);
    }
    for (const segmentId of [...this.places.keys()]) await this.#freeSegment(segmentId);
  }

  /** A retried reserve of a batch whose reservation is in flight. */
  async #retryInFlight(check: SequenceCheck & { kind: 'in-flight' }, sessionId: number):
    Promise<ReserveReply> {
    const { ref } = check;
    const state = this.sequencer.reservationState(ref);
    const reply = this.#reservedReplies.get(ref.id);
    if (state === 'reserved' && reply !== undefined) {
      const owner = this.#owners.get(ref.id);
      if (owner !== undefined && owner.sessionId !== sessionId) {
        return { kind: 'reserved', body: await this.#move(ref, owner, sessionId) };
      }
      return { kind: 'reserved', body: await reply };
    }
    if (state === 'committed') {
      return { kind: 'duplicate', body: { baseOffset: await this.#commit(ref.epoch, ref.id) } };
    }
    invariant(false, 'producer state follows the sequencer', { ...ref, state });
  }

  /**
   * Moves a reservation to another session (its producer reconnected and retried the reserve):
   * from now on only the new session may commit it; the old write grant is revoked (waiting
   * for its accesses in flight) and a new one is made for exactly the same range. If the
   * reservation expired meanwhile (its hole is being filled), no new grant is made.
   */
  #move(ref: { epoch: number; id: number }, owner: Owner, sessionId: number):
    Promise<Body<'reserved'>> {
    owner.sessionId = sessionId;
    const previous = this.#reservedReplies.get(ref.id)!;
    const moved = (async () => {
      const body = await previous;
      await this.revokeWriteGrant(owner.sequencerGrant);
      if (this.#closed || this.sequencer.reservationState(ref) !== 'reserved') {
        throw new PmqError('PMQ_ERR_RESERVATION_EXPIRED', `reservation ${ref.id} expired ` +
          'while moving to the reconnected producer: reserve again', { retriable: true });
      }
      const grantId = this.deps.grantId();
      const { grantKey, creating } = this.#createWriteGrant(grantId, owner);
      this.#movedGrants.set(owner.sequencerGrant, grantId);
      await creating;
      this.log.debug({ reservation: ref.id, grantId, session: sessionId }, 'reservation moved');
      return { ...body, grantId, grantKey };
    })();
    this.#reservedReplies.set(ref.id, moved);
    moved.catch(() => undefined);
    return moved;
  }

  /**
   * Asks the storage node for a write grant over exactly the reservation's range, for the
   * session that holds it now, under a fresh random key; remembered in #writeGrants (for
   * revocation) once asked.
   */
  #createWriteGrant(grantId: number, owner: Owner):
    { grantKey: number; creating: Promise<unknown> } {
    const grantKey = randomGrantKey();
    const creating = this.deps.pool.request(owner.nodeId, 'grantCreate', { grantId,
      session: owner.sessionId, key: grantKey, segmentIndex: owner.segmentIndex,
      position: owner.position, sizeBytes: owner.bytes, direction: 'write' });
    this.#writeGrants.set(grantId, { nodeId: owner.nodeId,
      created: creating.then(() => true, () => false) });
    return { grantKey, creating };
  }

  /** Rebuilds the idempotent producers' state from the last durable batches' headers. */
  async #restoreProducers(): Promise<void> {
    const { transport, pool } = this.deps;
    const read = async (segment: SegmentView, position: number, dst: Uint8Array,
      length: number): Promise<void> => {
      const place = this.#place(segment.segmentId);
      const grant = await this.readGrant(place, BROKER_SESSION);
      await transport.readValidated(pool.endpoint(place.nodeId), { id: grant.id,
        epoch: pool.epoch, key: grant.key }, place.address + position, dst, 0, length);
    };
    try {
      const batches = await scanProducerBatches({ read }, this.sequencer.segments(),
        (segment, problem) => this.log.warn({ segmentId: segment.segmentId, problem },
          'producer state scan stopped early'));
      for (const batch of batches) this.producers.restoreBatch(batch);
      this.log.debug({ batches: batches.length, producers: this.producers.producers },
        'producer state restored');
    } catch (error) {
      this.log.warn({ err: String(error) }, 'producer state not restored: producers unknown');
    }
  }

  #gone(): PmqError {
    return new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${this.topic} was deleted: create it ` +
      'again to use it');
  }

  #place(segmentId: SegmentId): SegmentPlace {
    const place = this.places.get(segmentId);
    invariant(place !== undefined, 'every sequenced segment has a place', { segmentId });
    return place;
  }

  /** Allocates the segment a need-segment asked for, once per chain position. */
  #allocate(chainPosition: number, baseOffset: number): Promise<void> {
    if (this.#allocating?.chainPosition === chainPosition) return this.#allocating.done;
    const done = (async () => {
      const { pool } = this.deps;
      const nodeId = pool.chooseNode();
      const reply = await pool.request(nodeId, 'segmentAllocate', { topic: this.topic,
        partition: this.partition, chainPosition, baseOffset });
      if (reply.kind !== 'segment' || reply.chainPosition !== chainPosition ||
          reply.baseOffset !== baseOffset) {
        throw new PmqError('PMQ_ERR_PROTOCOL', `segmentAllocate answered ${reply.kind} for ` +
          'another chain place', { retriable: true });
      }
      pool.countSegment(nodeId, 1);
      if (this.#closed) return;
      const segmentId = segmentIdOf(nodeId, reply.segmentIndex);
      this.places.set(segmentId, { nodeId, segmentIndex: reply.segmentIndex,
        address: reply.address, sizeBytes: reply.sizeBytes, readGrants: new Map() });
      this.sequencer.segmentAdded({ segmentId, chainPosition, baseOffset,
        sizeBytes: reply.sizeBytes });
      this.log.info({ segmentId, chainPosition, baseOffset }, 'segment allocated');
    })();
    const allocating = { chainPosition, done };
    this.#allocating = allocating;
    done.finally(() => { if (this.#allocating === allocating) this.#allocating = null; })
      .catch(() => undefined);
    return done;
  }

  #issuePersist(request: PersistRequest): void {
    const place = this.#place(request.segmentId);
    this.deps.pool.request(place.nodeId, 'persist', { segmentIndex: place.segmentIndex,
      position: request.positionEnd, offsetLast: request.offsetLast, seal: request.seal })
      .then((reply) => {
        if (reply.kind !== 'persisted' || reply.position !== request.positionEnd ||
            reply.offsetLast !== request.offsetLast || reply.segmentIndex !== place.segmentIndex) {
          throw new PmqError('PMQ_ERR_PROTOCOL', `persist answered with ${reply.kind} for ` +
            'another watermark', { retriable: true });
        }
        if (!this.#closed) this.#onPersisted(this.sequencer.persisted(request));
      })
      .catch((error: unknown) => {
        if (this.#closed) return;
        this.log.warn({ ...request, err: String(error) }, 'persist failed, retrying');
        setTimeout(() => {
          if (this.#closed) return;
          const { persist } = this.sequencer.persistFailed(request);
          if (persist !== null) this.#issuePersist(persist);
        }, BROKER_LIMITS.persistRetryMs);
      });
  }

  #onPersisted(result: PersistedResult): void {
    for (const ack of result.acks) {
      this.producers.durable(ack);
      this.#reservedReplies.delete(ack.id);
      const list = this.#committers.get(ack.id) ?? [];
      this.#committers.delete(ack.id);
      for (const committer of list) committer.resolve(ack.baseOffset);
      // The storage node revoked the batch's write grant before persisting over it
      // (docs/wire-protocol.md, persist): nothing to send.
      const sequencerGrant = Number(ack.producer);
      this.#writeGrants.delete(this.#movedGrants.get(sequencerGrant) ?? sequencerGrant);
      this.#movedGrants.delete(sequencerGrant);
      this.#owners.delete(ack.id);
    }
    if (result.sealed !== null) this.log.debug({ segmentId: result.sealed }, 'segment sealed');
    if (result.persist !== null) this.#issuePersist(result.persist);
    if (result.acks.length > 0 || result.filled.length > 0) {
      for (const waiter of [...this.#fetchWaiters]) waiter.wake();
    }
  }

  async #fill(fill: Fill): Promise<void> {
    try {
      await this.revokeWriteGrant(Number(fill.revoke));
      await fillPartitionHole(this.deps, this.#place(fill.segmentId), fill);
    } catch (error) {
      if (this.#closed) return;
      this.log.warn({ ...fill.ref, err: String(error) }, 'hole fill failed, retrying');
      setTimeout(() => { void this.#fill(fill); }, BROKER_LIMITS.persistRetryMs);
      return;
    }
    if (this.#closed) return;
    this.#movedGrants.delete(Number(fill.revoke));
    this.log.info({ baseOffset: fill.baseOffset, records: fill.records }, 'hole filled');
    const { persist } = this.sequencer.fillWritten(fill.ref);
    if (persist !== null) this.#issuePersist(persist);
  }

  async #freeSegment(segmentId: SegmentId): Promise<void> {
    const place = this.#place(segmentId);
    try {
      // segmentFree revokes every grant of the segment (every session's read grant) first.
      place.readGrants.clear();
      await this.deps.pool.request(place.nodeId, 'segmentFree',
        { segmentIndex: place.segmentIndex });
      this.deps.pool.countSegment(place.nodeId, -1);
      this.places.delete(segmentId);
    } catch (error) {
      // Left allocated: the next recovery frees it (its topic is gone, or it is an orphan).
      this.log.warn({ segmentId, err: String(error) }, 'segment not freed');
    }
  }
}

/** Revokes a grant; a grant the storage node does not know (any more) counts as revoked. */
export async function revokeGrant(pool: StoragePool, nodeId: number, grantId: number):
  Promise<void> {
  try {
    await pool.request(nodeId, 'grantRevoke', { grantId });
  } catch (error) {
    if (error instanceof PmqError && error.code === 'PMQ_ERR_GRANT_UNKNOWN') return;
    throw error;
  }
}
