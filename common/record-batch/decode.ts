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

/**
 * Size, magic and CRC: the checks that come before any field is trusted. `crc` false only for
 * a batch whose CRC was checked in these very bytes before (openCheckedRecordBatch).
 */
function checkFrame(bytes: Uint8Array, view: DataView, lengthAvailable: number,
  crc: boolean): number {
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
  if (!crc) return sizeBytes;
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

function readBytesField(reader: BatchReader, field: string, lengthField: string,
  views: boolean): Uint8Array | null {
  const start = reader.position;
  const length = reader.varint(lengthField);
  if (length === -1) return null;
  if (length < -1) {
    throw reader.corrupt(`${reader.fieldName(lengthField)} ${length} is negative`, start);
  }
  if (views) return reader.slice(length, field);
  reader.skip(length, field);
  return null;
}

function readHeader(reader: BatchReader, views: boolean): RecordHeader {
  const keyStart = reader.position;
  const keyLength = reader.varint('key length');
  if (keyLength < 0) {
    throw reader.corrupt(`${reader.fieldName('key length')} ${keyLength}`, keyStart);
  }
  const keyBytes = reader.slice(keyLength, 'key');
  let key: string;
  try {
    key = utf8Strict.decode(keyBytes);
  } catch {
    throw reader.corrupt(`${reader.fieldName('key')} is not UTF-8`, keyStart);
  }
  return { key, value: readBytesField(reader, 'value', 'value length', views) };
}

/** A record's headers: a fresh array (callers may keep and change it), empty for most. */
const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

function readHeaders(reader: BatchReader, views: boolean): RecordHeader[] {
  const start = reader.position;
  const count = reader.varint('header count');
  // Validation only (no views): one shared empty list, not an array per record (the storage
  // node checks every record of every batch it persists; issue 11). Views get their own.
  if (count === 0) return views ? [] : NO_HEADERS;
  const countMax = Math.floor((reader.end - reader.position) / HEADER_SIZE_BYTES_MIN);
  if (count < 0 || count > countMax) {
    throw reader.corrupt(`${reader.fieldName('header count')} ${count} outside 0..${countMax}`,
      start);
  }
  const headers: RecordHeader[] = [];
  for (let h = 0; h < count; h += 1) {
    reader.header = h;
    headers.push(readHeader(reader, views));
  }
  reader.header = -1;
  return headers;
}

/**
 * The records of one checked batch, read one at a time: each `next()` reads, checks and
 * exposes one record in the fields below, so that a caller builds just the object it wants
 * per record (the consumer its ConsumerRecord, validation none). Keys, values and header
 * values are fresh views into the caller's bytes and `headers` a fresh array: safe to keep.
 * After the last record, `next()` checks that no bytes are left and returns false.
 */
export class RecordBatchCursor {
  /** Offset of the current record: baseOffset + offsetDelta. */
  offset = 0;
  /** Timestamp of the current record (ms): baseTimestamp + timestampDelta. */
  timestamp = 0;
  key: Uint8Array | null = null;
  value: Uint8Array | null = null;
  headers: RecordHeader[] = [];
  /** Records read so far. */
  private index = 0;

  /** Use openRecordBatch. `views` false: keys and values are checked but not exposed. */
  constructor(readonly header: RecordBatchHeader, private readonly reader: BatchReader,
    private readonly views: boolean) {}

  next(): boolean {
    const reader = this.reader;
    if (this.index === this.header.recordCount) {
      if (reader.position !== reader.end) {
        throw reader.corrupt(`${reader.end - reader.position} bytes after the last record`);
      }
      return false;
    }
    const batchEnd = reader.end;
    this.enterRecord();
    this.key = readBytesField(reader, 'key', 'key length', this.views);
    this.value = readBytesField(reader, 'value', 'value length', this.views);
    this.headers = readHeaders(reader, this.views);
    if (reader.position !== reader.end) {
      throw reader.corrupt(`record ${this.index} has ${reader.end - reader.position} bytes ` +
        'left after its headers');
    }
    reader.end = batchEnd;
    reader.endIsRecord = false;
    reader.record = -1;
    this.index += 1;
    return true;
  }

  /** Reads the record's length (narrowing the reader's end to it), attributes, timestamp and
   *  offset. */
  private enterRecord(): void {
    const { reader, index } = this;
    const start = reader.position;
    reader.record = index;
    const bodySize = reader.varint('length');
    if (bodySize < RECORD_BODY_SIZE_BYTES_MIN || bodySize > reader.end - reader.position) {
      throw reader.corrupt(`record ${index} length ${bodySize} outside ` +
        `${RECORD_BODY_SIZE_BYTES_MIN}..${reader.end - reader.position} (the bytes left)`, start);
    }
    reader.end = reader.position + bodySize;
    reader.endIsRecord = true;
    const attributes = reader.int8('attributes');
    if (attributes !== 0) {
      throw reader.corrupt(`record ${index} attributes ${attributes}: unused, must be 0`,
        reader.position - 1);
    }
    const timestamp = this.header.baseTimestamp + reader.varlong('timestampDelta');
    if (!Number.isSafeInteger(timestamp)) throw reader.corrupt(`record ${index} timestamp`, start);
    const deltaStart = reader.position;
    const offsetDelta = reader.varint('offsetDelta');
    if (offsetDelta !== index) {
      throw reader.corrupt(`record ${index} has offsetDelta ${offsetDelta}: offsets must be ` +
        `dense 0..lastOffsetDelta`, deltaStart);
    }
    this.timestamp = timestamp;
    this.offset = this.header.baseOffset + offsetDelta;
  }
}

function open(bytes: Uint8Array, position: number, lengthAvailable: number | undefined,
  views: boolean, crc = true): RecordBatchCursor {
  const available = lengthAvailable ?? bytes.byteLength - position;
  checkArguments(bytes, position, available);
  const view = new DataView(bytes.buffer, bytes.byteOffset + position, available);
  const sizeBytes = checkFrame(bytes, view, available, crc);
  const reader = new BatchReader(bytes, view, position, position + sizeBytes);
  const header = decodeHeader(reader, sizeBytes);
  reader.position = position + layout.RECORDS_POSITION;
  return new RecordBatchCursor(header, reader, views);
}

/**
 * Checks the batch at bytes[position..] (size, magic, CRC, attributes, header fields) and
 * returns a cursor over its records, which checks each record as it reads it: a caller must
 * read until next() returns false before it trusts the batch. `lengthAvailable` (default: the
 * rest of `bytes`) bounds what may be read. Throws RecordBatchError.
 */
export function openRecordBatch(bytes: Uint8Array, position = 0,
  lengthAvailable?: number): RecordBatchCursor {
  return open(bytes, position, lengthAvailable, true);
}

/**
 * Opens again a batch that validateRecordBatch (or openRecordBatch, read to the end) accepted
 * in these same bytes, which nobody wrote since (a consumer's own read buffer): the CRC is not
 * computed again; every other check still runs as the records are read. For decoding records
 * lazily, when the application asks for them (clients/records.ts).
 */
export function openCheckedRecordBatch(bytes: Uint8Array, position: number,
  sizeBytes: number): RecordBatchCursor {
  return open(bytes, position, sizeBytes, true, false);
}

/**
 * Checks the batch at bytes[position..] without keeping its records: size, magic, CRC,
 * attributes, dense offsets, every varint and length. `lengthAvailable` (default: the rest of
 * `bytes`) bounds what may be read. Returns the header; throws RecordBatchError.
 */
export function validateRecordBatch(bytes: Uint8Array, position = 0,
  lengthAvailable?: number): RecordBatchHeader {
  const cursor = open(bytes, position, lengthAvailable, false);
  while (cursor.next());
  return cursor.header;
}

/** Validates as validateRecordBatch, and returns the records (views into `bytes`). */
export function decodeRecordBatch(bytes: Uint8Array, position = 0,
  lengthAvailable?: number): DecodedRecordBatch {
  const cursor = open(bytes, position, lengthAvailable, true);
  const { baseOffset, baseTimestamp } = cursor.header;
  const records: DecodedRecord[] = [];
  while (cursor.next()) {
    const { offset, timestamp } = cursor;
    records.push({ offset, offsetDelta: offset - baseOffset, timestamp,
      timestampDelta: timestamp - baseTimestamp, key: cursor.key, value: cursor.value,
      headers: cursor.headers });
  }
  return { ...cursor.header, records };
}
