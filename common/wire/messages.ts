/**
 * The catalogue of control messages (two-sided, small): client ↔ broker and broker ↔ storage.
 * Payload bytes never travel in these: they move on the native data path (validated or direct).
 * docs/wire-protocol.md describes each message; bump WIRE_VERSION on any change here.
 *
 * Every message is { v: WIRE_VERSION, kind, id, ...fields }. A request's reply carries the
 * same id; any request may instead be answered by `error`. One-way kinds (ONE_WAY_KINDS: the
 * broker's pushes) have id 0 and no reply.
 */
import type { Schema, SchemaType } from './schema.js';

export const WIRE_VERSION = 10;

const storageNode = { nodeId: 'uint', host: 'string', port: 'uint' } as const;
const segmentEntry = {
  segmentIndex: 'uint', state: { oneOf: ['active', 'sealed'] }, topic: 'topic',
  partition: 'uint', chainPosition: 'uint', baseOffset: 'uint', sizeBytes: 'uint',
  address: 'uint', position: 'uint', offsetLast: 'int', epoch: 'uint',
} as const;
const segmentView = {
  nodeId: 'uint', grantId: 'uint', grantKey: 'uint', grantEpoch: 'uint', address: 'uint',
  sizeBytes: 'uint', chainPosition: 'uint', baseOffset: 'uint', position: 'uint',
  offsetLast: 'int', sealed: 'bool',
} as const;
const direction = { oneOf: ['read', 'write'] } as const;
const topicPartition = { topic: 'topic', partition: 'uint' } as const;
/** The broker's partitions in all (BROKER_LIMITS.partitionsMax): an assignment's bound. */
const PARTITIONS_MAX = 10_000;
/** state: Empty, PreparingRebalance, CompletingRebalance, Stable or Dead (v10). */
const groupSummary = { group: 'string', state: 'string', generation: 'uint', members: 'uint' } as
  const;
/** A topic config as Kafka spells it (v9): `retention.ms` = `3600000`. */
const topicConfig = { key: 'string', value: 'string' } as const;

