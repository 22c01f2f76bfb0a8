/**
 * The on-media layout of a storage region, format version 2: two superblock copies, the segment
 * table (two slots per entry), then the data area, where each live entry owns a power-of-two
 * range of its own size (segments sized to need; storage-node/segment-space.ts allocates).
 * docs/region-format.md describes every byte; this module is its executable form and must
 * change with it (and with native/persist_native.cc, which reads the entry fields it needs).
 *
 * Pure: encode into and decode from a caller's Uint8Array; no I/O, no persistence ordering
 * (storage-node/region-store.ts owns that). All integers are little-endian. 64-bit fields hold
 * numbers below 2^53; a decoded value outside that range is corruption.
 *
 * Decoders never throw on bad bytes: they return { ok: false, problem } so that the caller can
 * fall back to the other copy or slot, or raise PMQ_ERR_REGION_CORRUPT naming where it looked.
 * Encoders assert (invariant) that what they write would decode: writing an invalid structure
 * is our own bug, not an operating error.
 */
import { invariant } from './invariant.js';
import { LIMITS } from './limits.js';
import { topicNameProblem } from './topic-name.js';
import { crc32c } from '../native/crc32c.js';

export const LAYOUT_VERSION = 2;
/** "PMQREGON": a pmq region. The version is a separate field, not part of the magic. */
export const REGION_MAGIC = Uint8Array.from([0x50, 0x4d, 0x51, 0x52, 0x45, 0x47, 0x4f, 0x4e]);
/** Layout granule: every address below is a multiple of it. */
export const LAYOUT_ALIGNMENT_BYTES = 4096;
/** The data area is aligned to the formatting machine's page size, at most this. */
export const DATA_ALIGNMENT_BYTES_MAX = 65_536;

/**
 * Version 3 (layout 2) added segmentSizeBytesMin: segments are sized to need, from that size up
 * to segmentSizeBytes. Versions 1 and 2 (layout 1, every segment segmentSizeBytes, at
 * dataAddress + index × size) are refused as PMQ_ERR_REGION_VERSION: see docs/region-format.md.
 */
export const SUPERBLOCK_VERSION = 3;
export const SUPERBLOCK_COPY_COUNT = 2;
/** Each copy owns 4 KiB (its own page); only the header at its start is written. */
export const SUPERBLOCK_COPY_SIZE_BYTES = 4096;
export const SUPERBLOCK_HEADER_SIZE_BYTES = 128;
/** Where each field of a superblock header starts, from the start of its copy. */
export const SUPERBLOCK_FIELD_AT = {
  magic: 0, version: 8, headerSizeBytes: 10, flags: 12, sequence: 16, regionId: 24,
  nodeId: 40, reserved0: 44, regionSizeBytes: 48, segmentSizeBytes: 56, segmentCount: 64,
  entrySizeBytes: 68, entrySlotCount: 70, tableAddress: 72, dataAddress: 80, epoch: 88,
  createdAtMs: 96, ownerInstance: 104, segmentSizeBytesMin: 112, reserved1: 120, crc: 124,
} as const;

/** Version 2 (layout 2) added the segment's own address and size. */
export const SEGMENT_ENTRY_VERSION = 2;
export const SEGMENT_ENTRY_SIZE_BYTES = 512;
export const SEGMENT_ENTRY_SLOT_COUNT = 2;
/** Where each field of a segment-table entry starts, from the start of its slot. */
export const SEGMENT_ENTRY_FIELD_AT = {
  version: 0, state: 2, reserved0: 3, segmentIndex: 4, generation: 8, epoch: 16,
  partition: 24, chainPosition: 28, baseOffset: 32, watermarkPosition: 40,
  watermarkOffsetLast: 48, topicSizeBytes: 56, topic: 58, reserved1: 307, address: 312,
  sizeBytes: 320, reserved2: 328, crc: 508,
} as const;

/** The table starts right after the two superblock copies. */
export const TABLE_ADDRESS = SUPERBLOCK_COPY_COUNT * SUPERBLOCK_COPY_SIZE_BYTES;
export const TABLE_BYTES_PER_SEGMENT = SEGMENT_ENTRY_SLOT_COUNT * SEGMENT_ENTRY_SIZE_BYTES;
export const REGION_ID_SIZE_BYTES = 16;

