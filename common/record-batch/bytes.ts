/**
 * Byte-level primitives of the record batch format: zigzag varints (int32, at most 5 bytes) and
 * varlongs (int64, at most 10 bytes) as Kafka's ByteUtils writes them, and big-endian int64
 * fields held in plain numbers. Decoding is strict: a varint must be minimal (no trailing zero
 * group), must fit its type and must end inside the batch; anything else is a RecordBatchError
 * naming the field and the byte position. No I/O, no allocation on the number paths.
 */
import { ArgumentError } from '../errors.js';
import { RecordBatchError } from './errors.js';

const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const TWO_32 = 0x1_0000_0000;
/** Varlongs whose zigzag form fits in 7 groups (49 bits) decode without bigint. */
const VARLONG_NUMBER_GROUPS = 7;
/** |value| below this zigzags into a safe integer: encoded with number arithmetic. */
const VARLONG_NUMBER_ABS_LIMIT = 2 ** 52;

/** Bytes taken by an int32 as a zigzag varint (1..5). */
export function varintSizeBytes(value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  let size = 1;
  while (zigzag >= 0x80) {
    zigzag >>>= 7;
    size += 1;
  }
  return size;
}

/** Writes an int32 as a zigzag varint at target[position]; returns the position after it. */
export function writeVarint(target: Uint8Array, position: number, value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  let p = position;
  while (zigzag >= 0x80) {
    target[p] = (zigzag & 0x7f) | 0x80;
    p += 1;
    zigzag >>>= 7;
  }
  target[p] = zigzag;
  return p + 1;
}

function checkInt64(value: number | bigint): void {
  if (typeof value === 'number' ? !Number.isSafeInteger(value) :
    value < INT64_MIN || value > INT64_MAX) {
    throw new ArgumentError(`varlong: ${value} is not a safe integer or an int64`);
  }
}

/**
 * An int32 zigzags to the same unsigned value in 32 or 64 bits, so its varlong is its varint:
 * the common case (timestamp deltas of a batch) skips the int64 arithmetic.
 */
function isInt32(value: number | bigint): value is number {
  return typeof value === 'number' && (value | 0) === value;
}

function zigzag64(value: bigint): bigint {
  return value >= 0n ? value << 1n : ((-value) << 1n) - 1n;
}

/** Bytes taken by an int64 as a zigzag varlong (1..10). */
export function varlongSizeBytes(value: number | bigint): number {
  if (isInt32(value)) return varintSizeBytes(value);
  checkInt64(value);
  if (typeof value === 'number' && Math.abs(value) < VARLONG_NUMBER_ABS_LIMIT) {
    let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
    let size = 1;
    while (zigzag >= 0x80) {
      zigzag = Math.floor(zigzag / 0x80);
      size += 1;
    }
    return size;
  }
  let zigzag = zigzag64(BigInt(value));
  let size = 1;
  while (zigzag >= 0x80n) {
    zigzag >>= 7n;
    size += 1;
  }
  return size;
}

/** Writes an int64 as a zigzag varlong at target[position]; returns the position after it. */
export function writeVarlong(target: Uint8Array, position: number, value: number | bigint): number {
  if (isInt32(value)) return writeVarint(target, position, value);
  checkInt64(value);
  let p = position;
  if (typeof value === 'number' && Math.abs(value) < VARLONG_NUMBER_ABS_LIMIT) {
    let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
    while (zigzag >= 0x80) {
      target[p] = (zigzag % 0x80) | 0x80;
      p += 1;
      zigzag = Math.floor(zigzag / 0x80);
    }
    target[p] = zigzag;
    return p + 1;
  }
  let zigzag = zigzag64(BigInt(value));
  while (zigzag >= 0x80n) {
    target[p] = Number(zigzag & 0x7fn) | 0x80;
    p += 1;
    zigzag >>= 7n;
  }
  target[p] = Number(zigzag);
  return p + 1;
}

/** Writes a safe integer as a big-endian int64 (two's complement). */
export function writeInt64(view: DataView, position: number, value: number): void {
  const high = Math.floor(value / TWO_32);
  view.setInt32(position, high);
  view.setUint32(position + 4, value - high * TWO_32);
}

/**
 * Reads the fields of one batch. `position` is an index into `bytes`; `batchStart` is where the
 * batch begins (errors report positions relative to it); `end` is one past its last byte.
 *
 * Field names in error messages are built only when an error is: a decoder sets `record` (and
 * `header`) and passes constant names ('key length'), which errors print as
 * 'record 7 header 0 key length'. Building them per record was a measurable share of decoding.
 */
export class BatchReader {
  position: number;
  /** Record being read, for error messages; -1: none (a batch-level field). */
  record = -1;
  /** Header being read in `record`, for error messages; -1: none. */
  header = -1;
  /** Whether `end` is the end of `record` (narrowed by the decoder) rather than of the batch. */
  endIsRecord = false;

  constructor(
    readonly bytes: Uint8Array,
    /** A view starting at the batch's first byte. */
    readonly view: DataView,
    readonly batchStart: number,
    public end: number,
  ) {
    this.position = batchStart;
  }

  corrupt(what: string, position = this.position): RecordBatchError {
    return new RecordBatchError('PMQ_ERR_BATCH_CORRUPT', position - this.batchStart, what);
  }

  /** `field` as errors name it: prefixed with the record and header being read. */
  fieldName(field: string): string {
    if (this.record < 0) return field;
    if (this.header < 0) return `record ${this.record} ${field}`;
    return `record ${this.record} header ${this.header} ${field}`;
  }

  /** What `end` is the end of, for error messages: 'the batch' or 'record 7'. */
  get endWhat(): string {
    return this.endIsRecord ? `record ${this.record}` : 'the batch';
  }

