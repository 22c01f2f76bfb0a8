/**
 * A persistent-memory region: one file mapped with libpmem2 (DAX file system, /dev/shm or an
 * ordinary file), held by one process at a time (an exclusive flock until close or death).
 *
 * Lifecycle: Region.open() → use → close(). The mapping lives until close(). JS reaches it
 * only through bounded views (view(address, sizeBytes): a Uint8Array over that range, no
 * copy, at most REGION_LIMITS.viewBytesMax), never one buffer over the whole region (V8 caps an
 * ArrayBuffer at 4 GiB on Node 20); a transport reaches all of it by the native handle
 * (Transport.attachRegion). close() detaches every view, so views kept past close read as empty
 * instead of touching unmapped memory, and every method throws PMQ_ERR_REGION_CLOSED. close()
 * refuses (PMQ_ERR_REGION_BUSY) while persistAsync calls run or a transport is attached.
 *
 * Durability: stores through views are durable only after persist (or flush + drain) of
 * their range returns; what "durable" survives is `durability`: 'power-fail' (DAX with
 * byte/cache-line granularity), 'process-crash' (/dev/shm) or 'msync' (ordinary file: persist
 * is msync and may block; prefer persistAsync there). Single-threaded: call from the JS thread.
 * Addresses are byte positions from the start of the region.
 */
import { constants as bufferConstants } from 'node:buffer';

import { ArgumentError, PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { REGION_LIMITS } from '../common/limits.js';
import { formatBytes } from '../common/units.js';
import type {
  RegionBacking,
  RegionDurability,
  RegionGranularity,
  RegionHandle,
  RegionMode,
  RegionReadOnlyFile,
} from './binding-region.js';
import { native } from './index.js';

export type {
  RegionBacking,
  RegionDurability,
  RegionGranularity,
  RegionMode,
  RegionReadOnlyFile,
} from './binding-region.js';

/** The OS page size: region sizes are multiples of it. */
export const REGION_PAGE_SIZE_BYTES: number = native.regionPageSizeBytes();
invariant(
  REGION_PAGE_SIZE_BYTES > 0 && (REGION_PAGE_SIZE_BYTES & (REGION_PAGE_SIZE_BYTES - 1)) === 0,
  'page size is a power of two',
  { pageSizeBytes: REGION_PAGE_SIZE_BYTES },
);

/**
 * Views come from windows of 2 × VIEW_BYTES_MAX starting every VIEW_BYTES_MAX (common/limits.ts
 * says why): a window must be one ArrayBuffer on this runtime.
 */
const VIEW_BYTES_MAX = REGION_LIMITS.viewBytesMax;
invariant(VIEW_BYTES_MAX % REGION_PAGE_SIZE_BYTES === 0 &&
  2 * VIEW_BYTES_MAX <= bufferConstants.MAX_LENGTH,
'a view window is whole pages and fits one ArrayBuffer on this runtime',
{ viewBytesMax: VIEW_BYTES_MAX, maxLength: bufferConstants.MAX_LENGTH });

const MODES: readonly RegionMode[] = ['create', 'open', 'create-new'];

export interface RegionOpenOptions {
  readonly path: string;
  /** Required for 'create' and 'create-new'; optional for 'open' (checked when given). */
  readonly sizeBytes?: number;
  /** Default 'create': create if missing, else open. */
  readonly mode?: RegionMode;
  /**
   * Create the file sparse (ftruncate) instead of allocating every block (posix_fallocate):
   * for tests and thin-provisioned disks. Refused where the file system's free space is below
   * the size (a store into a page it cannot allocate would kill the process with SIGBUS).
   */
  readonly sparse?: boolean;
}

function checkOpenOptions(opts: RegionOpenOptions): { sizeBytes: number; mode: RegionMode } {
  if (typeof opts !== 'object' || opts === null) {
    throw new ArgumentError('Region.open: options object required');
  }
  const { path, sizeBytes = 0, mode = 'create' } = opts;
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw new ArgumentError('Region.open: path must be a non-empty string without NUL');
  }
  if (!MODES.includes(mode)) {
    throw new ArgumentError(`Region.open: mode ${String(mode)} is not one of ${MODES.join(', ')}`);
  }
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw new ArgumentError(`Region.open: sizeBytes ${sizeBytes} is not a non-negative integer`);
  }
  if (sizeBytes > REGION_LIMITS.regionSizeBytesMax) {
    throw new PmqError('PMQ_ERR_REGION_TOO_LARGE', `Region.open: ${formatBytes(sizeBytes)} ` +
      `exceeds the largest region, ${formatBytes(REGION_LIMITS.regionSizeBytesMax)} ` +
      '(common/limits.ts: the whole region is mapped into a 128 TiB address space): ask for less');
  }
  if (sizeBytes === 0 && mode !== 'open') {
    throw new ArgumentError(`Region.open: mode '${mode}' needs sizeBytes > 0`);
  }
  if (sizeBytes % REGION_PAGE_SIZE_BYTES !== 0) {
    throw new ArgumentError(
      `Region.open: sizeBytes ${sizeBytes} is not a multiple of the page size ` +
        `${REGION_PAGE_SIZE_BYTES}`,
    );
  }
  return { sizeBytes, mode };
}

