/**
 * The broker's request handlers (docs/wire-protocol.md, "Client → broker"): topics, produce
 * (lease/append), fetch views with long polls, subscriptions (pushed watermarks), group
 * offsets. Every refusal is a PmqError with a code from docs/error-codes.md and a message
 * saying what to do; the control channel
 * turns it into an `error` reply and the broker keeps serving.
 *
 * Every handler but authStart/authFinish runs behind the session gate (client-access.ts):
 * with authentication on, an endpoint must authenticate first, and each request checks the
 * ACL its operation needs (docs/security.md lists the mapping); with it off, none.
 *
 * Fencing (fence.ts): every handler, the SCRAM ones included, runs under the fence: once the
 * broker is fenced, a request arriving is refused and one in flight is answered at once with
 * PMQ_ERR_FENCED, whatever its handler does later.
 *
 * Topic lifecycle: a topic exists for clients once its metadata is durable; delete makes its
 * removal durable first, then frees its segments (a crash in between leaves segments that the
 * next recovery frees).
 *
 * Fixed-layout requests (WIRE_VERSION 8: append, lease, leaseRelease; common/wire/fixed.ts)
 * name their topic by its id (metadata-store.ts, "Topic ids"), learnt from `leased`; an id that
 * names no live topic is refused PMQ_ERR_UNKNOWN_TOPIC. Their handlers are the msgpack ones'
 * behind the same fence, gate and ACL.
 */
import { reservedTopic } from '../common/metadata-log.js';
import { ProducerOwners } from './producer-owners.js';
import { PmqError } from '../common/errors.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Resource } from '../common/auth/acl.js';
import type { FixedMessage } from '../common/wire/fixed.js';
import type { Body, Message, RequestKind } from '../common/wire/messages.js';
import type { Endpoint } from '../native/transport.js';
import type { ControlChannel, Reply } from '../rpc/control-channel.js';
import type { ClientAccess, Session } from './client-access.js';
import type { Fence } from './fence.js';
import type { MetadataStore, TopicRecord } from './metadata-store.js';
import {
  Partition, type GrantHandle, type PartitionDeps, type SegmentPlace,
} from './partition.js';
import type { FetchView } from './sequencer-types.js';
import type { Quarantine } from './quarantine.js';
import { registerQuarantineHandlers } from './quarantine-handlers.js';
import type { GroupCoordinator } from './group-coordinator.js';
import { registerGroupHandlers } from './group-handlers.js';
import type { Head, Subscriptions } from './subscriptions.js';
import {
  describeConfigs, parseTopicConfigs, type RetentionSettings, type TopicConfigs,
} from './topic-config.js';

export interface ServerContext {
  readonly deps: PartitionDeps;
  readonly metadata: MetadataStore;
  readonly topics: Map<string, Partition[]>;
  readonly log: Logger;
  /** Sessions, authentication, ACLs (client-access.ts). */
  readonly access: ClientAccess;
  /** Producer ids: unique across broker restarts (broker.ts). */
  readonly producerId: () => number;
  /** Trips when a newer broker fenced this one: nothing is acknowledged after (fence.ts). */
  readonly fence: Fence;
  /** Segments no topic claims, kept until an operator frees them (quarantine.ts). */
  readonly quarantine: Quarantine;
  /** Consumers' subscriptions: pushed watermarks (subscriptions.ts). */
  readonly subscriptions: Subscriptions;
  /** The broker's default retention.ms / retention.bytes (topic-config.ts). */
  readonly retentionDefaults: RetentionSettings;
  /** Consumer groups with membership (group-coordinator.ts). */
  readonly groups: GroupCoordinator;
}

const DONE: Reply<'done'> = { kind: 'done', body: {} };

function partitionOf(context: ServerContext, topic: string, partition: number): Partition {
  const list = context.topics.get(topic);
  if (list === undefined) {
    throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist: create it ` +
      'first (topicCreate), or check the name');
  }
  const found = list[partition];
  if (found === undefined) {
    throw new PmqError('PMQ_ERR_PARTITION_RANGE', `topic ${topic} has partitions ` +
      `0..${list.length - 1}; partition ${partition} does not exist: pick one in range`);
  }
  return found;
}

/** The id fixed-layout messages name `topic` by (it exists: partitionOf found it). */
function topicIdOf(context: ServerContext, topic: string): number {
  const record = context.metadata.topic(topic);
  if (record === undefined) {
    throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist`);
  }
  return record.topicId;
}

