/**
 * Persistent-memory region (libpmem2) slice of the native binding. Call these through
 * native/region.ts, which validates arguments first: the native side only asserts them.
 */

declare const regionHandleBrand: unique symbol;

/** Opaque handle from regionOpen; valid until regionClose. */
export interface RegionHandle {
  readonly [regionHandleBrand]: true;
}

/** create: create if missing, else open; open: must exist; create-new: must not exist. */
export type RegionMode = 'create' | 'open' | 'create-new';

/** Effective store granularity reported by libpmem2 for the mapping. */
export type RegionGranularity = 'byte' | 'cache-line' | 'page';

/** dax: DAX file system; shm: tmpfs such as /dev/shm; file: every other file system. */
export type RegionBacking = 'dax' | 'shm' | 'file';

/** What a completed persist survives: power loss, a process crash, or what msync promises. */
export type RegionDurability = 'power-fail' | 'process-crash' | 'msync';

export interface RegionInfo {
  readonly sizeBytes: number;
  readonly granularity: RegionGranularity;
  readonly backing: RegionBacking;
  readonly durability: RegionDurability;
  /** Test mode: the durable shadow file (PMQ_REGION_DURABLE_SHADOW at open), else null. */
  readonly durableShadow: string | null;
}

export interface RegionReadOnlyFile {
  readonly fd: number;
  readonly sizeBytes: number;
  readonly granularity: RegionGranularity;
  readonly backing: RegionBacking;
  readonly durability: RegionDurability;
}

export interface RegionBinding {
  /**
   * sizeBytes: a multiple of regionPageSizeBytes(); 0 only with 'open' (size from file).
   * sparse: a file this call creates is ftruncated, not allocated (checked against free space).
   */
  regionOpen(path: string, sizeBytes: number, mode: RegionMode, sparse: boolean): RegionHandle;
  /**
   * pmq inspect: an existing region opened O_RDONLY under a shared lock (PMQ_ERR_REGION_LOCKED
   * while a node holds it); read `fd` with positional reads, close it with fs.closeSync.
   */
  regionOpenReadOnly(path: string): RegionReadOnlyFile;
  regionInfo(region: RegionHandle): RegionInfo;
  /**
   * [address, address + sizeBytes) of the mapping as a new external ArrayBuffer (no copy;
   * 0 < sizeBytes ≤ 4 GiB); detached on close. Region.view caches them: call it, not this.
   */
  regionView(region: RegionHandle, address: number, sizeBytes: number): ArrayBuffer;
  /** Durable on return. On page granularity this is msync and may block. */
  regionPersist(region: RegionHandle, address: number, sizeBytes: number): void;
  /** regionPersist on a libuv worker thread; use it where msync may block (backing 'file'). */
  regionPersistAsync(region: RegionHandle, address: number, sizeBytes: number): Promise<void>;
  regionFlush(region: RegionHandle, address: number, sizeBytes: number): void;
  regionDrain(region: RegionHandle): void;
  /** memmove source[sourceOffset, +sizeBytes) to address, durably (drain false: no drain). */
  regionCopyPersist(
    region: RegionHandle,
    address: number,
    source: Uint8Array,
    sourceOffset: number,
    sizeBytes: number,
    drain: boolean,
  ): void;
  /** Maps the whole region's pages ahead of use on a worker (shm and DAX only). */
  regionPrefault(region: RegionHandle): Promise<{ supported: boolean; cancelled: boolean }>;
  regionClose(region: RegionHandle): void;
  regionPageSizeBytes(): number;
}

export const REGION_EXPORTS = [
  'regionOpen',
  'regionOpenReadOnly',
  'regionInfo',
  'regionView',
  'regionPersist',
  'regionPersistAsync',
  'regionFlush',
  'regionDrain',
  'regionCopyPersist',
  'regionPrefault',
  'regionClose',
  'regionPageSizeBytes',
] as const satisfies readonly (keyof RegionBinding)[];