// Constant relationships, checked at load.
invariant(SUPERBLOCK_FIELD_AT.crc + 4 === SUPERBLOCK_HEADER_SIZE_BYTES, 'superblock crc last');
invariant(SUPERBLOCK_HEADER_SIZE_BYTES <= SUPERBLOCK_COPY_SIZE_BYTES, 'header fits its copy');
invariant(SEGMENT_ENTRY_FIELD_AT.crc + 4 === SEGMENT_ENTRY_SIZE_BYTES, 'entry crc last');
invariant(SEGMENT_ENTRY_FIELD_AT.topic + LIMITS.topicNameBytesMax ===
  SEGMENT_ENTRY_FIELD_AT.reserved1, 'topic field holds the longest topic name');
invariant(SEGMENT_ENTRY_SIZE_BYTES % 64 === 0, 'entries are whole cache lines');
invariant(TABLE_ADDRESS % LAYOUT_ALIGNMENT_BYTES === 0, 'table aligned');
invariant(LIMITS.segmentSizeBytesMin % DATA_ALIGNMENT_BYTES_MAX === 0,
  'every allowed segment size is a multiple of every allowed data alignment');

/** Why a live segment's range may not be where it is, or null. */
export function rangeProblem(address: number, sizeBytes: number, area: DataArea): string | null {
  if (!isPowerOfTwo(sizeBytes) || sizeBytes < area.sizeMin || sizeBytes > area.sizeMax) {
    return `segment size ${sizeBytes} is not a power of two in ${area.sizeMin}..${area.sizeMax}`;
  }
  if (!Number.isSafeInteger(address) || address < area.dataAddress ||
      address + sizeBytes > area.dataEnd) {
    return `segment [${address}, +${sizeBytes}) outside the data area ` +
      `[${area.dataAddress}, ${area.dataEnd})`;
  }
  // Buddy alignment (segment-space.ts): a segment starts at a multiple of its own size from
  // dataAddress, so two live ranges either nest or are apart, never half-overlap by layout.
  if ((address - area.dataAddress) % sizeBytes !== 0) {
    return `segment at ${address} is not aligned to its size ${sizeBytes} from the data area`;
  }
  return null;
}

/** Why bytes did not decode: never written, a version this build cannot read, or damaged. */
export type DecodeFailureKind = 'blank' | 'version' | 'corrupt';
export type Decoded<T> = { readonly ok: true; readonly value: T } |
  { readonly ok: false; readonly kind: DecodeFailureKind; readonly problem: string };

export interface Watermark {
  /** Bytes of the segment that are committed: [0, position). */
  readonly position: number;
  /** Offset of the last committed record; baseOffset - 1 while the segment is empty. */
  readonly offsetLast: number;
}

export interface Superblock extends RegionGeometry {
  /** The copy with the highest valid sequence wins; copy index = sequence % 2. */
  readonly sequence: number;
  /** 32 lower-case hex digits, random at format time. */
  readonly regionId: string;
  readonly nodeId: number;
  /** The fencing epoch: only rises. */
  readonly epoch: number;
  /**
   * The broker instance that raised the region to `epoch` (0: none yet, or a version 1 copy):
   * only that instance may hello again at the same epoch (docs/broker.md, "Epochs").
   */
  readonly ownerInstance: number;
  readonly createdAtMs: number;
}

export type SegmentState = 'free' | 'active' | 'sealed';
const STATE_CODES: Readonly<Record<SegmentState, number>> = { free: 0, active: 1, sealed: 2 };
/** The inverse of STATE_CODES (a lookup per decode, no list built). */
const STATE_BY_CODE: readonly (SegmentState | undefined)[] = ['free', 'active', 'sealed'];
invariant(STATE_BY_CODE.length === Object.keys(STATE_CODES).length &&
  STATE_BY_CODE.every((state, code) => state !== undefined && STATE_CODES[state] === code),
'STATE_BY_CODE inverts STATE_CODES');

export interface SegmentEntry {
  readonly segmentIndex: number;
  /** Rises by one per update; the slot with the higher valid generation wins (slot = gen % 2). */
  readonly generation: number;
  /** The fencing epoch of the request that wrote this entry. */
  readonly epoch: number;
  readonly state: SegmentState;
  /** Free entries: '' and every field below zero. */
  readonly topic: string;
  readonly partition: number;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly watermark: Watermark;
  /** Region address of the segment's first byte; 0 when free. */
  readonly address: number;
  /** A power of two in segmentSizeBytesMin..segmentSizeBytes; 0 when free. */
  readonly sizeBytes: number;
}

