/**
 * The storage node's region: superblock, segment table and segments on top of a Region (any
 * PersistentMemory: the power-cut tests use a recording double). Owns
 * the in-memory superblock and table; every change to them goes through here, and so does every
 * persistence ordering decision (docs/region-format.md, "Update protocols").
 *
 * Lifecycle: RegionStore.format(region, …) on a blank region, or RegionStore.open(region) on a
 * formatted one; both validate everything they read. The store does not own the Region: close
 * it after the last store call has settled.
 *
 * Durability: a method that changes the table resolves only after the new entry (and, for a
 * watermark, the segment data under it, persisted first) is durable; the broker acknowledges
 * producers only after that. A crash at any moment leaves the last durable entry of every
 * segment readable (two slots per entry, two superblock copies).
 *
 * Concurrency: JS thread only. Requests for different segments may overlap (each awaits its own
 * persists); a second request for a segment whose update is in flight is refused with
 * PMQ_ERR_SEGMENT_BUSY (the persist queue in front of this coalesces instead).
 *
 * Errors: bad requests (stale epoch, watermark moving back, no free segment) are PmqErrors with
 * codes from docs/error-codes.md, the store unchanged; damaged media is a RegionMediaError
 * naming every place it looked; broken local state is invariant().
 */
import { randomBytes } from 'node:crypto';

import { ArgumentError, PmqError, type ErrorCode } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import {
  DATA_ALIGNMENT_BYTES_MAX, LAYOUT_ALIGNMENT_BYTES, SEGMENT_ENTRY_SIZE_BYTES,
  SUPERBLOCK_HEADER_SIZE_BYTES, TABLE_ADDRESS, computeGeometry, dataAreaOf, decodeSegmentEntry,
  decodeSuperblock, encodeSegmentEntry, encodeSuperblock, entryAddress, isPowerOfTwo,
  superblockAddress, tableSizeBytes, topicProblem, watermarkProblem,
  type DataArea, type SegmentEntry, type Superblock, type Watermark,
} from '../common/layout.js';
import { LIMITS } from '../common/limits.js';
import { recordBatchSizeReachable } from '../common/record-batch/batch-size.js';
import { validateRecordBatch } from '../common/record-batch/decode.js';
import { encodeFiller } from '../common/record-batch/filler.js';
import { RECORD_BATCH_HEADER_SIZE_BYTES } from '../common/record-batch/layout.js';
import { REGION_PAGE_SIZE_BYTES, type Region } from '../native/region.js';
import type { Transport } from '../native/transport.js';
import { type PersistentMemory, zeroRange } from './persistent-memory.js';
import { checkSegmentData, type SegmentDataSummary } from './segment-data.js';
import { SegmentSpace } from './segment-space.js';
import { SegmentTable, formatEntries, type SlotProblem } from './segment-table.js';
import {
  chooseSuperblock, formatSuperblocks, nextSuperblock, type SuperblockCopyProblem,
} from './superblock.js';

export type { SegmentEntry, SegmentState, Superblock, Watermark } from '../common/layout.js';
export type { PersistentMemory } from './persistent-memory.js';
export type { SegmentDataSummary } from './segment-data.js';

/**
 * A batch's baseOffset to write into its header at `position` (segment-relative), and what the
 * batch must be: `bytes` long, `records` records.
 */
export interface OffsetPatch {
  readonly position: number;
  readonly baseOffset: number;
  readonly bytes: number;
  readonly records: number;
}

/** A segment as the broker sees it: its entry, which says where its bytes are (address, size). */
export type SegmentInfo = SegmentEntry;

export interface FormatOptions {
  readonly nodeId: number;
  /**
   * The largest segment. Default LIMITS.segmentSizeBytesDefault (64 MiB). Power of two,
   * multiple of the page size.
   */
  readonly segmentSizeBytes?: number;
  /**
   * The smallest segment: a partition's first. Default LIMITS.segmentSizeBytesFirstDefault
   * (256 KiB), or segmentSizeBytes when that is smaller (then every segment has one size).
   */
  readonly segmentSizeBytesMin?: number;
  /** Format over an existing superblock (destroys the region's contents). Default false. */
  readonly overwrite?: boolean;
}

export interface AllocateRequest {
  readonly topic: string;
  readonly partition: number;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly epoch: number;
  /**
   * Bytes the segment must hold at least (a batch that did not fit the one before). Default
   * 0. The size chosen is segmentSizeFor() of it; more than the largest segment is refused.
   */
  readonly sizeBytesMin?: number;
  /** 'grow' (default): sized by chain position too (segmentSizeFor); 'fit': just sizeBytesMin. */
  readonly sizing?: 'grow' | 'fit';
}

