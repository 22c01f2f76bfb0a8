/**
 * A seeded workload that drives RegionStore the way the storage node does, on any
 * PersistentMemory, and writes down every call (its scheduling-point interval and outcome) so
 * that a checker can say, for any cut point, what was acknowledged and what was in flight.
 *
 * What it does: format; raise the epoch to 1; then rounds. A round picks some partitions; for
 * each, rolls the segment when the next batches would not fit (seal at the durable watermark,
 * allocate the next chain position at the next offset; when the region is full, free the
 * oldest sealed segment — retention — and allocate again), writes 1..3 RecordBatch v2 batches
 * (encodeRecordBatch, offsets from the sequencer's view) at the segment's write position (as a
 * producer's one-sided write), then persists every partition's watermark concurrently (group
 * commit, different segments overlapping as in the persist queue). Some rounds raise the epoch
 * in the middle of those persists: requests with the old epoch are fenced (before or after
 * their data persist) and are issued again at the new epoch, as the broker does.
 *
 * Stamps: `start` is the number of scheduling points (persist calls) entered when the call was
 * made, `end` the number when its continuation ran. A call is acknowledged at cut k when it
 * succeeded with end ≤ k; in flight when start ≤ k < end. End stamps can only be late
 * (continuations run after the resolution), which makes the checker's view conservative.
 */
import { PmqError } from '../../common/errors.js';
import type { Watermark } from '../../common/layout.js';
import { encodeRecordBatch, setBaseOffset } from '../../common/record-batch/index.js';
import {
  RegionStore, type SegmentEntry, type SegmentInfo,
} from '../../storage-node/region-store.js';
import { prngFrom, randomRecords, type Prng } from '../fixtures/record-batch-random.js';
import type { PowerCutRegion } from './power-cut-region.js';

export const KIB = 1024;
/** 7 segments of 64 KiB after superblocks and table: small enough to copy per cut. */
export const REGION_BYTES = 512 * KIB;
export const SEGMENT_BYTES = 64 * KIB;
export const NODE_ID = 7;
const TIMESTAMP = 1_700_000_000_000;

/** The baseOffset field of an encoded batch (8 bytes big-endian at its start). */
function baseOffsetOf(bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigInt64(0));
}

/** The record count of an encoded batch (its last 4 header bytes). */
function recordCountOf(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 61).getInt32(57);
}

export type CallKind = 'format' | 'raiseEpoch' | 'allocateSegment' | 'persistWatermark' |
  'sealSegment' | 'freeSegment';

export interface BatchWritten {
  readonly position: number;
  readonly bytes: Uint8Array;
}

/** One use of a segment by a partition's chain place, from allocate to free. */
export interface Allocation {
  readonly id: number;
  /** -1 until the allocate resolves. */
  segmentIndex: number;
  readonly topic: string;
  readonly partition: number;
  readonly chainPosition: number;
  readonly baseOffset: number;
  readonly batches: BatchWritten[];
  /** Bytes written (not necessarily durable) and the next offset. */
  position: number;
  offsetNext: number;
  /** The last acknowledged watermark. */
  durable: Watermark;
  state: 'active' | 'sealed' | 'freeing' | 'free';
}

export interface Call {
  readonly id: number;
  readonly kind: CallKind;
  readonly epoch: number;
  readonly allocation: Allocation | null;
  readonly start: number;
  end: number;
  ok: boolean | null;
  /** What a successful segment call left in the table. */
  entry: SegmentEntry | null;
}

export interface WorkloadRun {
  readonly seed: number;
  readonly calls: readonly Call[];
  readonly allocations: readonly Allocation[];
  readonly persistCount: number;
  /** Where segment data starts: persists below it are superblock or table persists. */
  readonly dataAddress: number;
}

interface PartitionState {
  readonly topic: string;
  readonly partition: number;
  /** Live allocations, oldest first; the last one is active. */
  readonly chain: Allocation[];
  chainPositionNext: number;
  offsetNext: number;
}

/** A segment's entry (layout 2: its address and size are part of it). */
const entryOf = (info: SegmentInfo): SegmentEntry => ({ ...info });

class Workload {
  readonly calls: Call[] = [];
  readonly allocations: Allocation[] = [];
  readonly #prng: Prng;
  readonly #region: PowerCutRegion;
  readonly #partitions: PartitionState[];
  #store: RegionStore | null = null;
  #epoch = 0;

