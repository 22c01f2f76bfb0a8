/**
 * The data area's free space: a binary buddy allocator over [dataAddress, dataEnd) with blocks
 * of sizeMin × 2^k up to sizeMax, each aligned to its own size from dataAddress
 * (docs/region-format.md, "Segments sized to need"). No I/O and nothing on media: the free
 * space is never persisted, open() rebuilds it as the complement of the live entries' ranges
 * (rebuild), in time proportional to the number of segments, not to the bytes.
 *
 * A free block remembers whether this process zeroed its bytes (`cleared`): a block freed
 * before a crash may hold its old owner's bytes, so allocation zeroes any block that is not
 * cleared. Splitting keeps the flag; merging two buddies keeps it only when both had it.
 *
 * Single-threaded (the JS thread). Misuse (releasing a range that is free, or not a block) is
 * our own bug: invariant().
 */
import { invariant } from '../common/invariant.js';
import { rangeProblem, type DataArea } from '../common/layout.js';

export interface LiveRange {
  readonly segmentIndex: number;
  readonly address: number;
  readonly sizeBytes: number;
}

export interface Block {
  readonly address: number;
  readonly sizeBytes: number;
  /** Its bytes were zeroed (and persisted) by this process since it was last freed. */
  readonly cleared: boolean;
}

export type SpaceRebuild =
  | { readonly ok: true; readonly space: SegmentSpace }
  | { readonly ok: false; readonly segmentIndex: number; readonly problem: string };

/** ⌊log2 n⌋ for a positive safe integer (powers of two here; exact). */
function log2(n: number): number {
  return Math.round(Math.log2(n));
}

export class SegmentSpace {
  readonly area: DataArea;
  /** Free blocks by order (size = sizeMin << order): address → cleared. */
  readonly #free: Map<number, boolean>[];
  #freeBytes = 0;

  private constructor(area: DataArea) {
    if (!(area.sizeMin > 0 && area.sizeMax >= area.sizeMin &&
        (area.dataEnd - area.dataAddress) % area.sizeMin === 0)) {
      invariant(false, 'a data area of whole smallest segments', { ...area });
    }
    this.area = area;
    this.#free = Array.from({ length: log2(area.sizeMax / area.sizeMin) + 1 }, () => new Map());
  }

  /** An empty data area: all of it free, none of it cleared (format does not zero data). */
  static empty(area: DataArea): SegmentSpace {
    const space = new SegmentSpace(area);
    space.#addGap(area.dataAddress, area.dataEnd);
    return space;
  }

  /**
   * The free space of a region whose live segments are `live`: every range must pass
   * rangeProblem (inside, a size class, aligned) and no two may overlap; the first that does
   * not is named (open() reports it as PMQ_ERR_REGION_CORRUPT). Sorting makes it n log n in
   * the number of segments.
   */
  static rebuild(area: DataArea, live: readonly LiveRange[]): SpaceRebuild {
    const space = new SegmentSpace(area);
    const sorted = [...live].sort((a, b) => a.address - b.address);
    let end = area.dataAddress;
    let previous: LiveRange | null = null;
    for (const range of sorted) {
      const problem = rangeProblem(range.address, range.sizeBytes, area);
      if (problem !== null) return { ok: false, segmentIndex: range.segmentIndex, problem };
      if (range.address < end) {
        return { ok: false, segmentIndex: range.segmentIndex, problem: `segment ` +
          `[${range.address}, +${range.sizeBytes}) overlaps segment ${previous?.segmentIndex} ` +
          `[${previous?.address}, +${previous?.sizeBytes})` };
      }
      space.#addGap(end, range.address);
      end = range.address + range.sizeBytes;
      previous = range;
    }
    space.#addGap(end, area.dataEnd);
    return { ok: true, space };
  }

  get freeBytes(): number {
    return this.#freeBytes;
  }

