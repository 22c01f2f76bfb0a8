/**
 * The storage node's grants, as its services ask about them: create one for a segment, revoke
 * by id, by segment, by watermark or by epoch, raise read and write prefixes as a segment's
 * durable watermark moves, look one up. Every answer comes from the transport's native grant
 * table (native/grant_table.cc, native/grant-table.ts), the one record of the node's grants:
 * the native data path checks each access against it, and the native persist path
 * (native/persist_native.cc) revokes and raises grants in it without JavaScript, so nothing
 * here could keep a copy up to date (issue 11: one table instead of three mirrors).
 *
 * Lifecycle: one registry per transport. A grant id names one grant for the life of the
 * process: the native table keeps revoked grants (late accesses are told `revoked`, not
 * `unknown`), so an id is never reused, and a second create with it is refused
 * (PMQ_ERR_GRANT_EXISTS). Memory stays bounded: beyond `revokedRemembered` completed
 * revocations the oldest revoked grants are forgotten natively; grant ids only rise (the broker
 * allocates them per epoch, upwards), so a forgotten id is still refused as revoked by the
 * native checks and can never be created again; find() no longer knows it.
 *
 * Concurrency: JS thread only. A revocation refuses new accesses at once and resolves when none
 * of the grant's accesses is in flight; revoking twice joins the first.
 */
import { PmqError } from '../common/errors.js';
import { STORAGE_LIMITS } from '../common/limits.js';
import type { GrantInfo, GrantTable } from '../native/grant-table.js';
import type { Direction, Transport } from '../native/transport.js';

/** A grant as the registry creates it: GrantInfo without what only the table knows later. */
export type GrantRecord = Omit<GrantInfo, 'floorBytes' | 'revoked' | 'inFlight'>;

/**
 * The bytes of a grant's range below region address `durableEnd` (the segment's durable
 * watermark): what a read grant may read.
 */
export function readablePrefix(grant: { address: number; sizeBytes: number },
  durableEnd: number): number {
  return Math.min(grant.sizeBytes, Math.max(0, durableEnd - grant.address));
}

export class GrantRegistry {
  readonly #table: GrantTable;
  #issued = 0;

  constructor(transport: Transport,
    revokedRemembered: number = STORAGE_LIMITS.grantsRevokedRemembered) {
    this.#table = transport.grants;
    this.#table.setLimits(STORAGE_LIMITS.grantsLiveMax, revokedRemembered);
  }

  /** Grants remembered, live or revoked (bounded: see the module comment). */
  get rememberedCount(): number {
    return this.#table.census().remembered;
  }

  get liveCount(): number {
    return this.#table.census().live;
  }

  /** Grants created since this registry was made (metrics: live + revoked). */
  get issuedCount(): number {
    return this.#issued;
  }

  /** Creates the native grant. The caller checked epoch, segment and bounds. */
  create(grant: GrantRecord): void {
    const result = this.#table.create({ id: grant.grantId, epoch: grant.epoch,
      address: grant.address, length: grant.sizeBytes, direction: grant.direction,
      session: grant.session, key: grant.key, readableBytes: grant.readableBytes,
      segmentIndex: grant.segmentIndex });
    if (result === 'exists') {
      throw new PmqError('PMQ_ERR_GRANT_EXISTS', `grant ${grant.grantId} was already created ` +
        'on this storage node: grant ids are never reused (make them unique per broker epoch)');
    }
    if (result === 'limit') {
      throw new PmqError('PMQ_ERR_GRANT_LIMIT', `${STORAGE_LIMITS.grantsLiveMax} live grants: ` +
        'revoke some before creating more', { retriable: true });
    }
    this.#issued += 1;
  }

  /** Revokes one grant; idempotent. Throws PMQ_ERR_GRANT_UNKNOWN for an id never created. */
  revoke(grantId: number): Promise<void> {
    return this.#table.revoke(grantId);
  }

  /** Revokes the live grants of one segment (of one direction, or all). */
  revokeSegment(segmentIndex: number, direction?: Direction): Promise<void> {
    return this.#table.revokeWhere({ segmentIndex, direction });
  }

  /**
   * Revokes the segment's live write grants that end at or before region address `addressEnd`:
   * the bytes they cover are about to become durable, and durable bytes never change again.
   */
  revokeWritesEndingBy(segmentIndex: number, addressEnd: number): Promise<void> {
    return this.#table.revokeWhere({ segmentIndex, direction: 'write',
      endAtOrBelow: addressEnd });
  }

  /**
   * The segment's durable watermark now ends at region address `addressEnd`: its live read
   * grants may read up to there (never past their own range). Called after the watermark is
   * persisted, never before: no read reaches bytes that are not durable.
   */
  raiseReadable(segmentIndex: number, addressEnd: number): void {
    this.#table.raise(segmentIndex, 'read', addressEnd);
  }

  /**
   * The bytes below region address `addressEnd` are about to be checked and persisted: the
   * segment's live write grants (a lease's, reaching past it) may no longer write there.
   * Called before the check, so what is checked is what becomes durable (a rendezvous write
   * the grant accepted before this may still land: docs/security.md, "Known gaps").
   */
  raiseWriteFloor(segmentIndex: number, addressEnd: number): void {
    this.#table.raise(segmentIndex, 'write', addressEnd);
  }

  /** Revokes every live grant made under an epoch below `epoch` (the broker was fenced). */
  revokeOlderThan(epoch: number): Promise<void> {
    return this.#table.revokeWhere({ epochBelow: epoch });
  }

  /** The grant with this id and whether it was revoked; undefined for an id never created. */
  find(grantId: number): GrantInfo | undefined {
    return this.#table.find(grantId);
  }

  /** Live grants, for tests and logs. */
  live(): GrantInfo[] {
    return this.#table.census().liveIds.map((id) => this.#table.find(id)!);
  }
}
