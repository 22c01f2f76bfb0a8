/**
 * Encodes Kafka RecordBatch v2 (uncompressed), byte for byte as Kafka's producer writes it.
 * Two passes over the records: the first validates them and computes every size, the second
 * writes into one buffer (the caller's, for encodeRecordBatchInto) with no further allocation
 * per record. The CRC32C over attributes..end comes last, from the native addon, in place.
 * Pure: no I/O; the clock is read once per batch, and only when a record has no timestamp.
 */
import { crc32c } from '../../native/crc32c.js';
import { ArgumentError } from '../errors.js';
import { invariant } from '../invariant.js';
import { INT32_MAX, INT32_MIN, varintSizeBytes, varlongSizeBytes, writeInt64, writeVarint,
  writeVarlong } from './bytes.js';
import * as layout from './layout.js';

export interface RecordHeader {
  /** Header keys are strings, written as UTF-8. */
  key: string;
  value: Uint8Array | null;
}

export interface RecordInput {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  headers?: readonly RecordHeader[];
  /** Milliseconds since the epoch; default: the batch's `timestampDefault`. */
  timestamp?: number;
}

export type TimestampType = 'create-time' | 'log-append-time';

export interface EncodeOptions {
  /** Offset of the first record; default 0. The producer may patch it later (setBaseOffset). */
  baseOffset?: number;
  /** Default -1: not set (a leader fills it in Kafka; pmq leaves it). */
  partitionLeaderEpoch?: number;
  /** Idempotence: default -1 / -1 / -1, meaning none. */
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  isTransactional?: boolean;
  /** A control batch (pmq fills holes with them; consumers skip them). */
  isControl?: boolean;
  /** Default 'create-time'. */
  timestampType?: TimestampType;
  /** Timestamp of records that have none; default Date.now(), read once per batch. */
  timestampDefault?: number;
}

const utf8 = new TextEncoder();

interface BatchPlan {
  sizeBytes: number;
  /** Bytes of each record after its length varint. */
  bodySizes: number[];
  baseTimestamp: number;
  maxTimestamp: number;
  timestampDefault: number;
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ArgumentError(`record batch: ${name} ${value} outside ${min}..${max}`);
  }
}

function bytesFieldSize(name: string, bytes: Uint8Array | null | undefined): number {
  if (bytes === null || bytes === undefined) return 1; // varint -1
  if (!(bytes instanceof Uint8Array)) {
    throw new ArgumentError(`record batch: ${name} must be a Uint8Array or null`);
  }
  return varintSizeBytes(bytes.byteLength) + bytes.byteLength;
}

function headersSize(index: number, headers: readonly RecordHeader[] | undefined): number {
  if (headers === undefined) return 1;
  if (!Array.isArray(headers)) {
    throw new ArgumentError(`record batch: record ${index} headers must be an array`);
  }
  let size = varintSizeBytes(headers.length);
  for (const header of headers) {
    if (typeof header?.key !== 'string') {
      throw new ArgumentError(`record batch: record ${index} has a header without a string key`);
    }
    const keySizeBytes = Buffer.byteLength(header.key, 'utf8');
    size += varintSizeBytes(keySizeBytes) + keySizeBytes;
    size += bytesFieldSize(`record ${index} header "${header.key}" value`, header.value);
  }
  return size;
}

function recordTimestamp(record: RecordInput, index: number, timestampDefault: number): number {
  const timestamp = record.timestamp ?? timestampDefault;
  checkInteger(`record ${index} timestamp`, timestamp, 0, Number.MAX_SAFE_INTEGER);
  return timestamp;
}

