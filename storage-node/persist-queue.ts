/**
 * Serialises the broker's persist requests per segment and coalesces them (group commit).
 *
 * Lifecycle: one queue per storage node; a segment's lane exists while it has requests.
 * Concurrency: JS thread only. Per segment at most one region-store update is in flight
 * (data first, then the watermark: RegionStore.persistWatermark / sealSegment). Requests that
 * arrive meanwhile wait; when the update finishes, the waiting ones are taken together and
 * the one reaching furthest is persisted once, which makes every request it covers durable.
 * Different segments persist in parallel.
 *
 * Durability: a request resolves only when the segment's durable watermark covers it. The
 * answer echoes the request's own watermark (the broker matches replies to the request it has
 * in flight); the durable watermark may be further. A request already covered by the durable
 * watermark (a retry, or a request that lost the race to a later one) is answered at once.
 * Sealing first revokes the segment's write grants (waiting for accesses in flight), so no
 * write can land once the segment is sealed. A watermark persist first revokes the write
 * grants that end at or below it, raises the floor of those reaching past it (a lease's: no
 * write below the new watermark any more), then checks and patches the appended batches
 * (RegionStore.settleBatches): durable bytes never change, and they always parse.
 *
 * The transport's native path (native/persist_native.cc) serves the plain persists of the
 * segments no lane holds, in the same order, without JavaScript; everything else comes here.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import type { SegmentEntry, Watermark } from '../common/layout.js';
import { STORAGE_LIMITS } from '../common/limits.js';
import type { GrantRegistry } from './grant-registry.js';
import type { OffsetPatch, RegionStore } from './region-store.js';

export interface PersistRequest {
  readonly segmentIndex: number;
  readonly position: number;
  readonly offsetLast: number;
  readonly seal: boolean;
  readonly epoch: number;
  /** Batch baseOffsets to write into their headers before the bytes persist. */
  readonly patches?: readonly OffsetPatch[];
}

export interface PersistResult {
  readonly segmentIndex: number;
  readonly position: number;
  readonly offsetLast: number;
  readonly sealed: boolean;
}

interface Waiter {
  readonly request: PersistRequest;
  readonly resolve: (result: PersistResult) => void;
  readonly reject: (error: unknown) => void;
}

interface Lane {
  waiting: Waiter[];
  running: Promise<void>;
}

/** True when the segment's durable state already makes `request` durable. */
export function persistCovered(segment: Readonly<SegmentEntry>, request: PersistRequest):
  boolean {
  if (segment.state === 'free') return false;
  const durable = segment.watermark;
  if (request.seal && segment.state !== 'sealed') return false;
  if (request.seal) {
    return request.position === durable.position && request.offsetLast === durable.offsetLast;
  }
  if (request.position === durable.position) return request.offsetLast === durable.offsetLast;
  if (request.position > durable.position || request.offsetLast >= durable.offsetLast) {
    return false;
  }
  return request.position === 0 ? request.offsetLast === segment.baseOffset - 1 :
    request.offsetLast >= segment.baseOffset;
}

function resultOf(request: PersistRequest): PersistResult {
  return { segmentIndex: request.segmentIndex, position: request.position,
    offsetLast: request.offsetLast, sealed: request.seal };
}

/** The waiter whose request reaches furthest (a seal wins a tie: it is the final word). */
function furthest(waiting: readonly Waiter[]): Waiter {
  invariant(waiting.length > 0, 'a round has requests');
  let best = waiting[0] as Waiter;
  for (const waiter of waiting) {
    const a = waiter.request;
    const b = best.request;
    if (a.position > b.position || (a.position === b.position && a.seal && !b.seal)) {
      best = waiter;
    }
  }
  return best;
}

export class PersistQueue {
  readonly #store: RegionStore;
  readonly #grants: GrantRegistry;
  readonly #lanes = new Map<number, Lane>();

  readonly #onReplaced: (segmentIndex: number, positions: readonly number[]) => void;

  /** onReplaced: batches that were not what their producer appended (replaced, see below). */
  constructor(store: RegionStore, grants: GrantRegistry,
    onReplaced: (segmentIndex: number, positions: readonly number[]) => void = () => undefined) {
    this.#store = store;
    this.#grants = grants;
    this.#onReplaced = onReplaced;
  }

  /** True while `segmentIndex` has a persist in flight or waiting. */
  busy(segmentIndex: number): boolean {
    return this.#lanes.has(segmentIndex);
  }

