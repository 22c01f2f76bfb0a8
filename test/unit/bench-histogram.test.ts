/**
 * bench/histogram.ts against an exact reference: seeded random latencies (printed seed), each
 * percentile within 1/1024 (3 significant digits) of the sorted-array answer; merging the
 * serialised halves equals recording everything in one; the integer bucket index equals both
 * the Math.log2 formula it replaced and an exact BigInt reference.
 */
import t from 'tap';

import { bucketIndex, Histogram } from '../../bench/histogram.js';

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(state ^ (state >>> 15), 1 | state);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

function reference(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

const seed = Number(process.env.PMQ_SEED ?? Date.now() % 1_000_000);

t.test(`percentiles within 3 significant digits (seed ${seed})`, async (t) => {
  const random = prng(seed);
  const values: number[] = [];
  const histogram = new Histogram();
  for (let i = 0; i < 20_000; i += 1) {
    // Log-uniform from 1 ns to ~100 s, plus some exact small values.
    const value = i % 10 === 0 ? Math.floor(random() * 3000)
      : Math.round(Math.exp(random() * Math.log(1e11)));
    values.push(value);
    histogram.record(value);
  }
  values.sort((a, b) => a - b);
  for (const q of [0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1]) {
    const exact = reference(values, q);
    const got = histogram.valueAt(q);
    t.ok(got >= exact && got <= exact + Math.max(0, exact / 1024),
      `q=${q}: ${got} vs exact ${exact}`);
  }
  const p = histogram.percentiles();
  t.equal(p.count, values.length);
  t.equal(p.max, values.at(-1));
  t.equal(p.min, values[0]);
  t.ok(Math.abs(p.mean - values.reduce((a, b) => a + b, 0) / values.length) < 1e-6 * p.mean);
});

t.test(`merge of serialised parts equals the whole (seed ${seed})`, async (t) => {
  const random = prng(seed + 1);
  const whole = new Histogram();
  const parts = [new Histogram(), new Histogram(), new Histogram()];
  for (let i = 0; i < 10_000; i += 1) {
    const value = Math.round(Math.exp(random() * Math.log(1e9)));
    whole.record(value);
    parts[i % 3]!.record(value);
  }
  const merged = new Histogram();
  for (const part of parts) merged.merge(JSON.parse(JSON.stringify(part.toJSON())));
  t.same(merged.toJSON(), whole.toJSON());
  t.same(merged.percentiles(), whole.percentiles());
  t.same(new Histogram().percentiles().p99, 0, 'empty histogram reports 0');
});

/** The bucket formula before integer math (Math.log2, corrected by one step). */
function bucketIndexLog2(value: number): number {
  if (value < 2048) return value;
  const exponent = Math.floor(Math.log2(value));
  const k = 2 ** exponent > value ? exponent - 1 : exponent;
  const shift = k - 10;
  return 2048 + (shift - 1) * 1024 + Math.floor(value / 2 ** shift) - 1024;
}

/** The layout's definition, in exact integers: [2^k, 2^(k+1)) split into 1024 sub-buckets. */
function bucketIndexExact(value: number): number {
  if (value < 2048) return value;
  const big = BigInt(value);
  const k = big.toString(2).length - 1;
  const shift = BigInt(k - 10);
  return 2048 + (k - 11) * 1024 + Number(big >> shift) - 1024;
}

t.test(`bucket index: integer math equals the log2 formula and the exact one (seed ${seed})`,
  async (t) => {
    const values: number[] = [];
    for (let v = 0; v < 70_000; v += 1) values.push(v);
    for (let k = 1; k <= 43; k += 1) {
      for (let d = -3; d <= 3; d += 1) values.push(2 ** k + d);
      values.push(2 ** k + 2 ** Math.max(0, k - 11), 3 * 2 ** (k - 1));
    }
    const random = prng(seed + 2);
    for (let i = 0; i < 200_000; i += 1) {
      values.push(Math.floor(Math.exp(random() * Math.log(2 ** 43 - 1))));
      values.push(2 ** 32 + Math.floor(random() * (2 ** 43 - 2 ** 32)));
    }
    let wrong = 0;
    for (const value of values.filter((v) => v >= 0 && v <= 2 ** 43 - 1)) {
      const got = bucketIndex(value);
      if (got !== bucketIndexExact(value) || got !== bucketIndexLog2(value)) {
        wrong += 1;
        if (wrong <= 5) t.fail(`value ${value}: ${got}, exact ${bucketIndexExact(value)}`);
      }
    }
    t.equal(wrong, 0, `${values.length} values in the same buckets`);
    t.equal(bucketIndex(2 ** 43 - 1), 2048 + 32 * 1024 - 1, 'the largest value, last bucket');
  });
