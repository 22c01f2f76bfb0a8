/**
 * Byte layout of a Kafka RecordBatch v2 (magic 2), as Kafka's DefaultRecordBatch writes it.
 * All fixed-width fields are big-endian. Positions are relative to the start of the batch.
 * docs/record-batch.md has the same table with the per-record layout.
 */
import { invariant } from '../invariant.js';

/** int64: offset of the first record. Not covered by the CRC: patched in place later. */
export const BASE_OFFSET_POSITION = 0;
/** int32: bytes that follow this field (partitionLeaderEpoch..end). */
export const BATCH_LENGTH_POSITION = 8;
/** int32: set by the partition leader; not covered by the CRC. */
export const PARTITION_LEADER_EPOCH_POSITION = 12;
/** int8: format version, always 2 here. */
export const MAGIC_POSITION = 16;
/** uint32: CRC32C (Castagnoli) over attributes..end of the batch. */
export const CRC_POSITION = 17;
/** int16: compression (bits 0-2), timestamp type (3), transactional (4), control (5). */
export const ATTRIBUTES_POSITION = 21;
/** int32: offset of the last record minus baseOffset. */
export const LAST_OFFSET_DELTA_POSITION = 23;
/** int64: timestamp of the first record (ms); -1 in an empty batch. */
export const BASE_TIMESTAMP_POSITION = 27;
/** int64: largest record timestamp (ms); -1 in an empty batch. */
export const MAX_TIMESTAMP_POSITION = 35;
/** int64: idempotent producer id, -1 when not idempotent. */
export const PRODUCER_ID_POSITION = 43;
/** int16: producer epoch, -1 when not idempotent. */
export const PRODUCER_EPOCH_POSITION = 51;
/** int32: sequence number of the first record, -1 when not idempotent. */
export const BASE_SEQUENCE_POSITION = 53;
/** int32: number of records that follow. */
export const RECORD_COUNT_POSITION = 57;
/** First record. */
export const RECORDS_POSITION = 61;

/** Size of the fixed header: Kafka's RECORD_BATCH_OVERHEAD. */
export const RECORD_BATCH_HEADER_SIZE_BYTES = 61;
/** baseOffset + batchLength: the bytes that batchLength does not count (Kafka's LOG_OVERHEAD). */
export const LOG_OVERHEAD_SIZE_BYTES = 12;
/** Smallest legal batchLength: a header with no records. */
export const BATCH_LENGTH_MIN = RECORD_BATCH_HEADER_SIZE_BYTES - LOG_OVERHEAD_SIZE_BYTES;
/** Largest batch, header included: batchLength is an int32. */
export const RECORD_BATCH_SIZE_BYTES_MAX = 0x7fff_ffff;

export const MAGIC_V2 = 2;

/** Attribute bits (Kafka's COMPRESSION_CODEC_MASK, TIMESTAMP_TYPE_MASK, ...). */
export const ATTRIBUTE_COMPRESSION_MASK = 0x07;
export const ATTRIBUTE_TIMESTAMP_TYPE_MASK = 0x08;
export const ATTRIBUTE_TRANSACTIONAL_MASK = 0x10;
export const ATTRIBUTE_CONTROL_MASK = 0x20;
/** Bit 6 (Kafka's delete-horizon flag, set only by log compaction) and bits 7-15: pmq rejects. */
export const ATTRIBUTE_RESERVED_MASK = 0xffc0;

/** Compression codec ids in bits 0-2. pmq stores and serves only uncompressed batches. */
export const COMPRESSION_NONE = 0;
export const COMPRESSION_NAMES: readonly string[] =
  ['none', 'gzip', 'snappy', 'lz4', 'zstd', 'unknown(5)', 'unknown(6)', 'unknown(7)'];

/** Kafka's "no producer id / epoch / sequence" and "no partition leader epoch". */
export const NO_PRODUCER_ID = -1;
export const NO_PRODUCER_EPOCH = -1;
export const NO_SEQUENCE = -1;
export const NO_PARTITION_LEADER_EPOCH = -1;
/** baseTimestamp and maxTimestamp of an empty batch. */
export const NO_TIMESTAMP = -1;

/**
 * The smallest record: length, attributes, timestampDelta, offsetDelta, keyLength,
 * valueLength and header count, one byte each. Bounds the record count before any loop.
 */
export const RECORD_SIZE_BYTES_MIN = 7;

function checkLayout(): void {
  const widths: [number, number][] = [
    [BASE_OFFSET_POSITION, 8], [BATCH_LENGTH_POSITION, 4], [PARTITION_LEADER_EPOCH_POSITION, 4],
    [MAGIC_POSITION, 1], [CRC_POSITION, 4], [ATTRIBUTES_POSITION, 2],
    [LAST_OFFSET_DELTA_POSITION, 4], [BASE_TIMESTAMP_POSITION, 8], [MAX_TIMESTAMP_POSITION, 8],
    [PRODUCER_ID_POSITION, 8], [PRODUCER_EPOCH_POSITION, 2], [BASE_SEQUENCE_POSITION, 4],
    [RECORD_COUNT_POSITION, 4], [RECORDS_POSITION, 0],
  ];
  let expected = 0;
  for (const [position, width] of widths) {
    invariant(position === expected, 'record batch fields are back to back', { position });
    expected += width;
  }
  invariant(expected === RECORD_BATCH_HEADER_SIZE_BYTES, 'record batch header is 61 bytes');
}
checkLayout();
