/**
 * A small HDR-style latency histogram (after Gil Tene's HdrHistogram): integer values (we use
 * nanoseconds) in log-linear buckets with 3 significant digits, so every recorded value is
 * reported within 1/1024 of itself (relative) whatever its magnitude. Recording is O(1) and
 * allocation-free; memory is fixed (~270 KiB dense counts up to 2^43 ns ≈ 2.4 hours).
 *
 * Layout: values below 2^11 have a bucket each (exact). Above, each power-of-two range
 * [2^k, 2^(k+1)) is split into 1024 equal sub-buckets of width 2^(k-10).
 *
 * Histograms of several processes merge exactly: `toJSON()` serialises the non-zero bucket
 * counts as [index, count] pairs and `merge()` adds them. (We do not depend on the
 * hdr-histogram-js package: one small file is easier to audit than a WASM/base64 dependency,
 * and its serialisation is not needed across languages.)
 */
const SUB_BITS = 10;
const SUB_COUNT = 1 << SUB_BITS;            // 1024 sub-buckets per power of two
const LINEAR_LIMIT = 2 * SUB_COUNT;         // values below 2048 are exact
const EXPONENT_MAX = 43;                    // values are clamped below 2^43
const VALUE_MAX = 2 ** EXPONENT_MAX - 1;
const BUCKET_COUNT = LINEAR_LIMIT + (EXPONENT_MAX - SUB_BITS - 1) * SUB_COUNT;

export interface HistogramJson { v: 1; counts: [number, number][]; min: number; max: number;
  sum: number }

export interface Percentiles { count: number; min: number; mean: number; p50: number;
  p90: number; p99: number; p999: number; max: number }

/** 2^i for i in 0..63: exact powers of two without Math.pow on the recording path. */
const POWERS_OF_TWO = Float64Array.from({ length: 64 }, (_, i) => 2 ** i);
const TWO_32 = 2 ** 32;

/** Bucket of an integer value in 0..VALUE_MAX. Integer math: Math.log2 and `2 **` were a
 *  measurable share of a consumer's CPU (one call per record). */
export function bucketIndex(value: number): number {
  if (value < LINEAR_LIMIT) return value;
  let k: number;   // floor(log2(value)): the value lies in [2^k, 2^(k+1))
  let sub: number; // floor(value / 2^(k-10)) - 1024: 0..1023
  if (value < TWO_32) {
    k = 31 - Math.clz32(value);
    sub = (value >>> (k - SUB_BITS)) - SUB_COUNT;
  } else {
    k = 63 - Math.clz32(Math.floor(value / TWO_32));
    sub = Math.floor(value / POWERS_OF_TWO[k - SUB_BITS]!) - SUB_COUNT;
  }
  return LINEAR_LIMIT + (k - SUB_BITS - 1) * SUB_COUNT + sub;
}

/** The largest value that falls in bucket `index` (HdrHistogram's "highest equivalent"). */
function highestOf(index: number): number {
  if (index < LINEAR_LIMIT) return index;
  const shift = Math.floor((index - LINEAR_LIMIT) / SUB_COUNT) + 1;
  const sub = (index - LINEAR_LIMIT) % SUB_COUNT + SUB_COUNT;
  return (sub + 1) * 2 ** shift - 1;
}

export class Histogram {
  readonly counts = new Float64Array(BUCKET_COUNT);
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  /** Records one value (rounded to an integer, clamped to 0..2^43-1). */
  record(value: number, times = 1): void {
    const v = Math.min(VALUE_MAX, Math.max(0, Math.round(value)));
    this.counts[bucketIndex(v)]! += times;
    this.count += times;
    this.sum += v * times;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** The value at quantile q (0..1): the highest value equivalent to the bucket holding the
   *  ceil(q × count)-th smallest value, capped at the exact maximum. */
  valueAt(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i += 1) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, highestOf(i));
    }
    return this.max;
  }

  percentiles(): Percentiles {
    return { count: this.count, min: this.count === 0 ? 0 : this.min,
      mean: this.count === 0 ? 0 : this.sum / this.count, p50: this.valueAt(0.5),
      p90: this.valueAt(0.9), p99: this.valueAt(0.99), p999: this.valueAt(0.999),
      max: this.max };
  }

  merge(other: Histogram | HistogramJson): void {
    const json = other instanceof Histogram ? other.toJSON() : other;
    if (json.v !== 1) throw new Error(`histogram version ${String(json.v)} unknown`);
    for (const [index, times] of json.counts) {
      if (!Number.isInteger(index) || index < 0 || index >= BUCKET_COUNT) {
        throw new Error(`histogram bucket ${index} out of range`);
      }
      this.counts[index]! += times;
      this.count += times;
    }
    this.sum += json.sum;
    if (json.counts.length > 0) {
      this.min = Math.min(this.min, json.min);
      this.max = Math.max(this.max, json.max);
    }
  }

  toJSON(): HistogramJson {
    const counts: [number, number][] = [];
    this.counts.forEach((times, index) => { if (times > 0) counts.push([index, times]); });
    return { v: 1, counts, min: this.count === 0 ? 0 : this.min, max: this.max, sum: this.sum };
  }

  static fromJSON(json: HistogramJson): Histogram {
    const histogram = new Histogram();
    histogram.merge(json);
    return histogram;
  }
}
