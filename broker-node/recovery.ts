/**
 * Broker start: rebuild every partition from the storage nodes' segment tables and the
 * broker's own topic list (docs/broker.md, "Recovery").
 *
 * Topics come from the metadata file (it is written durably before any segment of a topic is
 * allocated); segments come from the storage nodes alone. Each partition's entries go to
 * `Partition.restore` (which frees its orphans: empty segments past a claimed chain). Segments
 * whose topic is not in the metadata, or whose partition is out of range, are never freed: the
 * metadata may be stale, empty or another broker's, and the segment someone's acknowledged
 * records. They are quarantined (quarantine.ts) until an operator frees them.
 */
import type { Logger } from '../common/log.js';
import { METADATA_TOPIC } from '../common/metadata-log.js';
import type { MetadataStore } from './metadata-store.js';
import { Partition, type PartitionDeps } from './partition.js';
import type { Quarantine } from './quarantine.js';
import type { SegmentEntryMessage, StorageInfo } from './storage-pool.js';

type Located = { nodeId: number; entry: SegmentEntryMessage };

export interface RecoverySummary {
  readonly topics: number;
  readonly partitions: number;
  readonly segments: number;
  /** Segments no topic of the metadata claims: kept, listed, freed only by an operator. */
  readonly segmentsQuarantined: number;
  readonly partitionsUnavailable: number;
  readonly tookMs: number;
}

export async function recoverPartitions(deps: PartitionDeps, metadata: MetadataStore,
  infos: readonly StorageInfo[], quarantine: Quarantine, log: Logger):
  Promise<{ topics: Map<string, Partition[]>; summary: RecoverySummary }> {
  const startedAt = performance.now();
  const byPlace = new Map<string, Located[]>();
  for (const info of infos) {
    for (const entry of info.segments) {
      if (entry.topic === METADATA_TOPIC) continue; // the metadata log: metadata-store.ts
      const topic = metadata.topic(entry.topic);
      if (topic === undefined || entry.partition >= topic.partitions) {
        const reason = topic === undefined ? 'unknown topic' : 'partition out of range';
        quarantine.add(info.nodeId, entry, reason);
        log.warn({ nodeId: info.nodeId, segmentIndex: entry.segmentIndex, topic: entry.topic,
          partition: entry.partition, chainPosition: entry.chainPosition,
          position: entry.position, offsetLast: entry.offsetLast, reason },
        'segment quarantined: no topic of this broker\'s metadata claims it, so it is kept ' +
          '(it may hold another broker\'s records); see `pmq quarantine list`, free it with ' +
          '`pmq quarantine free NODE/SEGMENT --yes`');
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
  const summary: RecoverySummary = { topics: topics.size,
    partitions: [...topics.values()].reduce((sum, list) => sum + list.length, 0),
    segments: infos.reduce((sum, info) => sum + info.segments.length, 0),
    segmentsQuarantined: quarantine.size, partitionsUnavailable,
    tookMs: Math.round(performance.now() - startedAt) };
  log.info({ ...summary, epoch: deps.pool.epoch }, 'recovery done');
  return { topics, summary };
}
