/**
 * A storage node process: one persistent-memory region, exposed through the UCX transport.
 *
 * Lifecycle: start() opens (or creates) the region, opens the process's transport, attaches
 * the region's mapping as the memory the native grant table guards, and listens. From then on
 * clients' validated writes and reads are checked and landed natively (no JavaScript per
 * request). stop() closes the transport first (no request can land afterwards), then the
 * region (which releases its lock).
 */
import type { Logger } from '../common/log.js';
import { formatBytes } from '../common/units.js';
import { Region } from '../native/region.js';
import { Transport } from '../native/transport.js';

export interface StorageNodeOptions {
  regionPath: string;
  /** Size when the region is created; an existing region keeps its size when omitted. */
  sizeBytes?: number;
  host: string;
  port: number;
  /** UCX_TLS-style transport list; undefined = UCX's default (shared memory + tcp). */
  transports?: string;
  netDevices?: string;
  busyPoll?: boolean;
  log: Logger;
}

export interface StorageNode {
  readonly address: { host: string; port: number };
  readonly region: Region;
  stop(): Promise<void>;
}

export async function startStorageNode(opts: StorageNodeOptions): Promise<StorageNode> {
  const log = opts.log.child({ component: 'storage' });
  const region = Region.open({ path: opts.regionPath, sizeBytes: opts.sizeBytes,
    mode: opts.sizeBytes === undefined ? 'open' : 'create' });
  log.info({ path: region.path, sizeBytes: region.sizeBytes, granularity: region.granularity,
    backing: region.backing, durability: region.durability }, 'region opened');
  if (region.durability !== 'power-fail') {
    log.warn({ durability: region.durability }, 'region is not on persistent memory');
  }
  let transport: Transport;
  try {
    transport = Transport.open({ transports: opts.transports, netDevices: opts.netDevices,
      busyPoll: opts.busyPoll });
  } catch (error) {
    region.close();
    throw error;
  }
  transport.attachMemory(region.bytes);
  let address: { host: string; port: number };
  try {
    address = transport.listen(opts.host, opts.port);
  } catch (error) {
    transport.close();
    region.close();
    throw error;
  }
  transport.on('accepted', (ep, remoteAddress) => {
    log.info({ ep, remoteAddress, lanes: transport.lanes(ep) }, 'client connected');
  });
  transport.on('closed', (ep, code, reason) => log.info({ ep, code, reason }, 'client gone'));
  log.info({ ...address, region: formatBytes(region.sizeBytes) }, 'storage node listening');
  return {
    address,
    region,
    async stop() {
      transport.close();
      region.close();
      log.info({}, 'storage node stopped');
    },
  };
}