/** Each live topic's ACL resource, made once (not per fixed-layout request). */
const resources = new WeakMap<TopicRecord, Resource>();

/** A fixed-layout request's topic: its record and ACL resource, or PMQ_ERR_UNKNOWN_TOPIC. */
function topicById(context: ServerContext, topicId: number): TopicRecord {
  const record = context.metadata.topicById(topicId);
  if (record === undefined) {
    throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic id ${topicId} names no topic of this ` +
      'broker (the topic was deleted, maybe created again under a new id): look the topic up ' +
      'by its name again (a lease by name answers its id)');
  }
  return record;
}

function resourceOf(record: TopicRecord): Resource {
  let resource = resources.get(record);
  if (resource === undefined) {
    resource = topicOf(record.topic);
    resources.set(record, resource);
  }
  return resource;
}

function partitionCount(context: ServerContext): number {
  let count = 0;
  for (const list of context.topics.values()) count += list.length;
  return count;
}

async function createTopic(context: ServerContext, topic: string, partitions: number,
  configs: TopicConfigs): Promise<Reply> {
  if (partitions < 1 || partitions > BROKER_LIMITS.partitionsPerTopicMax) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `partitions must be 1..` +
      `${BROKER_LIMITS.partitionsPerTopicMax}, got ${partitions}`);
  }
  if (reservedTopic(topic)) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `topic names starting with __pmq are reserved for ` +
      `pmq's own use: choose another name than ${topic}`);
  }
  if (context.quarantine.holdsTopic(topic)) {
    throw new PmqError('PMQ_ERR_TOPIC_QUARANTINED', `segments of an earlier topic ${topic} are ` +
      'quarantined (no topic of this broker claims them; they may hold acknowledged records): ' +
      'look at them with `pmq quarantine list`, free them with `pmq quarantine free ' +
      'NODE/SEGMENT --yes`, then create the topic');
  }
  if (partitionCount(context) + partitions > BROKER_LIMITS.partitionsMax) {
    throw new PmqError('PMQ_ERR_LIMIT', `the broker holds at most ` +
      `${BROKER_LIMITS.partitionsMax} partitions: delete topics or use fewer partitions`);
  }
  if (context.topics.has(topic)) {
    throw new PmqError('PMQ_ERR_TOPIC_EXISTS', `topic ${topic} exists: use it, or delete it ` +
      'first');
  }
  await context.metadata.createTopic(topic, partitions, configs);
  const list: Partition[] = [];
  for (let partition = 0; partition < partitions; partition += 1) {
    list.push(Partition.create(context.deps, topic, partition));
  }
  context.topics.set(topic, list);
  context.groups.topicChanged(topic);
  const warning = capacityWarning(context, topic, partitions);
  context.log.info({ topic, partitions, warning }, 'topic created');
  return { kind: 'topicCreated', body: { warning } };
}

/**
 * '' or why not every partition can get a first segment: partitions get one at their first
 * record, so all those without one (this topic's and older ones') are compared with the
 * first segments the storage nodes still have room for (the pool's count: an estimate).
 */
function capacityWarning(context: ServerContext, topic: string, partitions: number): string {
  let waiting = 0;
  for (const list of context.topics.values()) {
    for (const partition of list) if (partition.places.size === 0) waiting += 1;
  }
  const free = context.deps.pool.firstSegmentsFree();
  if (waiting <= free) return '';
  return `the storage nodes have room for about ${free} more first segments, and ${waiting} ` +
    `partitions (${partitions} of them ${topic}'s) have none yet: partitions past that get ` +
    'PMQ_ERR_REGION_FULL at their first record. Use fewer partitions, delete topics, add ' +
    'storage nodes or use larger regions (or smaller first segments: pmq storage ' +
    '--first-segment-size)';
}

