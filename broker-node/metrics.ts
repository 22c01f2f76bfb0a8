/**
 * The broker's Prometheus families (docs/metrics.md lists each with its type and labels).
 *
 * Counted on the hot path, into cells bound once (common/metrics.ts: nothing allocated per
 * batch): produce records and bytes per topic (a partition binds its topic's cells when it is
 * made), request latency per kind (the control channel's observer; an append answered later
 * is timed by its partition), errors per code, persist round trips. Read when scraped: the
 * epoch, connections, high watermarks, committed group offsets and their lag, and the records
 * groups consumed (from the advance of their commits: the broker never sees a read).
 *
 * Lifecycle: made before the broker starts serving (BrokerOptions.metrics); `attach` gives it
 * the broker's state once recovered. Concurrency: JS thread only.
 */
import {
  LATENCY_BUCKETS_SECONDS, Metrics, type CounterCell, type CounterFamily, type HistogramCell,
  type HistogramFamily,
} from '../common/metrics.js';
import type { MessageKind } from '../common/wire/messages.js';
import type { Transport } from '../native/transport.js';
import type { ChannelObserver, ControlChannel } from '../rpc/control-channel.js';
import type { MetadataStore } from './metadata-store.js';
import type { Partition } from './partition.js';

export interface ProducedCells { readonly records: CounterCell; readonly bytes: CounterCell }

/** What a partition counts (PartitionDeps.metrics). */
export interface PartitionMetrics {
  produced(topic: string): ProducedCells;
  /**
   * An append answered later (DEFERRED: the channel does not time it): received at
   * `receivedMs`, answered at `answeredMs` (the partition's clock, performance.now()).
   */
  appendAnswered(receivedMs: number, answeredMs: number): void;
  readonly persistLatency: HistogramCell;
}

/** The broker state read at scrape time. */
export interface BrokerState {
  readonly topics: () => ReadonlyMap<string, readonly Partition[]>;
  readonly metadata: MetadataStore;
  readonly transport: Transport;
  /** Observed from now on (attach comes before any client request): requests, errors. */
  readonly channel: ControlChannel;
  readonly pool: { readonly epoch: number };
}

interface KindCells { readonly requests: CounterCell; readonly latency: HistogramCell }

export class BrokerMetrics implements PartitionMetrics, ChannelObserver {
  readonly metrics = new Metrics();
  readonly persistLatency: HistogramCell;
  readonly #produceRecords: CounterFamily;
  readonly #produceBytes: CounterFamily;
  readonly #requests: CounterFamily;
  readonly #requestLatency: HistogramFamily;
  readonly #errors: CounterFamily;
  readonly #kinds = new Map<string, KindCells>();
  #append: KindCells | null = null;
  readonly #errorCells = new Map<string, CounterCell>();
  #state: BrokerState | null = null;
  /** Consumed records per topic, from commit advances seen at scrapes (see #consumed). */
  readonly #consumedByTopic = new Map<string, number>();
  readonly #lastCommitted = new Map<string, number>();