export interface RegionGeometry {
  readonly regionSizeBytes: number;
  /** The largest segment (the top size class of the data area's allocator). */
  readonly segmentSizeBytes: number;
  /** The smallest segment: a partition's first, and the allocator's granule. */
  readonly segmentSizeBytesMin: number;
  /** Entries in the segment table: the most live segments at once. */
  readonly segmentCount: number;
  readonly tableAddress: number;
  readonly dataAddress: number;
}

/** Where segments may lie: [dataAddress, dataEnd), sizes sizeMin..sizeMax (powers of two). */
export interface DataArea {
  readonly dataAddress: number;
  readonly dataEnd: number;
  readonly sizeMin: number;
  readonly sizeMax: number;
}

/** The data area: from dataAddress, as many whole smallest segments as the region holds. */
export function dataAreaOf(g: RegionGeometry): DataArea {
  const blocks = Math.floor((g.regionSizeBytes - g.dataAddress) / g.segmentSizeBytesMin);
  return { dataAddress: g.dataAddress, dataEnd: g.dataAddress + blocks * g.segmentSizeBytesMin,
    sizeMin: g.segmentSizeBytesMin, sizeMax: g.segmentSizeBytes };
}

const ok = <T>(value: T): Decoded<T> => ({ ok: true, value });
const bad = <T>(problem: string, kind: DecodeFailureKind = 'corrupt'): Decoded<T> =>
  ({ ok: false, kind, problem });

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export function alignUp(n: number, alignment: number): number {
  if (!(isPowerOfTwo(alignment) && Number.isSafeInteger(n) && n >= 0)) {
    invariant(false, 'alignUp arguments', { n, alignment });
  }
  return Math.ceil(n / alignment) * alignment;
}

export function tableSizeBytes(segmentCount: number): number {
  return segmentCount * TABLE_BYTES_PER_SEGMENT;
}

/** Region address of slot `slot` of segment `segmentIndex`'s table entry. */
export function entryAddress(segmentIndex: number, slot: number): number {
  if (!(Number.isSafeInteger(segmentIndex) && segmentIndex >= 0 &&
      segmentIndex < LIMITS.segmentCountMax && (slot === 0 || slot === 1))) {
    invariant(false, 'entry slot', { segmentIndex, slot });
  }
  return TABLE_ADDRESS + segmentIndex * TABLE_BYTES_PER_SEGMENT + slot * SEGMENT_ENTRY_SIZE_BYTES;
}

export function superblockAddress(copy: number): number {
  if (!(copy === 0 || copy === 1)) {
    invariant(false, 'superblock copy', { copy });
  }
  return copy * SUPERBLOCK_COPY_SIZE_BYTES;
}

export function segmentSizeProblem(segmentSizeBytes: number): string | null {
  if (!isPowerOfTwo(segmentSizeBytes)) {
    return `segment size ${segmentSizeBytes} is not a power of two`;
  }
  if (segmentSizeBytes < LIMITS.segmentSizeBytesMin ||
      segmentSizeBytes > LIMITS.segmentSizeBytesMax) {
    return `segment size ${segmentSizeBytes} is outside ` +
      `${LIMITS.segmentSizeBytesMin}..${LIMITS.segmentSizeBytesMax}`;
  }
  return null;
}

/**
 * A table of one entry per smallest segment the region could hold (so the region fills up in
 * bytes before it runs out of entries, whatever the sizes), after the superblocks, with the
 * data area aligned to dataAlignmentBytes; segments from segmentSizeBytesMin up to
 * segmentSizeBytes. A string names what is wrong.
 */
