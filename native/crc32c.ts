/**
 * CRC32C (Castagnoli), the checksum of Kafka RecordBatch v2. Validates arguments, then calls
 * the addon, which reads the caller's bytes in place (no copy) with SSE4.2 where the CPU has it.
 * Chaining: crc32c(b, 0, b.length, crc32c(a)) === crc32c(a ‖ b).
 */
import { ArgumentError } from '../common/errors.js';
import type { Crc32cImplementation } from './binding-crc32c.js';
import { native } from './index.js';

export type { Crc32cImplementation } from './binding-crc32c.js';

const UINT32_MAX = 0xffff_ffff;

function checkArguments(data: Uint8Array, offset: number, length: number, seed: number): void {
  if (!(data instanceof Uint8Array)) throw new ArgumentError('crc32c: data must be a Uint8Array');
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > data.byteLength) {
    throw new ArgumentError(`crc32c: offset ${offset} outside 0..${data.byteLength}`);
  }
  if (!Number.isSafeInteger(length) || length < 0 || length > data.byteLength - offset) {
    throw new ArgumentError(
      `crc32c: length ${length} at offset ${offset} exceeds ${data.byteLength} bytes`,
    );
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > UINT32_MAX) {
    throw new ArgumentError(`crc32c: seed ${seed} is not a uint32`);
  }
}

/** CRC32C of data[offset, offset + length), continuing from seed (a previous CRC, or 0). */
export function crc32c(
  data: Uint8Array,
  offset = 0,
  length: number = (data?.byteLength ?? 0) - offset,
  seed = 0,
): number {
  checkArguments(data, offset, length, seed);
  return native.crc32c(data, offset, length, seed);
}

/** Same as crc32c, always through the portable tables; for tests and comparisons. */
export function crc32cSoftware(
  data: Uint8Array,
  offset = 0,
  length: number = (data?.byteLength ?? 0) - offset,
  seed = 0,
): number {
  checkArguments(data, offset, length, seed);
  return native.crc32cSoftware(data, offset, length, seed);
}

/** 'sse4.2' when the CPU has the crc32 instruction, else 'software'. */
export function crc32cImplementation(): Crc32cImplementation {
  return native.crc32cImplementation();
}

/**
 * Whether the storage node's native persist path accepts data[offset, +length) as one whole
 * RecordBatch v2 of `records` records. Conservative: never true where validateRecordBatch
 * refuses the batch or counts other records; may be false where it accepts (the persist then
 * goes to the JS path). For the differential test of the two checks.
 */
export function nativeRecordBatchCheck(data: Uint8Array, offset: number, length: number,
  records: number): boolean {
  checkArguments(data, offset, length, 0);
  if (!Number.isSafeInteger(records) || records < 0) {
    throw new ArgumentError(`records ${records} is not a count`);
  }
  return native.recordBatchCheck(data, offset, length, records);
}
