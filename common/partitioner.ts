/**
 * Kafka's default partitioner for keyed records, so that a key lands on the same partition in
 * pmq as in Kafka: partition = toPositive(murmur2(keyBytes)) % partitionCount, with murmur2 as
 * Kafka's Java client computes it (Utils.murmur2: MurmurHash2, seed 0x9747b28c, little-endian
 * 4-byte blocks, 32-bit wrapping arithmetic, results as a signed int32).
 *
 * Keyless records are not this module's business: the producer picks their partition (Kafka's
 * sticky / round-robin behaviour), since that depends on producer state, not on the record.
 * Pure and allocation free; no I/O.
 */
import { ArgumentError } from './errors.js';

const MURMUR2_SEED = 0x9747b28c;
const MURMUR2_M = 0x5bd1e995;
const MURMUR2_R = 24;
/** Kafka's partition counts are int32; more than this is a configuration error. */
const PARTITION_COUNT_MAX = 0x7fff_ffff;

/** Kafka's Utils.murmur2: a signed int32, bit for bit what the Java client returns. */
export function murmur2(data: Uint8Array): number {
  if (!(data instanceof Uint8Array)) throw new ArgumentError('murmur2: data must be a Uint8Array');
  const length = data.byteLength;
  let h = (MURMUR2_SEED ^ length) | 0;
  const blocksEnd = length & ~3;
  for (let i = 0; i < blocksEnd; i += 4) {
    // Uint8Array elements are already unsigned: Java's `& 0xff` on signed bytes.
    let k = (data[i] ?? 0) | ((data[i + 1] ?? 0) << 8) | ((data[i + 2] ?? 0) << 16) |
      ((data[i + 3] ?? 0) << 24);
    k = Math.imul(k, MURMUR2_M);
    k ^= k >>> MURMUR2_R;
    k = Math.imul(k, MURMUR2_M);
    h = Math.imul(h, MURMUR2_M) ^ k;
  }
  const tail = length & 3;
  if (tail >= 3) h ^= (data[blocksEnd + 2] ?? 0) << 16;
  if (tail >= 2) h ^= (data[blocksEnd + 1] ?? 0) << 8;
  if (tail >= 1) h = Math.imul(h ^ (data[blocksEnd] ?? 0), MURMUR2_M);
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR2_M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs: -1 → 0x7fffffff). */
export function toPositive(value: number): number {
  return value & 0x7fff_ffff;
}

/** The partition Kafka's default partitioner picks for a record with this key. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  if (!Number.isInteger(partitionCount) || partitionCount < 1 ||
      partitionCount > PARTITION_COUNT_MAX) {
    throw new ArgumentError(`partitionForKey: partitionCount ${partitionCount} outside ` +
      `1..${PARTITION_COUNT_MAX}`);
  }
  return toPositive(murmur2(key)) % partitionCount;
}