/** Requests and replies, by kind. */
export const MESSAGES = {
  // --- replies shared by many requests
  error: { code: 'string', message: 'string', retriable: 'bool' },
  done: {},

  // --- client → broker: authentication (SCRAM-SHA-256, docs/security.md), before hello
  /** SCRAM client-first: the user name and the client's nonce (base64, 24..64 chars). */
  authStart: { user: 'string', nonce: 'string' },
  /** SCRAM server-first: the combined nonce (client's + server's), salt, PBKDF2 iterations. */
  authChallenge: { nonce: 'string', salt: 'bytes', iterations: 'uint' },
  /** SCRAM client-final: the combined nonce and the client proof (32 bytes). */
  authFinish: { nonce: 'string', proof: 'bytes' },
  /** SCRAM server-final: the server signature (32 bytes) proves the broker knows the user. */
  authOk: { signature: 'bytes', principal: 'string' },
  /** A fresh session ticket (the one in welcome expires). */
  ticketRefresh: {},
  ticket: { ticket: 'bytes', expiresInMs: 'uint' },

  // --- client → broker
  hello: { clientId: 'string', role: { oneOf: ['producer', 'consumer', 'admin'] } },
  /** ticket: the session's ticket for `sessionBind`, valid ticketExpiresInMs from now. */
  welcome: { brokerEpoch: 'uint', storageNodes: { list: storageNode, max: 1024 },
    segmentSizeBytes: 'uint', ticket: 'bytes', ticketExpiresInMs: 'uint' },
  /** configs (v9): the topic's config overrides (docs/broker.md, "Retention"). */
  topicCreate: { topic: 'topic', partitions: 'uint', configs: { list: topicConfig, max: 16 } },
  /**
   * warning: '' or why some partitions may not get a segment (the storage regions hold fewer
   * first segments than partitions without one): the topic is created all the same.
   */
  topicCreated: { warning: 'string' },
  /** Sets the configs given (the others stay); answered `done` once durable (v9). */
  topicAlterConfig: { topic: 'topic', configs: { list: topicConfig, max: 16 } },
  topicDelete: { topic: 'topic' },
  topicList: {},
  topics: { topics: { list: { topic: 'topic', partitions: 'uint' }, max: 100_000 } },
  topicDescribe: { topic: 'topic' },
  /**
   * Per partition (v9): logStart (the first offset held), highWatermark, bytes (durable bytes
   * of its segments), segments. configs: every config's value in force and whether it is the
   * broker's default.
   */
  topicInfo: { topic: 'topic', partitions: { list: { partition: 'uint', logStart: 'uint',
    highWatermark: 'uint', bytes: 'uint', segments: 'uint' }, max: 100_000 },
  configs: { list: { key: 'string', value: 'string', isDefault: 'bool' }, max: 16 } },
  producerInit: {},
  producerId: { producerId: 'uint', producerEpoch: 'uint' },
  /**
   * A write range of the partition for this session (docs/broker.md, "Leases"): at least
   * bytesMin (the next batch), up to bytes. releaseId ≥ 0: first close that lease of this
   * session (at releaseEpoch); its unwritten rest is filled.
   */
  lease: { topic: 'topic', partition: 'uint', bytes: 'uint', bytesMin: 'uint',
    releaseEpoch: 'uint', releaseId: 'int' },
  /**
   * address: the region address of `position` (segment-relative); the grant covers sizeBytes.
   * topicId (v8): the topic's id, which fixed-layout messages name it by (fixed.ts).
   */
  leased: { topicId: 'uint', epoch: 'uint', leaseId: 'uint', nodeId: 'uint', grantId: 'uint',
    grantKey: 'uint',
    grantEpoch: 'uint', address: 'uint', position: 'uint', sizeBytes: 'uint' },
  /**
   * A batch written at `position` (segment-relative) of the lease; answered `acked` with its
   * first offset once durable, or `duplicate` (an idempotent retry of a durable batch).
   */
  append: { topic: 'topic', partition: 'uint', epoch: 'uint', leaseId: 'uint',
    position: 'uint', bytes: 'uint', records: 'uint', producerId: 'int', sequence: 'int' },
  /**
   * leaseEnd: place no more batches in the lease and release it (its segment is full, or
   * another session's lease waits behind its unwritten rest).
   */
  acked: { baseOffset: 'uint', leaseEnd: 'bool' },
  duplicate: { baseOffset: 'uint' },
  /** The session is done with a lease: its unwritten rest is filled. Answered `done`. */
  leaseRelease: { topic: 'topic', partition: 'uint', epoch: 'uint', leaseId: 'uint' },
  /** Where `offset` is, and how far it may be read; waits up to waitMs for data past offset. */
  fetchView: { topic: 'topic', partition: 'uint', offset: 'uint', waitMs: 'uint' },
  view: { highWatermark: 'uint', segment: { list: segmentView, max: 1 } },
  /**
   * Pushes (v7, docs/broker.md, "Subscriptions"): `subscription` is the client's id for it,
   * unique in its session (a repeat replaces it). Answered `subscribed`, the same view as
   * fetchView's for `offset`; then the broker pushes `watermark` when the partition advances.
   */
  subscribe: { subscription: 'uint', topic: 'topic', partition: 'uint', offset: 'uint' },
  subscribed: { subscription: 'uint', highWatermark: 'uint',
    segment: { list: segmentView, max: 1 } },
  /** Ends a subscription of this session (an unknown one: done, nothing happens). */
  unsubscribe: { subscription: 'uint' },
  /**
   * One-way, broker → client (id 0, no reply): the partition's durable head now. At most one
   * in flight per subscription; advances meanwhile coalesce into the next (the latest).
   * epoch: the broker's; chainPosition, position, offsetLast, sealed: the head segment's
   * durable watermark; highWatermark: the offset after the last durable one.
   */
  watermark: { subscription: 'uint', epoch: 'uint', chainPosition: 'uint', position: 'uint',
    offsetLast: 'int', sealed: 'bool', highWatermark: 'uint' },
  /** Segments no topic claims (docs/broker.md, "Quarantine"): listed, freed only on request. */
  quarantineList: {},
  quarantined: { segments: { list: { nodeId: 'uint', segmentIndex: 'uint', topic: 'topic',
    partition: 'uint', chainPosition: 'uint', baseOffset: 'uint', position: 'uint',
    offsetLast: 'int', sealed: 'bool', reason: 'string' }, max: 65_536 } },
  quarantineFree: { nodeId: 'uint', segmentIndex: 'uint' },
  /**
   * generation, memberId (v10, optional): a group member's commit, refused unless both are the
   * group's current ones and the member owns the partition (docs/broker.md, "Consumer groups").
   * Without them: a simple consumer's commit, refused while the group has members.
   */
  offsetCommit: { group: 'string', topic: 'topic', partition: 'uint', offset: 'uint',
    generation: { optional: 'uint' }, memberId: { optional: 'string' } },
  offsetFetch: { group: 'string', topic: 'topic', partition: 'uint' },
  offset: { offset: 'int' },
  // --- client → broker: consumer groups with membership (v10, docs/broker.md, "Consumer groups")
  /**
   * memberId '' on a first join (the broker gives one); groupInstanceId '' unless static;
   * assignors in preference order; owned: what the member reads now (cooperative stickiness).
   * Answered when the join phase ends: every member joined, or the rebalance timeout passed.
   */
  groupJoin: { group: 'string', memberId: 'string', groupInstanceId: 'string',
    clientId: 'string', assignors: { list: { name: 'string' }, max: 8 },
    topics: { list: { topic: 'topic' }, max: 1024 },
    owned: { list: topicPartition, max: PARTITIONS_MAX },
    sessionTimeoutMs: 'uint', rebalanceTimeoutMs: 'uint' },
  groupJoined: { memberId: 'string', generation: 'uint', assignor: 'string' },
  /** The member's partitions of the generation (the broker's assignor computed them). */
  groupSync: { group: 'string', memberId: 'string', generation: 'uint' },
  groupAssignment: { generation: 'uint', partitions: { list: topicPartition,
    max: PARTITIONS_MAX } },
  /** `done`, or PMQ_ERR_REBALANCE_IN_PROGRESS: revoke as the assignor says and join again. */
  groupHeartbeat: { group: 'string', memberId: 'string', generation: 'uint' },
  groupLeave: { group: 'string', memberId: 'string' },
  groupList: {},
  groups: { groups: { list: groupSummary, max: 100_000 } },
  groupDescribe: { group: 'string' },
  /** No nested lists: each assigned partition names its member (a list per member would not be
   * bounded by the broker's partitions). */
  groupInfo: { ...groupSummary, assignor: 'string',
    members: { list: { memberId: 'string', groupInstanceId: 'string', clientId: 'string' },
      max: 4096 },
    assignments: { list: { ...topicPartition, memberId: 'string' }, max: PARTITIONS_MAX },
    offsets: { list: { ...topicPartition, offset: 'int' }, max: 100_000 } },
  /** Its committed offsets and generation go; PMQ_ERR_GROUP_NOT_EMPTY while it has members. */
  groupDelete: { group: 'string' },

  // --- broker → storage: mutual authentication with the cluster key, then storageHello
  /** The broker's fresh nonce (32 bytes). */
  brokerAuth: { nonce: 'bytes' },
  /** The storage node's fresh nonce and its proof MAC(storage-proof, brokerNonce, nonce). */
  brokerChallenge: { nonce: 'bytes', proof: 'bytes' },

  // --- broker → storage
  /**
   * After brokerChallenge: proof = MAC(broker-proof, its nonce, brokerAuth's nonce, u64 epoch,
   * u64 instance). instance: random per broker process; only the instance that raised a node to
   * its epoch may hello at that epoch again (a reconnect).
   */
  storageHello: { epoch: 'uint', instance: 'uint', proof: 'bytes' },
  /**
   * segmentSizeBytes: the largest segment; segmentSizeBytesMin: the smallest (a partition's
   * first); dataSizeBytes: the data area segments are allocated from.
   */
  storageInfo: { nodeId: 'uint', regionId: 'string', epoch: 'uint', segmentSizeBytes: 'uint',
    segmentSizeBytesMin: 'uint', dataSizeBytes: 'uint',
    segmentCount: 'uint', segments: { list: segmentEntry, max: 65_536 } },
  /** sizeBytesMin: the segment must hold at least this (a batch; absent or 0: no need). */
  segmentAllocate: { epoch: 'uint', topic: 'topic', partition: 'uint', chainPosition: 'uint',
    baseOffset: 'uint', sizeBytesMin: { optional: 'uint' } },
  segment: segmentEntry,
  /** session: the client session (BROKER_SESSION for the broker's own); key: its secret. */
  grantCreate: { epoch: 'uint', grantId: 'uint', session: 'uint', key: 'uint',
    segmentIndex: 'uint', position: 'uint',
    sizeBytes: 'uint', direction },
  grantRevoke: { epoch: 'uint', grantId: 'uint' },
  /**
   * patches: each batch's baseOffset, written into its header before the bytes persist, with
   * the batch's size and record count (a batch that is not that is replaced by a control one).
   */
  persist: { epoch: 'uint', segmentIndex: 'uint', position: 'uint', offsetLast: 'int',
    seal: 'bool', patches: { list: { position: 'uint', baseOffset: 'uint', bytes: 'uint',
      records: 'uint' }, max: 4096 } },
  persisted: { segmentIndex: 'uint', position: 'uint', offsetLast: 'int', sealed: 'bool' },
  segmentFree: { epoch: 'uint', segmentIndex: 'uint' },
  epochRaise: { epoch: 'uint' },
  /**
   * The metadata log (docs/broker.md, "Where metadata lives"): one value, sent as chunks of at
   * most 64 KiB, appended durably under the epoch; a snapshot starts a new segment.
   */
  metaAppend: { epoch: 'uint', snapshot: 'bool', chunks: { list: { bytes: 'bytes' }, max: 112 } },
  metaAppended: { usedBytes: 'uint', sizeBytes: 'uint' },
  /** Values from record `from` of the log's current segment (0: its snapshot). */
  metaRead: { epoch: 'uint', from: 'uint' },
  /** chunks, joined: each value as u32 length + bytes; next: the record after the last one. */
  metaValues: { chunks: { list: { bytes: 'bytes' }, max: 112 }, next: 'uint', end: 'bool',
    usedBytes: 'uint', sizeBytes: 'uint' },

  // --- client → storage: bind this endpoint to the ticket's session (docs/security.md)
  sessionBind: { ticket: 'bytes' },

  // --- client → storage (direct mode: docs/wire-protocol.md, "Client → storage")
  /** The direct key of a read grant (the grant id and epoch the broker's view named). */
  directKey: { grantId: 'uint', grantKey: 'uint', grantEpoch: 'uint' },
  directKeyIs: { key: 'bytes' },
} as const satisfies Record<string, Schema>;

