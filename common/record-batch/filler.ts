/**
 * Hole fillers: a Kafka control batch of exactly the bytes and records of a gap a closed lease
 * left (the broker writes it), or of a batch that was not what its producer appended (the
 * storage node puts it in its place); consumers skip it (attribute bit 5). Gaps are 0 or at
 * least one one-record batch, and appends are refused below the smallest batch of their record
 * count (batch-size.ts), so a filler always exists: records with null key and value, the first one
 * padded with a value and a second record (or the key) with a few bytes more, because a
 * record's length varint skips some sizes, until the batch is exactly `bytes` long. Pure: no I/O.
 */
import { ArgumentError } from '../errors.js';
import { invariant } from '../invariant.js';
import {
  encodeRecordBatchInto, recordBatchSizeBytes, type EncodeOptions, type RecordInput,
} from './index.js';
import { recordBatchSizeBytesMin, recordBatchSizeReachable } from './batch-size.js';

/** Padding tried per byte count: a varint grows by at most a few bytes at each boundary. */
const PAD_BYTES_MAX = 8;

/** Null records; record 0 gets `valueBytes` of value, the second pad goes to record 1's value
 *  (or, in a one-record batch, record 0's key). */
function paddedRecords(records: number, valueBytes: number, padBytes: number): RecordInput[] {
  const list: RecordInput[] = [];
  for (let index = 0; index < records; index += 1) list.push({ key: null, value: null });
  const bytesOf = (count: number): Uint8Array | null => count > 0 ? new Uint8Array(count) : null;
  if (records === 1) {
    list[0] = { key: bytesOf(padBytes), value: bytesOf(valueBytes) };
  } else {
    list[0] = { key: null, value: bytesOf(valueBytes) };
    list[1] = { key: null, value: bytesOf(padBytes) };
  }
  return list;
}

/** The records of a filler of exactly `bytes` bytes, and the options to encode them with. */
export function fillerPlan(bytes: number, records: number, baseOffset: number):
  { records: RecordInput[]; options: EncodeOptions } {
  const sizeBytesMin = recordBatchSizeBytesMin(records);
  if (!Number.isSafeInteger(bytes) || !recordBatchSizeReachable(bytes, records)) {
    throw new ArgumentError(`filler of ${bytes} bytes for ${records} records: no RecordBatch ` +
      `v2 has that size (smallest: ${sizeBytesMin} bytes)`);
  }
  const options: EncodeOptions = { baseOffset, isControl: true, timestampDefault: 0 };
  const extra = bytes - sizeBytesMin;
  if (extra === 0) return { records: paddedRecords(records, 0, 0), options };
  // Value bytes v add v + (varint growth of the value and record lengths): start at `extra`
  // and walk down until the batch fits; the second pad makes up the last byte or two.
  for (let valueBytes = extra; valueBytes >= 0; valueBytes -= 1) {
    for (let padBytes = 0; padBytes <= PAD_BYTES_MAX; padBytes += 1) {
      const list = paddedRecords(records, valueBytes, padBytes);
      const sizeBytes = recordBatchSizeBytes(list, options);
      if (sizeBytes === bytes) return { records: list, options };
      if (sizeBytes > bytes) break;
    }
    if (extra - valueBytes > 2 * PAD_BYTES_MAX) break;
  }
  invariant(false, 'a filler exists for every size at or above the minimum',
    { bytes, records });
}

/** Encodes the filler into a new buffer of exactly `bytes` bytes. */
export function encodeFiller(bytes: number, records: number, baseOffset: number): Uint8Array {
  const plan = fillerPlan(bytes, records, baseOffset);
  const target = new Uint8Array(bytes);
  const written = encodeRecordBatchInto(target, 0, plan.records, plan.options);
  invariant(written === bytes, 'filler has exactly the hole\'s size', { written, bytes });
  return target;
}
