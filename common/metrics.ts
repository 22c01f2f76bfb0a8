/**
 * Prometheus metrics (docs/metrics.md) without allocating on the hot path.
 *
 * prom-client's own label children allocate on every call (a labels object and a hash string
 * per inc/observe), and issue 11 made the broker allocation-free per batch. So the hot path
 * only adds to numbers in cells bound once per label set (`CounterCell`, `HistogramCell`:
 * plain fields and a preallocated Float64Array), and prom-client reads the cells when
 * /metrics is scraped: counters and gauges through their `collect()` hooks, histograms as
 * custom metrics in the text format's _bucket/_sum/_count shape. Gauges of state (segments,
 * grants, lag) are computed at scrape time from the node's own structures.
 *
 * No I/O here (the HTTP endpoint is cli/metrics-listen.ts). Concurrency: JS thread only.
 */
import { Counter, Gauge, Registry } from 'prom-client';

import { invariant } from './invariant.js';

export type Labels = Readonly<Record<string, string>>;

/** A monotonic count for one label set: `cell.value += n` on the hot path. */
export interface CounterCell { value: number }

/** Latency buckets in seconds: 50 µs .. 10 s, for requests and persists. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005,
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** A histogram for one label set; observe() allocates nothing. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);  // the last: above every bound (+Inf)
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i += 1;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }

  /** Milliseconds from performance.now() values, observed in seconds. */
  observeSinceMs(startedMs: number): void {
    this.observe((performance.now() - startedMs) / 1000);
  }
}

/** Cells of one family, bound once per label set (binding allocates; using them does not). */
class CellFamily<C> {
  readonly #cells = new Map<string, { labels: Labels; cell: C }>();

  constructor(readonly labelNames: readonly string[], private readonly make: () => C) {}

  cell(labels: Labels): C {
    const key = this.labelNames.map((name) => labels[name] ?? '').join('\u0000');
    invariant(Object.keys(labels).every((name) => this.labelNames.includes(name)),
      'metric labels are the family\'s', { labels: Object.keys(labels).join() });
    let entry = this.#cells.get(key);
    if (entry === undefined) {
      entry = { labels: { ...labels }, cell: this.make() };
      this.#cells.set(key, entry);
    }
    return entry.cell;
  }

  /** Forgets a label set (a deleted topic): it is no longer exported. */
  drop(labels: Labels): void {
    this.#cells.delete(this.labelNames.map((name) => labels[name] ?? '').join('\u0000'));
  }

  entries(): IterableIterator<{ labels: Labels; cell: C }> {
    return this.#cells.values();
  }
}

export type CounterFamily = CellFamily<CounterCell>;
export type HistogramFamily = CellFamily<HistogramCell>;
/** At scrape time: calls `set` once per label set with its current value. */
export type GaugeSource = (set: (labels: Labels, value: number) => void) => void;

/** One node's metrics: its families and the prom-client registry that formats them. */
export class Metrics {
  readonly registry = new Registry();

  counter(name: string, help: string, labelNames: readonly string[] = []): CounterFamily {
    const family = new CellFamily<CounterCell>(labelNames, () => ({ value: 0 }));
    this.registry.registerMetric(new Counter({ name, help, labelNames: [...labelNames],
      registers: [], collect(this: Counter) {
        this.reset();
        for (const { labels, cell } of family.entries()) this.inc(labels, cell.value);
      } }));
    return family;
  }

  /** A counter whose value is read at scrape time (a count another module keeps). */
  counterOf(name: string, help: string, labelNames: readonly string[], source: GaugeSource):
    void {
    this.registry.registerMetric(new Counter({ name, help, labelNames: [...labelNames],
      registers: [], collect(this: Counter) {
        this.reset();
        source((labels, value) => this.inc(labels, value));
      } }));
  }

  gauge(name: string, help: string, labelNames: readonly string[], source: GaugeSource): void {
    this.registry.registerMetric(new Gauge({ name, help, labelNames: [...labelNames],
      registers: [], collect(this: Gauge) {
        this.reset();
        source((labels, value) => this.set(labels, value));
      } }));
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [],
    bounds: readonly number[] = LATENCY_BUCKETS_SECONDS): HistogramFamily {
    const family = new CellFamily<HistogramCell>(labelNames, () => new HistogramCell(bounds));
    this.registry.registerMetric(histogramMetric(name, help, family) as never);
    return family;
  }

  /** The text exposition format (what GET /metrics answers). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A histogram family as prom-client's registry formats it (cumulative _bucket, _sum, _count). */
interface ExportedValue { metricName: string; value: number;
  labels: Record<string, string | number> }

function histogramMetric(name: string, help: string, family: HistogramFamily): {
  name: string; get(): { name: string; help: string; type: string; values: ExportedValue[];
    aggregator: string } } {
  return {
    name,
    get() {
      const values: ExportedValue[] = [];
      for (const { labels, cell } of family.entries()) {
        let cumulative = 0;
        for (let i = 0; i <= cell.bounds.length; i += 1) {
          cumulative += cell.counts[i]!;
          values.push({ metricName: `${name}_bucket`, value: cumulative,
            labels: { ...labels, le: i < cell.bounds.length ? cell.bounds[i]! : '+Inf' } });
        }
        values.push({ metricName: `${name}_sum`, value: cell.sum, labels });
        values.push({ metricName: `${name}_count`, value: cell.count, labels });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
}
