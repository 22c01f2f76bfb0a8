/**
 * The broker process's wiring: transport, control channel, storage pool, metadata, recovery,
 * request handlers, the expiry timer.
 *
 * Lifecycle: startBroker() locks its data directory (one broker per directory), opens the
 * process's transport, connects to and fences every storage node (an epoch above every epoch
 * any node has seen: storage-pool.ts), reads the cluster metadata from the storage nodes'
 * metadata log (metadata-store.ts), rebuilds every partition (recovery.ts), and only then
 * listens for clients. stop() closes the transport (every client and storage connection) and
 * the timer.
 *
 * Fencing (fence.ts): when any storage request, hello or reconnect learns that a newer broker
 * raised the epoch, the fence trips once: every client request in flight or still to come is
 * answered PMQ_ERR_FENCED, the timer stops, the reason is logged at error level and
 * opts.onFenced is called (the CLI stops and exits with code 2). A fenced broker can change no
 * metadata: the storage node refuses its appends.
 */
import { mkdir } from 'node:fs/promises';

import type { ClusterKey } from '../common/auth/keys.js';
import { invariant } from '../common/invariant.js';
import { EPOCH_MAX, IDS_PER_EPOCH, SEQUENCER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { HostPort } from '../common/units.js';
import { Transport } from '../native/transport.js';
import { CONTROL_SHARED_PAYLOAD_BYTES, ControlChannel } from '../rpc/control-channel.js';
import { AuthStore } from './auth-store.js';
import { ClientAccess, TICKET_TTL_MS_DEFAULT } from './client-access.js';
import { lockDataDir } from './data-dir-lock.js';
import { Fence } from './fence.js';
import { GroupCoordinator } from './group-coordinator.js';
import { MetadataStore } from './metadata-store.js';
import type { AppendAnswers, Partition, PartitionDeps } from './partition.js';
import { Subscriptions } from './subscriptions.js';
import { Quarantine } from './quarantine.js';
import { recoverPartitions, type RecoverySummary } from './recovery.js';
import { Retention, type RetentionPass } from './retention.js';
import type { BrokerMetrics } from './metrics.js';
import { registerHandlers } from './server.js';
import { StoragePool } from './storage-pool.js';
import {
  RETENTION_BYTES_DEFAULT, RETENTION_MS_DEFAULT, type RetentionSettings,
} from './topic-config.js';

/** How long a fenced broker's stop waits for its PMQ_ERR_FENCED answers to leave. */
const FENCED_DRAIN_MS = 200;

export interface BrokerOptions {
  readonly host: string;
  readonly port: number;
  readonly storage: readonly HostPort[];
  readonly dataDir: string;
  readonly log: Logger;
  /**
   * The cluster's shared key: storage nodes serve only a broker that proves it holds it, and
   * verify the session tickets it signs with it.
   */
  readonly clusterKey: ClusterKey;
  readonly transports?: string;
  readonly netDevices?: string;
  /** Progress UCX every loop turn (native/transport.ts busyPoll). Default false. */
  readonly busyPoll?: boolean;
  /** Default SEQUENCER_LIMITS.reservationTimeoutMsDefault (10 s). */
  readonly reservationTimeoutMs?: number;
  readonly onFenced: (why: string) => void;
  /** Client authentication and ACLs from this file (docs/security.md); off when absent. */
  readonly authFile?: string;
  /** Lifetime of session tickets. Default TICKET_TTL_MS_DEFAULT (1 h). */
  readonly ticketTtlMs?: number;
  /** Topics' default retention.ms and retention.bytes (topic-config.ts: Kafka's defaults). */
  readonly retentionMs?: number;
  readonly retentionBytes?: number;
  /**
   * How often retention runs (default RETENTION_CHECK_MS_DEFAULT), and at once after a segment
   * seals; 0: only when asked (enforceRetention).
   */
  readonly retentionCheckMs?: number;
  /** Wall-clock milliseconds for retention by time (default Date.now; tests fake it). */
  readonly clock?: () => number;
  /** Prometheus metrics to count into (--metrics-listen; docs/metrics.md); none if absent. */
  readonly metrics?: BrokerMetrics;
}

const RESERVATION_TIMEOUT_MS = SEQUENCER_LIMITS.reservationTimeoutMsDefault;
/** How often group members' session timeouts and join deadlines are checked. */
const GROUP_TICK_MS = 50;

/** How often retention looks at every partition by default (Kafka's is 5 minutes). */
export const RETENTION_CHECK_MS_DEFAULT = 1000;

export interface Broker {
  readonly address: HostPort;
  readonly epoch: number;
  readonly recovery: RecoverySummary;
  /** Why this broker was fenced, or null while it is current. */
  readonly fencedWhy: string | null;
  /** Runs a retention pass now (tests; the timer runs them every retentionCheckMs). */
  enforceRetention(): Promise<RetentionPass>;
  stop(): Promise<void>;
}

/**
 * Ids of grants and producers: the epoch in the high bits keeps them unique across restarts.
 * Storage nodes refuse epochs above EPOCH_MAX, so every id of an accepted epoch is safe.
 */
function idAllocator(epoch: number): () => number {
  invariant(epoch <= EPOCH_MAX && (epoch + 1) * IDS_PER_EPOCH - 1 <= Number.MAX_SAFE_INTEGER,
    'epoch leaves room for ids', { epoch });
  let next = 1;
  return () => {
    invariant(next < IDS_PER_EPOCH, 'ids of one epoch', { next });
    const id = epoch * IDS_PER_EPOCH + next;
    next += 1;
    return id;
  };
}

/** Deferred append answers behind the fence, as guard() would: once fenced, no more acks. */
function fencedAnswers(channel: ControlChannel, fence: Fence): AppendAnswers {
  return {
    acked: (ep, id, reply) => {
      const fenced = fence.fenced();
      if (fenced === null) channel.answerFixed(ep, id, reply);
      else channel.answerError(ep, id, fenced);
    },
    failed: (ep, id, error) => channel.answerError(ep, id, fence.fenced() ?? error),
  };
}

/** Headers and small payloads shared: the control channel, the only handler, copies them. */
function openTransport(opts: BrokerOptions, log: Logger): Transport {
  return Transport.open({ transports: opts.transports, netDevices: opts.netDevices,
    busyPoll: opts.busyPoll, sharedHeaders: true,
    sharedPayloadBytesMax: CONTROL_SHARED_PAYLOAD_BYTES,
    ucxLogVerbose: log.isLevelEnabled('debug') });
}

export async function startBroker(opts: BrokerOptions): Promise<Broker> {
  const log = opts.log.child({ component: 'broker' });
  await mkdir(opts.dataDir, { recursive: true }).catch(() => undefined); // the lock says why
  const dirLock = lockDataDir(opts.dataDir);
  const auth = opts.authFile === undefined ? AuthStore.off(log)
    : AuthStore.open(opts.authFile, log);
  const transport = openTransport(opts, log);
  const timers: NodeJS.Timeout[] = []; // lease expiry, retention
  let ticking = true; // partitions' own timers (a blocking lease's cut) run only while true
  const quiesce = (): void => { // stopping or fenced: no more expiry, cuts or pushes
    ticking = false;
    for (const timer of timers) clearInterval(timer);
    subscriptions.clear();
  };
  const stop = async (): Promise<void> => {
    quiesce();
    // Fenced: let the PMQ_ERR_FENCED answers already handed to the transport go out first.
    if (fence.why !== null) await new Promise((resolve) => setTimeout(resolve, FENCED_DRAIN_MS));
    auth.close();
    pool.close();
    transport.close();
    dirLock.release();
    log.info({}, 'broker stopped');
  };
  const channel = new ControlChannel(transport, log);
  const fence = new Fence(() => pool.epoch);
  const pool = new StoragePool(transport, channel, opts.storage, opts.clusterKey, log, (why) => {
    fence.trip(why);
  });
  const subscriptions = pushSubscriptions(channel, transport, () => pool.epoch, log);
  let topics = new Map<string, Partition[]>();
  fence.onTrip((why) => onTripped(why, { fence, quiesce, topics, epoch: pool.epoch, log,
    onFenced: opts.onFenced }));
  try {
    const infos = await pool.start();
    const metadata = await MetadataStore.open(pool, infos, opts.dataDir, log);
    const quarantine = new Quarantine();
    const reservationTimeoutMs = opts.reservationTimeoutMs ?? RESERVATION_TIMEOUT_MS;
    const deps = partitionDeps({ ...opts, pool, transport, log, channel, fence, subscriptions,
      reservationTimeoutMs, ticking: () => ticking, sealed: () => retentionLater?.sealed() });
    let retentionLater: Retention | null = null; // made once the partitions are recovered
    const recovered = await recoverPartitions(deps, metadata, infos, quarantine, log);
    topics = recovered.topics;
    opts.metrics?.attach({ topics: () => topics, metadata, transport, channel, pool });
    // A restarted storage node lost its grants: cached read grants must be created again.
    pool.onUp((nodeId) => eachPartition(topics, (p) => p.forgetReadGrants(nodeId)));
    const access = new ClientAccess({ auth, clusterKey: opts.clusterKey, epoch: () => pool.epoch,
      transport, ticketTtlMs: opts.ticketTtlMs ?? TICKET_TTL_MS_DEFAULT, log });
    const { retention, retentionDefaults } = retentionOf(opts, topics, metadata, log);
    if ((opts.retentionCheckMs ?? RETENTION_CHECK_MS_DEFAULT) > 0) retentionLater = retention;
    registerHandlers(channel, { deps, metadata, topics, log, access, quarantine, fence,
      subscriptions, producerId: idAllocator(pool.epoch), retentionDefaults,
      groups: groupCoordinator(metadata, topics, log, timers) });
    transport.on('accepted', (ep, remoteAddress) => log.debug({ ep, remoteAddress }, 'client'));
    const address = transport.listen(opts.host, opts.port);
    timers.push(...timersOf(opts, topics, reservationTimeoutMs, retention, () => ticking));
    log.info({ ...address, epoch: pool.epoch, clientAuth: auth.enabled, ...retentionDefaults },
      'broker listening');
    return { address, epoch: pool.epoch, recovery: recovered.summary, stop,
      enforceRetention: () => retention.enforce(),
      get fencedWhy() { return fence.why; } };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The broker was fenced: it stops ticking, fails the appends waiting, says so and goes. */
function onTripped(why: string, parts: { fence: Fence; quiesce: () => void;
  topics: Map<string, Partition[]>; epoch: number; log: Logger;
  onFenced: (why: string) => void }): void {
  parts.quiesce();
  // Appends answered later (appendDeferred) are not under guard(): the trip fails them here.
  eachPartition(parts.topics, (partition) => partition.failWaiters(parts.fence.fenced()!));
  parts.log.error({ why, epoch: parts.epoch }, 'fenced by a newer broker: answering every ' +
    'request PMQ_ERR_FENCED and stopping');
  parts.onFenced(why);
}

/**
 * Groups' generations go through the metadata log; session timeouts on the monotonic clock,
 * checked by a timer that stops with the others (stopped or fenced).
 */
function groupCoordinator(metadata: MetadataStore, topics: Map<string, Partition[]>,
  log: Logger, timers: NodeJS.Timeout[]): GroupCoordinator {
  const groups = new GroupCoordinator({ now: () => performance.now(), log: log.child({ component:
    'groups' }), partitionCount: (topic) => topics.get(topic)?.length,
  storedGeneration: (group) => metadata.groupGeneration(group),
  saveGeneration: (group, generation) => metadata.saveGroupGeneration(group, generation) });
  timers.push(setInterval(() => groups.tick(), GROUP_TICK_MS));
  return groups;
}

/** What every partition of this broker uses. */
function partitionDeps(parts: { pool: StoragePool; transport: Transport; log: Logger;
  channel: ControlChannel; fence: Fence; subscriptions: Subscriptions;
  reservationTimeoutMs: number; ticking: () => boolean; sealed: () => void;
  metrics?: BrokerMetrics }): PartitionDeps {
  const { pool, ticking, subscriptions } = parts;
  return { pool, transport: parts.transport, log: parts.log, grantId: idAllocator(pool.epoch),
    now: () => performance.now(), reservationTimeoutMs: parts.reservationTimeoutMs, ticking,
    onAdvance: (partition) => subscriptions.advanced(partition),
    answers: fencedAnswers(parts.channel, parts.fence),
    onSealed: () => { if (ticking()) parts.sealed(); },
    ...(parts.metrics === undefined ? {} : { metrics: parts.metrics }) };
}

/** Pushes go out on the channel of replies (a fenced or stopped broker clears them first). */
function pushSubscriptions(channel: ControlChannel, transport: Transport, epoch: () => number,
  log: Logger): Subscriptions {
  const subscriptions = new Subscriptions((ep, body, sent, failed) =>
    channel.notifyTo(ep, 'watermark', body, sent, failed), epoch,
  log.child({ component: 'subscriptions' }));
  transport.on('closed', (ep) => subscriptions.endEndpoint(ep));
  return subscriptions;
}

function eachPartition(topics: Map<string, Partition[]>, fn: (partition: Partition) => void):
  void {
  for (const list of topics.values()) {
    for (const partition of list) fn(partition);
  }
}

function retentionOf(opts: BrokerOptions, topics: Map<string, Partition[]>,
  metadata: MetadataStore, log: Logger): { retention: Retention;
    retentionDefaults: RetentionSettings } {
  const retentionDefaults = { retentionMs: opts.retentionMs ?? RETENTION_MS_DEFAULT,
    retentionBytes: opts.retentionBytes ?? RETENTION_BYTES_DEFAULT };
  return { retentionDefaults, retention: new Retention({ topics, metadata,
    clock: opts.clock ?? Date.now, defaults: retentionDefaults, log }) };
}

/**
 * The lease expiry tick (a quarter of the timeout, 5 ms..1 s), and retention's passes every
 * retentionCheckMs while the broker ticks (not stopped or fenced).
 */
function timersOf(opts: BrokerOptions, topics: Map<string, Partition[]>,
  reservationTimeoutMs: number, retention: Retention, ticking: () => boolean):
  NodeJS.Timeout[] {
  const timers = [setInterval(() => tickAll(topics),
    Math.max(5, Math.min(1000, Math.floor(reservationTimeoutMs / 4))))];
  const retentionCheckMs = opts.retentionCheckMs ?? RETENTION_CHECK_MS_DEFAULT;
  if (retentionCheckMs <= 0) return timers;
  const timer = setInterval(() => {
    if (ticking()) void retention.enforce();
  }, retentionCheckMs);
  timer.unref();
  return [...timers, timer];
}

function tickAll(topics: Map<string, Partition[]>): void {
  for (const list of topics.values()) {
    for (const partition of list) partition.tick();
  }
}
