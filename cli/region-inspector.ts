/**
 * A read-only walk over a storage node's region file, for `pmq inspect`.
 *
 * Read-only by construction: the bytes are read with positional reads on a descriptor opened
 * O_RDONLY (never through a mapping), and nothing is written, so read permission on the file
 * is enough (issue 13, bug 9: a 0444 region, or another user's). That descriptor holds a
 * shared lock (openRegionReadOnly): a region a live storage node holds is refused
 * (PMQ_ERR_REGION_LOCKED), and no node can open it while the walk runs.
 *
 * The superblock and the segment table are validated by the same code the storage node runs at
 * open (storage-node/superblock.ts, segment-table.ts), so a region this accepts is one the node
 * accepts. Then every live segment is walked from position 0 to its durable watermark, batch
 * by batch, each batch validated (common/record-batch: CRC32C and structure), its offsets
 * checked to continue densely from the segment's base offset to the watermark's offsetLast.
 * Memory: one read buffer, as large as the largest batch (at least 1 MiB).
 */
import { closeSync, readSync } from 'node:fs';

import { PmqError, type ErrorCode } from '../common/errors.js';
import {
  TABLE_ADDRESS, superblockAddress, type SegmentEntry, type Superblock,
} from '../common/layout.js';
import {
  BATCH_LENGTH_MIN, BATCH_LENGTH_POSITION, LAST_OFFSET_DELTA_POSITION, LOG_OVERHEAD_SIZE_BYTES,
  RecordBatchError, decodeRecordBatch, validateRecordBatch, type DecodedRecord,
} from '../common/record-batch/index.js';
import { openRegionReadOnly } from '../native/region.js';
import { RegionMediaError, type MediaSite } from '../storage-node/region-store.js';
import { SegmentTable } from '../storage-node/segment-table.js';
import { chooseSuperblock } from '../storage-node/superblock.js';

export interface RegionSummary {
  path: string;
  sizeBytes: number;
  backing: string;
  durability: string;
  superblock: Superblock;
  superblockCopy: number;
  /** Copies and slots that did not decode while the other did (torn updates; not failures). */
  fallbacks: string[];
  segmentsFree: number;
}

export interface SegmentSummary extends SegmentEntry {
  address: number;
  sizeBytes: number;
}

export interface BatchSummary {
  segmentIndex: number;
  position: number;
  address: number;
  sizeBytes: number;
  baseOffset: number;
  lastOffset: number;
  records: number;
  control: boolean;
}

export interface InspectProblem {
  segmentIndex: number;
  position: number;
  address: number;
  code: ErrorCode;
  problem: string;
}

export interface InspectVisitor {
  region(summary: RegionSummary): void;
  segment(segment: SegmentSummary): void;
  /** `records` only when asked for: views into the read buffer, valid during the call. */
  batch(batch: BatchSummary, records: DecodedRecord[] | null): void;
  problem(problem: InspectProblem): void;
}

export interface InspectTotals { segments: number; batches: number; records: number;
  sizeBytes: number; problems: number }

const READ_BUFFER_BYTES_MIN = 1024 * 1024;

/** Positional reads of a file, into one buffer that grows to the largest read. */
class FileReader {
  #buffer = Buffer.alloc(READ_BUFFER_BYTES_MIN);

  constructor(readonly fd: number) {}

