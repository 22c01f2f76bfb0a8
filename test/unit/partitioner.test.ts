// Kafka's default partitioner: murmur2 against the vectors of Kafka's own UtilsTest.testMurmur2
// (apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), partition
// choices derived from them by hand, and a slow BigInt reference that follows the Java source
// step by step (signed bytes masked with 0xff, 32-bit wrap) on seeded random keys with high bytes.
import t from 'tap';

import { murmur2, partitionForKey, toPositive } from '../../common/partitioner.js';

const utf8 = new TextEncoder();

const KAFKA_VECTORS: readonly [string, number][] = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

function int32(value: bigint): bigint {
  return BigInt.asIntN(32, value);
}

/** Java's murmur2 in BigInt, with Java's signed bytes: independent of the Math.imul version. */
function murmur2Reference(data: Uint8Array): number {
  const signed = Int8Array.from(data);
  const m = 0x5bd1e995n;
  const byteAt = (i: number): bigint => BigInt(signed[i] ?? 0) & 0xffn;
  const ushr = (x: bigint, n: bigint): bigint => int32(BigInt.asUintN(32, x) >> n);
  let h = int32(0x9747b28cn ^ BigInt(data.length));
  const blocks = Math.floor(data.length / 4);
  for (let i = 0; i < blocks; i += 1) {
    const i4 = i * 4;
    let k = int32(byteAt(i4) + (byteAt(i4 + 1) << 8n) + (byteAt(i4 + 2) << 16n) +
      (byteAt(i4 + 3) << 24n));
    k = int32(k * m);
    k = int32(k ^ ushr(k, 24n));
    k = int32(k * m);
    h = int32(h * m);
    h = int32(h ^ k);
  }
  const tailStart = data.length & ~3;
  const tail = data.length % 4;
  if (tail >= 3) h = int32(h ^ (byteAt(tailStart + 2) << 16n));
  if (tail >= 2) h = int32(h ^ (byteAt(tailStart + 1) << 8n));
  if (tail >= 1) h = int32(int32(h ^ byteAt(tailStart)) * m);
  h = int32(h ^ ushr(h, 13n));
  h = int32(h * m);
  h = int32(h ^ ushr(h, 15n));
  return Number(h);
}

/** mulberry32: small seeded PRNG, so that a failure replays from the printed seed. */
function prngFrom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

t.test('murmur2 matches Kafka UtilsTest.testMurmur2', async (t) => {
  for (const [text, hash] of KAFKA_VECTORS) {
    t.equal(murmur2(utf8.encode(text)), hash, `"${text}"`);
    t.equal(murmur2Reference(utf8.encode(text)), hash, `"${text}" (reference)`);
  }
});

t.test('partition choices', async (t) => {
  // toPositive(-790332482) = -790332482 & 0x7fffffff = 1357151166
  t.equal(toPositive(-790332482), 1357151166);
  t.equal(partitionForKey(utf8.encode('foobar'), 10), 1357151166 % 10); // 6
  t.equal(partitionForKey(utf8.encode('foobar'), 50), 16);
  // toPositive(-973932308) = 1173551340; 1173551340 % 12 = 0
  t.equal(partitionForKey(utf8.encode('21'), 12), 0);
  // 479470107 is positive; 479470107 = 7 * 68495729 + 4
  t.equal(partitionForKey(utf8.encode('abc'), 7), 4);
  t.equal(partitionForKey(utf8.encode('anything'), 1), 0);
  t.equal(toPositive(-1), 0x7fffffff, 'toPositive is not Math.abs');
  t.equal(toPositive(-0x80000000), 0);
  for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 31]) {
    t.throws(() => partitionForKey(utf8.encode('k'), bad), { code: 'PMQ_ERR_ARGUMENT' }, `${bad}`);
  }
});

const seed = Number(process.env.PMQ_TEST_SEED ?? Date.now() % 0x1_0000_0000);
t.test(`random keys against the Java-faithful reference (seed ${seed})`, async (t) => {
  const random = prngFrom(seed);
  let mismatches = 0;
  for (let round = 0; round < 2000; round += 1) {
    const key = Uint8Array.from({ length: Math.floor(random() * 40) }, () => random() * 256);
    if (murmur2(key) !== murmur2Reference(key)) mismatches += 1;
    const partitions = 1 + Math.floor(random() * 1000);
    const partition = partitionForKey(key, partitions);
    if (partition < 0 || partition >= partitions) mismatches += 1;
  }
  t.equal(mismatches, 0, '2000 keys of 0..39 bytes, all byte values');
  t.equal(murmur2(new Uint8Array(0)), murmur2Reference(new Uint8Array(0)), 'empty key');
});