async function deleteTopic(context: ServerContext, topic: string): Promise<Reply> {
  const list = context.topics.get(topic);
  if (list === undefined) {
    throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist: nothing to ` +
      'delete');
  }
  context.topics.delete(topic);
  try {
    await context.metadata.deleteTopic(topic);
  } catch (error) {
    context.topics.set(topic, list);
    throw error;
  }
  for (const partition of list) {
    context.subscriptions.dropSource(partition);
    await partition.close();
  }
  context.groups.topicChanged(topic);
  context.log.info({ topic }, 'topic deleted');
  return DONE;
}

function describeTopic(context: ServerContext, topic: string): Reply<'topicInfo'> {
  const list = context.topics.get(topic);
  if (list === undefined) {
    throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist`);
  }
  const served = (partition: Partition): boolean => partition.broken === null;
  return { kind: 'topicInfo', body: { topic, partitions: list.map((partition, index) => ({
    partition: index,
    logStart: served(partition) ? partition.sequencer.logStartOffset() : 0,
    highWatermark: served(partition) ? partition.sequencer.highWatermark() : 0,
    bytes: partition.bytes(),
    segments: partition.places.size,
  })), configs: describeConfigs(context.metadata.topicConfigs(topic),
    context.retentionDefaults) } };
}

/**
 * A view of the partition at `offset`: at once when there is data (or no wait was asked) and
 * the session's read grant exists; after the long poll or the grant's creation otherwise.
 */
function fetchView(context: ServerContext, request: Body<'fetchView'>, session: number):
  Reply<'view'> | Promise<Reply<'view'>> {
  const partition = partitionOf(context, request.topic, request.partition);
  const waiting = partition.waitForData(request.offset, request.waitMs);
  if (waiting !== null) {
    return waiting.then(() => asView(viewOf(context, partition, request.offset, session)));
  }
  return asView(viewOf(context, partition, request.offset, session));
}

function asView(body: Body<'view'> | Promise<Body<'view'>>):
  Reply<'view'> | Promise<Reply<'view'>> {
  if (body instanceof Promise) return body.then((view) => ({ kind: 'view', body: view }));
  return { kind: 'view', body };
}

/**
 * The segment holding `offset` with this session's read grant and its durable watermark (what
 * fetchView and subscribe answer): at once when the grant exists. Else the watermark is read
 * after the grant is made, so it is never older than the head when the reply leaves (a
 * subscription pushes from there on), and the high watermark with it, of the same moment.
 */
function viewOf(context: ServerContext, partition: Partition, offset: number,
  session: number): Body<'view'> | Promise<Body<'view'>> {
  const found = partition.sequencer.fetchView(offset);
  if (found === null) {
    return { highWatermark: partition.sequencer.highWatermark(), segment: [] };
  }
  const place = partition.place(found.segmentId);
  const grant = partition.readGrant(place, session);
  if (grant.created !== undefined) {
    return viewBody(context, place, found, partition.sequencer.highWatermark(), grant.created);
  }
  // A fill or seal landing during the grant's round trip must not give a segment that ends
  // below the high watermark of the same reply.
  const highWatermarkFound = partition.sequencer.highWatermark();
  return grant.then((created) => {
    const fresh = partition.sequencer.fetchView(offset);
    return fresh !== null && fresh.segmentId === found.segmentId
      ? viewBody(context, place, fresh, partition.sequencer.highWatermark(), created)
      : viewBody(context, place, found, highWatermarkFound, created);
  });
}

function viewBody(context: ServerContext, place: SegmentPlace, view: FetchView,
  highWatermark: number, grant: GrantHandle): Body<'view'> {
  return { highWatermark, segment: [{
    nodeId: place.nodeId, grantId: grant.id, grantKey: grant.key,
    grantEpoch: context.deps.pool.epoch, address: place.address,
    sizeBytes: place.sizeBytes, chainPosition: view.chainPosition, baseOffset: view.baseOffset,
    position: view.watermark.position, offsetLast: view.watermark.offsetLast,
    sealed: view.sealed,
  }] };
}

/** The head a view names (what a subscriber was told), or null for an empty partition. */
function headOf(view: Body<'view'>): Head | null {
  const segment = view.segment[0];
  if (segment === undefined) return null;
  return { chainPosition: segment.chainPosition, position: segment.position,
    offsetLast: segment.offsetLast, sealed: segment.sealed,
    highWatermark: view.highWatermark };
}

