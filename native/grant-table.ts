/**
 * The storage side's grant table, as TS sees it: a view of native/grant_table.cc, the one
 * record of every grant (issue 11: no mirror in TS, none in the storage node). The validated
 * data path checks each access against it natively; the native persist path revokes, floors and
 * raises grants in it by segment; this class is how the transport and the storage node's grant
 * registry (storage-node/grant-registry.ts) create, revoke, raise and look grants up.
 *
 * Revocation: new accesses are refused at once; a revocation completes when none of the
 * grant's accesses is in flight (the native side reports it with a revokeDone event, which
 * settles every promise waiting for that grant: revoking twice joins the first).
 * Concurrency: the JS thread only (as the native table).
 */
import { ArgumentError, PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { GRANT_RESULT, type TransportHandle } from './binding-transport.js';
import { native } from './index.js';
import type { Direction } from './transport.js';

/** Native segment index of a grant made outside any segment (transport tests). */
export const NO_SEGMENT = 0xffff_ffff;
const RESOLVED: Promise<void> = Promise.resolve();
const NOTHING = (): void => undefined;
const ANY = Number.MAX_SAFE_INTEGER;
const DIRECTIONS = { read: 0, write: 1, both: 2 } as const;

/** A grant as the native table holds it. */
export interface GrantInfo {
  readonly grantId: number;
  readonly epoch: number;
  /** The segment it points into; NO_SEGMENT for none. */
  readonly segmentIndex: number;
  readonly address: number;
  readonly sizeBytes: number;
  readonly direction: Direction;
  readonly session: number;
  readonly key: number;
  /** Read grants: the readable prefix; write grants: sizeBytes. */
  readonly readableBytes: number;
  /** Write grants: the bytes below the durable watermark, no longer writable. */
  readonly floorBytes: number;
  readonly revoked: boolean;
  readonly inFlight: number;
}

export interface NewGrant {
  id: number;
  epoch: number;
  address: number;
  length: number;
  direction: Direction;
  session: number;
  key: number;
  readableBytes: number;
  segmentIndex: number;
}

/** Which live grants revokeWhere takes; every field narrows (absent: no narrowing). */
export interface GrantFilter {
  segmentIndex?: number;
  direction?: Direction;
  /** Only grants ending at or below this address. */
  endAtOrBelow?: number;
  /** Only grants made under an epoch below this one. */
  epochBelow?: number;
}

interface Waiter { readonly promise: Promise<void>; readonly resolve: () => void }

export class GrantTable {
  readonly #handle: TransportHandle;
  readonly #waiters = new Map<number, Waiter>();

  constructor(handle: TransportHandle) {
    this.#handle = handle;
  }

  /** 'exists' (the id is or was in use) or 'limit' (live grants at the limit) instead of ok. */
  create(grant: NewGrant): 'ok' | 'exists' | 'limit' {
    const result = native.transportGrantCreate(this.#handle, grant.id, grant.epoch,
      grant.address, grant.length, grant.direction === 'read' ? 0 : 1, grant.session, grant.key,
      grant.readableBytes, grant.segmentIndex);
    if (result === GRANT_RESULT.exists) return 'exists';
    if (result === GRANT_RESULT.limit) return 'limit';
    invariant(result === GRANT_RESULT.ok, 'grant created', { grant: grant.id, result });
    return 'ok';
  }

  /**
   * Revokes one grant; resolves once none of its accesses is in flight. Revoking a revoked
   * grant joins (or is) its completed revocation. PMQ_ERR_GRANT_UNKNOWN for an id never created
   * or forgotten.
   */
  revoke(grantId: number): Promise<void> {
    const result = native.transportGrantRevoke(this.#handle, grantId);
    switch (result) {
      case GRANT_RESULT.ok:
      case GRANT_RESULT.wasRevoked:
        return this.#waiters.get(grantId)?.promise ?? RESOLVED;
      case GRANT_RESULT.inFlight:
      case GRANT_RESULT.wasRevokedInFlight:
        return this.#waiting(grantId);
      case GRANT_RESULT.unknown:
        throw new PmqError('PMQ_ERR_GRANT_UNKNOWN', `grant ${grantId} does not exist`);
      default:
        invariant(false, 'a revocation result', { grantId, result });
    }
  }

  /** Whether `grantId` is known and revoked (for the transport's strict revokeGrant). */
  isRevoked(grantId: number): boolean | undefined {
    const found = native.transportGrantFind(this.#handle, grantId);
    return found === undefined ? undefined : found[9] === 1;
  }

  /** Revokes the live grants `filter` takes; resolves once none of their accesses is in flight. */
  revokeWhere(filter: GrantFilter): Promise<void> {
    const inFlight = native.transportGrantsRevokeWhere(this.#handle,
      filter.segmentIndex ?? NO_SEGMENT, DIRECTIONS[filter.direction ?? 'both'],
      filter.endAtOrBelow ?? ANY, filter.epochBelow ?? ANY);
    if (inFlight === undefined) return RESOLVED; // the usual case: nothing to wait for
    return Promise.all(inFlight.map((id) => this.#waiting(id))).then(NOTHING);
  }

  /**
   * The segment's durable watermark now ends at region address `addressEnd`: its live write
   * grants get their floor there (direction write), its read grants may read up to there (read).
   */
  raise(segmentIndex: number, direction: Direction, addressEnd: number): void {
    native.transportGrantsRaise(this.#handle, segmentIndex, DIRECTIONS[direction], addressEnd);
  }

  /** Raises one grant's readable prefix or floor (the larger value wins). */
  setPrefix(grantId: number, direction: Direction, bytes: number): void {
    const result = direction === 'read' ?
      native.transportGrantSetReadable(this.#handle, grantId, bytes) :
      native.transportGrantSetFloor(this.#handle, grantId, bytes);
    if (result === GRANT_RESULT.ok) return;
    throw new ArgumentError(result === GRANT_RESULT.unknown ? `grant ${grantId} unknown` :
      result === GRANT_RESULT.direction ? `grant ${grantId} is a ${direction === 'read' ?
        'write grant: its readable bytes are fixed' : 'read grant: it has no write floor'}` :
        `${bytes} bytes are beyond grant ${grantId}`);
  }

  /**
   * Drops a revoked grant whose revocation has completed (false while an access is in flight).
   * ArgumentError for an unknown or live grant.
   */
  forget(grantId: number): boolean {
    const result = native.transportGrantForget(this.#handle, grantId);
    if (result === GRANT_RESULT.ok) return true;
    if (result === GRANT_RESULT.inFlight) return false;
    throw new ArgumentError(result === GRANT_RESULT.unknown ? `grant ${grantId} unknown` :
      `grant ${grantId} is not revoked`);
  }

  find(grantId: number): GrantInfo | undefined {
    const f = native.transportGrantFind(this.#handle, grantId);
    if (f === undefined) return undefined;
    return { grantId, epoch: f[0]!, segmentIndex: f[1]!, address: f[2]!, sizeBytes: f[3]!,
      direction: f[4] === 0 ? 'read' : 'write', session: f[5]!, key: f[6]!,
      readableBytes: f[7]!, floorBytes: f[8]!, revoked: f[9] === 1, inFlight: f[10]! };
  }

  /** Live grants, and grants remembered (live or revoked). */
  census(): { live: number; remembered: number; liveIds: number[] } {
    const [live, remembered, ...liveIds] = native.transportGrantCensus(this.#handle);
    return { live: live!, remembered: remembered!, liveIds };
  }

  setLimits(liveMax: number, rememberedMax: number): void {
    native.transportSetGrantLimits(this.#handle, liveMax, rememberedMax);
  }

  /** The native side's revokeDone: every promise waiting for the grant settles. */
  revokeDone(grantId: number): void {
    this.#waiters.get(grantId)?.resolve();
    this.#waiters.delete(grantId);
  }

  /** The transport failed or closed: nothing is in flight any more. */
  settleAll(): void {
    for (const waiter of this.#waiters.values()) waiter.resolve();
    this.#waiters.clear();
  }

  /** Whether a revocation of `grantId` is still waiting for accesses in flight. */
  waiting(grantId: number): boolean {
    return this.#waiters.has(grantId);
  }

  #waiting(grantId: number): Promise<void> {
    const known = this.#waiters.get(grantId);
    if (known !== undefined) return known.promise;
    let resolve = NOTHING;
    const promise = new Promise<void>((settle) => { resolve = settle; });
    this.#waiters.set(grantId, { promise, resolve });
    return promise;
  }
}
