/**
 * offsetsForTimes, as Kafka's consumer has it: for each partition, the first offset whose
 * record's timestamp is at or after `timestampMs` (null when none is: start at the end).
 *
 * Client-side, with reads the client already makes, no broker request: per partition a binary
 * search over offsets [log start, high watermark), each probe reading the first batch at or
 * after an offset (one fetchView and one storage read: about log2(records) probes, ~20 for a
 * million records) and comparing its first record's timestamp. The broker holds no time index
 * (it never reads payload bytes), so asking it would mean reading batches there instead.
 * Like Kafka's index, it assumes timestamps grow with offsets in a partition (producers stamp
 * records as they send them); with clock skew it returns an offset near the right one.
 */
import type { Client } from './index.js';
import type { ConsumerBatch } from './records.js';

/** A probe that finds no data batch in this long treats the rest of the partition as empty
 *  (only hole fillers up to the high watermark). */
const PROBE_WAIT_MS = 2000;

export async function offsetsForTimes(client: Client, topic: string, timestampMs: number,
  partitions?: number[]): Promise<Map<number, number | null>> {
  const description = await client.admin().describeTopic(topic);
  const wanted = partitions ?? description.partitions.map((p) => p.partition);
  const found = new Map<number, number | null>();
  for (const partition of wanted) {
    const info = description.partitions[partition];
    if (info === undefined) continue;
    let low = info.logStart;
    let high = info.highWatermark;  // invariant: the answer is in [low, high]; high = none
    while (low < high) {
      const middle = Math.floor((low + high) / 2);
      const batch = await firstBatchAt(client, topic, partition, middle);
      const record = batch?.records[0];
      if (record === undefined || record.timestamp >= timestampMs) {
        high = middle;
        continue;
      }
      // The records from `middle` on start before the time: the first of them at or after it
      // is the answer (all before it are earlier, timestamps growing), found with this probe;
      // none: past the batch.
      const hit = batch!.records.find((r) => r.timestamp >= timestampMs);
      if (hit !== undefined) {
        low = Math.min(high, Math.max(low, hit.offset));
        high = low;
      } else {
        low = Math.min(high, Math.max(middle, batch!.lastOffset) + 1);
      }
    }
    found.set(partition, low >= info.highWatermark ? null : low);
  }
  return found;
}

/** The first data batch at or after `offset`, or null when none came within PROBE_WAIT_MS. */
async function firstBatchAt(client: Client, topic: string, partition: number, offset: number):
  Promise<ConsumerBatch | null> {
  const consumer = client.consumer({ start: { offset }, autoOffsetReset: 'latest',
    prefetchBatches: 1 });
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.assign([{ topic, partition }]);
    const batches = consumer.batches();
    const next = await Promise.race([batches.next(), new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), PROBE_WAIT_MS);
    })]);
    return next === null || next.done === true ? null : next.value;
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
}