  constructor() {
    const m = this.metrics;
    this.#produceRecords = m.counter('pmq_produce_records_total',
      'Records appended to partitions (sequenced), by topic.', ['topic']);
    this.#produceBytes = m.counter('pmq_produce_bytes_total',
      'Bytes of record batches appended to partitions, by topic.', ['topic']);
    this.#requests = m.counter('pmq_broker_requests_total',
      'Requests served, by message kind.', ['kind']);
    this.#requestLatency = m.histogram('pmq_broker_request_duration_seconds',
      'From a request\'s arrival to its answer (an append: until durable), by kind.',
      ['kind'], LATENCY_BUCKETS_SECONDS);
    this.#errors = m.counter('pmq_broker_errors_total', 'Error replies sent, by code.',
      ['code']);
    this.persistLatency = m.histogram('pmq_broker_persist_duration_seconds',
      'Persist round trips to storage nodes: request sent to watermark durable.').cell({});
    m.counterOf('pmq_consume_records_total', 'Records consumed by groups, from the advance ' +
      'of their committed offsets (the broker sees no read), by topic.', ['topic'],
    (set) => this.#consumed(set));
    m.gauge('pmq_broker_epoch', 'The broker\'s fencing epoch.', [],
      (set) => set({}, this.#state?.pool.epoch ?? 0));
    m.gauge('pmq_broker_connections', 'Open connections: clients and storage nodes.', [],
      (set) => set({}, this.#state?.transport.stats().endpoints ?? 0));
    m.gauge('pmq_partition_high_watermark', 'Offset after the last durable record.',
      ['topic', 'partition'], (set) => this.#eachPartition((p) => {
        const high = highWatermarkOf(p);
        if (high !== null) set({ topic: p.topic, partition: String(p.partition) }, high);
      }));
    m.gauge('pmq_group_committed_offset', 'A group\'s committed offset (the next to read).',
      ['group', 'topic', 'partition'], (set) => this.#eachCommit((group, p, offset) =>
        set({ group, topic: p.topic, partition: String(p.partition) }, offset)));
    m.gauge('pmq_group_lag', 'High watermark minus the group\'s committed offset: records ' +
      'the group has not consumed.', ['group', 'topic', 'partition'],
    (set) => this.#eachCommit((group, p, offset) => {
      const high = highWatermarkOf(p);
      if (high !== null) {
        set({ group, topic: p.topic, partition: String(p.partition) }, Math.max(0, high - offset));
      }
    }));
  }

  attach(state: BrokerState): void {
    this.#state = state;
    state.channel.observe(this);
  }

  produced(topic: string): ProducedCells {
    return { records: this.#produceRecords.cell({ topic }),
      bytes: this.#produceBytes.cell({ topic }) };
  }

  appendAnswered(receivedMs: number, answeredMs: number): void {
    const cells = this.#append ??= this.#kind('append');
    cells.requests.value += 1;
    cells.latency.observe((answeredMs - receivedMs) / 1000);
  }

  served(kind: MessageKind, startedMs: number): void {
    const cells = this.#kind(kind);
    cells.requests.value += 1;
    cells.latency.observeSinceMs(startedMs);
  }

  errorSent(code: string): void {
    let cell = this.#errorCells.get(code);
    if (cell === undefined) {  // once per code: codes come from the catalogue
      cell = this.#errors.cell({ code });
      this.#errorCells.set(code, cell);
    }
    cell.value += 1;
  }

  #kind(kind: string): KindCells {
    let cells = this.#kinds.get(kind);
    if (cells === undefined) {  // once per kind
      cells = { requests: this.#requests.cell({ kind }),
        latency: this.#requestLatency.cell({ kind }) };
      this.#kinds.set(kind, cells);
    }
    return cells;
  }

  #eachPartition(fn: (partition: Partition) => void): void {
    for (const partitions of this.#state?.topics().values() ?? []) {
      for (const partition of partitions) fn(partition);
    }
  }

  #eachCommit(fn: (group: string, partition: Partition, offset: number) => void): void {
    const state = this.#state;
    if (state === null) return;
    for (const record of state.metadata.allGroupOffsets()) {
      const partition = state.topics().get(record.topic)?.[record.partition];
      if (partition !== undefined) fn(record.group, partition, record.offset);
    }
  }

  /**
   * Adds every commit's advance since the last scrape to its topic's count (a reset backwards
   * adds nothing), so the counter only grows; the first scrape counts from offset 0.
   */
  #consumed(set: (labels: Record<string, string>, value: number) => void): void {
    this.#eachCommit((group, partition, offset) => {
      const key = `${group}\u0000${partition.topic}\u0000${partition.partition}`;
      const before = this.#lastCommitted.get(key) ?? 0;
      if (offset > before) {
        this.#consumedByTopic.set(partition.topic,
          (this.#consumedByTopic.get(partition.topic) ?? 0) + offset - before);
      }
      this.#lastCommitted.set(key, offset);
    });
    for (const [topic, records] of this.#consumedByTopic) set({ topic }, records);
  }
}

/** A served partition's high watermark; null for one broken or closed (not exported). */
function highWatermarkOf(partition: Partition): number | null {
  if (partition.broken !== null) return null;
  try {
    return partition.sequencer.highWatermark();
  } catch {
    return null;  // closed meanwhile (a topic deleted)
  }
}
