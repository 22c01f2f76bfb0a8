/**
 * The cluster's metadata — topics and consumer-group committed offsets — kept where fencing
 * applies: in the metadata log of one storage node's region (storage-node/metadata-log.ts;
 * docs/broker.md, "Where metadata lives"). The broker's data directory holds none of it, so an
 * empty, stale, copied or shared directory can lose nothing.
 *
 * Durability: a change is acknowledged only after the storage node has persisted it under
 * this broker's epoch (`metaAppend`). A fenced broker's append is refused (PMQ_ERR_EPOCH_STALE
 * fences it: storage-pool.ts), and the storage node runs appends in turn with epoch raises, so
 * a newer broker reads every change an older one acknowledged. Changes made while an append is
 * in flight go out together in the next one (group commit). After any failed append the next
 * one is a whole snapshot, so the log always ends in the state this broker holds.
 *
 * The log: the first value of each of its segments is a snapshot (`{v, topics, offsets,
 * nextTopicId}`), the rest are changes (`{v, ops}`); JSON, version METADATA_VALUE_VERSION. A
 * snapshot is written when the log is empty, after a failure, and when the segment would fill.
 *
 * Topic ids (version 2; fixed-layout wire messages name a topic by its id): each topic created
 * gets the next id from 1 up, recorded with the topic; `nextTopicId` in a snapshot keeps the
 * ids of deleted topics from ever being given again, so an id names one topic for the log's
 * life (a topic deleted and created again gets a new one). A version-1 log's topics get ids in
 * the order its values created them, and the next append is a snapshot that records them.
 *
 * Which node: the one whose region holds the log; with none (a new cluster), the lowest node
 * id. Several brokers with etcd later replace this class behind the same methods.
 *
 * Concurrency: JS thread only; at most one append in flight.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { joinChunks, toChunks } from '../common/wire/chunks.js';
import type { Message } from '../common/wire/messages.js';
import {
  METADATA_TOPIC, METADATA_VALUE_BYTES_MAX, unframeValues,
} from '../common/metadata-log.js';
import {
  readLegacyMetadata, retireLegacyMetadata, type OffsetRecord,
  type TopicRecord as LegacyTopicRecord,
} from './metadata-legacy.js';
import type { StorageInfo, StoragePool } from './storage-pool.js';
import { configPairs, configsFromPairs, type TopicConfigs } from './topic-config.js';

export type { OffsetRecord } from './metadata-legacy.js';
/** A topic: topicId is never given to another topic (see above). */
export interface TopicRecord extends LegacyTopicRecord { readonly topicId: number }
/**
 * Version 4 adds consumer groups' generations (op `generation`, snapshot field `generations`;
 * op `ungroup` deletes a group's offsets and generation); a version-3 value is read as one
 * without any. Version 3 adds topic configs (op `config`, snapshot field `configs`); a version-2
 * value is read as one without any. Version 1 has no topic ids.
 */
export const METADATA_VALUE_VERSION = 4;
const METADATA_VALUE_VERSION_NO_GENERATIONS = 3;
const METADATA_VALUE_VERSION_NO_CONFIGS = 2;
/** The version before topic ids: still read. */
const METADATA_VALUE_VERSION_NO_IDS = 1;
/** Topic ids are u32 on the wire (common/wire/fixed.ts); 0 is never one. */
export const TOPIC_ID_MAX = 0xffff_ffff;
/** Room left in a segment before a change goes into a new one as a snapshot. */
const SEGMENT_SLACK_BYTES = 4096;

/** `config`: the topic's whole set of overrides ([key, value] pairs) from now on. */
type Op = ['topic', string, number, number, number] | ['untopic', string] |
  ['offset', string, string, number, number] | ['config', string, [string, number][]] |
  ['generation', string, number] | ['ungroup', string];

const offsetKey = (group: string, topic: string, partition: number): string =>
  JSON.stringify([group, topic, partition]);
const text = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true });

