/**
 * Validates and decodes Kafka RecordBatch v2. Strict and bounded: every length is checked
 * against the bytes the batch declares before it is used, the work is linear in the batch size,
 * and any failure is a RecordBatchError with a code and the byte position (relative to the
 * batch) of the problem. Keys, values and header values are views into the caller's bytes
 * (zero copy): they stay valid only as long as those bytes are not overwritten. No I/O.
 */
import { crc32c } from '../../native/crc32c.js';
import { ArgumentError } from '../errors.js';
import { BatchReader } from './bytes.js';
import type { RecordHeader, TimestampType } from './encode.js';
import { RecordBatchError } from './errors.js';
import * as layout from './layout.js';

export interface BatchAttributes {
  /** Always 'none': pmq rejects compressed batches. */
  compression: 'none';
  timestampType: TimestampType;
  isTransactional: boolean;
  /** A control batch: pmq uses these to fill holes; consumers skip them. */
  isControl: boolean;
}

export interface RecordBatchHeader {
  baseOffset: number;
  /** Bytes after the batchLength field; the whole batch is sizeBytes = batchLength + 12. */
  batchLength: number;
  sizeBytes: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: BatchAttributes;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface DecodedRecord {
  /** baseOffset + offsetDelta. */
  offset: number;
  offsetDelta: number;
  /** baseTimestamp + timestampDelta (ms). */
  timestamp: number;
  timestampDelta: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

export interface DecodedRecordBatch extends RecordBatchHeader {
  records: DecodedRecord[];
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });
/** A header takes at least two bytes: key length and value length. */
const HEADER_SIZE_BYTES_MIN = 2;
/** A record body (after its length) takes at least six bytes. */
const RECORD_BODY_SIZE_BYTES_MIN = layout.RECORD_SIZE_BYTES_MIN - 1;

function checkArguments(bytes: Uint8Array, position: number, lengthAvailable: number): void {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError('record batch: bytes type');
  if (!Number.isSafeInteger(position) || position < 0 || position > bytes.byteLength) {
    throw new ArgumentError(`record batch: position ${position} outside 0..${bytes.byteLength}`);
  }
  if (!Number.isSafeInteger(lengthAvailable) || lengthAvailable < 0 ||
      lengthAvailable > bytes.byteLength - position) {
    throw new ArgumentError(`record batch: ${lengthAvailable} bytes at ${position} exceed ` +
      `${bytes.byteLength}`);
  }
}

/** Size, magic and CRC: the checks that come before any field is trusted. */
function checkFrame(bytes: Uint8Array, view: DataView, lengthAvailable: number): number {
  const needed = layout.MAGIC_POSITION + 1;
  if (lengthAvailable < needed) {
    throw new RecordBatchError('PMQ_ERR_BATCH_TRUNCATED', lengthAvailable,
      `${lengthAvailable} bytes available, ${needed} needed to read batchLength and magic`);
  }
  const magic = view.getInt8(layout.MAGIC_POSITION);
  if (magic !== layout.MAGIC_V2) {
    throw new RecordBatchError('PMQ_ERR_BATCH_MAGIC', layout.MAGIC_POSITION,
      `magic ${magic}, only ${layout.MAGIC_V2} (RecordBatch v2) is supported`);
  }
  const batchLength = view.getInt32(layout.BATCH_LENGTH_POSITION);
  if (batchLength < layout.BATCH_LENGTH_MIN) {
    throw new RecordBatchError('PMQ_ERR_BATCH_CORRUPT', layout.BATCH_LENGTH_POSITION,
      `batchLength ${batchLength} is below the ${layout.BATCH_LENGTH_MIN} of an empty batch`);
  }
  const sizeBytes = layout.LOG_OVERHEAD_SIZE_BYTES + batchLength;
  if (sizeBytes > lengthAvailable) {
    throw new RecordBatchError('PMQ_ERR_BATCH_TRUNCATED', lengthAvailable,
      `batchLength ${batchLength} declares ${sizeBytes} bytes, ${lengthAvailable} available`);
  }
  const start = view.byteOffset - bytes.byteOffset;
  const crcStored = view.getUint32(layout.CRC_POSITION);
  const crcComputed = crc32c(bytes, start + layout.ATTRIBUTES_POSITION,
    sizeBytes - layout.ATTRIBUTES_POSITION);
  if (crcStored !== crcComputed) {
    throw new RecordBatchError('PMQ_ERR_BATCH_CRC', layout.CRC_POSITION,
      `CRC32C stored 0x${crcStored.toString(16)}, computed 0x${crcComputed.toString(16)} ` +
      `over bytes ${layout.ATTRIBUTES_POSITION}..${sizeBytes - 1}`);
  }
  return sizeBytes;
}

function decodeAttributes(view: DataView): BatchAttributes {
  const attributes = view.getUint16(layout.ATTRIBUTES_POSITION);
  const compression = attributes & layout.ATTRIBUTE_COMPRESSION_MASK;
  if (compression !== layout.COMPRESSION_NONE) {
    throw new RecordBatchError('PMQ_ERR_BATCH_COMPRESSION', layout.ATTRIBUTES_POSITION,
      `compression ${layout.COMPRESSION_NAMES[compression]}: pmq stores only uncompressed batches`);
  }
  if ((attributes & layout.ATTRIBUTE_RESERVED_MASK) !== 0) {
    throw new RecordBatchError('PMQ_ERR_BATCH_CORRUPT', layout.ATTRIBUTES_POSITION,
      `attributes 0x${attributes.toString(16)} set reserved bits (6-15)`);
  }
  return {
    compression: 'none',
    timestampType: (attributes & layout.ATTRIBUTE_TIMESTAMP_TYPE_MASK) === 0 ?
      'create-time' : 'log-append-time',
    isTransactional: (attributes & layout.ATTRIBUTE_TRANSACTIONAL_MASK) !== 0,
    isControl: (attributes & layout.ATTRIBUTE_CONTROL_MASK) !== 0,
  };
}

function decodeHeader(reader: BatchReader, sizeBytes: number): RecordBatchHeader {
  const { view } = reader;
  const header: RecordBatchHeader = {
    baseOffset: reader.int64At(layout.BASE_OFFSET_POSITION, 'baseOffset'),
    batchLength: sizeBytes - layout.LOG_OVERHEAD_SIZE_BYTES,
    sizeBytes,
    partitionLeaderEpoch: view.getInt32(layout.PARTITION_LEADER_EPOCH_POSITION),
    magic: view.getInt8(layout.MAGIC_POSITION),
    crc: view.getUint32(layout.CRC_POSITION),
    attributes: decodeAttributes(view),
    lastOffsetDelta: view.getInt32(layout.LAST_OFFSET_DELTA_POSITION),
    baseTimestamp: reader.int64At(layout.BASE_TIMESTAMP_POSITION, 'baseTimestamp'),
    maxTimestamp: reader.int64At(layout.MAX_TIMESTAMP_POSITION, 'maxTimestamp'),
    producerId: reader.int64At(layout.PRODUCER_ID_POSITION, 'producerId'),
    producerEpoch: view.getInt16(layout.PRODUCER_EPOCH_POSITION),
    baseSequence: view.getInt32(layout.BASE_SEQUENCE_POSITION),
    recordCount: view.getInt32(layout.RECORD_COUNT_POSITION),
  };
  checkHeader(reader, header);
  return header;
}

function checkHeader(reader: BatchReader, header: RecordBatchHeader): void {
  if (header.baseOffset < 0) {
    throw reader.corrupt(`baseOffset ${header.baseOffset} is negative`, reader.batchStart);
  }
  const count = header.recordCount;
  const countMax = Math.floor((header.sizeBytes - layout.RECORDS_POSITION) /
    layout.RECORD_SIZE_BYTES_MIN);
  if (count < 0 || count > countMax) {
    throw reader.corrupt(`record count ${count} outside 0..${countMax} (what the bytes can hold)`,
      reader.batchStart + layout.RECORD_COUNT_POSITION);
  }
  if (header.lastOffsetDelta !== count - 1) {
    throw reader.corrupt(`lastOffsetDelta ${header.lastOffsetDelta} with ${count} records: ` +
      `offsets must be dense, so it must be ${count - 1}`,
      reader.batchStart + layout.LAST_OFFSET_DELTA_POSITION);
  }
}

function readBytesField(reader: BatchReader, field: string): Uint8Array | null {
  const start = reader.position;
  const length = reader.varint(`${field} length`);
  if (length === -1) return null;
  if (length < -1) throw reader.corrupt(`${field} length ${length} is negative`, start);
  return reader.slice(length, field);
}

function readHeaders(reader: BatchReader, index: number): RecordHeader[] {
  const start = reader.position;
  const count = reader.varint(`record ${index} header count`);
  const countMax = Math.floor((reader.end - reader.position) / HEADER_SIZE_BYTES_MIN);
  if (count < 0 || count > countMax) {
    throw reader.corrupt(`record ${index} header count ${count} outside 0..${countMax}`, start);
  }
  const headers: RecordHeader[] = [];
  for (let h = 0; h < count; h += 1) {
    const keyStart = reader.position;
    const keyLength = reader.varint(`record ${index} header ${h} key length`);
    if (keyLength < 0) {
      throw reader.corrupt(`record ${index} header ${h} key length ${keyLength}`, keyStart);
    }
    const keyBytes = reader.slice(keyLength, `record ${index} header ${h} key`);
    let key: string;
    try {
      key = utf8Strict.decode(keyBytes);
    } catch {
      throw reader.corrupt(`record ${index} header ${h} key is not UTF-8`, keyStart);
    }
    headers.push({ key, value: readBytesField(reader, `record ${index} header ${h} value`) });
  }
  return headers;
}

function readRecord(reader: BatchReader, header: RecordBatchHeader, index: number): DecodedRecord {
  const start = reader.position;
  const bodySize = reader.varint(`record ${index} length`);
  if (bodySize < RECORD_BODY_SIZE_BYTES_MIN || bodySize > reader.end - reader.position) {
    throw reader.corrupt(`record ${index} length ${bodySize} outside ` +
      `${RECORD_BODY_SIZE_BYTES_MIN}..${reader.end - reader.position} (the bytes left)`, start);
  }
  const batchEnd = reader.end;
  reader.end = reader.position + bodySize;
  reader.endWhat = `record ${index}`;
  const attributes = reader.int8(`record ${index} attributes`);
  if (attributes !== 0) {
    throw reader.corrupt(`record ${index} attributes ${attributes}: unused, must be 0`,
      reader.position - 1);
  }
  const timestampDelta = reader.varlong(`record ${index} timestampDelta`);
  const timestamp = header.baseTimestamp + timestampDelta;
  if (!Number.isSafeInteger(timestamp)) throw reader.corrupt(`record ${index} timestamp`, start);
  const deltaStart = reader.position;
  const offsetDelta = reader.varint(`record ${index} offsetDelta`);
  if (offsetDelta !== index) {
    throw reader.corrupt(`record ${index} has offsetDelta ${offsetDelta}: offsets must be ` +
      `dense 0..lastOffsetDelta`, deltaStart);
  }
  const key = readBytesField(reader, `record ${index} key`);
  const value = readBytesField(reader, `record ${index} value`);
  const headers = readHeaders(reader, index);
  if (reader.position !== reader.end) {
    throw reader.corrupt(`record ${index} has ${reader.end - reader.position} bytes left ` +
      'after its headers');
  }
  reader.end = batchEnd;
  reader.endWhat = 'the batch';
  return { offset: header.baseOffset + offsetDelta, offsetDelta, timestamp, timestampDelta,
    key, value, headers };
}

function readBatch(bytes: Uint8Array, position: number, lengthAvailable: number | undefined,
  sink: DecodedRecord[] | null): RecordBatchHeader {
  const available = lengthAvailable ?? bytes.byteLength - position;
  checkArguments(bytes, position, available);
  const view = new DataView(bytes.buffer, bytes.byteOffset + position, available);
  const sizeBytes = checkFrame(bytes, view, available);
  const reader = new BatchReader(bytes, view, position, position + sizeBytes);
  const header = decodeHeader(reader, sizeBytes);
  reader.position = position + layout.RECORDS_POSITION;
  for (let index = 0; index < header.recordCount; index += 1) {
    const record = readRecord(reader, header, index);
    sink?.push(record);
  }
  if (reader.position !== reader.end) {
    throw reader.corrupt(`${reader.end - reader.position} bytes after the last record`);
  }
  return header;
}

/**
 * Checks the batch at bytes[position..] without keeping its records: size, magic, CRC,
 * attributes, dense offsets, every varint and length. `lengthAvailable` (default: the rest of
 * `bytes`) bounds what may be read. Returns the header; throws RecordBatchError.
 */
export function validateRecordBatch(bytes: Uint8Array, position = 0,
  lengthAvailable?: number): RecordBatchHeader {
  return readBatch(bytes, position, lengthAvailable, null);
}

/** Validates as validateRecordBatch, and returns the records (views into `bytes`). */
export function decodeRecordBatch(bytes: Uint8Array, position = 0,
  lengthAvailable?: number): DecodedRecordBatch {
  const records: DecodedRecord[] = [];
  const header = readBatch(bytes, position, lengthAvailable, records);
  return { ...header, records };
}
