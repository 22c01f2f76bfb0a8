/**
 * The storage node's bookkeeping of the grants it created in the transport's native grant table:
 * which segment each grant points into, its epoch and direction, and whether it was revoked.
 * The native table does the per-access checks (no JavaScript per write); this registry answers
 * the questions the native table cannot: "every write grant of segment 7", "every grant older
 * than epoch 4".
 *
 * Lifecycle: one registry per transport, for the process's life. A grant id names one grant for
 * the life of the process: the native table keeps revoked grants (so late accesses are told
 * `revoked`, not `unknown`), so an id is never reused, and a second grantCreate with it is
 * refused (PMQ_ERR_GRANT_EXISTS).
 *
 * Concurrency: JS thread only. revoke() refuses new accesses at once and resolves when none
 * of the grant's accesses is in flight any more; revoking twice joins the first revocation.
 *
 * Live grants are also indexed by segment, so the per-persist question "which write grants end
 * below the new watermark" costs the segment's live grants, not every grant ever made.
 *
 * Memory stays bounded: beyond STORAGE_LIMITS.grantsRevokedRemembered revoked grants, the
 * oldest revoked ones (revocation complete) are forgotten here and in the native table. Grant
 * ids only rise (the broker allocates them per epoch, upwards), so a forgotten id is still
 * refused as revoked by the native checks and can never be created again (PMQ_ERR_GRANT_EXISTS);
 * find() no longer knows it (undefined: unknown).
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { STORAGE_LIMITS } from '../common/limits.js';
import type { Direction, Transport } from '../native/transport.js';

export interface GrantRecord {
  readonly grantId: number;
  readonly epoch: number;
  readonly segmentIndex: number;
  readonly address: number;
  readonly sizeBytes: number;
  readonly direction: Direction;
  /** The session whose endpoints may use it (a client's, or BROKER_SESSION). */
  readonly session: number;
  /** The grant's secret: every access names it. */
  readonly key: number;
  /**
   * Read grants: the readable prefix, the bytes below the segment's durable watermark
   * (raiseReadable moves it on); write grants: sizeBytes.
   */
  readonly readableBytes: number;
}

interface Entry extends GrantRecord {
  readableBytes: number;
  /** Write grants: the bytes of its range below the durable watermark, no longer writable. */
  floorBytes: number;
  /** Set once revocation started; resolves when no access of the grant is in flight. */
  revoked: Promise<void> | null;
}

/**
 * The bytes of a grant's range below region address `durableEnd` (the segment's durable
 * watermark): what a read grant may read.
 */
export function readablePrefix(grant: { address: number; sizeBytes: number },
  durableEnd: number): number {
  return Math.min(grant.sizeBytes, Math.max(0, durableEnd - grant.address));
}

const RESOLVED: Promise<void> = Promise.resolve();
const NOTHING = (): void => undefined;

export class GrantRegistry {
  readonly #transport: Transport;
  readonly #grants = new Map<number, Entry>();
  /** Live (not revoked) grants by segment index. */
  readonly #liveBySegment = new Map<number, Set<Entry>>();
  #liveCount = 0;
  /** Ids whose revocation completed, oldest first: forgotten beyond `#revokedRemembered`. */
  readonly #revokedOrder: number[] = [];
  #revokedOrderHead = 0;
  #forgottenMaxId = 0;
  readonly #revokedRemembered: number;

