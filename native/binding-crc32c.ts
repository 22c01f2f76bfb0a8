/** CRC32C (Castagnoli) slice of the native binding. */
export interface Crc32cBinding {
  /** Placeholder until native/crc32c lands. */
}
export const CRC32C_EXPORTS = [] as const satisfies readonly (keyof Crc32cBinding)[];