export function computeGeometry(
  regionSizeBytes: number,
  segmentSizeBytesMax: number,
  segmentSizeBytesMin: number,
  dataAlignmentBytes: number,
): Decoded<RegionGeometry> {
  const segmentProblem = segmentSizeProblem(segmentSizeBytesMax) ??
    segmentSizeProblem(segmentSizeBytesMin);
  if (segmentProblem !== null) return bad(segmentProblem);
  if (segmentSizeBytesMin > segmentSizeBytesMax) {
    return bad(`smallest segment ${segmentSizeBytesMin} is above the largest ` +
      `${segmentSizeBytesMax}`);
  }
  const segmentSizeBytes = segmentSizeBytesMin;
  if (!(isPowerOfTwo(dataAlignmentBytes) && dataAlignmentBytes >= LAYOUT_ALIGNMENT_BYTES &&
      dataAlignmentBytes <= DATA_ALIGNMENT_BYTES_MAX)) {
    invariant(false, 'data alignment', { dataAlignmentBytes });
  }
  if (!Number.isSafeInteger(regionSizeBytes) || regionSizeBytes % LAYOUT_ALIGNMENT_BYTES !== 0) {
    return bad(`region size ${regionSizeBytes} is not a multiple of ${LAYOUT_ALIGNMENT_BYTES}`);
  }
  const perSegment = segmentSizeBytes + TABLE_BYTES_PER_SEGMENT;
  let count = Math.min(LIMITS.segmentCountMax,
    Math.max(0, Math.floor((regionSizeBytes - TABLE_ADDRESS) / perSegment)));
  const dataAddressFor = (n: number): number =>
    alignUp(TABLE_ADDRESS + tableSizeBytes(n), dataAlignmentBytes);
  while (count > 0 && dataAddressFor(count) + count * segmentSizeBytes > regionSizeBytes) {
    count -= 1;
  }
  if (count === 0) {
    return bad(`region of ${regionSizeBytes} bytes holds no segment of ${segmentSizeBytes} ` +
      `bytes after superblocks and table (needs ${dataAddressFor(1) + segmentSizeBytes})`);
  }
  return ok({ regionSizeBytes, segmentSizeBytes: segmentSizeBytesMax, segmentSizeBytesMin,
    segmentCount: count, tableAddress: TABLE_ADDRESS, dataAddress: dataAddressFor(count) });
}

/** What any geometry read back from media must satisfy (it need not be the maximal one). */
export function geometryProblem(g: RegionGeometry): string | null {
  const segmentProblem = segmentSizeProblem(g.segmentSizeBytes) ??
    segmentSizeProblem(g.segmentSizeBytesMin);
  if (segmentProblem !== null) return segmentProblem;
  if (g.segmentSizeBytesMin > g.segmentSizeBytes) {
    return `smallest segment ${g.segmentSizeBytesMin} above the largest ${g.segmentSizeBytes}`;
  }
  if (g.regionSizeBytes % LAYOUT_ALIGNMENT_BYTES !== 0) return 'region size not aligned';
  if (g.segmentCount < 1 || g.segmentCount > LIMITS.segmentCountMax) {
    return `segment count ${g.segmentCount} outside 1..${LIMITS.segmentCountMax}`;
  }
  if (g.tableAddress !== TABLE_ADDRESS) return `table address ${g.tableAddress} is not 8192`;
  const tableEnd = g.tableAddress + tableSizeBytes(g.segmentCount);
  if (g.dataAddress % LAYOUT_ALIGNMENT_BYTES !== 0 || g.dataAddress < tableEnd ||
      g.dataAddress - tableEnd >= DATA_ALIGNMENT_BYTES_MAX) {
    return `data address ${g.dataAddress} does not follow the table ending at ${tableEnd}`;
  }
  if (g.dataAddress + g.segmentCount * g.segmentSizeBytesMin > g.regionSizeBytes) {
    return `${g.segmentCount} segments of ${g.segmentSizeBytesMin} bytes overrun the region`;
  }
  return null;
}

// ---- field helpers -------------------------------------------------------------------------

const SB = SUPERBLOCK_FIELD_AT;
const SE = SEGMENT_ENTRY_FIELD_AT;

function viewAt(bytes: Uint8Array, at: number, sizeBytes: number): DataView {
  if (!(Number.isSafeInteger(at) && at >= 0 && at + sizeBytes <= bytes.byteLength)) {
    invariant(false, 'layout structure inside the buffer',
      { at, sizeBytes, bufferBytes: bytes.byteLength });
  }
  return new DataView(bytes.buffer, bytes.byteOffset + at, sizeBytes);
}