  /** How many segments of `sizeBytes` the free space could still give (buddies split). */
  countFree(sizeBytes: number): number {
    const order = this.#orderOf(sizeBytes);
    let count = 0;
    for (let o = order; o < this.#free.length; o += 1) count += this.#free[o]!.size << (o - order);
    return count;
  }

  /** The largest block free, in bytes (0: none). */
  largestFree(): number {
    for (let o = this.#free.length - 1; o >= 0; o -= 1) {
      if (this.#free[o]!.size > 0) return this.area.sizeMin << o;
    }
    return 0;
  }

  /**
   * Takes a block of exactly `sizeBytes` (a size class): the lowest-addressed block of the
   * smallest order that has one, split down. Null when no block that large is free.
   */
  allocate(sizeBytes: number): Block | null {
    const want = this.#orderOf(sizeBytes);
    let order = want;
    while (order < this.#free.length && this.#free[order]!.size === 0) order += 1;
    if (order >= this.#free.length) return null;
    const blocks = this.#free[order]!;
    let address = Infinity;
    for (const at of blocks.keys()) if (at < address) address = at;
    const cleared = blocks.get(address)!;
    blocks.delete(address);
    this.#freeBytes -= this.area.sizeMin << order;
    while (order > want) {
      order -= 1;
      this.#put(order, address + (this.area.sizeMin << order), cleared);
    }
    return { address, sizeBytes, cleared };
  }

  /** Gives a block back, merged with its buddy while the buddy is free too. */
  release(address: number, sizeBytes: number, cleared: boolean): void {
    const problem = rangeProblem(address, sizeBytes, this.area);
    if (problem !== null) invariant(false, 'release a block of the area', { problem });
    let order = this.#orderOf(sizeBytes);
    let at = address;
    let isCleared = cleared;
    this.#checkNotFree(at, sizeBytes);
    while (order < this.#free.length - 1) {
      const size = this.area.sizeMin << order;
      const buddy = this.area.dataAddress + ((at - this.area.dataAddress) ^ size);
      const buddyCleared = this.#free[order]!.get(buddy);
      if (buddyCleared === undefined) break;
      this.#free[order]!.delete(buddy);
      this.#freeBytes -= size;
      isCleared &&= buddyCleared;
      at = Math.min(at, buddy);
      order += 1;
    }
    this.#put(order, at, isCleared);
  }

  /** Every free block, by address (for tests and `pmq inspect`). */
  blocks(): Block[] {
    const list: Block[] = [];
    this.#free.forEach((blocks, order) => {
      for (const [address, cleared] of blocks) {
        list.push({ address, sizeBytes: this.area.sizeMin << order, cleared });
      }
    });
    return list.sort((a, b) => a.address - b.address);
  }

  #orderOf(sizeBytes: number): number {
    const order = log2(sizeBytes / this.area.sizeMin);
    if (!(order >= 0 && order < this.#free.length && this.area.sizeMin << order === sizeBytes)) {
      invariant(false, 'a size class of the area', { sizeBytes, ...this.area });
    }
    return order;
  }

  #put(order: number, address: number, cleared: boolean): void {
    this.#free[order]!.set(address, cleared);
    this.#freeBytes += this.area.sizeMin << order;
  }

  /** A block given back must not overlap free space (a double free). Linear: release is rare. */
  #checkNotFree(address: number, sizeBytes: number): void {
    for (const block of this.blocks()) {
      if (block.address < address + sizeBytes && address < block.address + block.sizeBytes) {
        invariant(false, 'released block overlaps free space', { address, sizeBytes, block });
      }
    }
  }

  /**
   * Frees [from, to) as the largest aligned blocks that fit, left to right: the same blocks
   * buddy merging would have left, so a rebuilt space allocates as the one before the restart.
   */
  #addGap(from: number, to: number): void {
    const { dataAddress, sizeMin } = this.area;
    let at = from;
    while (at < to) {
      let order = this.#free.length - 1;
      while (order > 0 && ((at - dataAddress) % (sizeMin << order) !== 0 ||
          at + (sizeMin << order) > to)) {
        order -= 1;
      }
      if (!(at + sizeMin <= to)) invariant(false, 'gaps are whole smallest segments', { at, to });
      this.#put(order, at, false);
      at += sizeMin << order;
    }
  }
}
