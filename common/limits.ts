/**
 * Every table, queue and size limit, with the arithmetic behind it. No I/O. Modules import the
 * limit they enforce from here so that one number has one home.
 */

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const TIB = 1024 * GIB;

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
  /**
   * Largest segment: one region view (REGION_LIMITS.viewBytesMax, 2 GiB) covers a whole
   * segment, so JS reaches any segment's bytes through one Uint8Array (positions stay < 2^31).
   */
  segmentSizeBytesMax: 2 * GIB,
  /**
   * The default largest segment (as Kafka's segment.bytes is 1 GiB; smaller suits PMEM): a
   * busy partition's segments grow to it (docs/region-format.md, "Segments sized to need").
   */
  segmentSizeBytesDefault: 64 * MIB,
  /**
   * The default smallest segment, a partition's first: 1 000 partitions of a few records take
   * 250 MiB of a 1 GiB region (4 000 fit), and one of W2's 1 MiB batches asks for a larger
   * first segment itself. The table has an entry per smallest segment the region could hold
   * (1 KiB per 256 KiB: 0.4 % of the region).
   */
  segmentSizeBytesFirstDefault: 256 * KIB,
  /** Kafka's own bound on topic names (249 characters of [a-zA-Z0-9._-]). */
  topicNameBytesMax: 249,
  /** Kafka partitions are int32 and non-negative. */
  partitionMax: 0x7fff_ffff,
  /** A segment's place in its partition's chain is a uint32 on media. */
  chainPositionMax: 0xffff_ffff,
  /** Node ids are uint32 on media. */
  nodeIdMax: 0xffff_ffff,
} as const;

/**
 * The per-partition sequencer (broker-node/sequencer.ts). Per partition, not per broker: a
 * broker-wide bound belongs to the broker's admission control.
 */
export const SEQUENCER_LIMITS = {
  /**
   * Open leases and pieces (appended batches, fills) not yet durable per partition. Each
   * costs ~250 bytes of heap (record, map entry, pending-list slot), so 1024 × 250 B ≈ 256 KiB
   * per partition; 1 000 busy partitions ≈ 256 MiB at worst. 1024 batches of 16 KiB are
   * 16 MiB in flight per partition, far more than one persist covers.
   */
  reservationsMax: 1024,
  /**
   * A lease without an append for this long is closed and its unwritten rest filled
   * (`--reservation-timeout-ms`). A producer appends a batch at least every few ms while busy
   * and releases an idle lease after 50 ms; 10 s leaves room for GC pauses and a reconnect,
   * and bounds how long a dead producer holds back visibility.
   */
  reservationTimeoutMsDefault: 10_000,
  /**
   * A lease given while another producer holds one in the partition: 0, just the batch it is
   * asked for. Whatever is behind a lease waits until all of it is written, released or cut,
   * and a producer fills a lease at its own rate: two producers at 500 records/s sharing a
   * partition with 64 KiB leases waited ~0.8 s for each other's (ack p99 0.49 s). One batch per
   * lease costs a lease round trip per batch (3 instead of 2) while the partition is shared,
   * and nobody waits for another's future batches.
   */
  leaseContendedBytesDefault: 0,
  /**
   * A lease idle this long while it holds something back (a written batch behind it, or its
   * full segment's seal) is cut: its grant revoked, its rest filled. Its holder's batches in
   * flight then start over in a new lease, after later ones (as at expiry), so this is far
   * above a busy producer's gap between appends, even with GC pauses on a loaded machine (5 ms
   * cut healthy producers in e2e-load on 2 cores and reordered their batches). An idle client
   * releases its lease itself after 50 ms; this bounds what a stalled or dead one costs the
   * others: 1 s instead of the 10 s reservation timeout.
   */
  leaseBlockingIdleMsDefault: 1000,
  /** Below 10 ms a scheduling hiccup would expire healthy producers. */
  reservationTimeoutMsMin: 10,
  /** Above 10 min a dead producer would stall its partition's readers for too long. */
  reservationTimeoutMsMax: 600_000,
  /**
   * Acknowledgements remembered per partition after a batch leaves the in-flight set, to
   * answer a retried append exactly. ~100 B each: 1024 × 100 B ≈ 100 KiB per partition;
   * equal to reservationsMax, so every batch of one full window is remembered.
   */
  outcomesRememberedMax: 1024,
} as const;