// 64-bit fields as two 32-bit halves, little endian: a BigInt per field would allocate on the
// persist path (an entry is written and read back per batch; issue 11). Values are JS numbers
// within ±(2^53 - 1), so every product and sum below is exact.
const TWO_32 = 2 ** 32;
/** The high half of 2^53: the first value that is not a safe integer. */
const HIGH_UNSAFE = 0x200000;

export function setU64(view: DataView, at: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    invariant(false, 'u64 field is a safe integer', { value });
  }
  const high = Math.floor(value / TWO_32);
  view.setUint32(at, value - high * TWO_32, true);
  view.setUint32(at + 4, high, true);
}

export function setI64(view: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value)) {
    invariant(false, 'i64 field is a safe integer', { value });
  }
  const high = Math.floor(value / TWO_32);  // negative values: the two's complement high half
  view.setUint32(at, value - high * TWO_32, true);
  view.setInt32(at + 4, high, true);
}

/** A u64 field, or null when it is not a safe integer (≥ 2^53). */
export function getU64(view: DataView, at: number): number | null {
  const high = view.getUint32(at + 4, true);
  return high < HIGH_UNSAFE ? high * TWO_32 + view.getUint32(at, true) : null;
}

/** An i64 field, or null when it is not within ±(2^53 - 1). */
export function getI64(view: DataView, at: number): number | null {
  const high = view.getInt32(at + 4, true);
  const low = view.getUint32(at, true);
  if (high >= HIGH_UNSAFE || high < -HIGH_UNSAFE || (high === -HIGH_UNSAFE && low === 0)) {
    return null;
  }
  return high * TWO_32 + low;
}

/**
 * The topic bytes as text (ASCII, checked by entryProblem). apply(), not a spread: a spread
 * walks the bytes with an iterator, allocated per decode, and an entry is read back per
 * persisted batch (issue 11).
 */
function topicText(slot: Uint8Array, at: number, sizeBytes: number): string {
  return String.fromCharCode.apply(null, slot.subarray(at, at + sizeBytes) as unknown as number[]);
}

function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i += 1) if (bytes[i] !== 0) return false;
  return true;
}

function crcProblem(bytes: Uint8Array, view: DataView, crcAt: number): string | null {
  const stored = view.getUint32(crcAt, true);
  const computed = crc32c(bytes, 0, crcAt);
  if (stored === computed) return null;
  return `crc32c mismatch: stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`;
}

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

// ---- superblock ------------------------------------------------------------------------------

/** Why a superblock must not be written or trusted, or null. */
export function superblockProblem(sb: Superblock): string | null {
  if (!isCount(sb.sequence)) return `sequence ${sb.sequence} is not a count`;
  if (!/^[0-9a-f]{32}$/.test(sb.regionId)) return 'region id is not 32 hex digits';
  if (!isU32(sb.nodeId)) return `node id ${sb.nodeId} is not a uint32`;
  if (!isCount(sb.epoch)) return `epoch ${sb.epoch} is not a count`;
  if (!isCount(sb.createdAtMs)) return `created time ${sb.createdAtMs} is not a count`;
  if (!isCount(sb.ownerInstance)) return `owner instance ${sb.ownerInstance} is not a count`;
  return geometryProblem(sb);
}

export function encodeSuperblock(bytes: Uint8Array, at: number, sb: Superblock): void {
  const problem = superblockProblem(sb);
  if (problem !== null) {
    invariant(false, 'encoding a valid superblock', { problem });
  }
  const view = viewAt(bytes, at, SUPERBLOCK_HEADER_SIZE_BYTES);
  const header = bytes.subarray(at, at + SUPERBLOCK_HEADER_SIZE_BYTES);
  header.fill(0);
  header.set(REGION_MAGIC, SB.magic);
  view.setUint16(SB.version, SUPERBLOCK_VERSION, true);
  view.setUint16(SB.headerSizeBytes, SUPERBLOCK_HEADER_SIZE_BYTES, true);
  setU64(view, SB.sequence, sb.sequence);
  for (let i = 0; i < REGION_ID_SIZE_BYTES; i += 1) {
    header[SB.regionId + i] = Number.parseInt(sb.regionId.slice(2 * i, 2 * i + 2), 16);
  }
  view.setUint32(SB.nodeId, sb.nodeId, true);
  setU64(view, SB.regionSizeBytes, sb.regionSizeBytes);
  setU64(view, SB.segmentSizeBytes, sb.segmentSizeBytes);
  view.setUint32(SB.segmentCount, sb.segmentCount, true);
  view.setUint16(SB.entrySizeBytes, SEGMENT_ENTRY_SIZE_BYTES, true);
  view.setUint16(SB.entrySlotCount, SEGMENT_ENTRY_SLOT_COUNT, true);
  setU64(view, SB.tableAddress, sb.tableAddress);
  setU64(view, SB.dataAddress, sb.dataAddress);
  setU64(view, SB.epoch, sb.epoch);
  setU64(view, SB.createdAtMs, sb.createdAtMs);
  setU64(view, SB.ownerInstance, sb.ownerInstance);
  setU64(view, SB.segmentSizeBytesMin, sb.segmentSizeBytesMin);
  view.setUint32(SB.crc, crc32c(header, 0, SB.crc), true);
}