/** Validates every record and computes the batch's size and timestamps. */
function planBatch(records: readonly RecordInput[], options: EncodeOptions): BatchPlan {
  if (!Array.isArray(records)) throw new ArgumentError('record batch: records must be an array');
  checkInteger('record count', records.length, 0, INT32_MAX);
  const timestampDefault = options.timestampDefault ?? Date.now();
  checkInteger('timestampDefault', timestampDefault, 0, Number.MAX_SAFE_INTEGER);
  const plan: BatchPlan = { sizeBytes: layout.RECORD_BATCH_HEADER_SIZE_BYTES, bodySizes: [],
    baseTimestamp: layout.NO_TIMESTAMP, maxTimestamp: layout.NO_TIMESTAMP, timestampDefault };
  records.forEach((record, index) => {
    if (typeof record !== 'object' || record === null) {
      throw new ArgumentError(`record batch: record ${index} is not an object`);
    }
    const timestamp = recordTimestamp(record, index, timestampDefault);
    if (index === 0) plan.baseTimestamp = timestamp;
    plan.maxTimestamp = Math.max(plan.maxTimestamp, timestamp);
    const bodySize = 1 + // attributes
      varlongSizeBytes(timestamp - plan.baseTimestamp) + varintSizeBytes(index) +
      bytesFieldSize(`record ${index} key`, record.key) +
      bytesFieldSize(`record ${index} value`, record.value) +
      headersSize(index, record.headers);
    plan.bodySizes.push(bodySize);
    plan.sizeBytes += varintSizeBytes(bodySize) + bodySize;
  });
  if (plan.sizeBytes > layout.RECORD_BATCH_SIZE_BYTES_MAX) {
    throw new ArgumentError(`record batch: ${plan.sizeBytes} bytes exceed the int32 batchLength`);
  }
  return plan;
}

function checkOptions(options: EncodeOptions): void {
  checkInteger('baseOffset', options.baseOffset ?? 0, 0, Number.MAX_SAFE_INTEGER);
  checkInteger('partitionLeaderEpoch', options.partitionLeaderEpoch ?? -1, INT32_MIN, INT32_MAX);
  checkInteger('producerId', options.producerId ?? -1, -1, Number.MAX_SAFE_INTEGER);
  checkInteger('producerEpoch', options.producerEpoch ?? -1, -1, 0x7fff);
  checkInteger('baseSequence', options.baseSequence ?? -1, -1, INT32_MAX);
  const type = options.timestampType ?? 'create-time';
  if (type !== 'create-time' && type !== 'log-append-time') {
    throw new ArgumentError(`record batch: timestampType ${String(type)} is not known`);
  }
}

/** Attributes int16 from the options: compression is always none (0). */
export function batchAttributes(options: EncodeOptions): number {
  return layout.COMPRESSION_NONE |
    (options.timestampType === 'log-append-time' ? layout.ATTRIBUTE_TIMESTAMP_TYPE_MASK : 0) |
    (options.isTransactional === true ? layout.ATTRIBUTE_TRANSACTIONAL_MASK : 0) |
    (options.isControl === true ? layout.ATTRIBUTE_CONTROL_MASK : 0);
}

function writeHeader(view: DataView, plan: BatchPlan, count: number, options: EncodeOptions): void {
  writeInt64(view, layout.BASE_OFFSET_POSITION, options.baseOffset ?? 0);
  view.setInt32(layout.BATCH_LENGTH_POSITION, plan.sizeBytes - layout.LOG_OVERHEAD_SIZE_BYTES);
  view.setInt32(layout.PARTITION_LEADER_EPOCH_POSITION,
    options.partitionLeaderEpoch ?? layout.NO_PARTITION_LEADER_EPOCH);
  view.setInt8(layout.MAGIC_POSITION, layout.MAGIC_V2);
  view.setUint32(layout.CRC_POSITION, 0); // filled in last
  view.setInt16(layout.ATTRIBUTES_POSITION, batchAttributes(options));
  view.setInt32(layout.LAST_OFFSET_DELTA_POSITION, count - 1); // -1 when empty
  writeInt64(view, layout.BASE_TIMESTAMP_POSITION, plan.baseTimestamp);
  writeInt64(view, layout.MAX_TIMESTAMP_POSITION, plan.maxTimestamp);
  writeInt64(view, layout.PRODUCER_ID_POSITION, options.producerId ?? layout.NO_PRODUCER_ID);
  view.setInt16(layout.PRODUCER_EPOCH_POSITION, options.producerEpoch ?? layout.NO_PRODUCER_EPOCH);
  view.setInt32(layout.BASE_SEQUENCE_POSITION, options.baseSequence ?? layout.NO_SEQUENCE);
  view.setInt32(layout.RECORD_COUNT_POSITION, count);
}

