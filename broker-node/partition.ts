/**
 * One partition at the broker: its Sequencer (pure) plus everything the sequencer asks for,
 * carried out against the storage nodes: segment allocation and read grants, a write grant per
 * lease, the one persist in flight (with the batches' baseOffsets to patch), acknowledgements,
 * hole fills, long polls, and the durable head its subscribers are pushed (subscriptions.ts).
 *
 * Lifecycle: `Partition.create` for a new topic's partition, `Partition.restore` from the
 * storage nodes' segment tables at broker start; `close()` when the topic is deleted (frees its
 * segments). Concurrency: JS thread only; the sequencer is called synchronously and every
 * persist it returns is sent at once (it keeps at most one in flight per partition).
 * Durability: an append's `acked` is sent only after the storage node answered `persisted`
 * for a watermark covering its batch (the sequencer's acks); reads never go past the durable
 * watermark.
 */
import { BROKER_SESSION, randomGrantKey } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS, SEQUENCER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body, Message } from '../common/wire/messages.js';
import type { Endpoint, Transport } from '../native/transport.js';
import { DEFERRED, type Deferred, type ReplyCallback } from '../rpc/control-channel.js';
import { fillPartitionHole } from './partition-fill.js';
import { scanProducerBatches } from './producer-scan.js';
import { ProducerStates, type SequenceCheck } from './producer-state.js';
import { IntMap } from '../common/int-map.js';
import { checkLive, type Pooled, RecordPool } from './record-pool.js';
import {
  Sequencer, type Fill, type OffsetPatch, type PersistRequest, type PersistedResult,
  type RestoredSegment, type SegmentId, type SegmentView, type SequencerConfig,
} from './sequencer.js';
import type { SegmentEntryMessage, StoragePool } from './storage-pool.js';
import type { Head } from './subscriptions.js';
import type { PartitionMetrics, ProducedCells } from './metrics.js';

export interface PartitionDeps {
  readonly pool: StoragePool;
  readonly transport: Transport;
  readonly log: Logger;
  /** Broker-wide grant ids, unique across broker restarts (broker.ts). */
  readonly grantId: () => number;
  /** Monotonic milliseconds. */
  readonly now: () => number;
  readonly reservationTimeoutMs: number;
  /** False once the broker stops or is fenced: a partition's own timers do nothing then. */
  readonly ticking: () => boolean;
  /** The durable head moved (acks, fills, a seal): subscribers are pushed it (subscriptions.ts). */
  readonly onAdvance?: (partition: Partition) => void;
  /** Where appendDeferred's answers go (the control channel, behind the fence). */
  readonly answers?: AppendAnswers;
  /** A segment of the partition sealed durably: retention may free one now (retention.ts). */
  readonly onSealed?: (partition: Partition) => void;
  /** Produce counts, append and persist latency (broker-node/metrics.ts); none in tests. */
  readonly metrics?: PartitionMetrics;
}

/** Answers to appends taken by appendDeferred, each exactly once. */
export interface AppendAnswers {
  /** `reply` is a record reused for the next ack: encode it before returning. */
  acked(ep: Endpoint, requestId: number, reply: AppendReply): void;
  failed(ep: Endpoint, requestId: number, error: PmqError): void;
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
  readonly readGrants: Map<number, ReadGrant>;
}

/**
 * A session's read grant being created; `created` is set once it is (so a fetch can use it
 * without awaiting: issue 11). Forgetting the grant forgets both, as one map entry.
 */
export type ReadGrant = Promise<GrantHandle> & { created?: GrantHandle };

interface WriteGrant { readonly nodeId: number; readonly created: Promise<boolean> }
/** Which client session holds a lease (only it may append to it) and its write grant. */
interface LeaseOwner {
  readonly sessionId: number;
  readonly grantId: number;
}
/**
 * An append (or a duplicate retry of it) waiting for its batch to become durable: pooled, one
 * per batch in flight in steady state (issue 11: it was a closure, a committer object and an
 * array per append). Appends waiting for the same batch are chained through `next`.
 */
interface AckWaiter extends Pooled {
  /** The batch's ref id (the sequencer's epoch is the partition's). */
  refId: number;
  /** Answer `duplicate` (a retry of an idempotent batch) instead of `acked`. */
  duplicate: boolean;
  /** The lease the append named, for acked.leaseEnd. */
  leaseEpoch: number;
  leaseId: number;
  resolve: ((reply: AppendReply) => void) | null;
  reject: ((error: Error) => void) | null;
  /** A deferred answer's endpoint and request id (requestId 0: the promise's resolvers). */
  ep: Endpoint;
  requestId: number;
  next: AckWaiter | null;
  /** The pool generation when queued: checked when settled (reuse is never observed). */
  queuedAt: number;
  /** performance.now() when the append arrived: its latency is measured when answered. */
  receivedMs: number;
}

/** Appends in flight whose waiters the pool keeps for reuse (more are made and dropped). */
const ACK_WAITERS_KEPT = SEQUENCER_LIMITS.reservationsMax;

