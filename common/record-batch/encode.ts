/**
 * Encodes Kafka RecordBatch v2 (uncompressed), byte for byte as Kafka's producer writes it.
 * Two passes over the records: the first validates them and computes every size (a plan), the
 * second writes into one buffer (the caller's, for encodeRecordBatchInto) with no further
 * allocation per record; planRecordBatch hands out the plan to size once and then encode. The
 * CRC32C over attributes..end comes last, from the native addon, in place.
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

/** The sizes of one batch's records, computed once: what sizes the batch also writes it. */
export interface RecordBatchPlan {
  /** Bytes of the encoded batch, header included. */
  readonly sizeBytes: number;
}

/** A validated batch: its records and options, every record's size and the timestamps. */
class BatchPlan implements RecordBatchPlan {
  constructor(
    readonly records: readonly RecordInput[],
    readonly options: EncodeOptions,
    readonly sizeBytes: number,
    /** Bytes of each record after its length varint. */
    readonly bodySizes: Int32Array,
    readonly baseTimestamp: number,
    readonly maxTimestamp: number,
    readonly timestampDefault: number,
  ) {}
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ArgumentError(`record batch: ${name} ${value} outside ${min}..${max}`);
  }
}

/** A record's key or value, or a header (meaning that header's value). */
type BytesField = 'key' | 'value' | RecordHeader;

// Messages name the record and field; they are built only on failure (this runs per record).
function notBytesError(index: number, field: BytesField): ArgumentError {
  const name = typeof field === 'string' ? field : `header "${field.key}" value`;
  return new ArgumentError(`record batch: record ${index} ${name} must be a Uint8Array or null`);
}

function bytesFieldSize(bytes: Uint8Array | null | undefined, index: number,
  field: BytesField): number {
  if (bytes === null || bytes === undefined) return 1; // varint -1
  if (!(bytes instanceof Uint8Array)) throw notBytesError(index, field);
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
    size += bytesFieldSize(header.value, index, header);
  }
  return size;
}

function recordTimestamp(record: RecordInput, index: number, timestampDefault: number): number {
  const timestamp = record.timestamp ?? timestampDefault;
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    checkInteger(`record ${index} timestamp`, timestamp, 0, Number.MAX_SAFE_INTEGER);
  }
  return timestamp;
}

/** Bytes of the record after its length varint. */
function recordBodySize(record: RecordInput, index: number, timestampDelta: number): number {
  return 1 + // attributes
    varlongSizeBytes(timestampDelta) + varintSizeBytes(index) +
    bytesFieldSize(record.key, index, 'key') + bytesFieldSize(record.value, index, 'value') +
    headersSize(index, record.headers);
}

