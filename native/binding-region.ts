/** Persistent-memory region (libpmem2) slice of the native binding. */
export interface RegionBinding {
  /** Placeholder until native/region lands. */
}
export const REGION_EXPORTS = [] as const satisfies readonly (keyof RegionBinding)[];