/**
 * An existing region for reading only (`pmq inspect`): a descriptor opened O_RDONLY, so read
 * permission is enough (a 0444 file, another user's), holding a shared lock, so a live storage
 * node's region is refused (PMQ_ERR_REGION_LOCKED) and no node opens it while the caller reads.
 * Read it with fs.readSync at positions; fs.closeSync(fd) releases the lock. Nothing is mapped.
 */
export function openRegionReadOnly(path: string): RegionReadOnlyFile {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw new ArgumentError('openRegionReadOnly: path must be a non-empty string without NUL');
  }
  const file = native.regionOpenReadOnly(path);
  invariant(Number.isSafeInteger(file.fd) && file.fd >= 0, 'a read-only region has a descriptor',
    { fd: file.fd });
  return file;
}

function closedError(path: string): PmqError {
  return new PmqError('PMQ_ERR_REGION_CLOSED', `region ${path} is closed: open it again`);
}

export class Region {
  readonly path: string;
  readonly sizeBytes: number;
  readonly granularity: RegionGranularity;
  readonly backing: RegionBacking;
  readonly durability: RegionDurability;
  /**
   * Test mode (docs/native-region.md, "Durable shadow"): the file that receives every persisted
   * line, set from PMQ_REGION_DURABLE_SHADOW at open; null in production.
   */
  readonly durableShadow: string | null;
  #handle: RegionHandle | null;
  /** Window k covers [k × VIEW_BYTES_MAX, + 2 × VIEW_BYTES_MAX), made on first use. */
  #windows: (Uint8Array | undefined)[] = [];

  private constructor(path: string, handle: RegionHandle) {
    const info = native.regionInfo(handle);
    invariant(info.sizeBytes > 0 && info.sizeBytes % REGION_PAGE_SIZE_BYTES === 0,
      'region size is a positive multiple of the page size', { path, ...info });
    this.path = path;
    this.sizeBytes = info.sizeBytes;
    this.granularity = info.granularity;
    this.backing = info.backing;
    this.durability = info.durability;
    this.durableShadow = info.durableShadow;
    this.#handle = handle;
    if (info.sizeBytes > REGION_LIMITS.regionSizeBytesMax) {
      native.regionClose(handle);  // an existing file beyond the limit: refuse it whole
      throw new PmqError('PMQ_ERR_REGION_TOO_LARGE', `region ${path} has ` +
        `${formatBytes(info.sizeBytes)}, more than the largest region, ` +
        `${formatBytes(REGION_LIMITS.regionSizeBytesMax)} (common/limits.ts)`);
    }
  }