/** Decodes the superblock copy at `at`. Strict: every reserved byte must be zero. */
export function decodeSuperblock(bytes: Uint8Array, at: number): Decoded<Superblock> {
  const view = viewAt(bytes, at, SUPERBLOCK_HEADER_SIZE_BYTES);
  const header = bytes.subarray(at, at + SUPERBLOCK_HEADER_SIZE_BYTES);
  if (allZero(header, 0, header.byteLength)) return bad('superblock copy is all zeros', 'blank');
  if (!REGION_MAGIC.every((b, i) => header[SB.magic + i] === b)) {
    return bad('magic is not PMQREGON');
  }
  const version = view.getUint16(SB.version, true);
  switch (version) {
    case 0: return bad(`superblock version 0 is never written: a torn or damaged header`);
    case 1: case 2: return bad(`superblock version ${version} is layout 1 (equal segments at ` +
      `fixed addresses); this build reads version ${SUPERBLOCK_VERSION} (layout 2, segments ` +
      'sized to need) and does not convert: read the data out with the pmq that wrote it, ' +
      'then move this file away and start pmq storage again (a missing file is created and ' +
      'formatted)', 'version');
    case SUPERBLOCK_VERSION: return decodeSuperblockV3(header, view);
    default: return bad(`superblock version ${version}; this build reads ${SUPERBLOCK_VERSION}`,
      'version');
  }
}

function decodeSuperblockV3(header: Uint8Array, view: DataView): Decoded<Superblock> {
  const crc = crcProblem(header, view, SB.crc);
  if (crc !== null) return bad(crc);
  if (view.getUint16(SB.headerSizeBytes, true) !== SUPERBLOCK_HEADER_SIZE_BYTES ||
      view.getUint16(SB.entrySizeBytes, true) !== SEGMENT_ENTRY_SIZE_BYTES ||
      view.getUint16(SB.entrySlotCount, true) !== SEGMENT_ENTRY_SLOT_COUNT) {
    return bad('header size, entry size or slot count differ from version 3');
  }
  if (view.getUint32(SB.flags, true) !== 0 || !allZero(header, SB.reserved0, SB.regionSizeBytes) ||
      !allZero(header, SB.reserved1, SB.crc)) {
    return bad('flags or reserved bytes are not zero');
  }
  const u64 = {
    sequence: getU64(view, SB.sequence), regionSizeBytes: getU64(view, SB.regionSizeBytes),
    segmentSizeBytes: getU64(view, SB.segmentSizeBytes),
    tableAddress: getU64(view, SB.tableAddress),
    dataAddress: getU64(view, SB.dataAddress), epoch: getU64(view, SB.epoch),
    createdAtMs: getU64(view, SB.createdAtMs),
    ownerInstance: getU64(view, SB.ownerInstance),
    segmentSizeBytesMin: getU64(view, SB.segmentSizeBytesMin),
  };
  for (const [name, value] of Object.entries(u64)) {
    if (value === null) return bad(`${name} is not below 2^53`);
  }
  const regionId = Array.from(header.subarray(SB.regionId, SB.regionId + REGION_ID_SIZE_BYTES),
    (b) => b.toString(16).padStart(2, '0')).join('');
  const sb: Superblock = {
    sequence: u64.sequence ?? 0, regionId, nodeId: view.getUint32(SB.nodeId, true),
    regionSizeBytes: u64.regionSizeBytes ?? 0, segmentSizeBytes: u64.segmentSizeBytes ?? 0,
    segmentSizeBytesMin: u64.segmentSizeBytesMin ?? 0,
    segmentCount: view.getUint32(SB.segmentCount, true), tableAddress: u64.tableAddress ?? 0,
    dataAddress: u64.dataAddress ?? 0, epoch: u64.epoch ?? 0, createdAtMs: u64.createdAtMs ?? 0,
    ownerInstance: u64.ownerInstance ?? 0,
  };
  const problem = superblockProblem(sb);
  return problem === null ? ok(sb) : bad(problem);
}

