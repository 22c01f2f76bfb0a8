/**
 * A PersistentMemory for power-cut tests: an ordinary buffer that records what was persisted.
 *
 * Model (cache-line PMEM, the ADR case of docs/native-region.md): `bytes` is what the CPU sees
 * (stores land there at once); `durable` is what the media holds for sure. persist(address, n)
 * copies the whole cache lines covering [address, address + n) from `bytes` to `durable`, as
 * CLWB + SFENCE would; flush() stages the lines' contents as they are at flush time and drain()
 * makes the staged lines durable; copyPersist stores, then persists (or flushes). Every store
 * not yet persisted is **pending**: at a power cut each aligned 8-byte word of it may hold its
 * old (durable) or its new (stored) value — the CPU may have written the line back on its own,
 * or not — but never a mix of bytes inside a word (8-byte stores are atomic). image.ts turns a
 * cut into such images.
 *
 * Cut points: entering any persist call (persist, persistAsync, flush, drain, copyPersist) is a
 * scheduling point, numbered 0, 1, 2, … (`persistCount` is how many were entered so far). A
 * snapshot at point k holds `durable` after the first k calls took effect and `bytes` as they
 * were when call k was entered: every store made before call k, persisted or not. Stores cannot
 * be intercepted (they go straight into a Uint8Array), so pending words are found by comparing
 * the two copies; a word stored twice between two persists is modelled with its old and its
 * last value only (RegionStore never does that: data is appended, an entry slot is written
 * once per update). `capture` decides at each point whether to keep a snapshot.
 *
 * Not the production Region: no file, no lock, no close; the caller drops it.
 */
import { REGION_LIMITS } from '../../common/limits.js';
import type { RegionBacking } from '../../native/region.js';
import type { PersistentMemory } from '../../storage-node/persistent-memory.js';

export const CACHE_LINE_BYTES = 64;
export const WORD_BYTES = 8;

export interface CutSnapshot {
  /** Number of persist calls that took effect before the cut (the scheduling point). */
  readonly cut: number;
  /** The persist call that was about to run (null: the end of the workload). */
  readonly next: { readonly call: string; readonly address: number;
    readonly sizeBytes: number } | null;
  readonly durable: Uint8Array;
  readonly volatile: Uint8Array;
}

export interface PowerCutRegionOptions {
  readonly sizeBytes: number;
  readonly path?: string;
  /** 'dax' (default): RegionStore calls persist; 'file': it awaits persistAsync. */
  readonly backing?: Extract<RegionBacking, 'dax' | 'file'>;
  /** Contents at start, durable (an image to recover from); default zeros. */
  readonly initial?: Uint8Array;
  /** Called at every scheduling point; return true to keep a snapshot there. */
  readonly capture?: (cut: number) => boolean;
}

export class PowerCutRegion implements PersistentMemory {
  readonly path: string;
  readonly sizeBytes: number;
  readonly backing: RegionBacking;
  readonly granularity = 'cache-line' as const;
  readonly durability = 'power-fail' as const;
  readonly bytes: Uint8Array;
  readonly durable: Uint8Array;
  readonly snapshots: CutSnapshot[] = [];
  #persistCount = 0;
  /** Lines flushed and not drained yet: [lineStart, contents at flush time]. */
  readonly #staged: [number, Uint8Array][] = [];
  readonly #capture: (cut: number) => boolean;

  constructor(opts: PowerCutRegionOptions) {
    if (opts.sizeBytes % CACHE_LINE_BYTES !== 0) throw new Error('size: whole cache lines');
    this.path = opts.path ?? 'power-cut-region';
    this.sizeBytes = opts.sizeBytes;
    this.backing = opts.backing ?? 'dax';
    this.bytes = new Uint8Array(opts.sizeBytes);
    this.durable = new Uint8Array(opts.sizeBytes);
    if (opts.initial !== undefined) {
      this.bytes.set(opts.initial);
      this.durable.set(opts.initial);
    }
    this.#capture = opts.capture ?? (() => false);
  }

  /** As Region.view: a bounded range, no copy (the store never sees all of `bytes` at once). */
  view(address: number, sizeBytes: number): Uint8Array {
    if (!(Number.isSafeInteger(address) && Number.isSafeInteger(sizeBytes) && address >= 0 &&
        sizeBytes >= 0 && address + sizeBytes <= this.sizeBytes &&
        sizeBytes <= REGION_LIMITS.viewBytesMax)) {
      throw new Error(`view: ${sizeBytes} bytes at ${address} outside ${this.sizeBytes}`);
    }
    return this.bytes.subarray(address, address + sizeBytes);
  }

  /** Scheduling points entered so far. */
  get persistCount(): number {
    return this.#persistCount;
  }

  persist(address: number, sizeBytes: number): void {
    this.#point('persist', address, sizeBytes);
    this.#makeDurable(address, sizeBytes);
  }

  /** Durable when it resolves, one macrotask later: a cut meanwhile finds the range pending. */
  async persistAsync(address: number, sizeBytes: number): Promise<void> {
    this.#point('persistAsync', address, sizeBytes);
    await new Promise((resolve) => setImmediate(resolve));
    this.#makeDurable(address, sizeBytes);
  }

  flush(address: number, sizeBytes: number): void {
    this.#point('flush', address, sizeBytes);
    const [start, end] = this.#lines(address, sizeBytes);
    if (end > start) this.#staged.push([start, this.bytes.slice(start, end)]);
  }

  drain(): void {
    this.#point('drain', 0, 0);
    for (const [start, contents] of this.#staged) this.durable.set(contents, start);
    this.#staged.length = 0;
  }

  copyPersist(address: number, source: Uint8Array, sourceOffset = 0,
    sizeBytes: number = source.byteLength - sourceOffset, opts: { drain?: boolean } = {}): void {
    this.bytes.set(source.subarray(sourceOffset, sourceOffset + sizeBytes), address);
    if (opts.drain ?? true) this.persist(address, sizeBytes);
    else this.flush(address, sizeBytes);
  }

  /** A snapshot of now, as a cut after the last persist call (the end of a workload). */
  snapshotNow(): CutSnapshot {
    return { cut: this.#persistCount, next: null, durable: this.durable.slice(),
      volatile: this.bytes.slice() };
  }

  #point(call: string, address: number, sizeBytes: number): void {
    if (!Number.isSafeInteger(address) || !Number.isSafeInteger(sizeBytes) || address < 0 ||
        sizeBytes < 0 || address + sizeBytes > this.sizeBytes) {
      throw new Error(`${call}: ${sizeBytes} bytes at ${address} outside ${this.sizeBytes}`);
    }
    const cut = this.#persistCount;
    if (this.#capture(cut)) {
      this.snapshots.push({ cut, next: { call, address, sizeBytes },
        durable: this.durable.slice(), volatile: this.bytes.slice() });
    }
    this.#persistCount += 1;
  }

  #lines(address: number, sizeBytes: number): [number, number] {
    if (sizeBytes === 0) return [address, address];
    const start = address - (address % CACHE_LINE_BYTES);
    const end = Math.min(this.sizeBytes,
      Math.ceil((address + sizeBytes) / CACHE_LINE_BYTES) * CACHE_LINE_BYTES);
    return [start, end];
  }

  #makeDurable(address: number, sizeBytes: number): void {
    const [start, end] = this.#lines(address, sizeBytes);
    this.durable.set(this.bytes.subarray(start, end), start);
  }
}
