/**
 * Topic metadata the producer and consumer need (partition counts), fetched with
 * `topicDescribe` and cached for `ttlMs`. One request per topic at a time: concurrent callers
 * share the same promise. A failed lookup is not cached.
 */
import type { Connection } from './connection.js';

export interface PartitionInfo {
  partition: number;
  /** The first offset the partition still holds (retention moves it forward). */
  logStart: number;
  highWatermark: number;
  /** Durable bytes of its segments. */
  bytes: number;
  segments: number;
}
export interface TopicConfigEntry { key: string; value: string; isDefault: boolean }
export interface TopicDescription {
  topic: string;
  partitions: PartitionInfo[];
  configs: TopicConfigEntry[];
}

interface Entry { fetchedAtMs: number; description: Promise<TopicDescription> }

export const METADATA_TTL_MS_DEFAULT = 30_000;

export class Metadata {
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly connection: Connection,
    private readonly ttlMs = METADATA_TTL_MS_DEFAULT) {}

  async describe(topic: string): Promise<TopicDescription> {
    const reply = await this.connection.call('topicDescribe', { topic }, 'topicInfo',
      { what: `describing topic ${topic}`, topic });
    return { topic: reply.topic, partitions: reply.partitions.map((p) => ({ ...p })),
      configs: reply.configs.map((c) => ({ ...c })) };
  }

  /** Partition count of a topic (cached); rejects with UnknownTopicError. */
  async partitionCount(topic: string): Promise<number> {
    const now = Date.now();
    let entry = this.cache.get(topic);
    if (entry === undefined || now - entry.fetchedAtMs > this.ttlMs) {
      const description = this.describe(topic);
      const fresh: Entry = { fetchedAtMs: now, description };
      entry = fresh;
      this.cache.set(topic, fresh);
      description.catch(() => { if (this.cache.get(topic) === fresh) this.cache.delete(topic); });
    }
    return (await entry.description).partitions.length;
  }

  forget(topic: string): void {
    this.cache.delete(topic);
  }
}
