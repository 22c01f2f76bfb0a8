/**
 * The record shapes a user sees, and their conversion to and from the record-batch codec's.
 * Keys, values and header values may be given as strings (UTF-8) or bytes; consumers always
 * get bytes (Uint8Array views into a fresh buffer per storage read: safe to keep), decoded
 * when the application asks for them (CheckedBatch).
 */
import { ArgumentError } from '../common/errors.js';
import {
  openCheckedRecordBatch, type RecordBatchCursor, type RecordHeader, type RecordInput,
} from '../common/record-batch/index.js';

export type Bytes = Uint8Array | string;

export interface ProducerRecord {
  /** Records with the same key go to the same partition (Kafka's murmur2 partitioner). */
  key?: Bytes | null;
  /** null is a tombstone. */
  value: Bytes | null;
  /** As an object ({ name: value }) or a list (repeated names allowed). */
  headers?: Record<string, Bytes | null> | { key: string; value: Bytes | null }[];
  /** Milliseconds since the epoch; default: when the batch is encoded. */
  timestamp?: number;
}

export interface RecordMetadata { topic: string; partition: number; offset: number }

/** The Map key of one partition of a topic, for per-partition client state. */
export function partitionKey(topic: string, partition: number): string {
  return `${partition}/${topic}`;
}

export interface ConsumerRecord {
  topic: string;
  partition: number;
  offset: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: { key: string; value: Uint8Array | null }[];
  timestamp: number;
}

export interface ConsumerBatch {
  topic: string;
  partition: number;
  /** Offset of the first record in `records` (records below a seek target are dropped). */
  baseOffset: number;
  lastOffset: number;
  /** Decoded on first access (the batch was CRC- and structure-checked before it came). */
  records: ConsumerRecord[];
}

/**
 * A batch the reader checked whole (CRC, header, every record's structure: validateRecordBatch)
 * and hands out undecoded: its records are decoded when the application asks for them
 * (`records`, once, or `each()`, one at a time), from the read's own buffer, which nothing
 * writes after the read. Decoding therefore cannot fail unless the application changed those
 * bytes through a record it kept; it still checks as it goes and throws RecordBatchError then.
 */
export class CheckedBatch implements ConsumerBatch {
  #records: ConsumerRecord[] | undefined;

  constructor(readonly topic: string, readonly partition: number, readonly baseOffset: number,
    readonly lastOffset: number, private readonly bytes: Uint8Array,
    private readonly at: number, private readonly sizeBytes: number) {}

  get records(): ConsumerRecord[] {
    this.#records ??= [...this.each()];
    return this.#records;
  }

  /** The records from baseOffset on, each decoded as it is asked for. */
  *each(): Generator<ConsumerRecord> {
    if (this.#records !== undefined) {
      yield* this.#records;
      return;
    }
    const cursor = openCheckedRecordBatch(this.bytes, this.at, this.sizeBytes);
    while (cursor.next()) {
      if (cursor.offset >= this.baseOffset) {
        yield toConsumerRecord(this.topic, this.partition, cursor);
      }
    }
  }
}

/** A batch's records one at a time: decoded lazily when the reader made it. */
export function recordsOf(batch: ConsumerBatch): Iterable<ConsumerRecord> {
  return batch instanceof CheckedBatch ? batch.each() : batch.records;
}

const utf8 = new TextEncoder();

function toBytes(name: string, value: Bytes | null | undefined): Uint8Array | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return utf8.encode(value);
  if (value instanceof Uint8Array) return value;
  throw new ArgumentError(`${name} must be a string, a Uint8Array (Buffer) or null`);
}

function toHeaders(headers: ProducerRecord['headers']): RecordHeader[] | undefined {
  if (headers === undefined) return undefined;
  const list = Array.isArray(headers) ? headers
    : Object.entries(headers).map(([key, value]) => ({ key, value }));
  return list.map(({ key, value }) => {
    if (typeof key !== 'string') throw new ArgumentError('header names must be strings');
    return { key, value: toBytes(`header ${key}`, value) };
  });
}

export function toRecordInput(record: ProducerRecord): RecordInput {
  if (typeof record !== 'object' || record === null || !('value' in record)) {
    throw new ArgumentError('each record needs a value (a string, bytes or null)');
  }
  const input: RecordInput = { key: toBytes('key', record.key), value:
    toBytes('value', record.value) };
  const headers = toHeaders(record.headers);
  if (headers !== undefined) input.headers = headers;
  if (record.timestamp !== undefined) {
    if (!Number.isSafeInteger(record.timestamp) || record.timestamp < 0) {
      throw new ArgumentError(`timestamp ${record.timestamp} must be ms since the epoch`);
    }
    input.timestamp = record.timestamp;
  }
  return input;
}

/** The cursor's current record as the consumer hands it out: the one object made per record. */
export function toConsumerRecord(topic: string, partition: number,
  record: RecordBatchCursor): ConsumerRecord {
  return { topic, partition, offset: record.offset, key: record.key, value: record.value,
    headers: record.headers, timestamp: record.timestamp };
}