function corrupt(nodeId: number, what: string): PmqError {
  return new PmqError('PMQ_ERR_METADATA_CORRUPT', `the metadata log on storage node ${nodeId}: ` +
    `${what}`);
}

/** Where the log is: the node holding metadata segments written at the highest epoch. */
function chooseLogNode(infos: readonly StorageInfo[], log: Logger): number {
  const holders = infos.map((info) => ({ nodeId: info.nodeId, epoch: Math.max(-1,
    ...info.segments.filter((s) => s.topic === METADATA_TOPIC).map((s) => s.epoch)) }))
    .filter((holder) => holder.epoch >= 0).sort((a, b) => b.epoch - a.epoch);
  if (holders.length > 1) {
    log.warn({ holders }, 'several storage nodes hold a metadata log: using the one written ' +
      'at the highest epoch; the others are left untouched');
  }
  return holders[0]?.nodeId ?? Math.min(...infos.map((info) => info.nodeId));
}

export class MetadataStore {
  readonly #topics = new Map<string, TopicRecord>();
  readonly #byId = new Map<number, TopicRecord>();
  /** The id the next topic created gets: above every id ever given. */
  #nextTopicId = 1;
  readonly #offsets = new Map<string, OffsetRecord>();
  /** Each topic's config overrides (topic-config.ts); a topic without any has no entry. */
  readonly #configs = new Map<string, TopicConfigs>();
  /**
   * Each consumer group's last generation (group-coordinator.ts): a broker after a failover
   * starts above it, so no member of an earlier broker's generation can commit.
   */
  readonly #generations = new Map<string, number>();
  /** JSON bytes of the state as a snapshot would hold it (bounded: see #reserve). */
  #stateBytes = 64;
  #pending: Op[] = [];
  #waiting: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #writing = false;
  #snapshotNext = false;
  #use = { usedBytes: 0, sizeBytes: 0 };
  /** Whether the pool counts a metadata segment on the log's node (placement, region full). */
  #segmentCounted: boolean;

  private constructor(private readonly pool: StoragePool, readonly nodeId: number,
    private readonly log: Logger, segmentCounted: boolean) {
    this.#segmentCounted = segmentCounted;
  }

