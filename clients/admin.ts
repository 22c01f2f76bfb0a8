/**
 * Topic administration: create, delete, list, describe. Each call is one request to the broker;
 * failures are the client's typed errors (UnknownTopicError, TopicExistsError, ...).
 */
import { ArgumentError } from '../common/errors.js';
import type { Connection } from './connection.js';
import type { Metadata, TopicDescription } from './metadata.js';

export interface TopicListing { topic: string; partitions: number }

export class Admin {
  constructor(private readonly connection: Connection, private readonly metadata: Metadata) {}

  async createTopic(topic: string, options: { partitions?: number } = {}): Promise<void> {
    const partitions = options.partitions ?? 1;
    if (!Number.isSafeInteger(partitions) || partitions < 1) {
      throw new ArgumentError(`partitions must be an integer ≥ 1, got ${String(partitions)}`);
    }
    await this.connection.call('topicCreate', { topic, partitions }, 'done',
      { what: `creating topic ${topic}`, topic });
    this.metadata.forget(topic);
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.connection.call('topicDelete', { topic }, 'done',
      { what: `deleting topic ${topic}`, topic });
    this.metadata.forget(topic);
  }

  async listTopics(): Promise<TopicListing[]> {
    const reply = await this.connection.call('topicList', {}, 'topics',
      { what: 'listing topics' });
    return reply.topics.map(({ topic, partitions }) => ({ topic, partitions }));
  }

  /** Partitions with their high watermark (next offset to be written durably) and segments. */
  describeTopic(topic: string): Promise<TopicDescription> {
    return this.metadata.describe(topic);
  }
}
