/**
 * Checking a segment's committed bytes: the batches in [0, watermark.position) must be Kafka
 * RecordBatch v2 back to back, each passing validateRecordBatch (size, magic, CRC32C, every
 * record), with offsets dense from the entry's baseOffset, ending exactly at the watermark with
 * its offsetLast. The same checks a consumer makes (clients/partition-reader.ts); a storage
 * node runs them only when asked (RegionStore.verifySegmentData): opening a region stays
 * proportional to the number of segments, not to the bytes in them (docs/region-format.md,
 * "Checking segment data").
 *
 * Pure: no I/O, reads `bytes` only. Linear in the committed bytes. The first problem stops the
 * walk (the framing past a damaged batch cannot be trusted).
 */
import { RecordBatchError, validateRecordBatch } from '../common/record-batch/index.js';
import type { SegmentEntry } from '../common/layout.js';
import { invariant } from '../common/invariant.js';

export interface SegmentDataSummary {
  readonly segmentIndex: number;
  readonly batchCount: number;
  readonly recordCount: number;
  /** Equals the watermark's position. */
  readonly positionEnd: number;
}

export interface SegmentDataProblem {
  readonly segmentIndex: number;
  /** Byte position (in the segment) of the batch that failed, or of the watermark. */
  readonly position: number;
  /** The offset the batch at `position` should start with. */
  readonly offset: number;
  readonly problem: string;
}

export type SegmentDataCheck =
  | { readonly ok: true; readonly summary: SegmentDataSummary }
  | { readonly ok: false; readonly problem: SegmentDataProblem };

/** Walks the committed batches of `entry`'s segment, whose first byte is bytes[address]. */
export function checkSegmentData(bytes: Uint8Array, address: number,
  entry: SegmentEntry): SegmentDataCheck {
  const { segmentIndex, watermark } = entry;
  invariant(address + watermark.position <= bytes.byteLength, 'committed bytes inside memory',
    { segmentIndex, address, position: watermark.position });
  if (entry.state === 'free') {
    return { ok: true, summary: { segmentIndex, batchCount: 0, recordCount: 0, positionEnd: 0 } };
  }
  let position = 0;
  let offset = entry.baseOffset;
  let batchCount = 0;
  let recordCount = 0;
  const problem = (at: number, what: string): SegmentDataCheck =>
    ({ ok: false, problem: { segmentIndex, position: at, offset, problem: what } });
  while (position < watermark.position) {
    let header;
    try {
      header = validateRecordBatch(bytes, address + position, watermark.position - position);
    } catch (error) {
      if (!(error instanceof RecordBatchError)) throw error;
      return problem(position, `${error.code}: ${error.message}`);
    }
    if (header.baseOffset !== offset) {
      return problem(position, `batch has baseOffset ${header.baseOffset}, expected ${offset}`);
    }
    invariant(header.sizeBytes > 0 && header.sizeBytes <= watermark.position - position,
      'a valid batch lies inside the committed bytes', { segmentIndex, position });
    position += header.sizeBytes;
    offset += header.lastOffsetDelta + 1;
    batchCount += 1;
    recordCount += header.recordCount;
  }
  if (offset - 1 !== watermark.offsetLast) {
    return problem(position, `batches end at offset ${offset - 1}, the watermark says ` +
      `${watermark.offsetLast}`);
  }
  return { ok: true, summary: { segmentIndex, batchCount, recordCount, positionEnd: position } };
}
