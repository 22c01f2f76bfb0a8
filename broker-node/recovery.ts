/**
 * Broker start: rebuild every partition from the storage nodes' segment tables and the
 * broker's own topic list (docs/broker.md, "Recovery").
 *
 * Topics come from the metadata file (it is written durably before any segment of a topic is
 * allocated); segments come from the storage nodes alone. Each partition's entries go to
 * `Partition.restore` (which frees its orphans); segments whose topic is not in the metadata
 * (a delete that crashed before freeing them) or whose partition is out of range are freed.
 */
import type { Logger } from '../common/log.js';
import type { MetadataStore } from './metadata-store.js';
import { Partition, type PartitionDeps } from './partition.js';
import type { SegmentEntryMessage, StorageInfo } from './storage-pool.js';

type Located = { nodeId: number; entry: SegmentEntryMessage };

export interface RecoverySummary {
  readonly topics: number;
  readonly partitions: number;
  readonly segments: number;
  readonly leftoversFreed: number;
  readonly partitionsUnavailable: number;
  readonly tookMs: number;
}

export async function recoverPartitions(deps: PartitionDeps, metadata: MetadataStore,
  infos: readonly StorageInfo[], log: Logger):
  Promise<{ topics: Map<string, Partition[]>; summary: RecoverySummary }> {
  const startedAt = performance.now();
  const byPlace = new Map<string, Located[]>();
  const leftovers: Located[] = [];
  for (const info of infos) {
    for (const entry of info.segments) {
      const topic = metadata.topic(entry.topic);
      if (topic === undefined || entry.partition >= topic.partitions) {
        leftovers.push({ nodeId: info.nodeId, entry });
        continue;
      }
      const key = `${entry.topic}\u0000${entry.partition}`;
      byPlace.set(key, [...(byPlace.get(key) ?? []), { nodeId: info.nodeId, entry }]);
    }
  }
  const topics = new Map<string, Partition[]>();
  let partitionsUnavailable = 0;
  for (const { topic, partitions } of metadata.topics()) {
    const list: Partition[] = [];
    for (let partition = 0; partition < partitions; partition += 1) {
      const entries = byPlace.get(`${topic}\u0000${partition}`) ?? [];
      const restored = await Partition.restore(deps, topic, partition, entries);
      if (restored.broken !== null) partitionsUnavailable += 1;
      list.push(restored);
    }
    topics.set(topic, list);
  }
  for (const { nodeId, entry } of leftovers) await freeLeftover(deps, nodeId, entry, log);
  const summary: RecoverySummary = { topics: topics.size,
    partitions: [...topics.values()].reduce((sum, list) => sum + list.length, 0),
    segments: infos.reduce((sum, info) => sum + info.segments.length, 0),
    leftoversFreed: leftovers.length, partitionsUnavailable,
    tookMs: Math.round(performance.now() - startedAt) };
  log.info({ ...summary, epoch: deps.pool.epoch }, 'recovery done');
  return { topics, summary };
}

async function freeLeftover(deps: PartitionDeps, nodeId: number, entry: SegmentEntryMessage,
  log: Logger): Promise<void> {
  try {
    await deps.pool.request(nodeId, 'segmentFree', { segmentIndex: entry.segmentIndex });
    deps.pool.countSegment(nodeId, -1);
    log.info({ nodeId, segmentIndex: entry.segmentIndex, topic: entry.topic,
      partition: entry.partition }, 'leftover segment freed');
  } catch (error) {
    log.warn({ nodeId, segmentIndex: entry.segmentIndex, err: String(error) },
      'leftover segment not freed');
  }
}
