/**
 * Garbage collections of one process, counted from its `--trace-gc` lines (V8 prints one line
 * per collection on stdout). The benchmark starts the storage node and the broker with
 * `--trace-gc` and feeds each one's stdout text here, so counting costs the measured process
 * nothing but the line V8 prints anyway; a PerformanceObserver inside the process would have
 * to allocate an entry per collection in the very heap being measured.
 *
 * What a line gives (Node 20, V8 11):
 *   [pid:0x…]  1234 ms: Scavenge 4.2 (5.0) -> 3.9 (6.0) MB, 0.85 / 0.00 ms  (…) allocation failure;
 *   [pid:0x…]  5678 ms: Mark-Compact 70.9 (94.2) -> 56.4 (91.1) MB, 8.35 / 0.01 ms
 *     (+ 24.6 ms in 90 steps since start of marking, …) …
 * A scavenge is a young-generation collection (what per-message garbage costs); Mark-Compact
 * (or Mark-sweep, or the minor mark-compact variants of other flags) collects the whole heap.
 * The pause is the first figure after the sizes, plus, for incremental marking, the steps'
 * time ("+ 24.6 ms in 90 steps"), which also runs on the JavaScript thread. The heap grows
 * between two collections only by allocation, so the size before a collection minus the size
 * after the previous one estimates the bytes allocated in between (`allocatedMB`).
 */

export interface GcCounts {
  scavenges: number;
  /** Full-heap collections: Mark-Compact, Mark-sweep. */
  markCompacts: number;
  /** Milliseconds the collections held the JavaScript thread. */
  pauseMs: number;
  /** Estimated megabytes (10^6 bytes) allocated between the collections counted. */
  allocatedMB: number;
}

const LINE = new RegExp('^\\[\\d+:0x[0-9a-f]+\\]\\s+[\\d.]+ ms: ' +
  '(Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact|Minor Mark-Sweep)(?: \\(reduce\\))? ' +
  '([\\d.]+) \\([\\d.]+\\) -> ([\\d.]+) \\([\\d.]+\\) MB, ([\\d.]+) / [\\d.]+ ms' +
  '(?:\\s+\\(\\+ ([\\d.]+) ms in \\d+ steps)?');

export function emptyGcCounts(): GcCounts {
  return { scavenges: 0, markCompacts: 0, pauseMs: 0, allocatedMB: 0 };
}

export class GcMeter {
  #counts = emptyGcCounts();
  /** Heap size (MB) after the last collection seen, for the allocation estimate. */
  #heapAfterMB: number | null = null;

  /** One line of the process's stdout; anything but a --trace-gc line is ignored. */
  feed(text: string): void {
    const match = LINE.exec(text);
    if (match === null) return;
    const before = Number(match[2]);
    const after = Number(match[3]);
    if (match[1] === 'Scavenge' || match[1]!.startsWith('Minor')) this.#counts.scavenges += 1;
    else this.#counts.markCompacts += 1;
    this.#counts.pauseMs += Number(match[4]) + Number(match[5] ?? 0);
    if (this.#heapAfterMB !== null) {
      this.#counts.allocatedMB += Math.max(0, before - this.#heapAfterMB) * 1.048576;
    }
    this.#heapAfterMB = after;
  }

  /** Counts from now on (e.g. once the cluster has started up). */
  reset(): void {
    this.#counts = emptyGcCounts();
  }

  get counts(): GcCounts {
    return { ...this.#counts };
  }
}

/** `counts` scaled to one million records (null when no record was produced). */
export function perMillionRecords(counts: GcCounts, records: number): GcCounts | null {
  return scaled(counts, records, 1e6);
}

/** `counts` scaled to one thousand batches (null when no batch was sent). */
export function perThousandBatches(counts: GcCounts, batches: number): GcCounts | null {
  return scaled(counts, batches, 1e3);
}

/** `counts` over `amount` of something, scaled to `per` of it, to one decimal. */
function scaled(counts: GcCounts, amount: number, per: number): GcCounts | null {
  if (amount <= 0) return null;
  const scale = per / amount;
  const r = (value: number): number => Math.round(value * scale * 10) / 10;
  return { scavenges: r(counts.scavenges), markCompacts: r(counts.markCompacts),
    pauseMs: r(counts.pauseMs), allocatedMB: r(counts.allocatedMB) };
}
