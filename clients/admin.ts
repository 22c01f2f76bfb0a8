/**
 * Topic administration: create, delete, list, describe, alter configs; consumer groups: list,
 * describe, delete, set offsets. Each call is one request to the broker (setGroupOffsets one
 * per partition); failures are the client's typed errors (UnknownTopicError, TopicExistsError,
 * ...) or PmqErrors with their code.
 */
import { ArgumentError } from '../common/errors.js';
import type { Connection } from './connection.js';
import type { Metadata, TopicDescription } from './metadata.js';

export interface TopicListing { topic: string; partitions: number }

/**
 * Topic configs by Kafka's names (docs/broker.md, "Retention"): `retention.ms`,
 * `retention.bytes` (per partition); -1 means unlimited. Values as numbers or strings.
 */
export type TopicConfigInput = Readonly<Record<string, number | string>>;

function configEntries(configs: TopicConfigInput): { key: string; value: string }[] {
  return Object.entries(configs).map(([key, value]) => {
    if (typeof value !== 'string' && !Number.isSafeInteger(value)) {
      throw new ArgumentError(`config ${key}: ${String(value)} is not an integer`);
    }
    return { key, value: String(value) };
  });
}

/** A segment no topic claims, kept by the broker until an operator frees it (docs/broker.md). */
export interface QuarantinedSegment {
  nodeId: number;
  segmentIndex: number;
  topic: string;
  partition: number;
  chainPosition: number;
  baseOffset: number;
  /** Its durable watermark: bytes and the last offset it holds. */
  position: number;
  offsetLast: number;
  sealed: boolean;
  reason: string;
}

export interface GroupListing { group: string; state: string; generation: number;
  members: number }

/** A group's state, members with their partitions, and committed offsets. */
export interface GroupDescription {
  group: string;
  /** Empty, PreparingRebalance, CompletingRebalance, Stable or Dead. */
  state: string;
  generation: number;
  assignor: string;
  members: { memberId: string; groupInstanceId: string; clientId: string;
    partitions: { topic: string; partition: number }[] }[];
  offsets: { topic: string; partition: number; offset: number }[];
}

export class Admin {
  constructor(private readonly connection: Connection, private readonly metadata: Metadata) {}

  /**
   * Creates the topic. `warning`: null, or why some partitions may not get a segment (the
   * storage regions cannot hold a first segment for every partition without one); the topic
   * exists either way.
   */
  async createTopic(topic: string,
    options: { partitions?: number; configs?: TopicConfigInput } = {}):
    Promise<{ warning: string | null }> {
    const partitions = options.partitions ?? 1;
    if (!Number.isSafeInteger(partitions) || partitions < 1) {
      throw new ArgumentError(`partitions must be an integer ≥ 1, got ${String(partitions)}`);
    }
    const configs = configEntries(options.configs ?? {});
    const reply = await this.connection.call('topicCreate', { configs, topic, partitions },
      'topicCreated', { what: `creating topic ${topic}`, topic });
    this.metadata.forget(topic);
    return { warning: reply.warning === '' ? null : reply.warning };
  }

  /** Sets the configs given (the topic's other configs stay); durable at the broker on return. */
  async alterTopicConfig(topic: string, configs: TopicConfigInput): Promise<void> {
    await this.connection.call('topicAlterConfig', { topic, configs: configEntries(configs) },
      'done', { what: `altering the configs of topic ${topic}`, topic });
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

  /** Segments no topic of the broker's metadata claims (quarantined, never freed by itself). */
  async listQuarantined(): Promise<QuarantinedSegment[]> {
    const reply = await this.connection.call('quarantineList', {}, 'quarantined',
      { what: 'listing quarantined segments' });
    return reply.segments.map((segment) => ({ ...segment }));
  }

  /** Frees one quarantined segment: its records are gone for good. */
  async freeQuarantined(nodeId: number, segmentIndex: number): Promise<void> {
    await this.connection.call('quarantineFree', { nodeId, segmentIndex }, 'done',
      { what: `freeing quarantined segment ${nodeId}/${segmentIndex}` });
  }

  async listGroups(): Promise<GroupListing[]> {
    const reply = await this.connection.call('groupList', {}, 'groups',
      { what: 'listing groups' });
    return reply.groups.map((group) => ({ ...group }));
  }

  async describeGroup(group: string): Promise<GroupDescription> {
    const reply = await this.connection.call('groupDescribe', { group }, 'groupInfo',
      { what: `describing group ${group}` });
    return { group: reply.group, state: reply.state, generation: reply.generation,
      assignor: reply.assignor, offsets: reply.offsets, members: reply.members.map((m) => ({
        ...m, partitions: reply.assignments.filter((a) => a.memberId === m.memberId)
          .map(({ topic, partition }) => ({ topic, partition })) })) };
  }

  /** Deletes the group's committed offsets (PMQ_ERR_GROUP_NOT_EMPTY while it has members). */
  async deleteGroup(group: string): Promise<void> {
    await this.connection.call('groupDelete', { group }, 'done',
      { what: `deleting group ${group}` });
  }

  /**
   * Sets the group's committed offsets (a reset): only while it has no members
   * (PMQ_ERR_GROUP_NOT_EMPTY otherwise).
   */
  async setGroupOffsets(group: string,
    offsets: { topic: string; partition: number; offset: number }[]): Promise<void> {
    for (const { topic, partition, offset } of offsets) {
      await this.connection.call('offsetCommit', { group, topic, partition, offset }, 'done',
        { what: `setting the offset of group ${group}`, topic, partition, offset });
    }
  }

  /**
   * Partitions with their log start (first offset held), high watermark (next offset to be
   * written durably), bytes and segments; the topic's configs in force.
   */
  describeTopic(topic: string): Promise<TopicDescription> {
    return this.metadata.describe(topic);
  }
}