/** The broker (broker-node/): tables it keeps in memory and in its metadata files. */
export const BROKER_LIMITS = {
  /**
   * Partitions of one topic. Each partition holds a sequencer (~1 KiB idle, up to ~256 KiB
   * with a full reservation window); 1024 idle partitions ≈ 1 MiB.
   */
  partitionsPerTopicMax: 1024,
  /** Partitions of all topics: 10 000 × ~1 KiB idle ≈ 10 MiB; recovery walks each once. */
  partitionsMax: 10_000,
  /**
   * Committed group offsets (group, topic, partition). The offsets file is rewritten whole
   * per batch of commits: 100 000 × ~100 bytes of JSON ≈ 10 MiB per write at the limit.
   */
  groupOffsetsMax: 100_000,
  /** Longest fetchView long poll: long enough to idle cheaply, short enough to notice a peer. */
  fetchWaitMsMax: 30_000,
  /** Long polls parked at once (each a promise and a waiter, ~200 bytes): 10 000 ≈ 2 MiB. */
  fetchWaitersMax: 10_000,
  /**
   * Subscriptions (pushed watermarks, docs/broker.md "Subscriptions") per client session: a
   * consumer needs one per partition it reads, and a topic has at most partitionsPerTopicMax.
   * Each costs ~300 bytes (record, two map entries, the last head pushed) plus at most one
   * push in flight (~150 bytes): 1024 × ~450 B ≈ 450 KiB per session at the limit. Beyond it
   * `subscribe` is refused (PMQ_ERR_LIMIT) and the consumer long-polls those partitions.
   */
  subscriptionsPerSessionMax: 1024,
  /** Reconnect attempts to a storage node that went away: every 500 ms, forever. */
  storageReconnectMs: 500,
  /** How long start waits for every storage node to answer storageHello. */
  storageStartTimeoutMs: 30_000,
  /** A persist that failed (storage node away) is issued again after this long. */
  persistRetryMs: 200,
} as const;

/** Idempotent producers' state at the broker (broker-node/producer-state.ts). */
export const PRODUCER_LIMITS = {
  /**
   * Batches remembered per producer and partition (Kafka keeps 5). A producer retries only
   * batches it has not settled, and an idempotent client starts a batch only within
   * `inFlightWindowMax` batches of its partition's oldest unsettled one. While batch B is
   * unsettled, the batches that can be recorded after it are the ≤ w − 1 older ones of its
   * window (retried) and the ≤ w − 1 newer ones, each with one live entry: 2w − 1 = 9 ≤ 10,
   * so B's entry is never pushed out and its retry is always recognised.
   */
  batchesPerProducer: 10,
  /** The client's window w (clients refuse maxInFlightBatches above it with idempotence). */
  inFlightWindowMax: 5,
  /**
   * Producers remembered per partition, least recently used evicted first (an evicted one is
   * unknown: its next sequence is accepted as is). ~5 × 100 B + ~150 B each: 1024 ≈ 650 KiB
   * per partition at worst, nothing for idle partitions.
   */
  producersMax: 1024,
  /**
   * Recovery reads the headers of at least this many of a partition's last durable batches,
   * segment by segment from the head backwards (whole segments). Every batch whose ack a crash
   * can have lost was in flight then, and at most reservationsMax (plus the one batch an
   * append at the limit still takes) were: so they are all among the last reservationsMax + 1
   * batches of the durable log.
   */
  recoveryBatchesMin: 1025,
  /** Largest validated read recovery issues: whole headers are parsed out of each chunk. */
  recoveryReadChunkBytes: 1024 * 1024,
} as const;

/** The storage node's own tables (storage-node/). */
export const STORAGE_LIMITS = {
  /**
   * Live (not revoked) grants per storage node. A producer holds about one write grant per
   * partition it writes and a consumer one read grant per segment it reads: 1 000 clients ×
   * 64 partitions = 64 Ki. Each costs ~100 bytes in the registry and ~64 in the native table:
   * 65 536 × ~164 B ≈ 10 MiB. Beyond it grantCreate is refused (retriable) until some are
   * revoked.
   */
  grantsLiveMax: 65_536,
  /**
   * Revoked grants remembered by id (the registry and the native table), newest first. The
   * broker makes one write grant per batch, so keeping every revoked grant grew both tables by
   * one entry per batch for the node's life; older ones are forgotten. Ids only rise, so a
   * forgotten grant is still refused as revoked and its id is never created again.
   */
  grantsRevokedRemembered: 65_536,
  /**
   * Persist requests waiting behind the one in flight, per segment. The broker keeps one
   * persist in flight per partition (docs/sequencer.md), so more than a few waiting means
   * retries piling up; 64 × ~200 B per segment is nothing, and a broker that exceeds it gets
   * PMQ_ERR_BUSY instead of unbounded queues.
   */
  persistWaitersMax: 64,
} as const;