  constructor(transport: Transport,
    revokedRemembered: number = STORAGE_LIMITS.grantsRevokedRemembered) {
    this.#transport = transport;
    this.#revokedRemembered = revokedRemembered;
    transport.on('grantRevoked', (grantId) => this.#revokedNatively(grantId));
  }

  /** Grants remembered, live or revoked (bounded: see the module comment). */
  get rememberedCount(): number {
    return this.#grants.size;
  }

  get liveCount(): number {
    return this.#liveCount;
  }

  /** Creates the native grant. The caller checked epoch, segment and bounds. */
  create(grant: GrantRecord): void {
    if (this.#grants.has(grant.grantId) || grant.grantId <= this.#forgottenMaxId) {
      throw new PmqError('PMQ_ERR_GRANT_EXISTS', `grant ${grant.grantId} was already created ` +
        'on this storage node: grant ids are never reused (make them unique per broker epoch)');
    }
    if (this.#liveCount >= STORAGE_LIMITS.grantsLiveMax) {
      throw new PmqError('PMQ_ERR_GRANT_LIMIT', `${this.#liveCount} live grants: revoke some ` +
        'before creating more', { retriable: true });
    }
    this.#transport.createGrant({ id: grant.grantId, epoch: grant.epoch,
      address: grant.address, length: grant.sizeBytes, direction: grant.direction,
      session: grant.session, key: grant.key, readableBytes: grant.readableBytes,
      segmentIndex: grant.segmentIndex });
    const entry: Entry = { ...grant, floorBytes: 0, revoked: null };
    this.#grants.set(grant.grantId, entry);
    let live = this.#liveBySegment.get(grant.segmentIndex);
    if (live === undefined) {
      live = new Set();
      this.#liveBySegment.set(grant.segmentIndex, live);
    }
    live.add(entry);
    this.#liveCount += 1;
    invariant(this.#liveCount <= this.#grants.size, 'live grants are a subset of all grants');
  }

  /** Revokes one grant; idempotent. Throws PMQ_ERR_GRANT_UNKNOWN for an id never created. */
  revoke(grantId: number): Promise<void> {
    const entry = this.#grants.get(grantId);
    if (entry === undefined) {
      throw new PmqError('PMQ_ERR_GRANT_UNKNOWN', `grant ${grantId} does not exist`);
    }
    return this.#revokeEntry(entry);
  }

