/**
 * Choosing between the two superblock copies, and building the next one. No I/O and no
 * persistence ordering: region-store.ts reads the bytes, calls in here, writes and persists.
 *
 * Durability: an update (today only a raised epoch and its owner) writes a whole new copy with
 * sequence + 1 into copy (sequence + 1) % 2 — never the copy that currently wins — and persists
 * it. A crash
 * that tears the write leaves the other copy, the previous durable state, intact and winning.
 * Both copies valid means their sequences differ by exactly one and their geometry agrees.
 */
import {
  SUPERBLOCK_COPY_COUNT,
  decodeSuperblock,
  superblockAddress,
  type DecodeFailureKind,
  type Superblock,
} from '../common/layout.js';
import { invariant } from '../common/invariant.js';

export interface SuperblockCopyProblem {
  readonly copy: number;
  readonly address: number;
  readonly kind: DecodeFailureKind;
  readonly problem: string;
}

export type SuperblockChoice =
  | { readonly ok: true; readonly superblock: Superblock; readonly copy: number;
      /** The copy that did not decode (and was not used), when one did not. */
      readonly fallback: SuperblockCopyProblem | null }
  | { readonly ok: false; readonly kind: DecodeFailureKind;
      readonly problems: readonly SuperblockCopyProblem[] };

const copyOf = (sequence: number): number => sequence % SUPERBLOCK_COPY_COUNT;

/** Fields fixed at format time: both copies must agree on them. */
function sameIdentity(a: Superblock, b: Superblock): boolean {
  return a.regionId === b.regionId && a.nodeId === b.nodeId &&
    a.regionSizeBytes === b.regionSizeBytes && a.segmentSizeBytes === b.segmentSizeBytes &&
    a.segmentSizeBytesMin === b.segmentSizeBytesMin &&
    a.segmentCount === b.segmentCount && a.tableAddress === b.tableAddress &&
    a.dataAddress === b.dataAddress && a.createdAtMs === b.createdAtMs;
}

function pairProblem(older: Superblock, newer: Superblock): string | null {
  if (newer.sequence !== older.sequence + 1) {
    return `copies have sequences ${older.sequence} and ${newer.sequence}, not consecutive`;
  }
  if (!sameIdentity(older, newer)) return 'copies disagree on region id, node id or geometry';
  if (newer.epoch < older.epoch) return `epoch fell from ${older.epoch} to ${newer.epoch}`;
  return null;
}

/** Decodes both copies from the start of the region and picks the one to trust. */
export function chooseSuperblock(bytes: Uint8Array): SuperblockChoice {
  const decoded = [0, 1].map((copy) => ({ copy, address: superblockAddress(copy),
    result: decodeSuperblock(bytes, superblockAddress(copy)) }));
  const problems: SuperblockCopyProblem[] = [];
  const valid: { copy: number; superblock: Superblock }[] = [];
  for (const { copy, address, result } of decoded) {
    if (!result.ok) {
      problems.push({ copy, address, kind: result.kind, problem: result.problem });
    } else if (copyOf(result.value.sequence) !== copy) {
      problems.push({ copy, address, kind: 'corrupt',
        problem: `sequence ${result.value.sequence} does not belong in copy ${copy}` });
    } else {
      valid.push({ copy, superblock: result.value });
    }
  }
  if (problems.some((p) => p.kind === 'version')) return { ok: false, kind: 'version', problems };
  const [first, second] = valid;
  if (first === undefined) {
    const blank = problems.every((p) => p.kind === 'blank');
    return { ok: false, kind: blank ? 'blank' : 'corrupt', problems };
  }
  if (second === undefined) {
    const fallback = problems[0] ?? null;
    return { ok: true, superblock: first.superblock, copy: first.copy, fallback };
  }
  const [older, newer] = first.superblock.sequence < second.superblock.sequence ?
    [first, second] : [second, first];
  const problem = pairProblem(older.superblock, newer.superblock);
  if (problem !== null) {
    return { ok: false, kind: 'corrupt', problems: [{ copy: newer.copy,
      address: superblockAddress(newer.copy), kind: 'corrupt', problem }] };
  }
  return { ok: true, superblock: newer.superblock, copy: newer.copy, fallback: null };
}

/** The superblock that replaces `current` with a new epoch, and the copy it goes into. */
export function nextSuperblock(
  current: Superblock,
  change: { readonly epoch: number; readonly ownerInstance: number },
): { readonly superblock: Superblock; readonly copy: number } {
  invariant(change.epoch >= current.epoch, 'the epoch only rises',
    { current: current.epoch, next: change.epoch });
  const superblock: Superblock = { ...current, sequence: current.sequence + 1, ...change };
  const copy = copyOf(superblock.sequence);
  invariant(copy !== copyOf(current.sequence), 'never overwrite the winning copy');
  return { superblock, copy };
}

/** What format writes: the same superblock as sequence 0 (copy 0) and sequence 1 (copy 1). */
export function formatSuperblocks(first: Superblock): readonly Superblock[] {
  invariant(first.sequence === 0, 'format starts at sequence 0');
  return [first, { ...first, sequence: 1 }];
}