  constructor(seed: number, region: PowerCutRegion) {
    this.#prng = prngFrom(seed);
    this.#region = region;
    const count = 2 + this.#prng.int(2);
    this.#partitions = Array.from({ length: count }, (_, i) => ({ topic: `topic-${i % 2}`,
      partition: i, chain: [], chainPositionNext: 0, offsetNext: this.#prng.int(1000) }));
  }

  get store(): RegionStore {
    if (this.#store === null) throw new Error('workload: not formatted');
    return this.#store;
  }

  async run(rounds: number): Promise<void> {
    this.#store = await this.#track('format', 0, null,
      () => RegionStore.format(this.#region, { nodeId: NODE_ID, segmentSizeBytes: SEGMENT_BYTES }),
      () => null);
    await this.#raise();
    for (const part of this.#partitions) await this.#allocate(part);
    for (let round = 0; round < rounds; round += 1) await this.#round();
  }

  async #track<T>(kind: CallKind, epoch: number, allocation: Allocation | null,
    run: () => Promise<T>, entry: (value: T) => SegmentEntry | null): Promise<T> {
    const call: Call = { id: this.calls.length, kind, epoch, allocation,
      start: this.#region.persistCount, end: Number.POSITIVE_INFINITY, ok: null, entry: null };
    this.calls.push(call);
    try {
      const value = await run();
      call.end = this.#region.persistCount;
      call.ok = true;
      call.entry = entry(value);
      return value;
    } catch (error) {
      call.end = this.#region.persistCount;
      call.ok = false;
      throw error;
    }
  }

  async #raise(): Promise<void> {
    const epoch = this.#epoch + 1;
    await this.#track('raiseEpoch', epoch, null, () => this.store.raiseEpoch(epoch), () => null);
    this.#epoch = epoch;
  }

  async #allocate(part: PartitionState): Promise<void> {
    const allocation: Allocation = { id: this.allocations.length, segmentIndex: -1,
      topic: part.topic, partition: part.partition, chainPosition: part.chainPositionNext,
      baseOffset: part.offsetNext, batches: [], position: 0, offsetNext: part.offsetNext,
      durable: { position: 0, offsetLast: part.offsetNext - 1 }, state: 'active' };
    const request = { topic: part.topic, partition: part.partition,
      chainPosition: allocation.chainPosition, baseOffset: allocation.baseOffset };
    for (;;) {
      try {
        const info = await this.#track('allocateSegment', this.#epoch, allocation,
          () => this.store.allocateSegment({ ...request, epoch: this.#epoch }), entryOf);
        allocation.segmentIndex = info.segmentIndex;
        break;
      } catch (error) {
        if (!(error instanceof PmqError) || error.code !== 'PMQ_ERR_REGION_FULL') throw error;
        await this.#freeOldest();
      }
    }
    this.allocations.push(allocation);
    part.chain.push(allocation);
    part.chainPositionNext += 1;
  }

  /** Retention: frees the oldest sealed segment of the partition with the longest chain. */
  async #freeOldest(): Promise<void> {
    const part = [...this.#partitions].sort((a, b) => b.chain.length - a.chain.length)[0];
    const oldest = part?.chain[0];
    if (part === undefined || oldest === undefined || oldest.state !== 'sealed') {
      throw new Error('workload: region full and nothing sealed to free');
    }
    oldest.state = 'freeing';
    await this.#track('freeSegment', this.#epoch, oldest,
      () => this.store.freeSegment(oldest.segmentIndex, this.#epoch), entryOf);
    oldest.state = 'free';
    part.chain.shift();
  }

  async #roll(part: PartitionState): Promise<void> {
    const current = part.chain[part.chain.length - 1];
    if (current === undefined) throw new Error('workload: partition without a segment');
    const watermark = { ...current.durable };
    await this.#track('sealSegment', this.#epoch, current,
      () => this.store.sealSegment(current.segmentIndex, watermark, this.#epoch), entryOf);
    current.state = 'sealed';
    await this.#allocate(part);
  }

  /** Encodes batches for `part`; rolls first when they would not fit. */
  async #write(part: PartitionState): Promise<Allocation> {
    const batches = Array.from({ length: 1 + this.#prng.int(3) }, () =>
      randomRecords(this.#prng, 1 + this.#prng.int(6), 1 + this.#prng.int(3000)));
    let encoded = this.#encode(batches, part.offsetNext);
    const size = encoded.reduce((sum, b) => sum + b.byteLength, 0);
    let current = part.chain[part.chain.length - 1];
    if (current === undefined || current.position + size > SEGMENT_BYTES) {
      await this.#roll(part);
      current = part.chain[part.chain.length - 1];
      encoded = this.#encode(batches, part.offsetNext);
    }
    if (current === undefined) throw new Error('workload: roll left no segment');
    const address = this.store.segmentAddress(current.segmentIndex);
    for (const [i, bytes] of encoded.entries()) {
      // The producer's write: baseOffset 0, as producers write into a lease; the store patches
      // the offset in before the bytes persist (#persist), so a patch lost to a power cut
      // shows up as a batch that differs from `bytes`.
      const into = this.#region.view(address + current.position, bytes.byteLength);
      into.set(bytes);
      setBaseOffset(into, 0, 0);
      current.batches.push({ position: current.position, bytes });
      current.position += bytes.byteLength;
      part.offsetNext += batches[i]?.length ?? 0;
    }
    current.offsetNext = part.offsetNext;
    return current;
  }

  #encode(batches: ReturnType<typeof randomRecords>[], offsetFirst: number): Uint8Array[] {
    let offset = offsetFirst;
    return batches.map((records) => {
      const bytes = encodeRecordBatch(records, { baseOffset: offset, timestampDefault: TIMESTAMP });
      offset += records.length;
      return bytes;
    });
  }

  /** Persists the watermark over everything written to `a`; false if fenced meanwhile. */
  async #persist(a: Allocation, epoch: number): Promise<boolean> {
    const watermark = { position: a.position, offsetLast: a.offsetNext - 1 };
    const patches = a.batches.filter((batch) => batch.position >= a.durable.position)
      .map((batch) => ({ position: batch.position, baseOffset: baseOffsetOf(batch.bytes),
        bytes: batch.bytes.byteLength, records: recordCountOf(batch.bytes) }));
    try {
      await this.#track('persistWatermark', epoch, a, () => {
        this.store.settleBatches(a.segmentIndex, patches, watermark);
        return this.store.persistWatermark(a.segmentIndex, watermark, epoch);
      }, entryOf);
    } catch (error) {
      if (error instanceof PmqError && error.code === 'PMQ_ERR_EPOCH_STALE') return false;
      throw error;
    }
    a.durable = watermark;
    return true;
  }

  async #round(): Promise<void> {
    const parts = this.#partitions.filter(() => this.#prng.chance(0.6));
    if (parts.length === 0) parts.push(this.#partitions[0] as PartitionState);
    const written: Allocation[] = [];
    for (const part of parts) written.push(await this.#write(part));
    const raiseAt = this.#prng.chance(0.15) ? this.#prng.int(written.length + 1) : -1;
    const epoch = this.#epoch;
    const pending: Promise<unknown>[] = [];
    for (const [i, a] of written.entries()) {
      if (i === raiseAt) pending.push(this.#raise());
      pending.push(this.#persist(a, epoch));
    }
    if (raiseAt === written.length) pending.push(this.#raise());
    const settled = await Promise.allSettled(pending);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    for (const a of written) {
      if (a.durable.position < a.position && !(await this.#persist(a, this.#epoch))) {
        throw new Error('workload: persist at the current epoch was fenced');
      }
    }
    if (this.#prng.chance(0.05)) {
      const part = this.#partitions[this.#prng.int(this.#partitions.length)];
      if (part !== undefined && part.chain.length > 1) await this.#freeOldest();
    }
  }
}

/** Runs the workload of `seed` on `region` to its end; rounds are drawn from the seed. */
export async function runWorkload(seed: number, region: PowerCutRegion): Promise<WorkloadRun> {
  const workload = new Workload(seed, region);
  await workload.run(40 + prngFrom(seed ^ 0x2545f491).int(40));
  return { seed, calls: workload.calls, allocations: workload.allocations,
    persistCount: region.persistCount, dataAddress: workload.store.superblock.dataAddress };
}