/** Client-side tables (clients/). */
export const CLIENT_LIMITS = {
  /**
   * Direct keys a client keeps imported (clients/storage-reads.ts): one per storage endpoint
   * and read grant, i.e. per segment being read. A consumer reads a partition's segments one
   * after another, so ~1 live key per assigned partition; 1 024 covers 1 024 partitions read
   * at once. Each holds an unpacked UCX rkey (~100 B native) and ~100 B of JS; beyond it the
   * least recently used key is released (re-imported, one round trip, if needed again).
   */
  directKeysMax: 1024,
} as const;

/**
 * The longest a process polls for the next message before sleeping (native/transport.ts
 * spinUs, PMQ_SPIN_US): the bound of the adaptive spin (native/spin_policy.h), which spins
 * while the process is busy and shrinks to 0 once it is idle. 50 µs: on the 2-core bench VM
 * a fixed spin of it doubled W4's throughput and cut the CPU per GB of every process by a third
 * to a half (docs/benchmarks.md), for ~6% more time in `npm test`.
 */
export const SPIN_US_DEFAULT = 50;
/** The longest spin accepted (10 ms): beyond it a process might as well busy-poll. */
export const SPIN_US_MAX = 10_000;

/**
 * The producer's default maxBatchBytes (clients/producer.ts): each batch costs a fixed ~0.3–0.7
 * ms of CPU over the processes (reserve, write, commit, persist), and 64 KiB batches of 100 B
 * records halved W1's throughput (docs/benchmarks.md).
 */
export const PRODUCER_BATCH_BYTES_DEFAULT = 256 * 1024;

/**
 * Grant and producer ids are `epoch × IDS_PER_EPOCH + n` (broker-node/broker.ts), so they never
 * repeat across broker restarts; 2^32 ids per broker instance.
 */
export const IDS_PER_EPOCH = 2 ** 32;
/**
 * The largest epoch whose ids are still safe integers: (EPOCH_MAX + 1) × 2^32 − 1 = 2^53 − 1.
 * 2^21 − 1 ≈ 2 million broker starts. A storage node refuses any raise above it
 * (PMQ_ERR_EPOCH_RANGE): an epoch beyond it would stop every broker from starting.
 */
export const EPOCH_MAX = Math.floor(Number.MAX_SAFE_INTEGER / IDS_PER_EPOCH);
/**
 * How far one storageHello/epochRaise may raise a storage node's epoch. A broker raises by 1
 * per start (a few more when nodes disagree), so 65 536 is never reached honestly, and even a
 * broker with the key raising by the maximum each time needs 32 raises to reach EPOCH_MAX.
 */
export const EPOCH_RAISE_STEP_MAX = 65_536;

/**
 * The region (native/region.ts). The storage node maps the whole region once and the
 * transport reaches it by the native handle; JS reaches it only through bounded views.
 */
export const REGION_LIMITS = {
  /**
   * Largest region: 64 TiB. What truly bounds it is the address space: the region is mapped
   * whole, and x86-64's user address space is 128 TiB (47 bits; aarch64's 48-bit: 256 TiB),
   * which V8's own reservations and the libraries share, so half of it. On media the size and
   * every address are u64 and in JS safe integers (2^53), far above. The segment table does
   * not bound it, but bounds what is used: at most segmentCountMax (65 536) segments, so with
   * the 64 MiB default segments the first 4 TiB hold segments and the rest stays unused (with
   * the 1 GiB segments a 64 TiB region needs). Nothing of size grows with the region: open
   * reads the superblocks and the table, never the segments.
   */
  regionSizeBytesMax: 64 * TIB,
  /**
   * Longest view (Region.view): 2 GiB. Node 20 caps one ArrayBuffer at
   * buffer.constants.MAX_LENGTH = 2^32 bytes (4 GiB; 'Cannot create a Buffer larger than
   * 0x100000000 bytes' beyond). Region.view keeps windows of 2 × viewBytesMax = 4 GiB starting
   * every viewBytesMax, so any range up to viewBytesMax lies inside one window and costs one
   * subarray, wherever it starts (native/region.ts asserts 2 × this ≤ MAX_LENGTH at load).
   */
  viewBytesMax: 2 * GIB,
} as const;