/**
 * The size of a new segment (docs/region-format.md, "Segments sized to need"): a partition's
 * first segment is the smallest, each next one twice the one before up to the largest, so a
 * partition that takes a few records holds little and a busy one soon writes into large
 * segments; never below `sizeBytesMin` (rounded up to a size class).
 */
export function segmentSizeFor(area: Pick<DataArea, 'sizeMin' | 'sizeMax'>,
  chainPosition: number, sizeBytesMin: number, sizing: 'grow' | 'fit' = 'grow'): number {
  const grown = sizing === 'grow' ?
    area.sizeMin * 2 ** Math.min(chainPosition, 52) : area.sizeMin;
  let size = Math.min(area.sizeMax, grown);
  while (size < sizeBytesMin && size < area.sizeMax) size *= 2;
  return size;
}

/** What open() fell back over: never silent, the server logs each at warn. */
export interface OpenReport {
  readonly superblockFallback: SuperblockCopyProblem | null;
  readonly entryFallbacks: readonly SlotProblem[];
}

export interface MediaSite {
  readonly what: 'superblock' | 'segment entry' | 'segment data' | 'region';
  readonly address: number;
  readonly copy?: number;
  readonly segmentIndex?: number;
  readonly slot?: number;
  /** For 'segment data': byte position in the segment, and the offset expected there. */
  readonly position?: number;
  readonly offset?: number;
  readonly problem: string;
}

/** The region's bytes cannot be trusted or read (MEDIA_CODES: PMQ_ERR_REGION_NOT_FORMATTED,
 *  PMQ_ERR_REGION_VERSION, PMQ_ERR_REGION_CORRUPT). */
export class RegionMediaError extends PmqError {
  readonly sites: readonly MediaSite[];

  constructor(code: MediaCode, path: string, sites: readonly MediaSite[]) {
    super(code, `region ${path}: ${sites.map(describeSite).join('; ')}`);
    this.sites = sites;
  }
}

function describeSite(site: MediaSite): string {
  const where = site.what === 'segment entry' ?
    `segment ${site.segmentIndex} entry slot ${site.slot}` :
    site.what === 'segment data' ? `segment ${site.segmentIndex} data at position ` +
      `${site.position} (offset ${site.offset})` :
    site.what === 'superblock' ? `superblock copy ${site.copy}` : 'region';
  return `${where} at address ${site.address}: ${site.problem}`;
}

const MEDIA_CODES = {
  blank: 'PMQ_ERR_REGION_NOT_FORMATTED', version: 'PMQ_ERR_REGION_VERSION',
  corrupt: 'PMQ_ERR_REGION_CORRUPT',
} as const satisfies Record<string, ErrorCode>;
type MediaCode = (typeof MEDIA_CODES)[keyof typeof MEDIA_CODES];

const fail = (code: ErrorCode, message: string, retriable?: boolean): PmqError =>
  new PmqError(code, message, { retriable });

function checkCount(what: string, name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new ArgumentError(`${what}: ${name} ${String(value)} is not an integer in 0..${max}`);
  }
}

/** Whether `bytes` at `address` are one whole, valid RecordBatch v2 of `records` records. */
function batchIs(region: Uint8Array, address: number, bytes: number, records: number): boolean {
  try {
    const header = validateRecordBatch(region, address, bytes);
    return header.sizeBytes === bytes && header.recordCount === records;
  } catch {
    return false; // whatever is wrong with it, a control batch takes its place
  }
}

const NONE_REPLACED: readonly number[] = Object.freeze([]);
/** A batch's recordCount is an int32 (and recordBatchSizeReachable's domain starts at 1). */
const RECORDS_PER_BATCH_MAX = 0x7fff_ffff;

/**
 * A batch's baseOffset (int64, big endian, its first 8 bytes) as two 32-bit halves: a
 * DataView.setBigInt64 would need a BigInt per batch. 0 ≤ baseOffset < 2^53 (checked).
 */
function writeBaseOffset(region: Uint8Array, address: number, baseOffset: number): void {
  const high = Math.floor(baseOffset / 2 ** 32);
  const low = baseOffset - high * 2 ** 32;
  region[address] = high >>> 24;
  region[address + 1] = (high >>> 16) & 0xff;
  region[address + 2] = (high >>> 8) & 0xff;
  region[address + 3] = high & 0xff;
  region[address + 4] = low >>> 24;
  region[address + 5] = (low >>> 16) & 0xff;
  region[address + 6] = (low >>> 8) & 0xff;
  region[address + 7] = low & 0xff;
}

function checkWatermarkShape(what: string, watermark: Watermark): void {
  if (typeof watermark !== 'object' || watermark === null ||
      !Number.isSafeInteger(watermark.position) || !Number.isSafeInteger(watermark.offsetLast)) {
    throw new ArgumentError(`${what}: watermark must be { position, offsetLast } integers`);
  }
}