  /** Resolves once the durable watermark covers the request; rejects with a PmqError. */
  persist(request: PersistRequest): Promise<PersistResult> {
    const segment = this.#store.entry(request.segmentIndex); // PMQ_ERR_SEGMENT_UNKNOWN
    if (persistCovered(segment, request)) return Promise.resolve(resultOf(request));
    let lane = this.#lanes.get(request.segmentIndex);
    if (lane !== undefined && lane.waiting.length >= STORAGE_LIMITS.persistWaitersMax) {
      throw new PmqError('PMQ_ERR_BUSY', `segment ${request.segmentIndex} has ` +
        `${lane.waiting.length} persists waiting`, { retriable: true });
    }
    return new Promise<PersistResult>((resolve, reject) => {
      if (lane === undefined) {
        lane = { waiting: [], running: Promise.resolve() };
        this.#lanes.set(request.segmentIndex, lane);
        // While a lane exists, the native path keeps off the segment: its persists would
        // overtake the ones waiting here.
        this.#store.holdSegment(request.segmentIndex);
        lane.waiting.push({ request, resolve, reject });
        lane.running = this.#drain(request.segmentIndex, lane);
      } else {
        lane.waiting.push({ request, resolve, reject });
      }
    });
  }

  /** Resolves when no persist is in flight or waiting (for a clean stop). */
  async idle(): Promise<void> {
    while (this.#lanes.size > 0) {
      await Promise.all([...this.#lanes.values()].map((lane) => lane.running));
    }
  }

  async #drain(segmentIndex: number, lane: Lane): Promise<void> {
    // Let requests that arrive in the same turn join the first round.
    await Promise.resolve();
    try {
      while (lane.waiting.length > 0) {
        const round = lane.waiting.splice(0);
        const target = furthest(round);
        let failure: unknown = null;
        try {
          await this.#persistOne(target.request);
        } catch (error) {
          failure = error;
        }
        const segment = this.#store.entry(segmentIndex);
        const retry: Waiter[] = [];
        for (const waiter of round) {
          if (persistCovered(segment, waiter.request)) waiter.resolve(resultOf(waiter.request));
          else if (waiter === target) waiter.reject(failure ?? uncovered(waiter.request));
          else retry.push(waiter); // tried on its own next round
        }
        lane.waiting.unshift(...retry);
      }
    } finally {
      if (lane.waiting.length !== 0) {
        invariant(false, 'a lane ends empty', { segmentIndex });
      }
      this.#lanes.delete(segmentIndex);
      this.#store.releaseSegment(segmentIndex);
    }
  }

  /**
   * Before a persist up to `position`: no write grant may write below it any more, then the
   * appended batches there are checked and patched (RegionStore.settleBatches).
   */
  #settle(segmentIndex: number, patches: readonly OffsetPatch[], end: Watermark): void {
    this.#grants.raiseWriteFloor(segmentIndex, this.#store.segmentAddress(segmentIndex) +
      end.position);
    const replaced = this.#store.settleBatches(segmentIndex, patches, end);
    if (replaced.length > 0) this.#onReplaced(segmentIndex, replaced);
  }

  async #persistOne(request: PersistRequest): Promise<void> {
    const { segmentIndex, position, offsetLast, epoch } = request;
    this.#store.checkAdvance('persist', segmentIndex, { position, offsetLast },
      request.seal ? 'sealed' : 'active');
    if (!request.seal) {
      await this.#grants.revokeWritesEndingBy(segmentIndex,
        this.#store.segmentAddress(segmentIndex) + position);
      this.#settle(segmentIndex, request.patches ?? [], { position, offsetLast });
      const durable = await this.#store.persistWatermark(segmentIndex, { position, offsetLast },
        epoch);
      this.#grants.raiseReadable(segmentIndex, durable.address + durable.watermark.position);
      return;
    }
    await this.#grants.revokeSegment(segmentIndex, 'write');
    this.#settle(segmentIndex, request.patches ?? [], { position, offsetLast });
    const sealed = await this.#store.sealSegment(segmentIndex, { position, offsetLast }, epoch);
    if (!(sealed.state === 'sealed' && sealed.watermark.position === position)) {
      invariant(false, 'a sealed segment ends at the requested watermark',
        { segmentIndex, position });
    }
    // Reads follow the durable watermark, and only after it is durable (persisted above).
    this.#grants.raiseReadable(segmentIndex, sealed.address + sealed.watermark.position);
  }
}

function uncovered(request: PersistRequest): PmqError {
  // The store accepted the request but the result does not cover it: our bug, not the peer's.
  invariant(false, 'a persisted request is covered by the durable watermark', { ...request });
}