// ---- segment-table entries -------------------------------------------------------------------

/** Where an entry lives, which its contents must agree with. */
export interface EntryContext {
  readonly segmentIndex: number;
  readonly slot: number;
  /** The region's data area: a live entry's range must lie inside, aligned to its size. */
  readonly area: DataArea;
}

/** The topic-name rule the whole cluster uses (common/topic-name.ts). */
export function topicProblem(topic: string): string | null {
  return topicNameProblem(topic);
}

/** What a watermark must satisfy in a segment of segmentSizeBytes starting at baseOffset. */
export function watermarkProblem(
  watermark: Watermark,
  baseOffset: number,
  segmentSizeBytes: number,
): string | null {
  const { position, offsetLast } = watermark;
  if (!Number.isSafeInteger(position) || position < 0 || position > segmentSizeBytes) {
    return `watermark position ${position} outside 0..${segmentSizeBytes}`;
  }
  if (!Number.isSafeInteger(offsetLast)) return `watermark offsetLast ${offsetLast} not an integer`;
  if (position === 0 && offsetLast !== baseOffset - 1) {
    return `empty segment must have offsetLast = baseOffset - 1 = ${baseOffset - 1}`;
  }
  if (position > 0 && offsetLast < baseOffset) {
    return `offsetLast ${offsetLast} below baseOffset ${baseOffset} with ${position} bytes`;
  }
  return null;
}

function activeEntryProblem(e: SegmentEntry, ctx: EntryContext): string | null {
  const topic = topicProblem(e.topic);
  if (topic !== null) return topic;
  if (!Number.isInteger(e.partition) || e.partition < 0 || e.partition > LIMITS.partitionMax) {
    return `partition ${e.partition} outside 0..${LIMITS.partitionMax}`;
  }
  if (!isU32(e.chainPosition)) return `chain position ${e.chainPosition} is not a uint32`;
  if (!isCount(e.baseOffset)) return `base offset ${e.baseOffset} is not a count`;
  return rangeProblem(e.address, e.sizeBytes, ctx.area) ??
    watermarkProblem(e.watermark, e.baseOffset, e.sizeBytes);
}

/** Why an entry must not be written into (or trusted from) its slot, or null. */
export function entryProblem(e: SegmentEntry, ctx: EntryContext): string | null {
  if (e.segmentIndex !== ctx.segmentIndex) {
    return `entry names segment ${e.segmentIndex}, lives in the slot of ${ctx.segmentIndex}`;
  }
  if (!isCount(e.generation) || e.generation % SEGMENT_ENTRY_SLOT_COUNT !== ctx.slot) {
    return `generation ${e.generation} does not belong in slot ${ctx.slot}`;
  }
  if (!isCount(e.epoch)) return `epoch ${e.epoch} is not a count`;
  if (e.state !== 'free') return activeEntryProblem(e, ctx);
  const zero = e.topic === '' && e.partition === 0 && e.chainPosition === 0 &&
    e.baseOffset === 0 && e.watermark.position === 0 && e.watermark.offsetLast === 0 &&
    e.address === 0 && e.sizeBytes === 0;
  return zero ? null :
    'a free entry has a topic, partition, chain position, watermark, address or size';
}

