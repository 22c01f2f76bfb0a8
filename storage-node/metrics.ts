/**
 * The storage node's Prometheus families (docs/metrics.md lists each with its type and labels).
 *
 * The data path (validated reads and writes, the native persist path) runs natively and never
 * reaches JS, so its counts are the transport's own native counters, read when scraped; the
 * broker's requests that JS serves (allocate, grants, seal, free...) are counted through the
 * control channel's observer into cells bound once per kind (common/metrics.ts). Segments,
 * region bytes, grants and the epoch are read from the node's structures at scrape time.
 *
 * Lifecycle: made before the node serves (StorageNodeOptions.metrics); `attach` gives it the
 * node's state once the region is open. Concurrency: JS thread only.
 */
import {
  Metrics, type CounterCell, type CounterFamily, type HistogramCell, type HistogramFamily,
} from '../common/metrics.js';
import type { MessageKind } from '../common/wire/messages.js';
import type { Region } from '../native/region.js';
import type { Transport, TransportStats } from '../native/transport.js';
import type { ChannelObserver } from '../rpc/control-channel.js';
import type { GrantRegistry } from './grant-registry.js';
import type { RegionStore } from './region-store.js';

export interface StorageState {
  readonly region: Region;
  readonly store: RegionStore;
  readonly transport: Transport;
  readonly grants: GrantRegistry;
}

interface KindCells { readonly requests: CounterCell; readonly latency: HistogramCell }

const SEGMENT_STATES = ['free', 'active', 'sealed'] as const;

export class StorageMetrics implements ChannelObserver {
  readonly metrics = new Metrics();
  readonly #requests: CounterFamily;
  readonly #requestLatency: HistogramFamily;
  readonly #errors: CounterFamily;
  readonly #kinds = new Map<string, KindCells>();
  readonly #errorCells = new Map<string, CounterCell>();
  #state: StorageState | null = null;

  constructor() {
    const m = this.metrics;
    this.#requests = m.counter('pmq_storage_requests_total',
      'Broker requests served in JS (the native persist path aside), by message kind.',
      ['kind']);
    this.#requestLatency = m.histogram('pmq_storage_request_duration_seconds',
      'From a broker request\'s arrival to its answer, by kind.', ['kind']);
    this.#errors = m.counter('pmq_storage_errors_total', 'Error replies sent, by code.',
      ['code']);
    const served = (name: string, help: string, field: keyof TransportStats): void =>
      m.counterOf(name, help, [], (set) => {
        const value = this.#state?.transport.stats()[field];
        set({}, typeof value === 'number' ? value : 0);
      });
    served('pmq_storage_reads_total', 'Validated reads served to consumers (checked against ' +
      'their grant natively; direct-mode reads are one-sided and not seen).', 'readsServed');
    served('pmq_storage_read_bytes_total', 'Bytes of validated reads served to consumers.',
      'readBytesServed');
    served('pmq_storage_writes_total', 'Validated writes of producers accepted.',
      'writesServed');
    served('pmq_storage_write_bytes_total', 'Bytes of validated writes of producers accepted.',
      'writeBytesServed');
    served('pmq_storage_access_refused_total', 'Validated reads and writes refused (no grant, ' +
      'out of range, another session, a stale epoch).', 'accessRefused');
    this.#stateGauges(m);
  }

  #stateGauges(m: Metrics): void {
    m.gauge('pmq_storage_segments', 'Segment table entries by state.', ['state'], (set) => {
      const segments = this.#state?.store.segments() ?? [];
      for (const state of SEGMENT_STATES) {
        set({ state }, segments.reduce((n, s) => n + (s.state === state ? 1 : 0), 0));
      }
    });
    m.gauge('pmq_storage_region_bytes', 'The region: its size, the bytes of live segments ' +
      '(used) and the data area no segment holds (free).', ['kind'], (set) => {
      const state = this.#state;
      if (state === null) return;
      set({ kind: 'size' }, state.region.sizeBytes);
      set({ kind: 'used' }, state.store.segments().reduce((n, s) =>
        n + (s.state === 'free' ? 0 : s.sizeBytes), 0));
      set({ kind: 'free' }, state.store.space().freeBytes);
    });
    m.gauge('pmq_storage_grants_active', 'Live grants (write leases and read grants).', [],
      (set) => set({}, this.#state?.grants.liveCount ?? 0));
    m.counterOf('pmq_storage_grants_issued_total', 'Grants created since the node started.',
      [], (set) => set({}, this.#state?.grants.issuedCount ?? 0));
    m.counterOf('pmq_storage_grants_revoked_total', 'Grants revoked since the node started.',
      [], (set) => {
        const grants = this.#state?.grants;
        set({}, grants === undefined ? 0 : grants.issuedCount - grants.liveCount);
      });
    m.gauge('pmq_storage_epoch', 'The highest broker epoch this node accepted.', [],
      (set) => set({}, this.#state?.store.epoch ?? 0));
    m.gauge('pmq_storage_connections', 'Open connections: brokers and clients.', [],
      (set) => set({}, this.#state?.transport.stats().endpoints ?? 0));
  }

  attach(state: StorageState): void {
    this.#state = state;
  }

  served(kind: MessageKind, startedMs: number): void {
    let cells = this.#kinds.get(kind);
    if (cells === undefined) {  // once per kind
      cells = { requests: this.#requests.cell({ kind }),
        latency: this.#requestLatency.cell({ kind }) };
      this.#kinds.set(kind, cells);
    }
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
}
