/**
 * One `pmq storage` and one `pmq broker` process in a temp directory, with a library client
 * connected over tcp: the cluster the group and consume tests run against.
 */
import { join } from 'node:path';

import { connect, type Client } from '../../clients/index.js';
import { startBroker, startStorage, stopProc, type Proc } from './broker-cluster.js';

export interface ClusterWithClient {
  readonly storage: Proc;
  readonly broker: Proc;
  readonly client: Client;
  /** Closes the client, then stops the broker and the storage node. */
  stop(): Promise<void>;
}

/** `storageExtra`: flags for `pmq storage` (its region is `dir`/region, node id 1). */
export async function startClusterWithClient(dir: string, storageExtra: string[]):
  Promise<ClusterWithClient> {
  const storage = await startStorage(join(dir, 'region'), 1, 0, storageExtra);
  let broker: Proc | undefined;
  try {
    broker = await startBroker(join(dir, 'broker'), [storage]);
    const client = await connect({ brokers: [`${broker.host}:${broker.port}`],
      transports: 'tcp', netDevices: 'lo' });
    const started = broker;
    return { storage, broker, client, stop: async () => {
      await client.close();
      await stopProc(started);
      await stopProc(storage);
    } };
  } catch (error) {  // a half-started cluster stops what it started
    if (broker !== undefined) await stopProc(broker);
    await stopProc(storage);
    throw error;
  }
}
