/**
 * CRC32C (Castagnoli) slice of the native binding. Call these through native/crc32c.ts, which
 * validates arguments first: the native side only asserts them.
 */

export type Crc32cImplementation = 'sse4.2' | 'software';

export interface Crc32cBinding {
  /** CRC32C of data[offset, offset + length), continuing from seed (0 starts afresh). */
  crc32c(data: Uint8Array, offset: number, length: number, seed: number): number;
  /** Same result, always through the portable slicing-by-8 tables (for tests). */
  crc32cSoftware(data: Uint8Array, offset: number, length: number, seed: number): number;
  /**
   * Whether the storage node's native persist path accepts data[offset, +length) as one whole
   * RecordBatch v2 of `records` records (native/batch_check.h: never more than
   * validateRecordBatch accepts; test/unit/batch-check.test.ts).
   */
  recordBatchCheck(data: Uint8Array, offset: number, length: number, records: number): boolean;
  /** Which implementation crc32c() uses on this CPU. */
  crc32cImplementation(): Crc32cImplementation;
}

export const CRC32C_EXPORTS = [
  'crc32c',
  'crc32cSoftware',
  'recordBatchCheck',
  'crc32cImplementation',
] as const satisfies readonly (keyof Crc32cBinding)[];
