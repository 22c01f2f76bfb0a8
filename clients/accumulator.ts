/**
 * The producer's batching, pure (no I/O, no timers; time is an argument): records go into one
 * open batch per partition until the next record would push the batch past `maxBatchBytes`;
 * then that batch is closed (ready to send) and a new one opens. A record larger than
 * `maxBatchBytes` gets a batch of its own. Batches are sized by an upper bound per record
 * (every varint at its widest), so the exact encoded size is never larger than the bound.
 *
 * Also here: the sticky partitioner for keyless records (Kafka's KIP-480 idea, made
 * deterministic): a topic's keyless records go to one partition until its batch closes, then
 * to the next partition round robin, so batches fill up instead of spraying single records.
 */
import type { RecordHeader, RecordInput } from '../common/record-batch/index.js';
import { RECORD_BATCH_HEADER_SIZE_BYTES } from '../common/record-batch/index.js';

/** length varint 5 + attributes 1 + timestampDelta varlong 10 + offsetDelta varint 5. */
const RECORD_OVERHEAD_BYTES_MAX = 21;
const VARINT_BYTES_MAX = 5;

/** An upper bound of the bytes this record takes inside a RecordBatch v2. */
export function recordSizeBytesMax(record: RecordInput): number {
  let size = RECORD_OVERHEAD_BYTES_MAX + 2 * VARINT_BYTES_MAX + VARINT_BYTES_MAX;
  size += record.key?.byteLength ?? 0;
  size += record.value?.byteLength ?? 0;
  if (record.headers !== undefined) {
    for (const header of record.headers) size += headerSizeBytesMax(header);
  }
  return size;
}

function headerSizeBytesMax(header: RecordHeader): number {
  // UTF-8 takes at most 3 bytes per UTF-16 unit; exact length only when it matters is costly.
  const keyBytes = header.key.length <= 64 ? Buffer.byteLength(header.key, 'utf8')
    : header.key.length * 3;
  return 2 * VARINT_BYTES_MAX + keyBytes + (header.value?.byteLength ?? 0);
}

/**
 * Where the results of a run of a batch's records go: records index..index+count-1 of one
 * send() call (a send's records to one partition are consecutive in its batches).
 */
export interface RecordSink<S> { sink: S; index: number; count: number }

export interface ProducerBatch<S> {
  topic: string;
  partition: number;
  records: RecordInput[];
  /** The records' sends, in record order. */
  sinks: RecordSink<S>[];
  /** Sum of the records' upper bounds plus the batch header: ≥ the encoded size. */
  sizeBytesMax: number;
  /** The largest record value's bytes: whether any value is large enough to send uncopied. */
  valueBytesMax: number;
  createdAtMs: number;
}

/** A partition's open batch. Held by the caller, so appending looks nothing up per record. */
export class PartitionSlot<S> {
  batch: ProducerBatch<S> | undefined;

  constructor(readonly topic: string, readonly partition: number) {}
}

export class Accumulator<S> {
  private readonly slots = new Map<string, PartitionSlot<S>[]>();
  /** The slots with an open batch, in the order their first batch opened. */
  private readonly open = new Set<PartitionSlot<S>>();

  constructor(private readonly maxBatchBytes: number) {}

  /** The slot of (topic, partition), the same one every time. */
  slot(topic: string, partition: number): PartitionSlot<S> {
    let slots = this.slots.get(topic);
    if (slots === undefined) {
      slots = [];
      this.slots.set(topic, slots);
    }
    let slot = slots[partition];
    if (slot === undefined) {
      slot = new PartitionSlot(topic, partition);
      slots[partition] = slot;
    }
    return slot;
  }

  /**
   * Adds record `index` of `sink`'s send to the slot's batch, opening one if needed; returns the
   * batch this closed (full), if any.
   */
  append(slot: PartitionSlot<S>, record: RecordInput, sizeBytesMax: number, sink: S,
    index: number, nowMs: number): ProducerBatch<S> | undefined {
    let batch = slot.batch;
    let closed: ProducerBatch<S> | undefined;
    if (batch !== undefined && batch.sizeBytesMax + sizeBytesMax > this.maxBatchBytes) {
      closed = batch;
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { topic: slot.topic, partition: slot.partition, records: [], sinks: [],
        sizeBytesMax: RECORD_BATCH_HEADER_SIZE_BYTES, valueBytesMax: 0, createdAtMs: nowMs };
      slot.batch = batch;
      this.open.add(slot);
    }
    batch.records.push(record);
    batch.sizeBytesMax += sizeBytesMax;
    const valueBytes = record.value?.byteLength ?? 0;
    if (valueBytes > batch.valueBytesMax) batch.valueBytesMax = valueBytes;
    const last = batch.sinks[batch.sinks.length - 1];
    if (last !== undefined && last.sink === sink && last.index + last.count === index) {
      last.count += 1;
    } else {
      batch.sinks.push({ sink, index, count: 1 });
    }
    return closed;
  }

  /**
   * Closes and returns batches open for at least `lingerMs` (all of them with -1), except those
   * of slots `held` says to keep open (their sender is busy: the batch may still grow).
   */
  drain(nowMs: number, lingerMs: number,
    held: (slot: PartitionSlot<S>) => boolean = () => false): ProducerBatch<S>[] {
    const ready: ProducerBatch<S>[] = [];
    for (const slot of this.open) {
      const batch = slot.batch!;
      if (lingerMs >= 0 && (nowMs - batch.createdAtMs < lingerMs || held(slot))) continue;
      this.open.delete(slot);
      slot.batch = undefined;
      ready.push(batch);
    }
    return ready;
  }

  /** Age in ms of the oldest open batch not `held`, or undefined when there is none. */
  oldestCreatedAtMs(held: (slot: PartitionSlot<S>) => boolean = () => false):
    number | undefined {
    let oldest: number | undefined;
    for (const slot of this.open) {
      if (held(slot)) continue;
      const createdAtMs = slot.batch!.createdAtMs;
      if (oldest === undefined || createdAtMs < oldest) oldest = createdAtMs;
    }
    return oldest;
  }

  get openBatches(): number {
    return this.open.size;
  }
}

export class StickyPartitioner {
  private readonly sticky = new Map<string, number>();
  private counter = 0;

  /** The partition for the topic's next keyless record. */
  partition(topic: string, partitionCount: number): number {
    const current = this.sticky.get(topic);
    if (current !== undefined && current < partitionCount) return current;
    const chosen = this.counter % partitionCount;
    this.counter += 1;
    this.sticky.set(topic, chosen);
    return chosen;
  }

  /** The batch of (topic, partition) closed: move the topic's keyless records on. */
  batchClosed(topic: string, partition: number): void {
    if (this.sticky.get(topic) === partition) this.sticky.delete(topic);
  }
}