function sameEntry(a: SegmentEntry, b: SegmentEntry): boolean {
  return a.segmentIndex === b.segmentIndex && a.generation === b.generation &&
    a.epoch === b.epoch && a.state === b.state && a.topic === b.topic &&
    a.partition === b.partition && a.chainPosition === b.chainPosition &&
    a.baseOffset === b.baseOffset && a.watermark.position === b.watermark.position &&
    a.watermark.offsetLast === b.watermark.offsetLast && a.address === b.address &&
    a.sizeBytes === b.sizeBytes;
}

/** Why `next` may not replace the current watermark of `entry`, as a typed error; or null. */
function advanceError(entry: SegmentEntry, next: Watermark, sizeBytes: number): PmqError | null {
  const at = `segment ${entry.segmentIndex}`;
  const { position, offsetLast } = entry.watermark;
  if (next.position > sizeBytes) {
    return fail('PMQ_ERR_WATERMARK_BEYOND_SEGMENT',
      `${at}: position ${next.position} is past the segment end ${sizeBytes}`);
  }
  if (next.position < position || next.offsetLast < offsetLast) {
    return fail('PMQ_ERR_WATERMARK_BACKWARD', `${at}: watermark ${next.position}/` +
      `${next.offsetLast} is behind the durable ${position}/${offsetLast}`);
  }
  const problem = next.position === position && next.offsetLast !== offsetLast ?
    'offsetLast moved without bytes' : watermarkProblem(next, entry.baseOffset, sizeBytes);
  return problem === null ? null : fail('PMQ_ERR_WATERMARK_INVALID', `${at}: ${problem}`);
}

function mediaError(path: string, kind: keyof typeof MEDIA_CODES,
  sites: readonly MediaSite[]): RegionMediaError {
  return new RegionMediaError(MEDIA_CODES[kind], path, sites);
}

export class RegionStore {
  readonly region: PersistentMemory;
  readonly report: OpenReport;
  #superblock: Superblock;
  readonly #table: SegmentTable;
  /**
   * The data area's free ranges (segment-space.ts), the complement of the live entries. A
   * range leaves it before its entry is written and returns after its entry is free and its
   * bytes are zeroed: a range is never in two entries, nor in one and the free space.
   */
  readonly #space: SegmentSpace;
  /** Segments with an update in flight. */
  readonly #busy = new Set<number>();
  /** Chain places with an allocation in flight: `${topic}/${partition}/${chainPosition}`. */
  readonly #allocating = new Set<string>();
  #epochRaising: number | null = null;

  private constructor(region: PersistentMemory, sb: Superblock, table: SegmentTable,
    space: SegmentSpace, report: OpenReport) {
    if (!(sb.regionSizeBytes === region.sizeBytes && table.count === sb.segmentCount)) {
      invariant(false, 'store matches its region',
        { ...sb, sizeBytes: region.sizeBytes, count: table.count });
    }
    this.region = region;
    this.#superblock = sb;
    this.#table = table;
    this.#space = space;
    this.report = report;
  }

  /**
   * Lays out a new region: unformat (zero both superblock headers), write the table, then the
   * superblock copies, each step persisted before the next. A crash in between leaves a region
   * that opens as not formatted (format again) or opens from copy 0 alone.
   */
  static async format(region: PersistentMemory, opts: FormatOptions): Promise<RegionStore> {
    checkCount('format', 'nodeId', opts?.nodeId, LIMITS.nodeIdMax);
    const segmentSizeBytes = opts.segmentSizeBytes ?? LIMITS.segmentSizeBytesDefault;
    const segmentSizeBytesMin = opts.segmentSizeBytesMin ??
      Math.min(LIMITS.segmentSizeBytesFirstDefault, segmentSizeBytes);
    const alignment = Math.min(DATA_ALIGNMENT_BYTES_MAX,
      Math.max(LAYOUT_ALIGNMENT_BYTES, REGION_PAGE_SIZE_BYTES));
    const geometry = computeGeometry(region.sizeBytes, segmentSizeBytes, segmentSizeBytesMin,
      alignment);
    if (!geometry.ok || segmentSizeBytesMin % REGION_PAGE_SIZE_BYTES !== 0) {
      throw fail('PMQ_ERR_REGION_GEOMETRY', `cannot format ${region.path}: ` + (geometry.ok ?
        `segment size ${segmentSizeBytesMin} is not a multiple of the page size` :
        geometry.problem));
    }
    const existing = chooseSuperblock(region.view(0, TABLE_ADDRESS));
    if (opts.overwrite !== true && !(!existing.ok && existing.kind === 'blank')) {
      throw fail('PMQ_ERR_REGION_FORMATTED',
        `${region.path} holds a region (or its remains): pass overwrite to destroy it`);
    }
    const g = geometry.value;
    // Superblocks and table, from address 0 so their addresses index it as they are.
    const bytes = region.view(0, g.dataAddress);
    bytes.fill(0, 0, TABLE_ADDRESS);
    await persistRange(region, 0, TABLE_ADDRESS);
    for (let index = 0; index < g.segmentCount; index += 1) {
      formatEntries(index, 0).forEach((entry, slot) => encodeSegmentEntry(bytes,
        entryAddress(index, slot), entry, { segmentIndex: index, slot, area: dataAreaOf(g) }));
    }
    await persistRange(region, TABLE_ADDRESS, tableSizeBytes(g.segmentCount));
    const first: Superblock = { ...g, sequence: 0, regionId: randomBytes(16).toString('hex'),
      nodeId: opts.nodeId, epoch: 0, ownerInstance: 0, createdAtMs: Date.now() };
    for (const [copy, sb] of formatSuperblocks(first).entries()) {
      encodeSuperblock(bytes, superblockAddress(copy), sb);
      await persistRange(region, superblockAddress(copy), SUPERBLOCK_HEADER_SIZE_BYTES);
    }
    return RegionStore.open(region);
  }

