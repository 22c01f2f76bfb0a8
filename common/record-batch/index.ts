/**
 * Kafka RecordBatch v2 (magic 2), byte for byte: encode (into a new buffer or the caller's),
 * validate, decode (zero copy) and patch the baseOffset. Uncompressed batches only.
 * docs/record-batch.md describes the layout, what is checked and the error codes.
 */
export { setBaseOffset } from './base-offset.js';
export { BatchReader, varintSizeBytes, varlongSizeBytes, writeVarint, writeVarlong } from
  './bytes.js';
export {
  decodeRecordBatch, openCheckedRecordBatch, openRecordBatch, RecordBatchCursor,
  validateRecordBatch,
  type BatchAttributes, type DecodedRecord, type DecodedRecordBatch, type RecordBatchHeader,
} from './decode.js';
export {
  batchAttributes, encodePlannedRecordBatchGather, encodePlannedRecordBatchInto,
  encodeRecordBatch, encodeRecordBatchInto, gatherCopiedBytes, planRecordBatch,
  recordBatchSizeBytes, type EncodeOptions, type RecordBatchPlan, type RecordHeader,
  type RecordInput, type TimestampType,
} from './encode.js';
export { RecordBatchError, type RecordBatchErrorCode } from './errors.js';
export * from './layout.js';