const makeWaiter = (): AckWaiter => ({ generation: 0, live: false, refId: -1, duplicate: false,
  leaseEpoch: -1, leaseId: -1, resolve: null, reject: null, ep: 0 as Endpoint, requestId: 0,
  next: null, queuedAt: -1, receivedMs: 0 });
const resetWaiter = (waiter: AckWaiter): void => {
  waiter.refId = -1;
  waiter.resolve = null;
  waiter.reject = null;
  waiter.requestId = 0;
  waiter.next = null;
};

/**
 * The Promise executor for acks: one function for every promise (a closure per append would
 * be garbage), handing the resolvers over through these two variables, read at once.
 */
let capturedResolve: ((reply: AppendReply) => void) | null = null;
let capturedReject: ((error: Error) => void) | null = null;
function captureResolvers(resolve: (reply: AppendReply) => void,
  reject: (error: Error) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}
/** A parked fetchView long poll: woken by new data, or by the sweep once past its deadline. */
interface FetchWaiter { readonly wake: () => void; readonly deadline: number }

/**
 * How often parked long polls are checked for their deadline: one interval timer per partition
 * while any poll is parked, not a timer per poll (issue 11), so an idle poll returns up to
 * this much after its waitMs. Only a sweep that finds none parked stops it (stopped by each
 * wake, it would start again for the next poll: a timer per poll once more).
 */
export const FETCH_SWEEP_MS = 25;

/** A lease request as the broker received it (wire message `lease`). */
export interface LeaseInput {
  readonly bytes: number;
  readonly bytesMin: number;
  readonly releaseEpoch: number;
  /** -1: release nothing. */
  readonly releaseId: number;
}

/**
 * An append as the broker received it (wire message `append`). A fixed-layout one is the
 * decoder's reused object: append() reads it before its first await.
 */
export interface AppendInput {
  readonly epoch: number;
  readonly leaseId: number;
  readonly position: number;
  readonly bytes: number;
  readonly records: number;
  /** -1: not idempotent (sequence ignored). */
  readonly producerId: number;
  readonly sequence: number;
}

export type AppendReply =
  | { kind: 'acked'; body: Body<'acked'> }
  | { kind: 'duplicate'; body: Body<'duplicate'> };

/** How often a lease waiting for a full segment's leases and holes looks again, how often. */
/** What the reused persist body names between persists (the sequencer's patches are its). */
const NO_PATCHES: OffsetPatch[] = [];
const SEGMENT_WRITTEN_POLL_MS = 5;
const SEGMENT_WRITTEN_POLLS_MAX = 2000;

export const segmentIdOf = (nodeId: number, segmentIndex: number): SegmentId =>
  `${nodeId}/${segmentIndex}`;