function checkGroup(group: string): void {
  if (group.length === 0) {
    throw new PmqError('PMQ_ERR_ARGUMENT', 'group must be a non-empty string');
  }
}

/** The smallest segment of the pool's nodes (a batch must fit one), or 0 while none is known. */
function segmentSizeBytesOf(pool: ServerContext['deps']['pool']): number {
  const size = pool.segmentSizeBytesMax();
  return Number.isSafeInteger(size) && size > 0 ? size : 0;
}

export type Serve = <K extends RequestKind>(kind: K,
  handler: (ep: Endpoint, request: Message<K>, session: Session) => Reply | Promise<Reply>) =>
  void;

/** Registers a handler behind the fence and the session gate (client-access.ts). */
function gated(channel: ControlChannel, access: ClientAccess, fence: Fence): Serve {
  return (kind, handler) => {
    channel.handle(kind, (ep, request) => fence.guardNow(() =>
      handler(ep, request, access.gate(ep, kind)!)));
  };
}

export const topicOf = (name: string): Resource => ({ type: 'topic', name });
const groupOf = (name: string): Resource => ({ type: 'group', name });

export function registerHandlers(channel: ControlChannel, context: ServerContext): void {
  const { deps, access, fence } = context;
  channel.handle('authStart', (ep, r) => fence.guard(() => access.authStart(ep, r)));
  channel.handle('authFinish', (ep, r) => fence.guard(() => access.authFinish(ep, r)));
  const serve = gated(channel, access, fence);
  serve('hello', (_ep, _r, session) => ({ kind: 'welcome', body: { brokerEpoch: deps.pool.epoch,
    storageNodes: deps.pool.nodes(), segmentSizeBytes: segmentSizeBytesOf(deps.pool),
    ...access.welcomeTicket(session) } }));
  serve('ticketRefresh', (_ep, _r, session) => ({ kind: 'ticket',
    body: access.ticket(session) }));
  serve('topicCreate', (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'create');
    return createTopic(context, r.topic, r.partitions, parseTopicConfigs(r.configs));
  });
  serve('topicDelete', (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'delete');
    return deleteTopic(context, r.topic);
  });
  serve('topicList', (_ep, _r, session) => ({ kind: 'topics', body: { topics: [...context.topics]
    .filter(([topic]) => access.may(session, topicOf(topic), 'describe'))
    .map(([topic, list]) => ({ topic, partitions: list.length })) } }));
  serve('topicDescribe', (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'describe');
    return describeTopic(context, r.topic);
  });
  const producerOwners = new ProducerOwners();
  serve('producerInit', (_ep, _r, session) => {
    const producerId = context.producerId();
    // Without authentication every session is anyone: there is no user to bind the id to.
    if (session.authenticated) producerOwners.issued(producerId, session.principal);
    return { kind: 'producerId', body: { producerId, producerEpoch: 0 } };
  });
  serve('lease', async (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'write');
    const partition = partitionOf(context, r.topic, r.partition);
    const topicId = topicIdOf(context, r.topic);
    return { kind: 'leased', body: { topicId, ...await partition.lease(r, session.id) } };
  });
  serve('append', (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'write');
    if (session.authenticated) producerOwners.check(r.producerId, session.principal);
    return partitionOf(context, r.topic, r.partition).append(r, session.id);
  });
  serve('leaseRelease', async (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'write');
    await partitionOf(context, r.topic, r.partition).release({ epoch: r.epoch, id: r.leaseId },
      session.id);
    return DONE;
  });
  serve('fetchView', (_ep, r, session) => {
    access.check(session, topicOf(r.topic), 'read');
    return fetchView(context, r, session.id);
  });
  registerFixedHandlers(channel, context, producerOwners);
  registerSubscriptionHandlers(serve, context);
  registerOffsetHandlers(serve, context);
  registerTopicConfigHandler(serve, context);
  registerQuarantineHandlers(serve, context);
  registerGroupHandlers(serve, context, context.groups);
  access.onSessionEnd((sessionId) => {
    context.subscriptions.endSession(sessionId);
    for (const list of context.topics.values()) {
      for (const partition of list) partition.endSession(sessionId);
    }
  });
}

/**
 * The fixed-layout append, lease and leaseRelease: as the msgpack ones, the topic named by its
 * id. Each reads its request (the decoder's reused object) before it first awaits.
 */
