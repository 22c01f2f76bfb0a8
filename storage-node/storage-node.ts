/**
 * A storage node process: one persistent-memory region, exposed through the UCX transport.
 *
 * Lifecycle: start() opens (or creates) the region, then formats it when it is blank or opens
 * and validates it (recovery: superblock and every segment entry, logged with what was found);
 * a corrupt region refuses to start with an error naming the segment and address. Then it opens
 * the process's transport at the region's epoch, attaches the region's mapping as the memory the
 * native grant table guards, serves the broker's requests (broker-service.ts) to peers that
 * proved they hold the cluster key (broker-auth.ts) and listens. From
 * then on clients' validated writes and reads are checked and landed natively (no JavaScript
 * per request). With `direct`, trusted clients on RDMA lanes may instead ask for keys to
 * read whole segments one-sided (client-service.ts). stop() closes the transport first (no
 * request can land or arrive afterwards), waits for persists in flight, then closes the region
 * (which releases its lock).
 */
import { performance } from 'node:perf_hooks';

import type { ClusterKey } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { formatBytes } from '../common/units.js';
import { Region } from '../native/region.js';
import { Transport } from '../native/transport.js';
import { CONTROL_SHARED_PAYLOAD_BYTES, ControlChannel } from '../rpc/control-channel.js';
import { BrokerAuth } from './broker-auth.js';
import { BrokerService } from './broker-service.js';
import { ClientService } from './client-service.js';
import { GrantRegistry } from './grant-registry.js';
import { PersistQueue } from './persist-queue.js';
import type { StorageMetrics } from './metrics.js';
import { RegionMediaError, RegionStore } from './region-store.js';

export interface StorageNodeOptions {
  regionPath: string;
  /** Size when the region is created; an existing region keeps its size when omitted. */
  sizeBytes?: number;
  /** Create the region file sparse (Region.open's `sparse`: tests, thin disks). Default false. */
  sparse?: boolean;
  /** The largest segment, when the region is blank and gets formatted. Default 64 MiB. */
  segmentSizeBytes?: number;
  /**
   * The smallest segment (a partition's first), when the region gets formatted. Default
   * 256 KiB, or segmentSizeBytes when smaller.
   */
  segmentSizeBytesMin?: number;
  /** Used when the region is blank and gets formatted. Default 0. */
  nodeId?: number;
  host: string;
  port: number;
  /** UCX_TLS-style transport list; undefined = UCX's default (shared memory + tcp). */
  transports?: string;
  netDevices?: string;
  busyPoll?: boolean;
  /**
   * Offer direct mode: trusted consumers on RDMA lanes may ask for keys to read whole segments
   * one-sided (client-service.ts). Opens the transport with `direct: true`. Default false.
   */
  direct?: boolean;
  /**
   * The cluster's shared key (cli/cluster-key-file.ts reads it): broker requests are served
   * only on endpoints whose peer proved it holds it (broker-auth.ts).
   */
  clusterKey: ClusterKey;
  log: Logger;
  /** Prometheus metrics to count into (--metrics-listen; docs/metrics.md); none if absent. */
  metrics?: StorageMetrics;
}

export interface StorageNode {
  readonly address: { host: string; port: number };
  readonly region: Region;
  readonly store: RegionStore;
  /** Settles once the region's pages are mapped (mapped: true) or will not be; never rejects. */
  readonly prefaulted: Promise<{ mapped: boolean; timeMs: number }>;
  stop(): Promise<void>;
}

export async function startStorageNode(opts: StorageNodeOptions): Promise<StorageNode> {
  let log = opts.log.child({ component: 'storage' });
  const region = Region.open({ path: opts.regionPath, sizeBytes: opts.sizeBytes,
    mode: opts.sizeBytes === undefined ? 'open' : 'create', sparse: opts.sparse });
  log.info({ path: region.path, sizeBytes: region.sizeBytes, granularity: region.granularity,
    backing: region.backing, durability: region.durability }, 'region opened');
  if (region.durability !== 'power-fail') {
    log.warn({ durability: region.durability }, 'region is not on persistent memory');
  }
  if (region.durableShadow !== null) {
    log.warn({ shadow: region.durableShadow }, 'region durable shadow on (test mode)');
  }
  let store: RegionStore;
  try {
    store = await openOrFormat(region, opts, log);
  } catch (error) {
    region.close();
    throw error;
  }
  log = log.child({ nodeId: store.superblock.nodeId });
  try {
    return serve(region, store, opts, log);
  } catch (error) {
    region.close();
    throw error;
  }
}