  /** Throws NativeError with a PMQ_ERR_REGION_* code when the file cannot be a region. */
  static open(opts: RegionOpenOptions): Region {
    const { sizeBytes, mode } = checkOpenOptions(opts);
    const handle = native.regionOpen(opts.path, sizeBytes, mode, opts.sparse === true);
    return new Region(opts.path, handle);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /**
   * The native handle, for the transport's native persist path (Transport.configurePersist),
   * which persists through the same native calls as persist() (the durable shadow included).
   */
  get nativeHandle(): unknown {
    return this.#open();
  }

  /**
   * [address, address + sizeBytes) of the mapping as a Uint8Array (no copy: stores land in the
   * region; index 0 is `address`). At most REGION_LIMITS.viewBytesMax (2 GiB) long, anywhere in
   * the region (across a 4 GiB boundary too). Cheap after the first call in a window (one
   * subarray), so take one where needed rather than keeping it. Reads as empty after close().
   */
  view(address: number, sizeBytes: number): Uint8Array {
    this.#checkRange('view', address, sizeBytes);
    if (sizeBytes > VIEW_BYTES_MAX) {
      throw new ArgumentError(`view: ${sizeBytes} bytes exceed the longest view, ` +
        `${VIEW_BYTES_MAX} (REGION_LIMITS.viewBytesMax)`);
    }
    const k = Math.floor(address / VIEW_BYTES_MAX);
    const start = k * VIEW_BYTES_MAX;
    let window = this.#windows[k];
    if (window === undefined) {
      const length = Math.min(2 * VIEW_BYTES_MAX, this.sizeBytes - start);
      window = new Uint8Array(native.regionView(this.#open(), start, length));
      this.#windows[k] = window;
    } else {
      this.#open();
    }
    const from = address - start;
    if (!(from + sizeBytes <= window.byteLength)) {
      invariant(false, 'a view lies inside its window', { address, sizeBytes, start });
    }
    return window.subarray(from, from + sizeBytes);
  }

  /** Stores `value` into [address, address + sizeBytes), any length; durable once persisted. */
  fill(value: number, address: number, sizeBytes: number): void {
    this.#checkRange('fill', address, sizeBytes);
    for (let at = address; at < address + sizeBytes; at += VIEW_BYTES_MAX) {
      const length = Math.min(VIEW_BYTES_MAX, address + sizeBytes - at);
      this.view(at, length).fill(value);
    }
  }

  /** Durable on return (see the module comment); on backing 'file' this msyncs and blocks. */
  persist(address: number, sizeBytes: number): void {
    this.#checkRange('persist', address, sizeBytes);
    native.regionPersist(this.#open(), address, sizeBytes);
  }

  /** persist() on a libuv worker: the choice wherever msync may block (backing 'file'). */
  async persistAsync(address: number, sizeBytes: number): Promise<void> {
    this.#checkRange('persistAsync', address, sizeBytes);
    await native.regionPersistAsync(this.#open(), address, sizeBytes);
  }

  /** Starts write-back of a range; durable only after drain(). On page granularity: msync. */
  flush(address: number, sizeBytes: number): void {
    this.#checkRange('flush', address, sizeBytes);
    native.regionFlush(this.#open(), address, sizeBytes);
  }

  /** Waits for earlier flushes (and copyPersist with drain: false) to reach persistence. */
  drain(): void {
    native.regionDrain(this.#open());
  }

  /**
   * Copies source[sourceOffset, sourceOffset + sizeBytes) to address and persists it
   * (overlapping ranges allowed). With { drain: false } a later drain() completes it.
   */
  copyPersist(
    address: number,
    source: Uint8Array,
    sourceOffset = 0,
    sizeBytes: number = (source?.byteLength ?? 0) - sourceOffset,
    opts: { drain?: boolean } = {},
  ): void {
    if (!(source instanceof Uint8Array)) {
      throw new ArgumentError('copyPersist: source must be a Uint8Array');
    }
    if (!Number.isSafeInteger(sourceOffset) || sourceOffset < 0 ||
        sourceOffset > source.byteLength) {
      throw new ArgumentError(`copyPersist: sourceOffset ${sourceOffset} outside the source`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 ||
        sizeBytes > source.byteLength - sourceOffset) {
      throw new ArgumentError(`copyPersist: sizeBytes ${sizeBytes} exceeds the source`);
    }
    this.#checkRange('copyPersist', address, sizeBytes);
    const drain = opts.drain ?? true;
    native.regionCopyPersist(this.#open(), address, source, sourceOffset, sizeBytes, drain);
  }

  /**
   * Maps every page of the region into this process ahead of use, on a libuv worker, without
   * changing a byte, so writes landing later (a peer's rendezvous, cma) take no page fault per
   * 4 KiB. Only on 'shm' and 'dax' backings ({ supported: false } on 'file': a write fault
   * there would dirty the whole file, and where the kernel lacks MADV_POPULATE_WRITE). close()
   * during it stops it early ({ cancelled: true }); it never delays close().
   */
  async prefault(): Promise<{ supported: boolean; cancelled: boolean }> {
    return native.regionPrefault(this.#open());
  }

  /** Unmaps and releases the lock. Throws PMQ_ERR_REGION_CLOSED when already closed. */
  close(): void {
    native.regionClose(this.#open());
    this.#handle = null;
    this.#windows = [];
  }

  #open(): RegionHandle {
    if (this.#handle === null) throw closedError(this.path);
    return this.#handle;
  }

  #checkRange(what: string, address: number, sizeBytes: number): void {
    if (!Number.isSafeInteger(address) || address < 0 || address > this.sizeBytes) {
      throw new ArgumentError(`${what}: address ${address} outside region 0..${this.sizeBytes}`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 ||
        sizeBytes > this.sizeBytes - address) {
      throw new ArgumentError(
        `${what}: ${sizeBytes} bytes at address ${address} exceed region of ${this.sizeBytes}`,
      );
    }
  }
}