  /**
   * A big-endian int64 at `batchPosition` (relative to the batch) that must be a safe integer:
   * pmq keeps offsets, timestamps and producer ids in numbers.
   */
  int64At(batchPosition: number, field: string): number {
    const value = this.view.getInt32(batchPosition) * TWO_32 +
      this.view.getUint32(batchPosition + 4);
    if (!Number.isSafeInteger(value)) {
      throw this.corrupt(`${field} ${this.view.getBigInt64(batchPosition)} is beyond ±2^53`,
        this.batchStart + batchPosition);
    }
    return value;
  }

  int8(field: string): number {
    if (this.position >= this.end) {
      throw this.corrupt(`${this.fieldName(field)} runs past the end of ${this.endWhat}`);
    }
    const byte = this.bytes[this.position]!;
    this.position += 1;
    return (byte << 24) >> 24;
  }

  /**
   * A zigzag int32 varint: 1..5 bytes, minimal, inside the batch. One and two bytes (lengths
   * below 64 and 8192, offset deltas, small counts: nearly every varint) are read inline.
   */
  varint(field: string): number {
    const p = this.position;
    if (p < this.end) {
      const first = this.bytes[p]!;
      if (first < 0x80) {
        this.position = p + 1;
        return (first >>> 1) ^ -(first & 1);
      }
      const second = p + 1 < this.end ? this.bytes[p + 1]! : 0;
      if (second !== 0 && second < 0x80) {   // 0: past the end, or overlong
        this.position = p + 2;
        const unsigned = (first & 0x7f) | (second << 7);
        return (unsigned >>> 1) ^ -(unsigned & 1);
      }
    }
    return this.varintLong(field);
  }

  /** A varint of any length, or one that ends at (or runs past) the end: every check. */
  private varintLong(field: string): number {
    const start = this.position;
    let unsigned = 0;
    let scale = 1;
    for (let group = 0; group < 5; group += 1) {
      if (this.position >= this.end) {
        throw this.corrupt(`varint ${this.fieldName(field)} runs past the end of ` +
          `${this.endWhat}`, start);
      }
      const byte = this.bytes[this.position]!;
      this.position += 1;
      if (group === 4 && byte > 0x0f) {
        throw this.corrupt(`varint ${this.fieldName(field)} exceeds int32`, start);
      }
      unsigned += (byte & 0x7f) * scale;
      scale *= 0x80;
      if (byte < 0x80) {
        if (byte === 0 && group > 0) {
          throw this.corrupt(`varint ${this.fieldName(field)} is overlong`, start);
        }
        return (unsigned >>> 1) ^ -(unsigned & 1);   // unsigned < 2^32: int32 bit operations
      }
    }
    throw this.corrupt(`varint ${this.fieldName(field)} is longer than 5 bytes`, start);
  }

  /** A zigzag int64 varlong that must be a safe integer. */
  varlong(field: string): number {
    const start = this.position;
    if (start < this.end) {
      const first = this.bytes[start]!;
      if (first < 0x80) {
        this.position = start + 1;
        return (first >>> 1) ^ -(first & 1);
      }
    }
    let unsigned = 0;
    let scale = 1;
    for (let group = 0; group < VARLONG_NUMBER_GROUPS && this.position < this.end; group += 1) {
      const byte = this.bytes[this.position]!;
      this.position += 1;
      unsigned += (byte & 0x7f) * scale;   // exact: below 2^49
      scale *= 0x80;
      if (byte < 0x80) {
        if (byte === 0 && group > 0) {
          throw this.corrupt(`varlong ${this.fieldName(field)} is overlong`, start);
        }
        // The zigzag sign is the lowest bit, which the first byte holds.
        return (this.bytes[start]! & 1) === 0 ? unsigned / 2 : -(unsigned + 1) / 2;
      }
    }
    this.position = start;
    const value = this.varlongBigInt(field);
    if (value < BigInt(Number.MIN_SAFE_INTEGER) || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.corrupt(`varlong ${this.fieldName(field)} ${value} is beyond ±2^53`, start);
    }
    return Number(value);
  }

  /** A zigzag int64 varlong: 1..10 bytes, minimal, inside the batch. */
  varlongBigInt(field: string): bigint {
    const start = this.position;
    let unsigned = 0n;
    for (let group = 0; group < 10; group += 1) {
      if (this.position >= this.end) {
        throw this.corrupt(`varlong ${this.fieldName(field)} runs past the end of ` +
          `${this.endWhat}`, start);
      }
      const byte = this.bytes[this.position]!;
      this.position += 1;
      if (group === 9 && byte > 0x01) {
        throw this.corrupt(`varlong ${this.fieldName(field)} exceeds int64`, start);
      }
      unsigned |= BigInt(byte & 0x7f) << BigInt(7 * group);
      if (byte < 0x80) {
        if (byte === 0 && group > 0) {
          throw this.corrupt(`varlong ${this.fieldName(field)} is overlong`, start);
        }
        return (unsigned & 1n) === 0n ? unsigned >> 1n : -((unsigned + 1n) >> 1n);
      }
    }
    throw this.corrupt(`varlong ${this.fieldName(field)} is longer than 10 bytes`, start);
  }

  /** A view of the next `length` bytes (no copy), which must lie inside the batch. */
  slice(length: number, field: string): Uint8Array {
    this.skip(length, field);
    return this.bytes.subarray(this.position - length, this.position);
  }

  /** Steps over the next `length` bytes, which must lie inside the batch. */
  skip(length: number, field: string): void {
    if (length > this.end - this.position) {
      throw this.corrupt(`${this.fieldName(field)} of ${length} bytes runs past the end of ` +
        `${this.endWhat}`);
    }
    this.position += length;
  }
}

export { INT32_MAX, INT32_MIN };
