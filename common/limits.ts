/**
 * Every table, queue and size limit, with the arithmetic behind it. No I/O. Modules import the
 * limit they enforce from here so that one number has one home.
 */

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

export const LIMITS = {
  /**
   * Segments per region. The segment table holds 2 slots × 512 bytes per segment, so the
   * largest table is 65 536 × 1 KiB = 64 MiB; opening a region CRC-checks all of it (about
   * 10 ms with SSE4.2) and keeps one small object per segment in memory (~15 MiB).
   * 65 536 segments of 64 MiB cover 4 TiB.
   */
  segmentCountMax: 65_536,
  /** Smallest segment: 16 pages of 4 KiB, so a segment still holds many record batches. */
  segmentSizeBytesMin: 64 * KIB,
  /** Largest segment: positions inside a segment stay below 2^32. */
  segmentSizeBytesMax: 4 * GIB,
  /** The default segment size (as Kafka's segment.bytes is 1 GiB; smaller suits PMEM). */
  segmentSizeBytesDefault: 64 * MIB,
  /** Kafka's own bound on topic names (249 characters of [a-zA-Z0-9._-]). */
  topicNameBytesMax: 249,
  /** Kafka partitions are int32 and non-negative. */
  partitionMax: 0x7fff_ffff,
  /** A segment's place in its partition's chain is a uint32 on media. */
  chainPositionMax: 0xffff_ffff,
  /** Node ids are uint32 on media. */
  nodeIdMax: 0xffff_ffff,
} as const;