export class Partition {
  readonly places = new Map<SegmentId, SegmentPlace>();
  readonly log: Logger;
  #sequencer: Sequencer | null;
  readonly #broken: PmqError | null;
  #allocating: { chainPosition: number; done: Promise<void> } | null = null;
  readonly #writeGrants = new Map<number, WriteGrant>();
  /** Appends waiting for their batch's ack, by the batch's ref id (chains: see AckWaiter). */
  readonly #waiters = new IntMap<AckWaiter>();
  readonly #waiterPool = new RecordPool(makeWaiter, resetWaiter, ACK_WAITERS_KEPT);
  /**
   * The sequencer's append request, refilled per append: Sequencer.append reads it and keeps
   * neither it nor its lease (the piece gets a ref of its own).
   */
  readonly #appendRequest = { lease: { epoch: 0, id: 0 }, position: 0, bytes: 0, records: 0,
    now: 0 };
  /** The persist in flight and its segment's place (#issuePersist). */
  #persisting: PersistRequest | null = null;
  #persistingPlace: SegmentPlace | null = null;
  /** deps.now() when the persist in flight was sent, and when the last reply came (metrics). */
  #persistSentMs = 0;
  #persistReplyMs = 0;
  /** This partition's produce counters, bound once (metrics.ts: no labels per batch). */
  readonly #produced: ProducedCells | null;
  /** A lease ref for synchronous questions to the sequencer (leaseEnding), refilled per use. */
  readonly #leaseRef = { epoch: 0, id: 0 };
  /** Parked long polls, in arrival order. */
  readonly #fetchWaiters: FetchWaiter[] = [];
  #fetchSweeper: NodeJS.Timeout | null = null;
  /** Idempotent producers' sequences (docs/broker.md, "Producer state"). */
  readonly producers = new ProducerStates();
  /** Open leases' holders, by lease id (closed ones are dropped by tick). */
  readonly #leaseOwners = new Map<number, LeaseOwner>();
  /** Wakes tick() when a lease holding others back may be cut (one per partition). */
  #blockingCutTimer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  /** The segment retention is freeing (retireOldest): no read grant is created for it. */
  #retiring: SegmentId | null = null;

  private constructor(readonly deps: PartitionDeps, readonly topic: string,
    readonly partition: number, sequencer: Sequencer | null, broken: PmqError | null) {
    this.#sequencer = sequencer;
    this.#broken = broken;
    this.log = deps.log.child({ topic, partition });
    this.#produced = deps.metrics?.produced(topic) ?? null;
  }

  static config(deps: PartitionDeps): SequencerConfig {
    // A cut comes well before the expiry it stands in for (tests run with short timeouts).
    const leaseBlockingIdleMs = Math.min(SEQUENCER_LIMITS.leaseBlockingIdleMsDefault,
      Math.floor(deps.reservationTimeoutMs / 2));
    return { epoch: deps.pool.epoch, segmentSizeBytes: deps.pool.segmentSizeBytesMax(),
      reservationTimeoutMs: deps.reservationTimeoutMs, leaseBlockingIdleMs };
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
   * A write range for `sessionId` under one write grant (created now: the only storage round
   * trip of a lease). `releaseId`: the session's previous lease, closed first (release: its
   * unwritten rest goes back or is filled). When the active segment is full, waits until its
   * leases have ended and its holes are filled, allocates the next segment and leases there.
   */
  async lease(input: LeaseInput, sessionId: number): Promise<Omit<Body<'leased'>, 'topicId'>> {
    // Read before the first await: a fixed-layout request's input is reused (control-channel).
    const { bytes, bytesMin } = input;
    if (input.releaseId >= 0) {
      await this.release({ epoch: input.releaseEpoch, id: input.releaseId }, sessionId);
    }
    for (let polls = 0; ; polls += 1) {
      const grantId = this.deps.grantId();
      const result = this.sequencer.lease({ bytes, bytesMin,
        producer: String(grantId), holder: String(sessionId), now: this.deps.now() });
      if (result.kind === 'need-segment') {
        if (result.persist !== null) this.#issuePersist(result.persist);
        await this.#allocate(result.chainPosition, result.baseOffset, result.sizeBytesMin);
        continue;
      }
      if (result.kind === 'wait') {
        if (result.persist !== null) this.#issuePersist(result.persist);
        this.#armBlockingCut();
        if (polls >= SEGMENT_WRITTEN_POLLS_MAX) {
          throw new PmqError('PMQ_ERR_BUSY', `${this.topic}/${this.partition}: the full ` +
            'segment still has open leases or holes being filled (their producers end them ' +
            'on their next ack, idle ones expire): lease again', { retriable: true });
        }
        await new Promise((resolve) => setTimeout(resolve, SEGMENT_WRITTEN_POLL_MS));
        continue;
      }
      const { lease } = result;
      const place = this.#place(lease.segmentId);
      this.#leaseOwners.set(lease.id, { sessionId, grantId });
      const grantKey = randomGrantKey();
      const creating = this.deps.pool.request(place.nodeId, 'grantCreate', { grantId,
        session: sessionId, key: grantKey, segmentIndex: place.segmentIndex,
        position: lease.position, sizeBytes: lease.bytes, direction: 'write' });
      this.#writeGrants.set(grantId, { nodeId: place.nodeId,
        created: creating.then(() => true, () => false) });
      try {
        await creating;
      } catch (error) {
        void this.release(lease, sessionId);
        throw error;
      }
      return { epoch: lease.epoch, leaseId: lease.id, nodeId: place.nodeId, grantId, grantKey,
        grantEpoch: this.deps.pool.epoch, address: place.address + lease.position,
        position: lease.position, sizeBytes: lease.bytes };
    }
  }

  /**
   * Resolves with the batch's base offset once it is durable. Only the session holding the
   * lease may append to it (PMQ_ERR_DENIED). An idempotent producer's batch already appended
   * (from an earlier attempt, maybe in another lease) is not stored twice: this copy's lease is
   * closed (its bytes become a filled hole) and the answer is the original's offset.
   */
  append(input: AppendInput, sessionId: number): AppendReply | Promise<AppendReply> {
    return this.#append(input, sessionId, 0 as Endpoint, 0) as AppendReply | Promise<AppendReply>;
  }

  /**
   * append() for the fixed-layout handler: an ack that must wait is answered later through
   * deps.answers to (`ep`, `requestId`) and this returns DEFERRED (no promise per append).
   */
  appendDeferred(input: AppendInput, sessionId: number, ep: Endpoint, requestId: number):
    AppendReply | Deferred {
    if (!(requestId > 0 && this.deps.answers !== undefined)) {
      invariant(false, 'a deferred append names its request and has somewhere to answer',
        { requestId });
    }
    return this.#append(input, sessionId, ep, requestId) as AppendReply | Deferred;
  }

  /** requestId 0: a waiting ack is a promise; else a deferred answer (appendDeferred). */
  #append(input: AppendInput, sessionId: number, ep: Endpoint, requestId: number):
    AppendReply | Promise<AppendReply> | Deferred {
    const owner = this.#leaseOwners.get(input.leaseId);
    if (owner !== undefined && input.epoch === this.sequencer.epoch &&
        owner.sessionId !== sessionId) {
      throw new PmqError('PMQ_ERR_DENIED', `lease ${input.leaseId} of ${this.topic}/` +
        `${this.partition} belongs to another session: append from the connection that leased ` +
        'it (a producer that reconnected leases again)');
    }
    const request = this.#appendRequest;
    request.now = this.deps.now();  // first: a duplicate's wait is timed from it too (metrics)
    const check = this.producers.check(input.producerId, input.sequence, input.records);
    if (check.kind !== 'new') {
      return this.#appendDuplicate(input, sessionId, check, ep, requestId);
    }
    request.lease.epoch = input.epoch;
    request.lease.id = input.leaseId;
    request.position = input.position;
    request.bytes = input.bytes;
    request.records = input.records;
    const result = this.sequencer.append(request);
    switch (result.kind) {
      case 'refused':
        throw result.error;
      case 'again':
        if (result.ack !== null) {
          return { kind: 'acked', body: { baseOffset: result.ack.baseOffset,
            leaseEnd: this.#leaseEnding(input.epoch, input.leaseId) } };
        }
        return this.#waitAck(result.ref, false, input, ep, requestId);
      case 'appended': {
        this.producers.appended(input.producerId, input.sequence, input.records, result.ref);
        if (this.#produced !== null) {
          this.#produced.records.value += input.records;
          this.#produced.bytes.value += input.bytes;
        }
        if (result.persist !== null) this.#issuePersist(result.persist);
        this.#armBlockingCut();
        return this.#waitAck(result.ref, false, input, ep, requestId);
      }
      default:
        return result satisfies never;
    }
  }

  /**
   * An idempotent producer's batch appended before: an exact repeat of an append already taken
   * keeps its lease; a copy elsewhere is not stored (its lease is closed, its bytes filled).
   */
  #appendDuplicate(input: AppendInput, sessionId: number,
    check: Exclude<SequenceCheck, { kind: 'new' }>, ep: Endpoint, requestId: number):
    AppendReply | Promise<AppendReply> | Deferred {
    const lease = { epoch: input.epoch, id: input.leaseId };
    const here = this.sequencer.appendedAt(lease, input.position);
    if (check.kind === 'duplicate') {
      if (here === null) void this.release(lease, sessionId);
      return { kind: 'duplicate', body: { baseOffset: check.baseOffset } };
    }
    if (here === null || here.id !== check.ref.id) void this.release(lease, sessionId);
    return this.#waitAck(check.ref, true, input, ep, requestId);
  }

  /**
   * Closes a lease of `sessionId` (unknown, closed, of another epoch or another session's:
   * nothing). Its grant is revoked first (waiting for its writes in flight), so an unwritten
   * rest at the segment's end goes back to the segment instead of being filled; its other
   * gaps are filled.
   */
  async release(ref: { epoch: number; id: number }, sessionId: number): Promise<void> {
    const owner = this.#leaseOwners.get(ref.id);
    if (owner === undefined || owner.sessionId !== sessionId ||
        ref.epoch !== this.sequencer.epoch) return;
    this.#leaseOwners.delete(ref.id);
    if (this.sequencer.leaseUsedUp(ref)) {
      // Nothing to fill or give back: the next lease (released with it) need not wait for the
      // revocation's storage round trip.
      const { persist } = this.sequencer.release(ref, this.deps.now());
      if (persist !== null) this.#issuePersist(persist);
      this.#revokeClosed(owner.grantId);
      return;
    }
    let revoked = true;
    await this.revokeWriteGrant(owner.grantId).catch((error: unknown) => {
      // A node away, restarted or at a newer epoch: its gaps are filled (after revoking again).
      revoked = false;
      this.log.debug({ grantId: owner.grantId, err: String(error) }, 'write grant not revoked');
    });
    if (this.#closed) return;
    const { fills, persist } = this.sequencer.release(ref, this.deps.now(), { revoked });
    if (persist !== null) this.#issuePersist(persist);
    for (const fill of fills) void this.#fill(fill);
  }

  /** Expires idle leases and fills their holes (called by the broker's timer). */
  tick(): void {
    if (this.#sequencer === null || this.#closed) return;
    const { fills } = this.#sequencer.expire(this.deps.now());
    for (const fill of fills) void this.#fill(fill); // each revokes its lease's grant first
    for (const [id, owner] of [...this.#leaseOwners]) {
      if (this.#sequencer.leaseProducer({ epoch: this.#sequencer.epoch, id }) !== null) continue;
      // Closed (expired, or by a seal): its grant goes even when no gap needed a fill.
      this.#leaseOwners.delete(id);
      this.#revokeClosed(owner.grantId);
    }
  }

  /**
   * Arms the partition's one timer for the moment a lease that holds back a written batch (or
   * a full segment's seal) may be cut, unless armed already or nothing is held back. Checked
   * after appends and lease waits, so a partition without contention never arms it.
   */
  #armBlockingCut(): void {
    if (this.#blockingCutTimer !== null || this.#sequencer === null || this.#closed) return;
    const due = this.#sequencer.blockingCutDueAt();
    if (due === null) return;
    // +1: the timer may fire a little early against performance.now()'s finer clock.
    const delayMs = Math.max(0, due - this.deps.now()) + 1;
    this.#blockingCutTimer = setTimeout(() => {
      this.#blockingCutTimer = null;
      if (!this.deps.ticking()) return;
      this.tick();
      this.#armBlockingCut(); // still held back by a lease that was busy meanwhile
    }, delayMs);
    this.#blockingCutTimer.unref?.();
  }

  /** A lease closed with no gap to fill: its grant goes anyway (best effort). */
  #revokeClosed(grantId: number): void {
    this.revokeWriteGrant(grantId).catch((error: unknown) => {
      // A node away, restarted or at a newer epoch (this broker fenced) revoked it itself.
      this.log.debug({ grantId, err: String(error) }, 'write grant not revoked');
    });
  }

  /** The lease is closed or its segment full: its producer should end it (acked.leaseEnd). */
  #leaseEnding(epoch: number, id: number): boolean {
    if (this.#closed || this.#sequencer === null) return true;
    this.#leaseRef.epoch = epoch;
    this.#leaseRef.id = id;
    return this.#sequencer.leaseEnding(this.#leaseRef);
  }

  /**
   * The reply to an append of batch `ref` once it is durable: at once when it is already, a
   * pooled waiter settled by #onPersisted when it is in flight, PMQ_ERR_LEASE_EXPIRED when the
   * sequencer no longer knows it.
   */
  #waitAck(ref: { epoch: number; id: number }, duplicate: boolean, input: AppendInput,
    ep: Endpoint, requestId: number): AppendReply | Promise<AppendReply> | Deferred {
    const leaseEpoch = input.epoch;
    const leaseId = input.leaseId;
    const sequencer = this.sequencer;
    // In flight first: the steady-state case, and it does not scan the remembered acks.
    if (sequencer.batchState(ref) !== 'written') {
      const ack = sequencer.ackOf(ref);
      if (ack === null) {
        throw new PmqError('PMQ_ERR_LEASE_EXPIRED', `batch ${ref.id} of ` +
          `${this.topic}/${this.partition} is no longer known (an earlier broker's, or long ` +
          'acknowledged): send it again', { retriable: true });
      }
      return this.#ackReply(duplicate, ack.baseOffset, leaseEpoch, leaseId);
    }
    const waiter = this.#waiterPool.acquire();
    let promise: Promise<AppendReply> | null = null;
    if (requestId === 0) {
      promise = new Promise<AppendReply>(captureResolvers);
      waiter.resolve = capturedResolve;
      waiter.reject = capturedReject;
      capturedResolve = null;
      capturedReject = null;
    } else {
      waiter.ep = ep;
      waiter.requestId = requestId;
      waiter.receivedMs = this.#appendRequest.now;  // #append's clock read: no second one
    }
    waiter.refId = ref.id;
    waiter.duplicate = duplicate;
    waiter.leaseEpoch = leaseEpoch;
    waiter.leaseId = leaseId;
    waiter.queuedAt = waiter.generation;
    waiter.next = this.#waiters.get(ref.id) ?? null;
    this.#waiters.set(ref.id, waiter);
    return promise ?? DEFERRED;
  }

  /**
   * A deferred ack's reply, in one of two records reused for every deferred ack (answers.acked
   * encodes it before it returns).
   */
  #ackScratch(duplicate: boolean, baseOffset: number, leaseEpoch: number, leaseId: number):
    AppendReply {
    if (duplicate) {
      this.#duplicateScratch.body.baseOffset = baseOffset;
      return this.#duplicateScratch;
    }
    const { body } = this.#ackedScratch;
    body.baseOffset = baseOffset;
    body.leaseEnd = this.#leaseEnding(leaseEpoch, leaseId);
    return this.#ackedScratch;
  }

  readonly #ackedScratch = { kind: 'acked' as const, body: { baseOffset: 0, leaseEnd: false } };
  readonly #duplicateScratch = { kind: 'duplicate' as const, body: { baseOffset: 0 } };

  #ackReply(duplicate: boolean, baseOffset: number, leaseEpoch: number, leaseId: number):
    AppendReply {
    return duplicate ? { kind: 'duplicate', body: { baseOffset } }
      : { kind: 'acked', body: { baseOffset, leaseEnd: this.#leaseEnding(leaseEpoch, leaseId) } };
  }

  /**
   * Settles and releases the chain of waiters for batch `refId`: with its reply, or `error`.
   * Each is checked live at the generation it was queued with before it is read.
   */
  #settleWaiters(refId: number, baseOffset: number, error: Error | null): void {
    let waiter = this.#waiters.get(refId) ?? null;
    if (waiter === null) return;
    this.#waiters.delete(refId);
    while (waiter !== null) {
      checkLive(waiter, waiter.queuedAt, 'ack waiter');
      if (waiter.refId !== refId) {
        invariant(false, 'an ack waiter waits for the batch it is filed under',
          { refId, waiting: waiter.refId });
      }
      const next: AckWaiter | null = waiter.next;
      const { resolve, reject, ep, requestId, receivedMs } = waiter;
      const reply = error !== null ? null : requestId !== 0
        ? this.#ackScratch(waiter.duplicate, baseOffset, waiter.leaseEpoch, waiter.leaseId)
        : this.#ackReply(waiter.duplicate, baseOffset, waiter.leaseEpoch, waiter.leaseId);
      this.#waiterPool.release(waiter);
      if (requestId !== 0) {
        if (reply !== null) this.deps.answers!.acked(ep, requestId, reply);
        else this.deps.answers!.failed(ep, requestId, asPmqError(error!));
        // Acks come from a persist reply: its clock read times them all (one per persist).
        this.deps.metrics?.appendAnswered(receivedMs, error === null ? this.#persistReplyMs
          : this.deps.now());
      } else if (reply !== null) {
        resolve!(reply);
      } else {
        reject!(error!);
      }
      waiter = next;
    }
  }

  /** The broker was fenced: every append waiting for its ack is answered `error` at once. */
  failWaiters(error: PmqError): void {
    for (const refId of this.#waiters.keys()) this.#settleWaiters(refId, -1, error);
  }

  /**
   * Null when a fetch at `offset` may go on at once (data past it, no wait asked, or too many
   * parked); else a promise that resolves when data arrives or waitMs has passed.
   */
  waitForData(offset: number, waitMs: number): Promise<void> | null {
    if (waitMs <= 0 || this.sequencer.highWatermark() > offset) return null;
    if (this.#fetchWaiters.length >= BROKER_LIMITS.fetchWaitersMax) return null;
    const deadline = performance.now() + Math.min(waitMs, BROKER_LIMITS.fetchWaitMsMax);
    return new Promise<void>((resolve) => {
      this.#fetchWaiters.push({ wake: resolve, deadline });
      this.#fetchSweeper ??= setInterval(() => this.#sweepFetches(), FETCH_SWEEP_MS);
    });
  }

  /** Wakes every parked long poll (resolving runs nothing now: their fetches go on later). */
  #wakeFetches(): void {
    const waiters = this.#fetchWaiters;
    for (let i = 0; i < waiters.length; i += 1) waiters[i]!.wake();
    waiters.length = 0;
  }

  /** Wakes the long polls whose deadline has passed; keeps the others in order. */
  #sweepFetches(): void {
    const now = performance.now();
    const waiters = this.#fetchWaiters;
    let kept = 0;
    for (let i = 0; i < waiters.length; i += 1) {
      const waiter = waiters[i]!;
      if (waiter.deadline <= now) waiter.wake();
      else waiters[kept++] = waiter;
    }
    waiters.length = kept;
    if (kept === 0) this.#stopFetchSweeper();
  }

  /** Stops the sweep timer (when nothing is parked, and on close). */
  #stopFetchSweeper(): void {
    if (this.#fetchSweeper === null) return;
    clearInterval(this.#fetchSweeper);
    this.#fetchSweeper = null;
  }

  /**
   * The durable head (the segment holding the high watermark, its durable watermark) that
   * subscribers are pushed, into `into`; false while there is nothing to read (no segment,
   * closed, broken). Allocates nothing: asked after every persist.
   */
  headInto(into: Head): boolean {
    if (this.#closed || this.#broken !== null || this.#sequencer === null) return false;
    return this.#sequencer.durableHeadInto(into);
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
  readGrant(place: SegmentPlace, session: number): ReadGrant {
    const known = place.readGrants.get(session);
    if (known !== undefined) return known;
    if (this.#retiring !== null && this.places.get(this.#retiring) === place) {
      // A grant made now could outlive the free's revocation: the client asks again, and
      // once the segment is gone its offset is below the log start.
      const refused: ReadGrant = Promise.reject(new PmqError('PMQ_ERR_SEGMENT_BUSY',
        `${this.topic}/${this.partition}: the segment is being deleted by retention: fetch ` +
        'again', { retriable: true }));
      refused.catch(() => undefined);
      return refused;
    }
    const handle = { id: this.deps.grantId(), key: randomGrantKey() };
    const creating: ReadGrant = this.deps.pool.request(place.nodeId, 'grantCreate', {
      grantId: handle.id, session, key: handle.key, segmentIndex: place.segmentIndex,
      position: 0, sizeBytes: place.sizeBytes, direction: 'read' }).then(() => {
      creating.created = handle;
      return handle;
    });
    place.readGrants.set(session, creating);
    creating.catch(() => {
      if (place.readGrants.get(session) === creating) place.readGrants.delete(session);
    });
    return creating;
  }

  /**
   * A client session ended: its leases are closed (their gaps filled; its appended batches
   * still become durable), its read grants revoked (best effort) and forgotten.
   */
  endSession(session: number): void {
    if (this.#sequencer !== null && !this.#closed) {
      for (const [id, owner] of [...this.#leaseOwners]) {
        if (owner.sessionId === session) {
          void this.release({ epoch: this.#sequencer.epoch, id }, session);
        }
      }
    }
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

  /** Revokes a lease's write grant (idempotent); waits for its creation first. */
  async revokeWriteGrant(grantId: number): Promise<void> {
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
    if (this.#blockingCutTimer !== null) clearTimeout(this.#blockingCutTimer);
    for (const refId of [...this.#waiters.keys()]) this.#settleWaiters(refId, -1, this.#gone());
    this.#wakeFetches();
    this.#stopFetchSweeper();
    for (const grantId of [...this.#writeGrants.keys()]) {
      await this.revokeWriteGrant(grantId).catch(() => undefined);
    }
    for (const segmentId of [...this.places.keys()]) {
      // Retention's free of it is in flight: a second free could land after the segment went
      // to a new owner, and free that owner's segment.
      if (segmentId !== this.#retiring && this.places.has(segmentId)) {
        await this.#freeSegment(segmentId);
      }
    }
  }

  /**
   * Retention (retention.ts): frees the oldest segment if it is still the one the sequencer
   * may retire. Every grant of it is revoked by the storage node before the free (in-flight
   * read-grant creations are awaited first, and none is made meanwhile), so no consumer reads
   * it, nor its next owner's bytes, through an old grant; the node zeroes it before reuse. The
   * log start moves only once the free is durable, so a restart never shows it further back.
   * Throws when the storage node refuses or is away (the next pass tries again).
   */
  async retireOldest(segmentId: SegmentId): Promise<boolean> {
    if (this.#closed || this.#broken !== null || this.#retiring !== null ||
        this.sequencer.oldestRetirable()?.segmentId !== segmentId) {
      return false;
    }
    const place = this.#place(segmentId);
    this.#retiring = segmentId;
    try {
      await Promise.allSettled([...place.readGrants.values()]);
      place.readGrants.clear();
      await this.deps.pool.request(place.nodeId, 'segmentFree',
        { segmentIndex: place.segmentIndex });
    } finally {
      this.#retiring = null;
    }
    this.deps.pool.countSegment(place.nodeId, -1, place.sizeBytes);
    this.places.delete(segmentId);
    if (this.#closed) return false; // topic deleted meanwhile: its close left this one to us
    this.sequencer.dropOldest(segmentId);
    this.log.info({ segmentId, logStart: this.sequencer.logStartOffset() },
      'segment deleted by retention');
    return true;
  }

  /**
   * Region bytes the partition holds (what retention.bytes limits): a sealed segment counts
   * whole (its unused tail is of no use to anyone until it is freed), the others up to their
   * durable watermark.
   */
  bytes(): number {
    if (this.#broken !== null || this.#closed || this.#sequencer === null) return 0;
    let total = 0;
    for (const segment of this.#sequencer.segments()) {
      total += segment.state === 'sealed' ? segment.sizeBytes : segment.durable.position;
    }
    return total;
  }

  /** Reads a segment's bytes through the broker's own read grant (headers only: scans). */
  readonly headerReader = {
    read: async (segment: SegmentView, position: number, dst: Uint8Array,
      length: number): Promise<void> => {
      const { transport, pool } = this.deps;
      const place = this.places.get(segment.segmentId);
      if (place === undefined) { // freed meanwhile (topic deleted)
        throw new PmqError('PMQ_ERR_SEGMENT_UNKNOWN', `segment ${segment.segmentId} is gone`);
      }
      const grant = await this.readGrant(place, BROKER_SESSION);
      await transport.readValidated(pool.endpoint(place.nodeId), { id: grant.id,
        epoch: pool.epoch, key: grant.key }, place.address + position, dst, 0, length);
    },
  };

  /** Rebuilds the idempotent producers' state from the last durable batches' headers. */
  async #restoreProducers(): Promise<void> {
    try {
      const batches = await scanProducerBatches(this.headerReader, this.sequencer.segments(),
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
    if (place === undefined) {
      invariant(false, 'every sequenced segment has a place', { segmentId });
    }
    return place;
  }

  /**
   * Allocates the segment a need-segment asked for, once per chain position, on a node with
   * room for `sizeBytesMin`; a node that answers PMQ_ERR_REGION_FULL is passed over for the
   * others, and when none is left the producer hears PMQ_ERR_REGION_FULL at once (final).
   */
  #allocate(chainPosition: number, baseOffset: number, sizeBytesMin: number): Promise<void> {
    if (this.#allocating?.chainPosition === chainPosition) return this.#allocating.done;
    const done = (async () => {
      const { pool } = this.deps;
      const full = new Set<number>();
      let nodeId = pool.chooseNode(sizeBytesMin);
      let reply;
      for (;;) {
        try {
          reply = await pool.request(nodeId, 'segmentAllocate', { topic: this.topic,
            partition: this.partition, chainPosition, baseOffset, sizeBytesMin });
          break;
        } catch (error) {
          if (!(error instanceof PmqError && error.code === 'PMQ_ERR_REGION_FULL')) throw error;
          full.add(nodeId);
          const next = nextNode(pool, sizeBytesMin, full);
          if (next === null) throw error; // the node's own words: what is full and what to do
          nodeId = next;
        }
      }
      if (reply.kind !== 'segment' || reply.chainPosition !== chainPosition ||
          reply.baseOffset !== baseOffset) {
        throw new PmqError('PMQ_ERR_PROTOCOL', `segmentAllocate answered ${reply.kind} for ` +
          'another chain place', { retriable: true });
      }
      pool.countSegment(nodeId, 1, reply.sizeBytes);
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

  /**
   * Sends the persist the sequencer asked for. At most one is in flight per partition (the
   * sequencer asks for the next only once this one is answered or failed), so its request and
   * place live in fields and its two callbacks are made once: nothing per persist but the
   * message and the transport's promise (issue 11).
   */
  #issuePersist(request: PersistRequest): void {
    if (this.#persisting !== null) {
      invariant(false, 'one persist in flight per partition',
        { segmentId: request.segmentId, inFlight: this.#persisting.segmentId });
    }
    const place = this.#place(request.segmentId);
    this.#persisting = request;
    this.#persistingPlace = place;
    if (this.deps.metrics !== undefined) this.#persistSentMs = this.deps.now();
    // One body for every persist, read by the encoder before requestTo returns; it names the
    // sequencer's patches as they are (the encoder only reads them).
    const body = this.#persistBody;
    body.segmentIndex = place.segmentIndex;
    body.position = request.positionEnd;
    body.offsetLast = request.offsetLast;
    body.seal = request.seal;
    body.patches = request.patches as OffsetPatch[];
    this.deps.pool.requestTo(place.nodeId, 'persist', body, this.#persistCallback);
    body.patches = NO_PATCHES;
  }

  readonly #persistBody: Body<'persist'> = { epoch: 0, segmentIndex: 0, position: 0,
    offsetLast: -1, seal: false, patches: NO_PATCHES };

  readonly #onPersistReply = (reply: Message): void => {
    const request = this.#persisting;
    const place = this.#persistingPlace;
    if (request === null || place === null) {
      invariant(false, 'a persist reply answers the persist in flight');
    }
    if (reply.kind !== 'persisted' || reply.position !== request.positionEnd ||
        reply.offsetLast !== request.offsetLast || reply.segmentIndex !== place.segmentIndex) {
      this.#onPersistError(new PmqError('PMQ_ERR_PROTOCOL', `persist answered with ` +
        `${reply.kind} for another watermark`, { retriable: true }));
      return;
    }
    this.#persisting = null;
    this.#persistingPlace = null;
    if (this.deps.metrics !== undefined) {
      this.#persistReplyMs = this.deps.now();
      this.deps.metrics.persistLatency.observe((this.#persistReplyMs - this.#persistSentMs) /
        1000);
    }
    if (!this.#closed) this.#onPersisted(this.sequencer.persisted(request));
  };

  readonly #onPersistError = (error: unknown): void => {
    const request = this.#persisting;
    if (request === null) invariant(false, 'a persist failure is of the persist in flight');
    this.#persisting = null;
    this.#persistingPlace = null;
    if (this.#closed) return;
    this.log.warn({ ...request, err: String(error) }, 'persist failed, retrying');
    setTimeout(() => {
      if (this.#closed) return;
      const { persist } = this.sequencer.persistFailed(request);
      if (persist !== null) this.#issuePersist(persist);
    }, BROKER_LIMITS.persistRetryMs);
  };

  /** The persists' one callback (after the two functions it names: field order). */
  /** #onPersistReply compares the reply with the request and keeps nothing of it. */
  readonly #persistCallback: ReplyCallback = { onReply: this.#onPersistReply,
    onError: this.#onPersistError, readsReplyAtOnce: true };

  #onPersisted(result: PersistedResult): void {
    const { acks } = result;
    for (let index = 0; index < acks.length; index += 1) {
      const ack = acks[index]!;
      this.producers.durable(ack, ack.baseOffset);
      this.#settleWaiters(ack.id, ack.baseOffset, null);
    }
    if (result.sealed !== null) {
      this.log.debug({ segmentId: result.sealed }, 'segment sealed');
      this.deps.onSealed?.(this);
    }
    if (result.persist !== null) this.#issuePersist(result.persist);
    if (result.acks.length > 0 || result.filled.length > 0) {
      this.#wakeFetches();
    }
    // Every persist may move the head; subscriptions push only a head that differs.
    this.deps.onAdvance?.(this);
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
    this.log.debug({ position: fill.position, bytes: fill.bytes }, 'hole filled');
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
      this.deps.pool.countSegment(place.nodeId, -1, place.sizeBytes);
      this.places.delete(segmentId);
    } catch (error) {
      // Left allocated: the next recovery frees it (its topic is gone, or it is an orphan).
      this.log.warn({ segmentId, err: String(error) }, 'segment not freed');
    }
  }
}

function asPmqError(error: Error): PmqError {
  if (error instanceof PmqError) return error;
  invariant(false, 'appends fail with PmqErrors only', { error: String(error) });
}

/** Another node with room after `full` answered PMQ_ERR_REGION_FULL, or null. */
function nextNode(pool: PartitionDeps['pool'], sizeBytes: number,
  full: ReadonlySet<number>): number | null {
  try {
    return pool.chooseNode(sizeBytes, full);
  } catch {
    return null;
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