function serve(region: Region, store: RegionStore, opts: StorageNodeOptions,
  log: Logger): StorageNode {
  const direct = opts.direct ?? false;
  const transport = Transport.open({ transports: opts.transports, netDevices: opts.netDevices,
    busyPoll: opts.busyPoll, direct, sharedHeaders: true, // the control channel copies
    sharedPayloadBytesMax: CONTROL_SHARED_PAYLOAD_BYTES,
    ucxLogVerbose: log.isLevelEnabled('debug') });
  let address: { host: string; port: number };
  let nativePersist = false;
  const grants = new GrantRegistry(transport);
  const persists = new PersistQueue(store, grants, (segment, positions) => {
    log.warn({ segment, positions }, 'appended batches that were not what their producer ' +
      'claimed (size, record count or CRC) were replaced by control batches before persisting');
  });
  try {
    if (store.epoch > 0) transport.raiseEpoch(store.epoch);
    transport.attachRegion(region); // by its native handle: no buffer, no 4 GiB cap
    nativePersist = store.enableNativePersist(transport, region);
    const channel = new ControlChannel(transport, log);
    if (opts.metrics !== undefined) {
      channel.observe(opts.metrics);
      opts.metrics.attach({ region, store, transport, grants });
    }
    const auth = new BrokerAuth(opts.clusterKey, transport, log);
    new BrokerService({ store, transport, grants, persists, auth, log }).register(channel);
    new ClientService({ store, transport, grants, clusterKey: opts.clusterKey, log })
      .register(channel);
    address = transport.listen(opts.host, opts.port);
  } catch (error) {
    transport.close();
    throw error;
  }
  transport.on('accepted', (ep, remoteAddress) => {
    log.info({ ep, remoteAddress, lanes: transport.lanes(ep) }, 'peer connected');
  });
  transport.on('closed', (ep, code, reason) => log.info({ ep, code, reason }, 'peer gone'));
  log.info({ ...address, region: formatBytes(region.sizeBytes), epoch: store.epoch, direct,
    nativePersist }, 'storage node listening');
  const prefaulted = prefaultInBackground(region, log);
  if (direct) {
    log.warn({}, 'direct mode offered: clients on RDMA lanes may get keys that can also write ' +
      'the segments they read; run it only with clients you trust');
  }
  return {
    address,
    region,
    store,
    prefaulted,
    async stop() {
      transport.close();
      await persists.idle();
      region.close();
      log.info({}, 'storage node stopped');
    },
  };
}

/**
 * Maps the region's pages while the node already serves: otherwise every first write to a
 * page of a fresh mapping pays a page fault on the data path. Failure only costs speed.
 */
function prefaultInBackground(region: Region,
  log: Logger): Promise<{ mapped: boolean; timeMs: number }> {
  const started = performance.now();
  return region.prefault().then(({ supported, cancelled }) => {
    const timeMs = elapsedMs(started);
    if (!supported) log.debug({ backing: region.backing }, 'region pages not prefaulted');
    else if (!cancelled) log.info({ timeMs }, 'region pages mapped');
    return { mapped: supported && !cancelled, timeMs };
  }, (error: unknown) => {
    log.warn({ err: String(error) }, 'region pages not prefaulted: first writes fault');
    return { mapped: false, timeMs: elapsedMs(started) };
  });
}

/** Opens and validates the region's store, or formats a blank region; logs what it found. */
async function openOrFormat(region: Region, opts: StorageNodeOptions,
  log: Logger): Promise<RegionStore> {
  const started = performance.now();
  let store: RegionStore;
  try {
    store = RegionStore.open(region);
  } catch (error) {
    if (error instanceof PmqError && error.code === 'PMQ_ERR_REGION_NOT_FORMATTED') {
      store = await RegionStore.format(region, { nodeId: opts.nodeId ?? 0,
        segmentSizeBytes: opts.segmentSizeBytes, segmentSizeBytesMin: opts.segmentSizeBytesMin });
      const sb = store.superblock;
      log.info({ regionId: sb.regionId, nodeId: sb.nodeId, segmentSizeBytes: sb.segmentSizeBytes,
        segmentSizeBytesMin: sb.segmentSizeBytesMin, segmentCount: sb.segmentCount,
        timeMs: elapsedMs(started) }, 'region formatted');
      return store;
    }
    if (error instanceof RegionMediaError) {
      log.error({ code: error.code, sites: error.sites }, 'region cannot be trusted, refusing ' +
        'to start');
    }
    throw error;
  }
  logRecovery(store, opts, log, elapsedMs(started));
  return store;
}

function logRecovery(store: RegionStore, opts: StorageNodeOptions, log: Logger,
  timeMs: number): void {
  const sb = store.superblock;
  const segments = store.segments();
  const count = (state: string): number => segments.filter((s) => s.state === state).length;
  const live = segments.filter((s) => s.state !== 'free').map((s) => ({
    segment: s.segmentIndex, state: s.state, topic: s.topic, partition: s.partition,
    chainPosition: s.chainPosition, position: s.watermark.position,
    offsetLast: s.watermark.offsetLast }));
  const { superblockFallback, entryFallbacks } = store.report;
  if (superblockFallback !== null) {
    log.warn({ ...superblockFallback }, 'superblock copy invalid, using the other copy');
  }
  for (const fallback of entryFallbacks) {
    log.warn({ ...fallback }, 'segment entry slot invalid, using the other slot');
  }
  log.info({ regionId: sb.regionId, nodeId: sb.nodeId, epoch: sb.epoch,
    segmentSizeBytes: sb.segmentSizeBytes, segmentSizeBytesMin: sb.segmentSizeBytesMin,
    segmentCount: sb.segmentCount, ...store.space(), free: count('free'),
    active: count('active'), sealed: count('sealed'),
    superblockFallback: superblockFallback !== null, entryFallbacks: entryFallbacks.length,
    timeMs, watermarks: live.slice(0, 64) }, 'region recovered');
  if (live.length > 64) log.debug({ watermarks: live }, 'region recovered: all watermarks');
  if (opts.segmentSizeBytes !== undefined && opts.segmentSizeBytes !== sb.segmentSizeBytes) {
    log.warn({ asked: opts.segmentSizeBytes, formatted: sb.segmentSizeBytes },
      'segment size flag ignored: the region keeps the size it was formatted with');
  }
  if (opts.nodeId !== undefined && opts.nodeId !== sb.nodeId) {
    log.warn({ asked: opts.nodeId, formatted: sb.nodeId },
      'node id flag ignored: the region keeps the id it was formatted with');
  }
}

function elapsedMs(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}
