/** `pmq storage`: run one storage node until SIGINT/SIGTERM. */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';

import type { Command } from 'commander';

import type { ClusterKey } from '../common/auth/keys.js';
import { createLogger, type Logger } from '../common/log.js';
import { parseHostPort, parseSizeBytes, formatBytes } from '../common/units.js';
import { StorageMetrics } from '../storage-node/metrics.js';
import { REGION_PAGE_SIZE_BYTES } from '../native/region.js';
import { startStorageNode, type StorageNode } from '../storage-node/storage-node.js';
import { serveMetrics, type MetricsEndpoint } from './metrics-listen.js';
import { clusterKeyFilePath, readClusterKeyFile } from './cluster-key-file.js';
import { checkListenAddressFree } from './listen-check.js';
import { addStorageOptions, DEFAULT_REGION_PATH, DEFAULT_REGION_SIZE_BYTES, logLevelOption,
  type StorageCliOptions }
  from './options.js';

export async function runStorage(opts: StorageCliOptions, banner: string): Promise<StorageNode> {
  const log = createLogger({ level: opts.logLevel as 'info' });
  const listen = parseHostPort(opts.listen);
  await checkListenAddressFree(listen.host, listen.port, '--listen');
  // An existing region keeps its size unless --size is given (then it must match).
  const existed = existsSync(opts.path);
  const sizeBytes = opts.size !== undefined ? regionSizeBytes(opts.size, log)
    : existed ? undefined : DEFAULT_REGION_SIZE_BYTES;
  if (opts.path === DEFAULT_REGION_PATH) mkdirSync(dirname(opts.path), { recursive: true });
  const segmentSizeBytes = opts.segmentSize === undefined ? undefined :
    parseSizeBytes(opts.segmentSize, '--segment-size');
  const segmentSizeBytesMin = opts.firstSegmentSize === undefined ? undefined :
    parseSizeBytes(opts.firstSegmentSize, '--first-segment-size');
  const clusterKey = loadClusterKey(opts.clusterKeyFile, log);
  // The metrics endpoint first: a port it cannot have fails before the region is opened.
  const metrics = opts.metricsListen === undefined ? undefined : new StorageMetrics();
  const endpoint = metrics === undefined ? null
    : await serveMetrics(opts.metricsListen!, metrics.metrics, log);
  let node: StorageNode;
  try {
    node = await startStorageNode({ regionPath: opts.path, sizeBytes, sparse: opts.sparse,
      segmentSizeBytes, segmentSizeBytesMin,
      nodeId: opts.nodeId, host: listen.host, port: listen.port, transports: opts.transports,
      netDevices: opts.netDevices, busyPoll: opts.busyPoll, direct: opts.direct, clusterKey,
      log, ...(metrics === undefined ? {} : { metrics }) });
  } catch (error) {
    await endpoint?.close();
    // A node that never started leaves no new region file behind (an existing one is kept).
    if (!existed) rmSync(opts.path, { force: true });
    throw error;
  }
  const { region } = node;
  process.stdout.write(`${banner} listening on ${node.address.host}:${node.address.port} ` +
    `(region ${region.path}, ${formatBytes(region.sizeBytes)}, ${region.backing}, ` +
    `durability ${region.durability}${opts.direct ? ', direct mode offered' : ''})\n`);
  if (endpoint !== null) {
    process.stdout.write(`${banner} metrics at http://${endpoint.host}:${endpoint.port}` +
      '/metrics\n');
  }
  void node.prefaulted.then(({ mapped, timeMs }) => process.stdout.write(mapped
    ? `${banner} region pages mapped in ${Math.round(timeMs)} ms\n`
    : `${banner} region pages not prefaulted (they fault on first write)\n`));
  stopOnSignals(node, endpoint);
  return node;
}

/**
 * --size as given, rounded up to a whole page: a region is mapped in pages, and decimal units
 * (1GB = 10^9 bytes) are rarely a multiple of one. Said at info when it rounds.
 */
function regionSizeBytes(text: string, log: Logger): number {
  const given = parseSizeBytes(text, '--size');
  const sizeBytes = Math.ceil(given / REGION_PAGE_SIZE_BYTES) * REGION_PAGE_SIZE_BYTES;
  if (sizeBytes !== given) {
    log.info({ given, sizeBytes, pageSizeBytes: REGION_PAGE_SIZE_BYTES },
      'region size rounded up to a page');
  }
  return sizeBytes;
}

/** The key --cluster-key-file (or PMQ_CLUSTER_KEY_FILE) names; refuses to go on without. */
export function loadClusterKey(flag: string | undefined, log: Logger): ClusterKey {
  return readClusterKeyFile(clusterKeyFilePath(flag), (message) => log.warn({}, message));
}

export function stopOnSignals(node: StorageNode, endpoint: MetricsEndpoint | null = null): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`pmq: ${signal}, stopping\n`);
    node.stop().then(() => endpoint?.close()).then(() => { process.exitCode = 0; },
      (error: unknown) => {
        process.stderr.write(`pmq: stop failed: ${String(error)}\n`);
        process.exitCode = 1;
      });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

export function registerStorageCommand(program: Command): void {
  const command = program.command('storage')
    .description('run a storage node: a persistent-memory region served over UCX')
    .addOption(logLevelOption());
  addStorageOptions(command, '127.0.0.1:7100').action(async (opts: StorageCliOptions) => {
    await runStorage(opts, 'pmq storage node');
  });
}
