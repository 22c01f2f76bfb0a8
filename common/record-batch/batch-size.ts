/**
 * The smallest Kafka RecordBatch v2 that holds n records, in closed form: the sequencer
 * refuses appends below it (and the storage node checks batches against it), so that every
 * hole can be filled with a control batch of exactly its bytes and records (the filler pads a
 * record's key or value up to the size). Pure arithmetic on the record-batch layout; no I/O.
 *
 * The smallest record has attributes, timestampDelta 0, null key, null value and no headers
 * (one byte each) plus its offsetDelta varint: 5 + v(i) bytes of body and a one-byte length,
 * so 6 + v(i) bytes. v(i) is the size of the zigzag varint 2i: 1 byte below i = 64, 2 below
 * 8192 (2^13), 3 below 2^20, 4 below 2^27, 5 above.
 */
import { invariant } from '../invariant.js';
import { RECORD_BATCH_HEADER_SIZE_BYTES } from './layout.js';

/** First record index whose offsetDelta varint takes one byte more (zigzag 2i ≥ 2^(7k)). */
const VARINT_STEPS = [64, 8192, 2 ** 20, 2 ** 27] as const;

export function recordBatchSizeBytesMin(records: number): number {
  // Guarded: invariant()'s fields literals would be made per call, i.e. per append (issue 11).
  if (!(Number.isSafeInteger(records) && records >= 1 && records <= 0x7fff_ffff)) {
    invariant(false, 'records within 1..2^31-1', { records });
  }
  let sizeBytes = RECORD_BATCH_HEADER_SIZE_BYTES + 7 * records;
  for (let index = 0; index < VARINT_STEPS.length; index += 1) {
    sizeBytes += Math.max(0, records - VARINT_STEPS[index]!);
  }
  if (!(Number.isSafeInteger(sizeBytes) && sizeBytes > RECORD_BATCH_HEADER_SIZE_BYTES)) {
    invariant(false, 'size is a whole number of bytes', { records, sizeBytes });
  }
  return sizeBytes;
}

/**
 * Record sizes no single record can have: a record is its body plus the zigzag varint of the
 * body's length, which grows by a byte at bodies of 64, 8192, 2^20 and 2^27 bytes, so the
 * record sizes 65, 8194, 2^20 + 3 and 2^27 + 4 are skipped. Bodies themselves take every size
 * (key and value padding together), and a batch of two or more records spreads its bytes over
 * two records, so only one-record batches have gaps.
 */
const ONE_RECORD_SIZES_UNREACHABLE = [65, 8194, 2 ** 20 + 3, 2 ** 27 + 4] as const;

/** Whether some RecordBatch v2 of `records` records is exactly `sizeBytes` long. */
export function recordBatchSizeReachable(sizeBytes: number, records: number): boolean {
  if (sizeBytes < recordBatchSizeBytesMin(records)) return false;
  if (records > 1) return true;
  const recordBytes = sizeBytes - RECORD_BATCH_HEADER_SIZE_BYTES;
  return !(ONE_RECORD_SIZES_UNREACHABLE as readonly number[]).includes(recordBytes);
}