  /** Validates both superblock copies and every slot of every entry; throws RegionMediaError. */
  static open(region: PersistentMemory): RegionStore {
    if (region.sizeBytes < TABLE_ADDRESS) {
      throw mediaError(region.path, 'blank', [{ what: 'region', address: 0,
        problem: `${region.sizeBytes} bytes cannot hold the superblocks` }]);
    }
    const choice = chooseSuperblock(region.view(0, TABLE_ADDRESS));
    if (!choice.ok) {
      throw mediaError(region.path, choice.kind, choice.problems.map((p) => ({
        what: 'superblock', address: p.address, copy: p.copy, problem: p.problem })));
    }
    const sb = choice.superblock;
    if (sb.regionSizeBytes !== region.sizeBytes) {
      throw mediaError(region.path, 'corrupt', [{ what: 'superblock', copy: choice.copy,
        address: superblockAddress(choice.copy),
        problem: `says ${sb.regionSizeBytes} bytes, the region has ${region.sizeBytes}` }]);
    }
    const load = SegmentTable.load(region.view(0, sb.dataAddress), sb);
    if (!load.ok) {
      throw mediaError(region.path, load.kind, load.problems.map((p) => ({
        what: 'segment entry', address: p.address, segmentIndex: p.segmentIndex, slot: p.slot,
        problem: p.problem })));
    }
    // Free space is the complement of the live ranges: two live entries over the same bytes
    // (or one outside the data area) is damage open reports, never something to allocate on.
    const live = load.table.all().filter((entry) => entry.state !== 'free');
    const rebuilt = SegmentSpace.rebuild(dataAreaOf(sb), live);
    if (!rebuilt.ok) {
      const at = load.table.get(rebuilt.segmentIndex).generation % 2;
      throw mediaError(region.path, 'corrupt', [{ what: 'segment entry',
        address: entryAddress(rebuilt.segmentIndex, at), segmentIndex: rebuilt.segmentIndex,
        slot: at, problem: rebuilt.problem }]);
    }
    return new RegionStore(region, sb, load.table, rebuilt.space,
      { superblockFallback: choice.fallback, entryFallbacks: load.fallbacks });
  }

  get superblock(): Superblock {
    return this.#superblock;
  }

  get epoch(): number {
    return this.#superblock.epoch;
  }

  /** The broker instance that raised the region to its epoch (0: unknown). */
  get ownerInstance(): number {
    return this.#superblock.ownerInstance;
  }

  /** The whole table, for the broker to rebuild its partitions from. */
  segments(): readonly SegmentInfo[] {
    return this.#table.all().map((entry) => this.#info(entry));
  }

  segment(index: number): SegmentInfo {
    this.#checkIndex('segment', index);
    return this.#info(this.#table.get(index));
  }

  /**
   * Segment `index`'s entry as it stands, not a copy (segment() copies; the persist path asks
   * several times per batch: issue 11). Entries are replaced whole by each update, never
   * changed in place, so the one returned stays what it was: read it, do not keep it.
   */
  entry(index: number): Readonly<SegmentEntry> {
    this.#checkIndex('entry', index);
    return this.#table.get(index);
  }

  /** Region address of live segment `index`'s first byte (for grants and transfers). */
  segmentAddress(index: number): number {
    this.#checkIndex('segmentAddress', index);
    const entry = this.#table.get(index);
    if (entry.state === 'free') {
      throw fail('PMQ_ERR_SEGMENT_STATE', `segment ${index} is free: it has no bytes`);
    }
    if (!(entry.address + entry.sizeBytes <= this.region.sizeBytes)) {
      invariant(false, 'segment inside region', { index, address: entry.address });
    }
    return entry.address;
  }