function registerFixedHandlers(channel: ControlChannel, context: ServerContext,
  producerOwners: ProducerOwners): void {
  const { access, fence } = context;
  const partitionIn = (r: FixedMessage<'append' | 'lease' | 'leaseRelease'>,
    session: Session): Partition => {
    const record = topicById(context, r.topicId);
    access.check(session, resourceOf(record), 'write');
    return partitionOf(context, record.topic, r.partition);
  };
  // Not under fence.guardNow (a closure and promises per append, issue 11): an ack that waits
  // is answered later through deps.answers, which checks the fence, and the trip fails every
  // waiting one at once (broker.ts). Nothing here can trip the fence: only a storage reply can.
  channel.handleFixed('append', (ep, r) => {
    fence.check();
    const session = access.gate(ep, 'append')!;
    const partition = partitionIn(r, session);
    if (session.authenticated) producerOwners.check(r.producerId, session.principal);
    return partition.appendDeferred(r, session.id, ep, r.id);
  });
  channel.handleFixed('lease', (ep, r) => fence.guardNow(async () => {
    const session = access.gate(ep, 'lease')!;
    const partition = partitionIn(r, session);
    const topicId = r.topicId;
    return { kind: 'leased', body: { topicId, ...await partition.lease(r, session.id) } };
  }));
  channel.handleFixed('leaseRelease', (ep, r) => fence.guardNow(async () => {
    const session = access.gate(ep, 'leaseRelease')!;
    await partitionIn(r, session).release({ epoch: r.epoch, id: r.leaseId }, session.id);
    return DONE;
  }));
}

/** topicAlterConfig: the topic's configs (topic-config.ts), durable before `done`. */
function registerTopicConfigHandler(serve: Serve, context: ServerContext): void {
  serve('topicAlterConfig', async (_ep, r, session) => {
    // Kafka's AlterConfigs on a topic needs ALTER_CONFIGS; pmq's nearest is create.
    context.access.check(session, topicOf(r.topic), 'create');
    const configs = parseTopicConfigs(r.configs);
    partitionOf(context, r.topic, 0); // PMQ_ERR_UNKNOWN_TOPIC
    await context.metadata.alterTopicConfigs(r.topic, configs);
    context.log.info({ topic: r.topic, configs }, 'topic configs altered');
    return DONE;
  });
}

/** subscribe / unsubscribe (docs/broker.md, "Subscriptions"): read ACL as fetchView. */
function registerSubscriptionHandlers(serve: Serve, context: ServerContext): void {
  const { access, subscriptions } = context;
  serve('subscribe', async (ep, r, session) => {
    access.check(session, topicOf(r.topic), 'read');
    subscriptions.checkRoom(ep, r.subscription);
    const partition = partitionOf(context, r.topic, r.partition);
    const view = await viewOf(context, partition, r.offset, session.id);
    subscriptions.add(ep, session.id, r.subscription, partition, headOf(view));
    return { kind: 'subscribed', body: { subscription: r.subscription, ...view } };
  });
  serve('unsubscribe', (ep, r) => {
    subscriptions.remove(ep, r.subscription);
    return DONE;
  });
}

function registerOffsetHandlers(serve: Serve, context: ServerContext): void {
  const { access, metadata } = context;
  serve('offsetCommit', async (_ep, r, session) => {
    checkGroup(r.group);
    access.check(session, groupOf(r.group), 'read');
    access.check(session, topicOf(r.topic), 'read');
    partitionOf(context, r.topic, r.partition);
    // A zombie member's (stale generation), or a simple consumer's while members read.
    context.groups.commitCheck(r.group, r.memberId ?? undefined, r.generation ?? undefined,
      r);
    await metadata.commitGroupOffset({ group: r.group, topic: r.topic, partition: r.partition,
      offset: r.offset });
    return DONE;
  });
  serve('offsetFetch', (_ep, r, session) => {
    checkGroup(r.group);
    access.check(session, groupOf(r.group), 'describe');
    access.check(session, topicOf(r.topic), 'describe');
    partitionOf(context, r.topic, r.partition);
    return { kind: 'offset', body: { offset: metadata.groupOffset(r.group, r.topic,
      r.partition) } };
  });
}
