// A storage node, a broker and a client in one process: three transports of their own
// (docs/native-transport.md, "Handles"). Records produced with acks 'all' are consumed back
// whole; the client's close leaves the broker and the storage node serving a second client.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { startBroker } from '../../broker-node/broker.js';
import { connect, type Client } from '../../clients/index.js';
import { createLogger } from '../../common/log.js';
import { startStorageNode } from '../../storage-node/storage-node.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';

const RECORDS = 50;

async function produceAndConsume(client: Client, topic: string): Promise<string[]> {
  await client.admin().createTopic(topic, { partitions: 2 });
  const producer = client.producer();
  for (let i = 0; i < RECORDS; i += 1) {
    await producer.send({ topic, records: [{ key: `k${i}`, value: `${topic}-${i}` }] });
  }
  await producer.close();
  const consumer = client.consumer({ groupId: `${topic}-group`, fromBeginning: true });
  await consumer.subscribe(topic);
  const values: string[] = [];
  for await (const record of consumer) {
    values.push(Buffer.from(record.value ?? new Uint8Array(0)).toString());
    if (values.length === RECORDS) break;
  }
  await consumer.close();
  return values.sort();
}

t.test('a storage node, a broker and clients in one process', async (t) => {
  const dir = mkdtempSync(join('/dev/shm', 'pmq-in-process-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = createLogger({ level: 'error' });  // not the region's 'not on pmem' warning
  const clusterKey = testKey(testKeyFile(dir));
  const storage = await startStorageNode({ regionPath: join(dir, 'region'),
    sizeBytes: 32 << 20, segmentSizeBytes: 1 << 20, host: '127.0.0.1', port: 0,
    transports: 'tcp', netDevices: 'lo', clusterKey, log });
  t.teardown(() => storage.stop());  // teardowns run last first: the broker stops before it
  let fenced = '';
  const broker = await startBroker({ host: '127.0.0.1', port: 0,
    storage: [storage.address], dataDir: join(dir, 'broker'), transports: 'tcp',
    netDevices: 'lo', clusterKey, log, onFenced: (why) => { fenced = why; } });
  t.teardown(() => broker.stop());
  const brokers = [`${broker.address.host}:${broker.address.port}`];

  const first = await connect({ brokers, transports: 'tcp', netDevices: 'lo' });
  const expected = (topic: string): string[] =>
    Array.from({ length: RECORDS }, (_, i) => `${topic}-${i}`).sort();
  t.same(await produceAndConsume(first, 'first'), expected('first'),
    'every record produced in this process is consumed back');
  await first.close();
  // Steady-state persists never reach the storage node's JavaScript (native/persist_native.cc).
  const native = storage.store.nativePersistStats();
  t.ok(native.persisted >= RECORDS / 2, `${native.persisted} persists served natively, ` +
    `${native.declined} handed to JS`);

  const second = await connect({ brokers, transports: 'tcp', netDevices: 'lo' });
  t.same(await produceAndConsume(second, 'second'), expected('second'),
    'after the first client closed, the broker and the storage node serve a second one');
  await second.close();
  t.equal(fenced, '', 'the broker was never fenced');
  // The broker revokes the closed session's read grants now. Stopping it before the storage
  // node's answers are dispatched would leave those requests pending until their 10 s timeout
  // (broker.stop() closes its transport, and that settles no control-channel request), which
  // would keep this process alive that long.
  await new Promise((resolve) => setTimeout(resolve, 200));
});