function writeBytesField(target: Uint8Array, position: number, bytes?: Uint8Array | null): number {
  if (bytes === null || bytes === undefined) return writeVarint(target, position, -1);
  const p = writeVarint(target, position, bytes.byteLength);
  target.set(bytes, p);
  return p + bytes.byteLength;
}

function writeHeaders(target: Uint8Array, position: number, headers?: readonly RecordHeader[]) {
  if (headers === undefined) return writeVarint(target, position, 0);
  let p = writeVarint(target, position, headers.length);
  for (const header of headers) {
    const keySizeBytes = Buffer.byteLength(header.key, 'utf8');
    p = writeVarint(target, p, keySizeBytes);
    const { written } = utf8.encodeInto(header.key, target.subarray(p, p + keySizeBytes));
    invariant(written === keySizeBytes, 'header key utf-8 size as planned', { keySizeBytes });
    p = writeBytesField(target, p + keySizeBytes, header.value);
  }
  return p;
}

function writeRecords(target: Uint8Array, position: number, records: readonly RecordInput[],
  plan: BatchPlan): number {
  let p = position;
  records.forEach((record, index) => {
    const bodySize = plan.bodySizes[index] ?? -1;
    p = writeVarint(target, p, bodySize);
    const bodyStart = p;
    target[p] = 0; // record attributes: unused
    const timestamp = record.timestamp ?? plan.timestampDefault;
    p = writeVarlong(target, p + 1, timestamp - plan.baseTimestamp);
    p = writeVarint(target, p, index);
    p = writeBytesField(target, p, record.key);
    p = writeBytesField(target, p, record.value);
    p = writeHeaders(target, p, record.headers);
    invariant(p - bodyStart === bodySize, 'record written as planned', { index, bodySize });
  });
  return p;
}

/**
 * Size in bytes of the batch these records encode to, to reserve room before encoding. Exact
 * for the same records and options; when some records have no timestamp, pass the same
 * `timestampDefault` here and to the encoder (their deltas, hence their sizes, depend on it).
 */
export function recordBatchSizeBytes(records: readonly RecordInput[],
  options: EncodeOptions = {}): number {
  checkOptions(options);
  return planBatch(records, options).sizeBytes;
}

function writeBatch(target: Uint8Array, targetPosition: number, records: readonly RecordInput[],
  options: EncodeOptions, plan: BatchPlan): void {
  const view = new DataView(target.buffer, target.byteOffset + targetPosition, plan.sizeBytes);
  writeHeader(view, plan, records.length, options);
  const end = writeRecords(target, targetPosition + layout.RECORDS_POSITION, records, plan);
  invariant(end === targetPosition + plan.sizeBytes, 'batch written as planned',
    { end, targetPosition, sizeBytes: plan.sizeBytes });
  const crcStart = targetPosition + layout.ATTRIBUTES_POSITION;
  view.setUint32(layout.CRC_POSITION, crc32c(target, crcStart, end - crcStart));
}

/**
 * Encodes the batch at target[targetPosition..] (e.g. a registered buffer); returns its size.
 * Throws ArgumentError, writing nothing, if the records are invalid or the target too small.
 */
export function encodeRecordBatchInto(target: Uint8Array, targetPosition: number,
  records: readonly RecordInput[], options: EncodeOptions = {}): number {
  if (!(target instanceof Uint8Array)) {
    throw new ArgumentError('record batch: target must be a Uint8Array');
  }
  checkInteger('targetPosition', targetPosition, 0, target.byteLength);
  checkOptions(options);
  const plan = planBatch(records, options);
  if (plan.sizeBytes > target.byteLength - targetPosition) {
    throw new ArgumentError(`record batch: ${plan.sizeBytes} bytes do not fit at ` +
      `${targetPosition} in a target of ${target.byteLength}`);
  }
  writeBatch(target, targetPosition, records, options, plan);
  return plan.sizeBytes;
}

/** Encodes the batch into a new buffer of exactly its size. */
export function encodeRecordBatch(records: readonly RecordInput[],
  options: EncodeOptions = {}): Uint8Array {
  checkOptions(options);
  const plan = planBatch(records, options);
  const target = new Uint8Array(plan.sizeBytes);
  writeBatch(target, 0, records, options, plan);
  return target;
}