export function encodeSegmentEntry(
  bytes: Uint8Array,
  at: number,
  e: SegmentEntry,
  ctx: EntryContext,
): void {
  const problem = entryProblem(e, ctx);
  if (problem !== null) {
    invariant(false, 'encoding a valid segment entry', { problem, ...ctx });
  }
  const view = viewAt(bytes, at, SEGMENT_ENTRY_SIZE_BYTES);
  const slot = bytes.subarray(at, at + SEGMENT_ENTRY_SIZE_BYTES);
  slot.fill(0);
  view.setUint16(SE.version, SEGMENT_ENTRY_VERSION, true);
  view.setUint8(SE.state, STATE_CODES[e.state]);
  view.setUint32(SE.segmentIndex, e.segmentIndex, true);
  setU64(view, SE.generation, e.generation);
  setU64(view, SE.epoch, e.epoch);
  view.setUint32(SE.partition, e.partition, true);
  view.setUint32(SE.chainPosition, e.chainPosition, true);
  setI64(view, SE.baseOffset, e.baseOffset);
  setU64(view, SE.watermarkPosition, e.watermark.position);
  setI64(view, SE.watermarkOffsetLast, e.watermark.offsetLast);
  setU64(view, SE.address, e.address);
  setU64(view, SE.sizeBytes, e.sizeBytes);
  view.setUint16(SE.topicSizeBytes, e.topic.length, true);
  for (let i = 0; i < e.topic.length; i += 1) slot[SE.topic + i] = e.topic.charCodeAt(i);
  view.setUint32(SE.crc, crc32c(slot, 0, SE.crc), true);
}

export function decodeSegmentEntry(
  bytes: Uint8Array,
  at: number,
  ctx: EntryContext,
): Decoded<SegmentEntry> {
  const view = viewAt(bytes, at, SEGMENT_ENTRY_SIZE_BYTES);
  const slot = bytes.subarray(at, at + SEGMENT_ENTRY_SIZE_BYTES);
  if (allZero(slot, 0, slot.byteLength)) return bad('entry slot is all zeros', 'blank');
  const version = view.getUint16(SE.version, true);
  switch (version) {
    case 0: return bad('entry version 0 is never written: a torn or damaged slot');
    case 1: return bad('entry version 1 is layout 1 (equal segments at fixed addresses); this ' +
      `build reads version ${SEGMENT_ENTRY_VERSION}: format the region again`, 'version');
    case SEGMENT_ENTRY_VERSION: return decodeSegmentEntryV2(slot, view, ctx);
    default: return bad(`entry version ${version}; this build reads ${SEGMENT_ENTRY_VERSION}`,
      'version');
  }
}

function decodeSegmentEntryV2(
  slot: Uint8Array,
  view: DataView,
  ctx: EntryContext,
): Decoded<SegmentEntry> {
  const crc = crcProblem(slot, view, SE.crc);
  if (crc !== null) return bad(crc);
  const stateCode = view.getUint8(SE.state);
  const state = STATE_BY_CODE[stateCode];
  if (state === undefined) return bad(`state ${stateCode} is not 0, 1 or 2`);
  const topicSizeBytes = view.getUint16(SE.topicSizeBytes, true);
  if (topicSizeBytes > LIMITS.topicNameBytesMax) return bad(`topic of ${topicSizeBytes} bytes`);
  if (view.getUint8(SE.reserved0) !== 0 ||
      !allZero(slot, SE.topic + topicSizeBytes, SE.address) ||
      !allZero(slot, SE.reserved2, SE.crc)) {
    return bad('reserved bytes or topic padding are not zero');
  }
  const generation = getU64(view, SE.generation);
  const epoch = getU64(view, SE.epoch);
  const baseOffset = getI64(view, SE.baseOffset);
  const position = getU64(view, SE.watermarkPosition);
  const offsetLast = getI64(view, SE.watermarkOffsetLast);
  const address = getU64(view, SE.address);
  const sizeBytes = getU64(view, SE.sizeBytes);
  if (generation === null || epoch === null || baseOffset === null || position === null ||
      offsetLast === null || address === null || sizeBytes === null) {
    return bad('a 64-bit field is not within ±2^53');
  }
  const entry: SegmentEntry = {
    segmentIndex: view.getUint32(SE.segmentIndex, true), generation, epoch, state,
    topic: topicText(slot, SE.topic, topicSizeBytes),
    partition: view.getUint32(SE.partition, true),
    chainPosition: view.getUint32(SE.chainPosition, true),
    baseOffset, watermark: { position, offsetLast }, address, sizeBytes,
  };
  const problem = entryProblem(entry, ctx);
  return problem === null ? ok(entry) : bad(problem);
}