  /**
   * Reads the log from the storage nodes (after pool.start()). An empty log takes the
   * metadata files of a version-1 data directory, if `dataDir` has them.
   */
  static async open(pool: StoragePool, infos: readonly StorageInfo[], dataDir: string,
    log: Logger): Promise<MetadataStore> {
    const nodeId = chooseLogNode(infos, log);
    const held = infos.find((info) => info.nodeId === nodeId)?.segments
      .some((segment) => segment.topic === METADATA_TOPIC) ?? false;
    const store = new MetadataStore(pool, nodeId, log, held);
    pool.reserveSegments(nodeId, 1);
    const values = await store.#readLog();
    if (values.length === 0) {
      store.#snapshotNext = true;
      const legacy = await readLegacyMetadata(dataDir);
      if (legacy !== null) {
        for (const topic of legacy.topics) store.#apply(['topic', topic.topic, topic.partitions,
          topic.createdAtMs, store.#nextTopicId]);
        for (const o of legacy.offsets) store.#apply(['offset', o.group, o.topic, o.partition,
          o.offset]);
        await store.#save();
        await retireLegacyMetadata(dataDir);
        log.warn({ dataDir, topics: legacy.topics.length, groupOffsets: legacy.offsets.length },
          'metadata files of the data directory moved into the storage nodes\' metadata log');
      }
    } else {
      values.forEach((value, index) => store.#replay(value, index === 0));
    }
    log.info({ nodeId: store.nodeId, topics: store.#topics.size,
      groupOffsets: store.#offsets.size, values: values.length }, 'metadata loaded');
    return store;
  }

  async #readLog(): Promise<Uint8Array[]> {
    const values: Uint8Array[] = [];
    for (let from = 0; ;) {
      const reply = await this.pool.request(this.nodeId, 'metaRead', { from }) as
        Message<'metaValues'>;
      const read = unframeValues(joinChunks(reply.chunks));
      if (read === null) throw corrupt(this.nodeId, 'a metaRead reply is not framed values');
      for (const value of read) values.push(value);
      this.#use = { usedBytes: reply.usedBytes, sizeBytes: reply.sizeBytes };
      if (reply.end) return values;
      invariant(reply.next > from, 'metadata reads move on', { from, next: reply.next });
      from = reply.next;
    }
  }

  #replay(value: Uint8Array, snapshot: boolean): void {
    let body: { v?: unknown; topics?: unknown; offsets?: unknown; ops?: unknown;
      nextTopicId?: unknown; configs?: unknown; generations?: unknown };
    try {
      body = JSON.parse(utf8.decode(value)) as typeof body;
    } catch (error) {
      throw corrupt(this.nodeId, `a value is not JSON (${String(error)})`);
    }
    if (body.v !== METADATA_VALUE_VERSION && body.v !== METADATA_VALUE_VERSION_NO_GENERATIONS &&
        body.v !== METADATA_VALUE_VERSION_NO_CONFIGS && body.v !== METADATA_VALUE_VERSION_NO_IDS) {
      throw new PmqError('PMQ_ERR_METADATA_VERSION', `the metadata log on storage node ` +
        `${this.nodeId} has a value of version ${String(body.v)}; this broker reads ` +
        `${METADATA_VALUE_VERSION}: run the pmq version that wrote it`);
    }
    const ops: unknown[] = snapshot ? [
      ...snapshotOps('topic', body.topics),
      ...snapshotOps('offset', body.offsets),
      ...(body.v !== METADATA_VALUE_VERSION && body.v !== METADATA_VALUE_VERSION_NO_GENERATIONS
        ? [] : snapshotOps('config', body.configs)),
      ...(body.v !== METADATA_VALUE_VERSION ? [] : snapshotOps('generation', body.generations)),
    ] : Array.isArray(body.ops) ? body.ops : [null];
    const withIds = body.v !== METADATA_VALUE_VERSION_NO_IDS;
    for (const op of ops) {
      // A version-1 topic has no id: it gets the next, in the order the log created them.
      if (!withIds && Array.isArray(op) && op[0] === 'topic' && op.length === 4) {
        op.push(this.#nextTopicId);
      }
      if (!validOp(op)) throw corrupt(this.nodeId, `bad entry ${JSON.stringify(op)}`);
      this.#apply(op);
    }
    if (!withIds) {
      this.#snapshotNext = true;
    } else if (snapshot) {
      const next = body.nextTopicId;
      if (!Number.isSafeInteger(next) || (next as number) < 1 ||
          (next as number) > TOPIC_ID_MAX + 1) {
        throw corrupt(this.nodeId, `bad nextTopicId ${JSON.stringify(next)}`);
      }
      this.#nextTopicId = Math.max(this.#nextTopicId, next as number);
    }
  }

  #apply(op: Op): void {
    if (op[0] === 'topic') {
      const record = { topic: op[1], partitions: op[2], createdAtMs: op[3], topicId: op[4] };
      const old = this.#topics.get(op[1]);
      if (old !== undefined) this.#byId.delete(old.topicId);
      this.#topics.set(op[1], record);
      this.#byId.set(op[4], record);
      this.#nextTopicId = Math.max(this.#nextTopicId, op[4] + 1);
    } else if (op[0] === 'untopic') {
      const old = this.#topics.get(op[1]);
      if (old !== undefined) this.#byId.delete(old.topicId);
      this.#topics.delete(op[1]);
      for (const [key, offset] of this.#offsets) {
        if (offset.topic === op[1]) this.#offsets.delete(key);
      }
      this.#configs.delete(op[1]);
    } else if (op[0] === 'generation') {
      this.#generations.set(op[1], op[2]);
    } else if (op[0] === 'ungroup') {
      this.#generations.delete(op[1]);
      for (const [key, offset] of this.#offsets) {
        if (offset.group === op[1]) this.#offsets.delete(key);
      }
    } else if (op[0] === 'config') {
      if (op[2].length === 0) this.#configs.delete(op[1]);
      else this.#configs.set(op[1], configsFromPairs(op[2])!);
    } else {
      this.#offsets.set(offsetKey(op[1], op[2], op[3]),
        { group: op[1], topic: op[2], partition: op[3], offset: op[4] });
    }
    this.#stateBytes = Math.max(64, this.#stateBytes + opBytes(op));
  }

  topics(): TopicRecord[] {
    return [...this.#topics.values()];
  }

  topic(name: string): TopicRecord | undefined {
    return this.#topics.get(name);
  }

  /** The live topic with this id (a deleted topic's id names none, ever again). */
  topicById(topicId: number): TopicRecord | undefined {
    return this.#byId.get(topicId);
  }

  /** Durable on return. Throws PMQ_ERR_TOPIC_EXISTS, PMQ_ERR_LIMIT. */
  async createTopic(topic: string, partitions: number, configs: TopicConfigs = {}):
    Promise<TopicRecord> {
    if (this.#topics.has(topic)) {
      throw new PmqError('PMQ_ERR_TOPIC_EXISTS', `topic ${topic} exists: use it, or delete it ` +
        'first');
    }
    if (this.#nextTopicId > TOPIC_ID_MAX) {
      throw new PmqError('PMQ_ERR_LIMIT', `all ${TOPIC_ID_MAX} topic ids of this cluster ` +
        'have been given: no topic can be created any more');
    }
    const op: Op = ['topic', topic, partitions, Date.now(), this.#nextTopicId];
    const pairs = configPairs(configs);
    // Created with its configs in the same append: no moment where it exists without them.
    const configOp: Op | null = pairs.length === 0 ? null : ['config', topic, pairs];
    this.#reserve(op);
    if (configOp !== null) this.#reserve(configOp);
    this.#apply(op);
    if (configOp !== null) this.#apply(configOp);
    this.#pending.push(op);
    if (configOp !== null) this.#pending.push(configOp);
    try {
      await this.#save();
    } catch (error) {
      this.#apply(['untopic', topic]);
      throw error;
    }
    return this.#topics.get(topic)!;
  }

  /** Durable on return; the topic's group offsets go too. */
  async deleteTopic(topic: string): Promise<void> {
    const record = this.#topics.get(topic);
    invariant(record !== undefined, 'deleteTopic of a known topic', { topic });
    this.#apply(['untopic', topic]);
    try {
      await this.#change(['untopic', topic]);
    } catch (error) {
      this.#apply(['topic', record.topic, record.partitions, record.createdAtMs,
        record.topicId]);
      throw error;
    }
  }

  /** The topic's config overrides (empty: the broker's defaults apply). */
  topicConfigs(topic: string): TopicConfigs {
    return this.#configs.get(topic) ?? {};
  }

  /**
   * Replaces the topic's overrides with `configs` merged over them (alter-config: the keys
   * given change, the others stay). Durable on return; PMQ_ERR_UNKNOWN_TOPIC, PMQ_ERR_LIMIT.
   */
  async alterTopicConfigs(topic: string, configs: TopicConfigs): Promise<TopicConfigs> {
    if (!this.#topics.has(topic)) {
      throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist`);
    }
    const before = this.#configs.get(topic) ?? {};
    const op: Op = ['config', topic, configPairs({ ...before, ...configs })];
    this.#reserve(op);
    this.#apply(op);
    try {
      await this.#change(op);
    } catch (error) {
      this.#apply(['config', topic, configPairs(before)]);
      throw error;
    }
    return this.topicConfigs(topic);
  }

  groupOffset(group: string, topic: string, partition: number): number {
    return this.#offsets.get(offsetKey(group, topic, partition))?.offset ?? -1;
  }

  /** Every committed group offset (metrics: lag per group, topic and partition). */
  allGroupOffsets(): IterableIterator<OffsetRecord> {
    return this.#offsets.values();
  }

  /** Durable on return; commits made meanwhile share one append. */
  async commitGroupOffset(record: OffsetRecord): Promise<void> {
    const key = offsetKey(record.group, record.topic, record.partition);
    const op: Op = ['offset', record.group, record.topic, record.partition, record.offset];
    if (!this.#offsets.has(key)) {
      if (this.#offsets.size >= BROKER_LIMITS.groupOffsetsMax) {
        throw new PmqError('PMQ_ERR_LIMIT', `${BROKER_LIMITS.groupOffsetsMax} group offsets ` +
          'are stored (the maximum): delete unused topics');
      }
      this.#reserve(op);
    }
    this.#apply(op);
    await this.#change(op);
  }

  /** The group's last generation made durable, or 0 when it never had one. */
  groupGeneration(group: string): number {
    return this.#generations.get(group) ?? 0;
  }

  /** Durable on return: the group's new generation (it only rises). */
  async saveGroupGeneration(group: string, generation: number): Promise<void> {
    const before = this.#generations.get(group);
    invariant(generation > (before ?? 0), 'generations rise', { group, generation, before });
    const op: Op = ['generation', group, generation];
    if (before === undefined) this.#reserve(op);
    this.#apply(op);
    await this.#change(op);
  }

  /** Every group with a committed offset or a generation. */
  groups(): string[] {
    const names = new Set(this.#generations.keys());
    for (const offset of this.#offsets.values()) names.add(offset.group);
    return [...names].sort();
  }

  /** The group's committed offsets. */
  groupOffsets(group: string): OffsetRecord[] {
    return [...this.#offsets.values()].filter((offset) => offset.group === group);
  }

  /**
   * Durable on return: the group's offsets and generation are gone. A group of that name made
   * again counts generations from 1; a zombie of the old one still cannot commit, its member
   * id (random per join) naming no member of the new one.
   */
  async deleteGroup(group: string): Promise<void> {
    const generation = this.#generations.get(group);
    const offsets = this.groupOffsets(group);
    this.#apply(['ungroup', group]);
    try {
      await this.#change(['ungroup', group]);
    } catch (error) {
      if (generation !== undefined) this.#apply(['generation', group, generation]);
      for (const o of offsets) this.#apply(['offset', o.group, o.topic, o.partition, o.offset]);
      throw error;
    }
  }

  /** Refuses a new entry when the snapshot would outgrow what one append may carry. */
  #reserve(op: Op): void {
    // Half the largest segment: a snapshot's segment is sized to it (storage-node/metadata-log.ts),
    // the current one may be smaller.
    const limit = Math.min(METADATA_VALUE_BYTES_MAX,
      Math.floor(this.pool.segmentSizeBytesMax() / 2) || METADATA_VALUE_BYTES_MAX);
    if (this.#stateBytes + opBytes(op) > limit) {
      throw new PmqError('PMQ_ERR_LIMIT', `the cluster metadata would exceed ${limit} bytes ` +
        '(half a storage segment, at most 7 MiB): delete topics or groups, or use larger ' +
        'segments (pmq storage --segment-size)');
    }
  }

  #change(op: Op): Promise<void> {
    this.#pending.push(op);
    return this.#save();
  }

  #save(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#writeNext();
    });
  }

  #writeNext(): void {
    if (this.#writing || this.#waiting.length === 0) return;
    const waiting = this.#waiting;
    const ops = this.#pending;
    this.#waiting = [];
    this.#pending = [];
    this.#writing = true;
    this.#append(ops).then(
      () => { for (const waiter of waiting) waiter.resolve(); },
      (error: unknown) => {
        this.#snapshotNext = true;
        const failure = error instanceof PmqError ? error : new PmqError('PMQ_ERR_METADATA_IO',
          `metadata append failed: ${String(error)}`, { cause: error, retriable: true });
        for (const waiter of waiting) waiter.reject(failure);
      },
    ).finally(() => {
      this.#writing = false;
      this.#writeNext();
    });
  }

  /** One append: the changes, or a snapshot when due (or when the node asks for one). */
  async #append(ops: Op[]): Promise<void> {
    const change = text.encode(JSON.stringify({ v: METADATA_VALUE_VERSION, ops }));
    const full = this.#use.usedBytes + change.byteLength + SEGMENT_SLACK_BYTES >
      this.#use.sizeBytes;
    if (!this.#snapshotNext && !full) {
      try {
        return await this.#send(change, false);
      } catch (error) {
        const code = error instanceof PmqError ? error.code : '';
        if (code !== 'PMQ_ERR_METADATA_FULL' && code !== 'PMQ_ERR_METADATA_SNAPSHOT') throw error;
      }
    }
    const snapshot = text.encode(JSON.stringify({ v: METADATA_VALUE_VERSION,
      topics: [...this.#topics.values()].map((t) => [t.topic, t.partitions, t.createdAtMs,
        t.topicId]),
      offsets: [...this.#offsets.values()].map((o) => [o.group, o.topic, o.partition,
        o.offset]),
      configs: [...this.#configs].map(([topic, configs]) => [topic, configPairs(configs)]),
      generations: [...this.#generations],
      nextTopicId: this.#nextTopicId }));
    await this.#send(snapshot, true);
    if (!this.#segmentCounted) {
      // The log's first segment; a rotation after it allocates one and frees one. Its bytes
      // are not counted here (an estimate; the node's own list at each connect is exact).
      this.pool.countSegment(this.nodeId, 1, 0);
      this.#segmentCounted = true;
    }
    this.#snapshotNext = false;
    this.#stateBytes = snapshot.byteLength;
    this.log.debug({ bytes: snapshot.byteLength }, 'metadata snapshot written');
  }

  async #send(value: Uint8Array, snapshot: boolean): Promise<void> {
    const reply = await this.pool.request(this.nodeId, 'metaAppend',
      { snapshot, chunks: toChunks(value) }) as Message<'metaAppended'>;
    this.#use = { usedBytes: reply.usedBytes, sizeBytes: reply.sizeBytes };
  }
}

/**
 * A snapshot field's entries as ops; a field that is not a list, or an entry that is not one,
 * becomes an op validOp refuses (PMQ_ERR_METADATA_CORRUPT, not a TypeError).
 */
function snapshotOps(kind: string, list: unknown): unknown[] {
  return (Array.isArray(list) ? list : [null]).map((entry: unknown) =>
    (Array.isArray(entry) ? [kind, ...entry as unknown[]] : [kind, entry]));
}

/** What an op adds to (or, for a removal, roughly takes from) the snapshot's JSON. */
function opBytes(op: Op): number {
  if (op[0] === 'untopic' || op[0] === 'ungroup') return 0;
  return JSON.stringify(op.slice(1)).length + 1;
}

function validOp(op: unknown): op is Op {
  if (!Array.isArray(op)) return false;
  const [kind, a, b, c, d] = op as unknown[];
  const count = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;
  if (kind === 'topic') {
    const topicId = op[4] as unknown;
    return op.length === 5 && typeof a === 'string' && count(b) && (b as number) >= 1 &&
      count(c) && count(topicId) && (topicId as number) >= 1 &&
      (topicId as number) <= TOPIC_ID_MAX;
  }
  if (kind === 'untopic' || kind === 'ungroup') return op.length === 2 && typeof a === 'string';
  if (kind === 'generation') {
    return op.length === 3 && typeof a === 'string' && count(b) && (b as number) >= 1;
  }
  if (kind === 'config') {
    return op.length === 3 && typeof a === 'string' && configsFromPairs(b) !== null;
  }
  return kind === 'offset' && op.length === 5 && typeof a === 'string' && typeof b === 'string' &&
    count(c) && Number.isSafeInteger(d);
}