/** Validates every record and computes the batch's size and timestamps. */
function planBatch(records: readonly RecordInput[], options: EncodeOptions): BatchPlan {
  if (!Array.isArray(records)) throw new ArgumentError('record batch: records must be an array');
  checkInteger('record count', records.length, 0, INT32_MAX);
  const timestampDefault = options.timestampDefault ?? Date.now();
  checkInteger('timestampDefault', timestampDefault, 0, Number.MAX_SAFE_INTEGER);
  // A batch's records are < 2^31 bytes; typed: no boxing, no growth, half the bytes.
  const bodySizes = new Int32Array(records.length);
  let sizeBytes = layout.RECORD_BATCH_HEADER_SIZE_BYTES;
  let baseTimestamp = layout.NO_TIMESTAMP;
  let maxTimestamp = layout.NO_TIMESTAMP;
  for (let index = 0; index < records.length; index += 1) {
    const record = records[index];
    if (typeof record !== 'object' || record === null) {
      throw new ArgumentError(`record batch: record ${index} is not an object`);
    }
    const timestamp = recordTimestamp(record, index, timestampDefault);
    if (index === 0) baseTimestamp = timestamp;
    if (timestamp > maxTimestamp) maxTimestamp = timestamp;
    const bodySize = recordBodySize(record, index, timestamp - baseTimestamp);
    bodySizes[index] = bodySize;
    sizeBytes += varintSizeBytes(bodySize) + bodySize;
  }
  if (sizeBytes > layout.RECORD_BATCH_SIZE_BYTES_MAX) {
    throw new ArgumentError(`record batch: ${sizeBytes} bytes exceed the int32 batchLength`);
  }
  return new BatchPlan(records, options, sizeBytes, bodySizes, baseTimestamp, maxTimestamp,
    timestampDefault);
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

/**
 * A record's body up to its value, from `bodyStart`: attributes, timestamp and offset deltas,
 * key. Returns the position after the key.
 */
function writeRecordHead(target: Uint8Array, bodyStart: number, plan: BatchPlan,
  index: number): number {
  const record = plan.records[index]!;
  let p = bodyStart;
  target[p] = 0; // record attributes: unused
  const timestamp = record.timestamp ?? plan.timestampDefault;
  p = writeVarlong(target, p + 1, timestamp - plan.baseTimestamp);
  p = writeVarint(target, p, index);
  return writeBytesField(target, p, record.key);
}

function writeRecords(target: Uint8Array, position: number, plan: BatchPlan): number {
  const { records, bodySizes } = plan;
  let p = position;
  for (let index = 0; index < records.length; index += 1) {
    const record = records[index]!;
    const bodySize = bodySizes[index]!;
    const bodyStart = writeVarint(target, p, bodySize);
    p = writeRecordHead(target, bodyStart, plan, index);
    p = writeBytesField(target, p, record.value);
    p = writeHeaders(target, p, record.headers);
    // Checked before calling: the fields object would otherwise be built for every record.
    if (p - bodyStart !== bodySize) {
      invariant(false, 'record written as planned', { index, bodySize });
    }
  }
  return p;
}

/**
 * Size in bytes of the batch these records encode to, to reserve room before encoding. Exact
 * for the same records and options; when some records have no timestamp, pass the same
 * `timestampDefault` here and to the encoder (their deltas, hence their sizes, depend on it).
 * To size and then encode, planRecordBatch + encodePlannedRecordBatchInto size only once.
 */
export function recordBatchSizeBytes(records: readonly RecordInput[],
  options: EncodeOptions = {}): number {
  checkOptions(options);
  return planBatch(records, options).sizeBytes;
}

/**
 * Validates the records and options and sizes the batch (throws ArgumentError as the encoders
 * do). The plan keeps the records and options: encode it with encodePlannedRecordBatchInto
 * before changing either.
 */
export function planRecordBatch(records: readonly RecordInput[],
  options: EncodeOptions = {}): RecordBatchPlan {
  checkOptions(options);
  return planBatch(records, options);
}

function writeBatch(target: Uint8Array, targetPosition: number, plan: BatchPlan): void {
  const view = new DataView(target.buffer, target.byteOffset + targetPosition, plan.sizeBytes);
  writeHeader(view, plan, plan.records.length, plan.options);
  const end = writeRecords(target, targetPosition + layout.RECORDS_POSITION, plan);
  invariant(end === targetPosition + plan.sizeBytes, 'batch written as planned',
    { end, targetPosition, sizeBytes: plan.sizeBytes });
  const crcStart = targetPosition + layout.ATTRIBUTES_POSITION;
  view.setUint32(layout.CRC_POSITION, crc32c(target, crcStart, end - crcStart));
}

function checkTarget(target: Uint8Array, targetPosition: number): void {
  if (!(target instanceof Uint8Array)) {
    throw new ArgumentError('record batch: target must be a Uint8Array');
  }
  checkInteger('targetPosition', targetPosition, 0, target.byteLength);
}

function checkFits(target: Uint8Array, targetPosition: number, plan: BatchPlan): void {
  if (plan.sizeBytes > target.byteLength - targetPosition) {
    throw new ArgumentError(`record batch: ${plan.sizeBytes} bytes do not fit at ` +
      `${targetPosition} in a target of ${target.byteLength}`);
  }
}

/** Writes a checked plan at a checked target position; returns the batch's size. */
function writePlanned(target: Uint8Array, targetPosition: number, plan: BatchPlan): number {
  checkFits(target, targetPosition, plan);
  writeBatch(target, targetPosition, plan);
  return plan.sizeBytes;
}

/**
 * Encodes the batch at target[targetPosition..] (e.g. a registered buffer); returns its size.
 * Throws ArgumentError, writing nothing, if the records are invalid or the target too small.
 */
export function encodeRecordBatchInto(target: Uint8Array, targetPosition: number,
  records: readonly RecordInput[], options: EncodeOptions = {}): number {
  checkTarget(target, targetPosition);
  checkOptions(options);
  return writePlanned(target, targetPosition, planBatch(records, options));
}

/**
 * Encodes a planned batch at target[targetPosition..]; returns its size (plan.sizeBytes), the
 * same bytes as encodeRecordBatchInto with the plan's records and options. Throws
 * ArgumentError, writing nothing, if the target is too small.
 */
export function encodePlannedRecordBatchInto(target: Uint8Array, targetPosition: number,
  plan: RecordBatchPlan): number {
  if (!(plan instanceof BatchPlan)) {
    throw new ArgumentError('record batch: a plan must come from planRecordBatch');
  }
  checkTarget(target, targetPosition);
  return writePlanned(target, targetPosition, plan);
}

/** Encodes the batch into a new buffer of exactly its size. */
export function encodeRecordBatch(records: readonly RecordInput[],
  options: EncodeOptions = {}): Uint8Array {
  checkOptions(options);
  const plan = planBatch(records, options);
  const target = new Uint8Array(plan.sizeBytes);
  writeBatch(target, 0, plan);
  return target;
}

/**
 * Bytes of the part of a planned batch that encodePlannedRecordBatchGather copies: the whole
 * batch less the values of at least `referenceMinBytes` (sent from the records' own buffers).
 */
export function gatherCopiedBytes(plan: RecordBatchPlan, referenceMinBytes: number): number {
  if (!(plan instanceof BatchPlan)) {
    throw new ArgumentError('record batch: a plan must come from planRecordBatch');
  }
  let copied = plan.sizeBytes;
  for (const record of plan.records) {
    const value = record.value;
    if (value !== null && value !== undefined && value.byteLength >= referenceMinBytes) {
      copied -= value.byteLength;
    }
  }
  return copied;
}

/**
 * Encodes a planned batch as pieces whose concatenation is exactly encodePlannedRecordBatchInto's
 * bytes (CRC included), without copying record values of at least `referenceMinBytes`: those
 * pieces are the records' own Uint8Arrays; every other piece is a view of `target` (the header,
 * each record's framing, keys, headers and the smaller values), which needs
 * gatherCopiedBytes(plan, referenceMinBytes) bytes. The CRC is computed over the pieces in
 * order, once. The referenced values must stay unchanged until the pieces are sent: a change
 * after this call makes the bytes sent disagree with the CRC (docs/clients.md, "Zero copy").
 * Throws ArgumentError, writing nothing, if the target is too small.
 */
export function encodePlannedRecordBatchGather(target: Uint8Array, plan: RecordBatchPlan,
  referenceMinBytes: number): Uint8Array[] {
  const copied = gatherCopiedBytes(plan, referenceMinBytes);
  checkTarget(target, 0);
  if (!(plan instanceof BatchPlan)) invariant(false, 'checked by gatherCopiedBytes');
  checkInteger('referenceMinBytes', referenceMinBytes, 1, Number.MAX_SAFE_INTEGER);
  if (copied > target.byteLength) {
    throw new ArgumentError(`record batch: ${copied} copied bytes do not fit a target of ` +
      `${target.byteLength}`);
  }
  const view = new DataView(target.buffer, target.byteOffset, layout.RECORDS_POSITION);
  writeHeader(view, plan, plan.records.length, plan.options);
  const pieces: Uint8Array[] = [];
  const end = writeRecordsGather(target, plan, referenceMinBytes, pieces);
  invariant(end === copied, 'gathered batch written as planned', { end, copied });
  let crc = 0;
  let sent = 0;
  for (let i = 0; i < pieces.length; i += 1) {
    const piece = pieces[i]!;
    // The CRC covers attributes..end: the first piece (a view of target) starts at 0.
    const skip = i === 0 ? layout.ATTRIBUTES_POSITION : 0;
    crc = crc32c(piece, skip, piece.byteLength - skip, crc);
    sent += piece.byteLength;
  }
  invariant(sent === plan.sizeBytes, 'pieces cover the batch', { sent });
  view.setUint32(layout.CRC_POSITION, crc);
  return pieces;
}

/** writeRecords, leaving large values out of `target`: they become pieces of their own. */
function writeRecordsGather(target: Uint8Array, plan: BatchPlan, referenceMinBytes: number,
  pieces: Uint8Array[]): number {
  const { records, bodySizes } = plan;
  let p = layout.RECORDS_POSITION;
  let runStart = 0;
  for (let index = 0; index < records.length; index += 1) {
    const record = records[index]!;
    const bodySize = bodySizes[index]!;
    const bodyStart = writeVarint(target, p, bodySize);
    p = writeRecordHead(target, bodyStart, plan, index);
    const value = record.value;
    let referenced = 0;
    if (value !== null && value !== undefined && value.byteLength >= referenceMinBytes) {
      p = writeVarint(target, p, value.byteLength);
      pieces.push(target.subarray(runStart, p), value);
      runStart = p;
      referenced = value.byteLength;
    } else {
      p = writeBytesField(target, p, value);
    }
    p = writeHeaders(target, p, record.headers);
    if (p + referenced - bodyStart !== bodySize) {
      invariant(false, 'record written as planned', { index, bodySize });
    }
  }
  if (p > runStart) pieces.push(target.subarray(runStart, p));
  return p;
}
