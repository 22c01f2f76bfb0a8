/**
 * What RegionStore needs from the memory under it: bounded views of its bytes, their size and
 * name, and the two persist calls. native/region.ts's Region satisfies it (the production
 * region); the power-cut test mode (test/crash/power-cut-region.ts) satisfies it over an
 * ordinary buffer and records which ranges were persisted. Keep it this small: every member
 * added here is one more thing a test double must model faithfully.
 *
 * Durability contract (as Region): stores through a view are durable only after persist (or
 * persistAsync) of a range covering them returned; `backing === 'file'` means persist may block
 * and RegionStore calls persistAsync instead.
 */
import { REGION_LIMITS } from '../common/limits.js';
import type { RegionBacking } from '../native/region.js';

export interface PersistentMemory {
  /** Names the memory in errors and logs. */
  readonly path: string;
  readonly sizeBytes: number;
  readonly backing: RegionBacking;
  /**
   * [address, address + sizeBytes) as a Uint8Array (no copy; index 0 is `address`), at most
   * REGION_LIMITS.viewBytesMax long: no buffer covers a whole region (docs/native-region.md,
   * "Views"). Stores into it are not durable until persisted.
   */
  view(address: number, sizeBytes: number): Uint8Array;
  /** Durable on return. */
  persist(address: number, sizeBytes: number): void;
  /** Durable on resolve; for backings where persist may block. */
  persistAsync(address: number, sizeBytes: number): Promise<void>;
}

/** Stores zeros over [address, address + sizeBytes), any length, view by view (not durable). */
export function zeroRange(memory: PersistentMemory, address: number, sizeBytes: number): void {
  for (let at = address; at < address + sizeBytes; at += REGION_LIMITS.viewBytesMax) {
    memory.view(at, Math.min(REGION_LIMITS.viewBytesMax, address + sizeBytes - at)).fill(0);
  }
}