  read(address: number, sizeBytes: number): Buffer {
    if (this.#buffer.byteLength < sizeBytes) this.#buffer = Buffer.alloc(sizeBytes);
    let done = 0;
    while (done < sizeBytes) {
      const n = readSync(this.fd, this.#buffer, done, sizeBytes - done, address + done);
      if (n === 0) {
        throw new PmqError('PMQ_ERR_REGION_CORRUPT', `unexpected end of the region file at ` +
          `address ${address + done}: is the file truncated?`);
      }
      done += n;
    }
    return this.#buffer.subarray(0, sizeBytes);
  }
}

function mediaSites(kind: string, path: string, sites: readonly MediaSite[]): RegionMediaError {
  const code = kind === 'blank' ? 'PMQ_ERR_REGION_NOT_FORMATTED'
    : kind === 'version' ? 'PMQ_ERR_REGION_VERSION' : 'PMQ_ERR_REGION_CORRUPT';
  return new RegionMediaError(code, path, sites);
}

/** Superblock and table, validated as the storage node does at open; throws RegionMediaError. */
function readTable(reader: FileReader, path: string, fileSizeBytes: number):
  { sb: Superblock; copy: number; entries: readonly SegmentEntry[]; fallbacks: string[] } {
  if (fileSizeBytes < TABLE_ADDRESS) {
    throw mediaSites('blank', path, [{ what: 'region', address: 0,
      problem: `${fileSizeBytes} bytes cannot hold the superblocks` }]);
  }
  const choice = chooseSuperblock(reader.read(0, TABLE_ADDRESS));
  if (!choice.ok) {
    throw mediaSites(choice.kind, path, choice.problems.map((p) => ({ what: 'superblock',
      address: p.address, copy: p.copy, problem: p.problem })));
  }
  const sb = choice.superblock;
  if (sb.regionSizeBytes !== fileSizeBytes) {
    throw mediaSites('corrupt', path, [{ what: 'superblock', copy: choice.copy,
      address: superblockAddress(choice.copy),
      problem: `says ${sb.regionSizeBytes} bytes, the file has ${fileSizeBytes}` }]);
  }
  const load = SegmentTable.load(reader.read(0, sb.dataAddress), sb);
  if (!load.ok) {
    throw mediaSites(load.kind, path, load.problems.map((p) => ({ what: 'segment entry',
      address: p.address, segmentIndex: p.segmentIndex, slot: p.slot, problem: p.problem })));
  }
  const fallbacks = [
    ...(choice.fallback === null ? [] : [`superblock copy ${choice.fallback.copy} at address ` +
      `${choice.fallback.address} not used: ${choice.fallback.problem}`]),
    ...load.fallbacks.map((p) => `segment ${p.segmentIndex} entry slot ${p.slot} at address ` +
      `${p.address} not used (a torn update falls back to the other slot): ${p.problem}`),
  ];
  return { sb, copy: choice.copy, entries: load.table.all(), fallbacks };
}

/** Walks one segment's batches up to its watermark; returns [batches, records, bytes]. */
function walkSegment(reader: FileReader, segment: SegmentSummary, withRecords: boolean,
  visitor: InspectVisitor): [number, number, number] {
  const { position: end, offsetLast } = segment.watermark;
  let position = 0;
  let nextOffset = segment.baseOffset;
  let batches = 0;
  let records = 0;
  const report = (at: number, code: ErrorCode, problem: string): void => visitor.problem({
    segmentIndex: segment.segmentIndex, position: at, address: segment.address + at, code,
    problem });
  while (position < end) {
    if (end - position < LOG_OVERHEAD_SIZE_BYTES) {
      report(position, 'PMQ_ERR_BATCH_TRUNCATED', `${end - position} bytes before the ` +
        'watermark cannot hold a batch');
      return [batches, records, position];
    }
    const batchLength = reader.read(segment.address + position, LOG_OVERHEAD_SIZE_BYTES)
      .readInt32BE(BATCH_LENGTH_POSITION);
    const sizeBytes = batchLength + LOG_OVERHEAD_SIZE_BYTES;
    if (batchLength < BATCH_LENGTH_MIN || sizeBytes > end - position) {
      report(position, 'PMQ_ERR_BATCH_CORRUPT', `batchLength ${batchLength} does not fit ` +
        `between position ${position} and the watermark ${end}; the rest of the segment ` +
        'cannot be walked');
      return [batches, records, position];
    }
    const bytes = reader.read(segment.address + position, sizeBytes);
    const baseOffset = Number(bytes.readBigInt64BE(0));
    const lastOffset = baseOffset + bytes.readInt32BE(LAST_OFFSET_DELTA_POSITION);
    try {
      const decoded = withRecords ? decodeRecordBatch(bytes, 0, sizeBytes) : null;
      const batch = decoded ?? validateRecordBatch(bytes, 0, sizeBytes);
      if (batch.baseOffset !== nextOffset) {
        report(position, 'PMQ_ERR_BATCH_CORRUPT', `batch starts at offset ${batch.baseOffset}, ` +
          `expected ${nextOffset} (offsets must continue densely)`);
      }
      visitor.batch({ segmentIndex: segment.segmentIndex, position, address: segment.address +
        position, sizeBytes, baseOffset, lastOffset, records: batch.recordCount,
      control: batch.attributes.isControl }, decoded?.records ?? null);
      records += batch.recordCount;
    } catch (error) {
      if (!(error instanceof RecordBatchError)) throw error;
      report(position, error.code, error.message);
    }
    batches += 1;
    nextOffset = lastOffset + 1;
    position += sizeBytes;
  }
  if (nextOffset - 1 !== offsetLast) {
    report(position, 'PMQ_ERR_BATCH_CORRUPT', `the batches end at offset ${nextOffset - 1}, ` +
      `the watermark says ${offsetLast}`);
  }
  return [batches, records, position];
}

/**
 * Inspects the region at `path`, calling the visitor as it goes; returns the totals. Throws
 * a PmqError when the region cannot be opened or its superblock or table is damaged (then
 * nothing else is trustworthy); damaged batches are reported through `visitor.problem`.
 */
export function inspectRegion(path: string, opts: { records: boolean },
  visitor: InspectVisitor): InspectTotals {
  const region = openRegionReadOnly(path);  // O_RDONLY, shared lock: no live node holds it
  try {
    const reader = new FileReader(region.fd);
    const sizeBytes = region.sizeBytes;
    const { sb, copy, entries, fallbacks } = readTable(reader, path, sizeBytes);
    const live = entries.filter((entry) => entry.state !== 'free');
    visitor.region({ path, sizeBytes, backing: region.backing, durability: region.durability,
      superblock: sb, superblockCopy: copy, fallbacks, segmentsFree: entries.length -
      live.length });
    const totals: InspectTotals = { segments: live.length, batches: 0, records: 0,
      sizeBytes: 0, problems: 0 };
    const counting: InspectVisitor = { ...visitor, problem: (problem) => {
      totals.problems += 1;
      visitor.problem(problem);
    } };
    for (const entry of sortedByPartition(live)) {
      const segment = entry; // its entry says where it is and how large (layout 2)
      visitor.segment(segment);
      const [batches, records, bytes] = walkSegment(reader, segment, opts.records, counting);
      totals.batches += batches;
      totals.records += records;
      totals.sizeBytes += bytes;
    }
    return totals;
  } finally {
    closeSync(region.fd);  // releases the lock
  }
}

function sortedByPartition(entries: readonly SegmentEntry[]): SegmentEntry[] {
  return [...entries].sort((a, b) => a.topic.localeCompare(b.topic) ||
    a.partition - b.partition || a.chainPosition - b.chainPosition);
}