  /** Revokes the live grants of one segment (of one direction, or all). */
  revokeSegment(segmentIndex: number, direction?: Direction): Promise<void> {
    return this.#revokeIn(segmentIndex,
      (g) => direction === undefined || g.direction === direction);
  }

  /**
   * Revokes the segment's live write grants that end at or before region address `addressEnd`:
   * the bytes they cover are about to become durable, and durable bytes never change again.
   */
  revokeWritesEndingBy(segmentIndex: number, addressEnd: number): Promise<void> {
    // Asked before every persist, and usually nothing matches: no closure, no list, no
    // promise of its own then (issue 11).
    const live = this.#liveBySegment.get(segmentIndex);
    if (live === undefined) return RESOLVED;
    let chosen: Promise<void>[] | null = null;
    for (const g of live) {
      if (g.direction !== 'write' || g.address + g.sizeBytes > addressEnd) continue;
      (chosen ??= []).push(this.#revokeEntry(g));
    }
    return chosen === null ? RESOLVED : Promise.all(chosen).then(NOTHING);
  }

  /**
   * The segment's durable watermark now ends at region address `addressEnd`: its live read
   * grants may read up to there (never past their own range). Called after the watermark is
   * persisted, never before: no read reaches bytes that are not durable.
   */
  raiseReadable(segmentIndex: number, addressEnd: number): void {
    const live = this.#liveBySegment.get(segmentIndex);
    if (live === undefined) return;
    for (const entry of live) {
      if (entry.direction !== 'read') continue;
      const readable = readablePrefix(entry, addressEnd);
      if (readable <= entry.readableBytes) continue;
      this.#transport.setGrantReadable(entry.grantId, readable);
      entry.readableBytes = readable;
    }
  }

  /**
   * The bytes below region address `addressEnd` are about to be checked and persisted: the
   * segment's live write grants (a lease's, reaching past it) may no longer write there.
   * Called before the check, so what is checked is what becomes durable (a rendezvous write
   * the grant accepted before this may still land: docs/security.md, "Known gaps").
   */
  raiseWriteFloor(segmentIndex: number, addressEnd: number): void {
    const live = this.#liveBySegment.get(segmentIndex);
    if (live === undefined) return;
    for (const entry of live) {
      if (entry.direction !== 'write' || entry.revoked !== null) continue;
      const floor = readablePrefix(entry, addressEnd);
      if (floor <= entry.floorBytes) continue;
      this.#transport.setGrantWriteFloor(entry.grantId, floor);
      entry.floorBytes = floor;
    }
  }

  /** Revokes every live grant made under an epoch below `epoch` (the broker was fenced). */
  revokeOlderThan(epoch: number): Promise<void> {
    return this.#revokeWhere((g) => g.epoch < epoch);
  }

  /** The grant with this id and whether it was revoked; undefined for an id never created. */
  find(grantId: number): (Required<GrantRecord> & { revoked: boolean }) | undefined {
    const entry = this.#grants.get(grantId);
    if (entry === undefined) return undefined;
    const { revoked, ...grant } = entry;
    return { ...grant, revoked: revoked !== null };
  }

  /** Live grants, for tests and logs. */
  live(): GrantRecord[] {
    return [...this.#liveBySegment.values()].flatMap((live) => [...live]);
  }

  async #revokeWhere(match: (grant: GrantRecord) => boolean): Promise<void> {
    const chosen = this.live().filter(match) as Entry[];
    await Promise.all(chosen.map((entry) => this.#revokeEntry(entry)));
  }

  async #revokeIn(segmentIndex: number, match: (grant: GrantRecord) => boolean): Promise<void> {
    const live = this.#liveBySegment.get(segmentIndex);
    if (live === undefined) return;
    const chosen: Promise<void>[] = [];
    for (const entry of live) if (match(entry)) chosen.push(this.#revokeEntry(entry));
    await Promise.all(chosen);
  }

  #revokeEntry(entry: Entry): Promise<void> {
    if (entry.revoked !== null) return entry.revoked;
    entry.revoked = this.#transport.revokeGrant(entry.grantId).then(() => {
      this.#revokedOrder.push(entry.grantId);
      this.#forgetBeyondLimit();
    });
    this.#unindex(entry);
    return entry.revoked;
  }

  /**
   * The native persist path revoked the grant (it ended inside a persisted range and nothing
   * of it was in flight): the same bookkeeping as a revocation made here, without the call.
   */
  #revokedNatively(grantId: number): void {
    const entry = this.#grants.get(grantId);
    if (entry === undefined || entry.revoked !== null) return; // revoked here meanwhile
    entry.revoked = RESOLVED;
    this.#unindex(entry);
    this.#revokedOrder.push(grantId);
    this.#forgetBeyondLimit();
  }

  #unindex(entry: Entry): void {
    const live = this.#liveBySegment.get(entry.segmentIndex);
    if (live?.delete(entry) !== true) {
      invariant(false, 'a live grant is indexed by its segment', { grant: entry.grantId });
    }
    if (live.size === 0) this.#liveBySegment.delete(entry.segmentIndex);
    this.#liveCount -= 1;
    if (!(this.#liveCount >= 0)) {
      invariant(false, 'live grant count never negative', { grant: entry.grantId });
    }
  }

  #forgetBeyondLimit(): void {
    while (this.#revokedOrder.length - this.#revokedOrderHead > this.#revokedRemembered) {
      const grantId = this.#revokedOrder[this.#revokedOrderHead]!;
      if (this.#transport.closed) return; // stopping: nothing to keep small any more
      if (!this.#transport.forgetGrant(grantId)) return; // an access still in flight
      this.#revokedOrderHead += 1;
      this.#grants.delete(grantId);
      this.#forgottenMaxId = Math.max(this.#forgottenMaxId, grantId);
    }
    if (this.#revokedOrderHead > 4096 && this.#revokedOrderHead * 2 > this.#revokedOrder.length) {
      this.#revokedOrder.splice(0, this.#revokedOrderHead);
      this.#revokedOrderHead = 0;
    }
  }
}