export type MessageKind = keyof typeof MESSAGES;

/** Kinds that answer a request (matched by id); every other kind is a request. */
const REPLY_KIND_LIST = [
  'error', 'done', 'topicCreated', 'welcome', 'topics', 'topicInfo', 'producerId', 'leased',
  'acked', 'duplicate', 'view', 'offset', 'storageInfo', 'segment', 'persisted', 'directKeyIs',
  'authChallenge', 'authOk', 'ticket', 'brokerChallenge', 'quarantined', 'metaAppended',
  'metaValues', 'subscribed', 'groupJoined', 'groupAssignment', 'groups', 'groupInfo',
] as const satisfies readonly MessageKind[];
/** Kinds sent without an id (0) and never answered: the broker's pushes to subscribers. */
const ONE_WAY_KIND_LIST = ['watermark'] as const satisfies readonly MessageKind[];
export type ReplyKind = (typeof REPLY_KIND_LIST)[number];
export type OneWayKind = (typeof ONE_WAY_KIND_LIST)[number];
export type RequestKind = Exclude<MessageKind, ReplyKind | OneWayKind>;
export const REPLY_KINDS: ReadonlySet<MessageKind> = new Set<MessageKind>(REPLY_KIND_LIST);
export const ONE_WAY_KINDS: ReadonlySet<MessageKind> = new Set<MessageKind>(ONE_WAY_KIND_LIST);
/** The id of every one-way message: request ids start at 1 and never wrap to 0. */
export const ONE_WAY_ID = 0;
export type Body<K extends MessageKind> = SchemaType<(typeof MESSAGES)[K]>;
export type Message<K extends MessageKind = MessageKind> =
  K extends MessageKind ? { v: number; kind: K; id: number } & Body<K> : never;