  /** Bytes of the data area, where segments are allocated. */
  get dataSizeBytes(): number {
    return this.#space.area.dataEnd - this.#space.area.dataAddress;
  }

  /** The data area's free space (bytes free, segments of a size still possible). */
  space(): { freeBytes: number; largestFreeBytes: number; firstSegmentsFree: number;
    entriesFree: number } {
    const sizeMin = this.#superblock.segmentSizeBytesMin;
    const entriesFree = this.#table.all().reduce((n, e) => n + (e.state === 'free' ? 1 : 0), 0);
    return { freeBytes: this.#space.freeBytes, largestFreeBytes: this.#space.largestFree(),
      firstSegmentsFree: Math.min(entriesFree, this.#space.countFree(sizeMin)), entriesFree };
  }

  /**
   * Checks the committed bytes of segment `index` (segment-data.ts): batches back to back up to
   * the watermark, CRCs, dense offsets. Linear in those bytes, so open() does not call it: the
   * storage node runs it when asked (`pmq inspect`), consumers make the same checks on every
   * batch they read. Throws RegionMediaError (PMQ_ERR_REGION_CORRUPT) naming the segment, the
   * batch's position and address and what is wrong; never repairs or truncates.
   */
  verifySegmentData(index: number): SegmentDataSummary {
    this.#checkIndex('verifySegmentData', index);
    const address = this.segmentAddress(index);
    const check = checkSegmentData(this.#segmentBytes(index), 0, this.#table.get(index));
    if (check.ok) return check.summary;
    const { position, offset, problem } = check.problem;
    throw mediaError(this.region.path, 'corrupt', [{ what: 'segment data', segmentIndex: index,
      address: address + position, position, offset, problem }]);
  }

  /**
   * Takes the lowest free entry and a range of segmentSizeFor() bytes for a place in a
   * partition's chain; durable on return.
   */
  async allocateSegment(request: AllocateRequest): Promise<SegmentInfo> {
    const { topic, partition, chainPosition, baseOffset, epoch } = request ?? {};
    const sizeBytesMin = request?.sizeBytesMin ?? 0;
    const problem = topicProblem(topic);
    if (problem !== null) throw new ArgumentError(`allocateSegment: ${problem}`);
    checkCount('allocateSegment', 'partition', partition, LIMITS.partitionMax);
    checkCount('allocateSegment', 'chainPosition', chainPosition, LIMITS.chainPositionMax);
    checkCount('allocateSegment', 'baseOffset', baseOffset, Number.MAX_SAFE_INTEGER);
    checkCount('allocateSegment', 'sizeBytesMin', sizeBytesMin,
      this.#superblock.segmentSizeBytes);
    this.#checkEpoch(epoch);
    const place = `${topic}/${partition}/${chainPosition}`;
    const live = this.#table.findLive(topic, partition, chainPosition);
    if (live !== undefined || this.#allocating.has(place)) {
      throw fail('PMQ_ERR_SEGMENT_EXISTS', `${place} already has a segment` +
        (live === undefined ? ' being allocated' : `: ${live.segmentIndex}`));
    }
    const index = this.#table.findFree(this.#busy);
    const sizeBytes = segmentSizeFor(this.#space.area, chainPosition, sizeBytesMin,
      request.sizing);
    if (!isPowerOfTwo(sizeBytes)) invariant(false, 'a size class', { sizeBytes });
    const block = index < 0 ? null : this.#space.allocate(sizeBytes);
    if (block === null) throw this.#full(index < 0, sizeBytes);
    const current = this.#table.get(index);
    const zero = block.cleared ? undefined : { address: block.address, sizeBytes, zero: true };
    try {
      await this.#update(index, [place], {
        segmentIndex: index, generation: current.generation + 1, epoch, state: 'active', topic,
        partition, chainPosition, baseOffset,
        watermark: { position: 0, offsetLast: baseOffset - 1 }, address: block.address, sizeBytes,
      }, zero);
    } catch (error) {
      // Not written (fenced, or the persist failed): the range goes back, maybe half zeroed.
      this.#space.release(block.address, sizeBytes, false);
      throw error;
    }
    return this.segment(index);
  }

  /** PMQ_ERR_REGION_FULL, final (not retriable: waiting does not free space), what to do. */
  #full(noEntry: boolean, sizeBytes: number): PmqError {
    const why = noEntry ? `all ${this.#table.count} segment-table entries are in use` :
      `no free range of ${sizeBytes} bytes (${this.#space.freeBytes} bytes free, largest ` +
      `free range ${this.#space.largestFree()})`;
    return fail('PMQ_ERR_REGION_FULL', `region full: ${why} in ${this.region.path}`, false);
  }

  /**
   * Makes [0, watermark.position) of an active segment durable and visible: persists the bytes
   * above the old watermark first, then the entry. Resolves when both are durable. The same
   * watermark again is a no-op (a retry).
   */
  async persistWatermark(index: number, watermark: Watermark, epoch: number): Promise<SegmentInfo> {
    return this.#advance('persistWatermark', index, watermark, epoch, 'active');
  }

  /**
   * Before the bytes of [durable, positionEnd) persist: checks each batch a producer appended
   * there (a whole RecordBatch v2 of exactly the bytes and records it claimed, CRC included)
   * and replaces one that is not with a control batch of that size and record count, so what
   * becomes durable always parses and its offsets hold; then writes each batch's baseOffset
   * (sequenced by the broker after the producer wrote it; the CRC does not cover it). Only
   * above the durable watermark: durable bytes are never rewritten. Returns the positions
   * replaced (the producers that lied about them lose only those records).
   */
  settleBatches(index: number, patches: readonly OffsetPatch[], end: Watermark):
    readonly number[] {
    this.#checkIndex('settleBatches', index);
    const positionEnd = end.position;
    const { position: durable, offsetLast: durableLast } = this.#table.get(index).watermark;
    // Index loops, no filtered copy, no DataView, no BigInt: nothing allocated per batch
    // unless one is replaced (issue 11). Patches wholly below `durable` are repeats: skipped.
    // The rest must tile [durable, positionEnd) in order: a byte no piece covers would become
    // durable unchecked, and might not parse.
    let next = durable;
    let nextOffset = durableLast + 1;
    for (let i = 0; i < patches.length; i += 1) {
      const { position, baseOffset, bytes, records } = patches[i]!;
      if (position < durable && position + bytes <= durable) continue;
      // records is checked before recordBatchSizeReachable, which asserts it (a broker's
      // number must never reach an invariant: the owner-side fuzz aborted a node with it).
      if (position !== next || baseOffset !== nextOffset || !Number.isSafeInteger(bytes) ||
          bytes < RECORD_BATCH_HEADER_SIZE_BYTES || position + bytes > positionEnd ||
          !Number.isSafeInteger(baseOffset) || baseOffset < 0 ||
          !Number.isSafeInteger(records) || records < 1 || records > RECORDS_PER_BATCH_MAX ||
          !recordBatchSizeReachable(bytes, records)) {
        throw new ArgumentError(`settleBatches: a batch of ${bytes} bytes and ${records} ` +
          `records at ${position} (offset ${baseOffset}) does not lie inside ${durable}..` +
          `${positionEnd} of segment ${index} right after the one before (at ${next}, offset ` +
          `${nextOffset}), or no batch has that shape`);
      }
      next = position + bytes;
      nextOffset = baseOffset + records;
    }
    if (next !== positionEnd || (next > durable && nextOffset - 1 !== end.offsetLast)) {
      throw new ArgumentError(`settleBatches: the pieces cover ${durable}..${next} of segment ` +
        `${index} with offsets up to ${nextOffset - 1}, not ${durable}..${positionEnd} up to ` +
        `${end.offsetLast}: every byte that becomes durable is in one, offsets dense`);
    }
    const segment = this.#segmentBytes(index); // indexed by position
    let replaced: number[] | null = null;
    for (let i = 0; i < patches.length; i += 1) {
      const { position, baseOffset, bytes, records } = patches[i]!;
      if (position < durable) continue;  // a repeat (checked above: wholly below)
      if (!batchIs(segment, position, bytes, records)) {
        segment.set(encodeFiller(bytes, records, baseOffset), position);
        (replaced ??= []).push(position);
      }
      writeBaseOffset(segment, position, baseOffset);
    }
    return replaced ?? NONE_REPLACED;
  }

  /** persistWatermark that also seals: no further watermark moves. Sealing again is a no-op. */
  async sealSegment(index: number, watermark: Watermark, epoch: number): Promise<SegmentInfo> {
    return this.#advance('sealSegment', index, watermark, epoch, 'sealed');
  }

  /**
   * Returns a segment (active or sealed) to the free pool, then zeroes and persists its bytes,
   * so no later owner of the segment (nor a direct-mode reader of it) ever sees a byte of the
   * old one. The entry goes first: a live entry always describes intact data. A crash between
   * the two leaves a free segment with old bytes, which allocation zeroes before reuse (only
   * segments zeroed by this process count as cleared).
   */
  async freeSegment(index: number, epoch: number): Promise<SegmentInfo> {
    this.#checkIndex('freeSegment', index);
    this.#checkEpoch(epoch);
    const current = this.#table.get(index);
    if (current.state === 'free') return this.segment(index);
    this.#checkIdle(index);
    await this.#update(index, [], { ...formatEntries(index, epoch)[0] as SegmentEntry,
      generation: current.generation + 1 });
    await this.#clear(current.address, current.sizeBytes);
    return this.segment(index);
  }

  /**
   * Zeroes a freed range durably, then gives it back to the free space as cleared. Until then
   * no entry can take it; if the zeroing fails (or the process dies) it is free but not
   * cleared, and allocation zeroes it first (open rebuilds every free range as not cleared).
   */
  async #clear(address: number, sizeBytes: number): Promise<void> {
    let cleared = false;
    try {
      zeroRange(this.region, address, sizeBytes);
      await persistRange(this.region, address, sizeBytes);
      cleared = true;
    } finally {
      this.#space.release(address, sizeBytes, cleared);
    }
  }

  /**
   * Raises the fencing epoch and records the broker instance that raised it; durable on return.
   * The same epoch again is a no-op for its owner (or with ownerInstance 0: "any"), and
   * PMQ_ERR_EPOCH_STALE for another instance: an epoch is never shared by two brokers.
   */
  async raiseEpoch(epoch: number, ownerInstance = 0): Promise<Superblock> {
    checkCount('raiseEpoch', 'epoch', epoch, Number.MAX_SAFE_INTEGER);
    checkCount('raiseEpoch', 'ownerInstance', ownerInstance, Number.MAX_SAFE_INTEGER);
    if (this.#epochRaising !== null) {
      throw fail('PMQ_ERR_EPOCH_BUSY', `epoch ${this.#epochRaising} is being raised`, true);
    }
    const current = this.#superblock;
    if (epoch < current.epoch) {
      throw fail('PMQ_ERR_EPOCH_STALE', `epoch ${epoch} is below the region's ${current.epoch}`);
    }
    if (epoch === current.epoch) {
      if (ownerInstance === 0 || ownerInstance === current.ownerInstance) return current;
      throw fail('PMQ_ERR_EPOCH_STALE', `epoch ${epoch} is fenced: this storage node is at ` +
        `epoch ${current.epoch}, raised by another broker instance (a newer broker owns it)`);
    }
    const { superblock, copy } = nextSuperblock(current, { epoch, ownerInstance });
    const address = superblockAddress(copy);
    this.#epochRaising = epoch;
    try {
      const bytes = this.#metadataBytes();
      encodeSuperblock(bytes, address, superblock);
      await persistRange(this.region, address, SUPERBLOCK_HEADER_SIZE_BYTES);
      const back = decodeSuperblock(bytes, address);
      if (!(back.ok && back.value.epoch === epoch && back.value.sequence === superblock.sequence)) {
        invariant(false, 'superblock reads back as written', { address });
      }
      this.#superblock = superblock;
    } finally {
      this.#epochRaising = null;
    }
    return superblock;
  }

  /**
   * Throws what persistWatermark (state 'active') or sealSegment ('sealed') would throw for
   * `watermark` before persisting anything; false when it would be a retry (nothing to do).
   * The persist queue asks first, so a bad watermark is named as such before its pieces are
   * looked at.
   */
  checkAdvance(what: string, index: number, watermark: Watermark,
    state: 'active' | 'sealed'): boolean {
    this.#checkIndex(what, index);
    checkWatermarkShape(what, watermark);
    const current = this.#table.get(index);
    const same = current.watermark.position === watermark.position &&
      current.watermark.offsetLast === watermark.offsetLast;
    if (same && current.state === state) return false; // a retry
    if (current.state !== 'active') {
      throw fail('PMQ_ERR_SEGMENT_STATE', `${what}: segment ${index} is ${current.state}`);
    }
    const error = advanceError(current, watermark, current.sizeBytes);
    if (error !== null) throw error;
    return true;
  }

  async #advance(what: string, index: number, watermark: Watermark, epoch: number,
    state: 'active' | 'sealed'): Promise<SegmentInfo> {
    this.#checkIndex(what, index);
    checkWatermarkShape(what, watermark);
    this.#checkEpoch(epoch);
    if (!this.checkAdvance(what, index, watermark, state)) return this.segment(index);
    this.#checkIdle(index);
    const current = this.#table.get(index);
    const sizeBytes = current.sizeBytes;
    const before = current.watermark.position;
    if (!(watermark.position >= before && watermark.position <= sizeBytes)) {
      invariant(false, 'checked above: the watermark only grows, within the segment',
        { index, before });
    }
    const data = { address: current.address + before,
      sizeBytes: watermark.position - before };
    await this.#update(index, [], { ...current, generation: current.generation + 1, epoch,
      state, watermark: { position: watermark.position, offsetLast: watermark.offsetLast } },
    data);
    return this.segment(index);
  }

  /**
   * Data first (when given; `zero`: cleared first), then the entry into the slot that does not
   * win; both persisted.
   */
  async #update(index: number, places: readonly string[], entry: SegmentEntry,
    data?: { address: number; sizeBytes: number; zero?: boolean }): Promise<void> {
    if (this.#busy.has(index)) {
      invariant(false, 'one update per segment at a time', { index });
    }
    this.#busy.add(index);
    this.#table.hold(index);
    for (const place of places) this.#allocating.add(place);
    try {
      if (data !== undefined && data.sizeBytes > 0) {
        if (!(data.address >= this.#superblock.dataAddress &&
            data.address + data.sizeBytes <= this.region.sizeBytes)) {
          invariant(false, 'data inside the region', { index, ...data });
        }
        if (data.zero === true) {
          zeroRange(this.region, data.address, data.sizeBytes);
        }
        await persistRange(this.region, data.address, data.sizeBytes); // 1. data
        this.#checkEpoch(entry.epoch); // fenced while it persisted: nothing becomes visible
      }
      const slot = this.#table.nextSlot(index);
      const address = entryAddress(index, slot);
      if (!(address + SEGMENT_ENTRY_SIZE_BYTES <= this.#superblock.dataAddress)) {
        invariant(false, 'entry inside the table', { index, slot, address });
      }
      const context = { segmentIndex: index, slot, area: this.#space.area };
      const bytes = this.#metadataBytes();
      encodeSegmentEntry(bytes, address, entry, context);
      await persistRange(this.region, address, SEGMENT_ENTRY_SIZE_BYTES); // 2. entry
      const back = decodeSegmentEntry(bytes, address, context);
      if (!(back.ok && sameEntry(back.value, entry))) {
        invariant(false, 'entry reads back as written', { index, slot, address });
      }
      this.#table.set(entry);
    } finally {
      this.#busy.delete(index);
      this.#table.release(index);
      for (const place of places) this.#allocating.delete(place);
    }
  }

  /**
   * Lets the transport's native path persist this region's active segments (docs/wire-
   * protocol.md, "Persist frames"); not for an ordinary-file region, whose msync must not
   * block the thread. False when not enabled.
   */
  enableNativePersist(transport: Transport, region: Region): boolean {
    if (region !== this.region) {
      invariant(false, 'native persists go to the region this store runs on');
    }
    if (this.region.backing === 'file') return false;
    transport.configurePersist(region.nativeHandle, { tableAddress: TABLE_ADDRESS,
      dataAddress: this.#space.area.dataAddress, dataEnd: this.#space.area.dataEnd,
      segmentCount: this.#table.count }, this.#table.persistState);
    this.#table.enableNativePersist();
    return true;
  }

  /** JS is about to work on segment `index` outside an update (a persist lane): native off. */
  holdSegment(index: number): void {
    this.#checkIndex('holdSegment', index);
    this.#table.hold(index);
  }

  releaseSegment(index: number): void {
    this.#table.release(index);
  }

  nativePersistStats(): { persisted: number; declined: number } {
    return this.#table.nativePersistStats();
  }

  /** Superblocks and table: [0, dataAddress), so region addresses index it unchanged. */
  #metadataBytes(): Uint8Array {
    return this.region.view(0, this.#superblock.dataAddress);
  }

  /** Segment `index`'s bytes, indexed by position (one view: a segment ≤ the longest view). */
  #segmentBytes(index: number): Uint8Array {
    return this.region.view(this.segmentAddress(index), this.#table.get(index).sizeBytes);
  }

  #info(entry: SegmentEntry): SegmentInfo {
    return { ...entry };
  }

  #checkIndex(what: string, index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#table.count) {
      throw fail('PMQ_ERR_SEGMENT_UNKNOWN',
        `${what}: segment ${String(index)} outside 0..${this.#table.count - 1}`);
    }
  }

  #checkIdle(index: number): void {
    if (this.#busy.has(index)) {
      throw fail('PMQ_ERR_SEGMENT_BUSY', `segment ${index} has an update in flight`, true);
    }
  }

  /** Requests carry the region's current epoch; older ones are fenced off. */
  #checkEpoch(epoch: number): void {
    checkCount('epoch check', 'epoch', epoch, Number.MAX_SAFE_INTEGER);
    const floor = Math.max(this.#superblock.epoch, this.#epochRaising ?? 0);
    if (epoch < floor) {
      throw fail('PMQ_ERR_EPOCH_STALE', `epoch ${epoch} is fenced: the region is at ${floor}`);
    }
    if (epoch > this.#superblock.epoch) {
      throw fail('PMQ_ERR_EPOCH_FUTURE',
        `epoch ${epoch} is above the region's ${this.#superblock.epoch}: raise it first`);
    }
  }
}

/** Durable on resolve; msync on ordinary files runs off the JS thread. */
async function persistRange(region: PersistentMemory, address: number,
  sizeBytes: number): Promise<void> {
  if (region.backing === 'file') await region.persistAsync(address, sizeBytes);
  else region.persist(address, sizeBytes);
}
