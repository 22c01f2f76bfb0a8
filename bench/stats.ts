/** Small helpers for benchmark statistics: percentiles over a sample of latencies. */

export interface LatencySummary { p50: number; p90: number; p99: number; max: number }

export function summarize(samplesUs: Float64Array, count: number): LatencySummary {
  const sorted = samplesUs.slice(0, count).sort();
  const at = (q: number): number => sorted[Math.min(count - 1, Math.floor(q * count))] ?? 0;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[count - 1] ?? 0 };
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
