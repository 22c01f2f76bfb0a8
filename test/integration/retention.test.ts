// Retention (docs/broker.md, "Retention"): a storage node and a broker in this process, the
// broker's retention clock faked and its passes run by the test (retentionCheckMs 0). Covers:
// by size and by time (a clock that jumps back deletes nothing), alter-config taking effect,
// a stale read grant refused once its segment is freed and again once the segment is reused
// (and the freed segment zero in the region file), the three autoOffsetReset policies, and the
// log start, topic configs and group offsets surviving a broker restart and a storage restart.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { startBroker, type Broker } from '../../broker-node/broker.js';
import { connect, type Client, type ConsumerOptions } from '../../clients/index.js';
import { createLogger } from '../../common/log.js';
import type { Message } from '../../common/wire/messages.js';
import { startStorageNode, type StorageNode } from '../../storage-node/storage-node.js';
import { Client as RawClient, type Proc } from '../helpers/broker-cluster.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';

const SEGMENT = 64 * 1024;
const VALUE = new Uint8Array(2000).fill(0x5a);
const log = createLogger({ level: 'error' });

interface Cluster {
  storage: StorageNode;
  broker: Broker;
  client: Client;
  /** The broker's retention clock (wall-clock ms); tests move it. */
  now: { ms: number };
}

const dir = mkdtempSync(join('/dev/shm', 'pmq-retention-'));
const regionPath = join(dir, 'region');
const clusterKey = testKey(testKeyFile(dir));
const now = { ms: Date.now() };
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function startCluster(storageRunning?: StorageNode): Promise<Cluster> {
  const storage = storageRunning ?? await startStorageNode({ regionPath,
    ...(storageRunning === undefined && !started ? { sizeBytes: 4 << 20, segmentSizeBytes: SEGMENT }
      : {}),
    host: '127.0.0.1', port: 0, transports: 'tcp', netDevices: 'lo', clusterKey, log });
  started = true;
  const broker = await startBroker({ host: '127.0.0.1', port: 0, storage: [storage.address],
    dataDir: join(dir, 'broker'), transports: 'tcp', netDevices: 'lo', clusterKey, log,
    onFenced: () => undefined, retentionMs: -1, retentionBytes: -1, retentionCheckMs: 0,
    clock: () => now.ms });
  const client = await connect({ brokers: [`${broker.address.host}:${broker.address.port}`],
    transports: 'tcp', netDevices: 'lo' });
  return { storage, broker, client, now };
}
let started = false;

async function stopCluster(cluster: Cluster, storageToo: boolean): Promise<void> {
  await cluster.client.close();
  await new Promise((resolve) => setTimeout(resolve, 200)); // grant revokes answered
  await cluster.broker.stop();
  if (storageToo) await cluster.storage.stop();
}

/** `count` records into partition 0, stamped `timestamp`; resolves once all are durable. */
async function produce(client: Client, topic: string, count: number,
  timestamp = Date.now()): Promise<void> {
  const producer = client.producer({ lingerMs: 1 });
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < count; i += 1) {
    sends.push(producer.send({ topic, partition: 0, records: [{ value: VALUE, timestamp }] }));
  }
  await Promise.all(sends);
  await producer.close();
}

async function partition0(client: Client, topic: string): Promise<{ logStart: number;
  highWatermark: number; bytes: number; segments: number }> {
  return (await client.admin().describeTopic(topic)).partitions[0]!;
}

/** The offsets a consumer yields first (`count` of them), or the error it throws. */
async function firstOffsets(client: Client, topic: string, options: ConsumerOptions,
  count: number): Promise<number[] | Error> {
  const consumer = client.consumer({ maxWaitMs: 100, ...options });
  try {
    await consumer.assign([{ topic, partition: 0 }]);
    const offsets: number[] = [];
    for await (const record of consumer) {
      offsets.push(record.offset);
      if (offsets.length === count) break;
    }
    return offsets;
  } catch (error) {
    return error as Error;
  } finally {
    await consumer.close();
  }
}

function zeroInFile(address: number, sizeBytes: number): boolean {
  const fd = openSync(regionPath, 'r');
  try {
    const bytes = new Uint8Array(sizeBytes);
    readSync(fd, bytes, 0, sizeBytes, address);
    return bytes.every((byte) => byte === 0);
  } finally {
    closeSync(fd);
  }
}

let cluster: Cluster;

t.before(async () => { cluster = await startCluster(); });

t.test('retention.bytes frees the oldest segments; the log start follows', async (t) => {
  const { client, broker } = cluster;
  await client.admin().createTopic('sized', { configs: { 'retention.bytes': 3 * SEGMENT } });
  await produce(client, 'sized', 250);
  const before = await partition0(client, 'sized');
  t.ok(before.segments >= 6, `${before.segments} segments written`);
  t.equal(before.logStart, 0);
  const pass = await broker.enforceRetention();
  const after = await partition0(client, 'sized');
  t.equal(pass.freed, before.segments - after.segments, 'freed what describe lost');
  t.ok(after.segments <= 4 && after.segments >= 3, `${after.segments} segments kept`);
  t.ok(after.bytes >= 3 * SEGMENT - SEGMENT && after.bytes < 3 * SEGMENT + SEGMENT,
    `${after.bytes} bytes kept, about retention.bytes`);
  t.ok(after.logStart > 0, `log start moved to ${after.logStart}`);
  t.equal(after.highWatermark, before.highWatermark, 'the high watermark stays');
  const read = await firstOffsets(client, 'sized', { start: 'earliest' }, 3);
  t.same(read, [after.logStart, after.logStart + 1, after.logStart + 2],
    'earliest is the log start');
  t.equal((await broker.enforceRetention()).freed, 0, 'a second pass frees nothing more');
});

t.test('retention.ms by the newest record timestamp, on the injected clock', async (t) => {
  const { client, broker } = cluster;
  await client.admin().createTopic('timed', { configs: { 'retention.ms': 60_000 } });
  const stamped = Date.now();
  await produce(client, 'timed', 150, stamped);
  const before = await partition0(client, 'timed');
  t.ok(before.segments >= 3, `${before.segments} segments`);
  now.ms = stamped + 60_000;
  t.equal((await broker.enforceRetention()).freed, 0, 'not older than retention.ms: kept');
  now.ms = stamped - 24 * 3600_000;
  t.equal((await broker.enforceRetention()).freed, 0, 'a clock jumped back deletes nothing');
  now.ms = stamped + 60_001;
  await broker.enforceRetention();
  const after = await partition0(client, 'timed');
  t.equal(after.segments, 1, 'every segment but the last (the chain\'s end) is freed');
  t.ok(after.logStart > before.logStart && after.logStart < after.highWatermark,
    `log start ${after.logStart}, high watermark ${after.highWatermark}`);
  now.ms = Date.now();
});

t.test('alter-config takes effect at the next pass and is described', async (t) => {
  const { client, broker } = cluster;
  await client.admin().createTopic('altered');
  await produce(client, 'altered', 120);
  const before = await partition0(client, 'altered');
  await broker.enforceRetention();
  t.same(await partition0(client, 'altered'), before, 'defaults (-1, -1): nothing freed');
  let configs = (await client.admin().describeTopic('altered')).configs;
  t.same(configs, [{ key: 'retention.ms', value: '-1', isDefault: true },
    { key: 'retention.bytes', value: '-1', isDefault: true }]);
  await client.admin().alterTopicConfig('altered', { 'retention.bytes': 0 });
  configs = (await client.admin().describeTopic('altered')).configs;
  t.same(configs[1], { key: 'retention.bytes', value: '0', isDefault: false });
  await broker.enforceRetention();
  t.equal((await partition0(client, 'altered')).segments, 1, 'all but the last freed');
  await t.rejects(client.admin().alterTopicConfig('altered', { 'retention.hours': 1 }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'an unknown key is refused');
  await t.rejects(client.admin().alterTopicConfig('altered', { 'retention.ms': -2 }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'a value below -1 is refused');
  await t.rejects(client.admin().createTopic('bad', { configs: { 'retention.ms': 'soon' } }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'create checks its configs too');
});

t.test('a freed segment: stale read grant refused, bytes zeroed, reuse leaks nothing',
  async (t) => {
    const { client, broker } = cluster;
    await client.admin().createTopic('grants');
    await produce(client, 'grants', 80);
    const raw = new RawClient();
    t.teardown(() => raw.transport.close());
    const welcome = await raw.connect({ host: broker.address.host, port: broker.address.port
    } as Proc); // connect() reads only host and port
    const view = await raw.call('fetchView', { topic: 'grants', partition: 0, offset: 0,
      waitMs: 0 }) as Message<'view'>;
    const segment = view.segment[0]!;
    const node = welcome.storageNodes.find((n) => n.nodeId === segment.nodeId)!;
    const ep = await raw.storage(node.nodeId, node.host, node.port);
    const grant = { id: segment.grantId, epoch: segment.grantEpoch, key: segment.grantKey };
    const dst = new Uint8Array(256);
    await raw.transport.readValidated(ep, grant, segment.address, dst, 0, dst.byteLength);
    t.ok(dst.some((byte) => byte !== 0), 'the grant reads the segment while it is held');

    await client.admin().alterTopicConfig('grants', { 'retention.bytes': 0 });
    t.ok((await broker.enforceRetention()).freed >= 1, 'the segment is freed');
    await t.rejects(raw.transport.readValidated(ep, grant, segment.address, dst, 0,
      dst.byteLength), { code: /PMQ_ERR_GRANT_(REVOKED|UNKNOWN)/ },
    'the stale grant reads nothing of the freed segment');
    t.ok(zeroInFile(segment.address, segment.sizeBytes), 'the freed segment is zero on media');
    await t.rejects(raw.call('fetchView', { topic: 'grants', partition: 0, offset: 0,
      waitMs: 0 }), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' }, 'offset 0 is below the log start');

    // Another topic takes free segments (lowest first) until it writes into the freed one.
    await client.admin().createTopic('reuser');
    let rounds = 0;
    while (zeroInFile(segment.address, segment.sizeBytes) && rounds < 40) {
      await produce(client, 'reuser', 40);
      rounds += 1;
    }
    t.notOk(zeroInFile(segment.address, segment.sizeBytes),
      `the freed segment was reused (after ${rounds} rounds of 40 records)`);
    await t.rejects(raw.transport.readValidated(ep, grant, segment.address, dst, 0,
      dst.byteLength), { code: /PMQ_ERR_GRANT_(REVOKED|UNKNOWN)/ },
    'the stale grant reads nothing of the segment\'s next owner either');
  });

t.test('autoOffsetReset: none, earliest, latest', async (t) => {
  const { client, broker } = cluster;
  await client.admin().createTopic('reset', { configs: { 'retention.bytes': 2 * SEGMENT } });
  await produce(client, 'reset', 200);
  await broker.enforceRetention();
  const { logStart, highWatermark } = await partition0(client, 'reset');
  t.ok(logStart > 0, `log start ${logStart}`);

  const none = await firstOffsets(client, 'reset', { start: { offset: 0 },
    autoOffsetReset: 'none' }, 1);
  t.match(none, { name: 'OffsetOutOfRangeError', code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' },
    'none: the deleted position is an OffsetOutOfRangeError');
  t.same(await firstOffsets(client, 'reset', { start: { offset: 0 },
    autoOffsetReset: 'earliest' }, 2), [logStart, logStart + 1], 'earliest: the log start');
  const latest = firstOffsets(client, 'reset', { start: { offset: 0 },
    autoOffsetReset: 'latest' }, 1);
  await new Promise((resolve) => setTimeout(resolve, 500)); // reset to the end, then waiting
  await produce(client, 'reset', 1);
  t.same(await latest, [highWatermark], 'latest: the next record produced');

  // A committed offset retention deleted: the group's consumer follows its policy.
  const group = client.consumer({ groupId: 'resetters', autoOffsetReset: 'none' });
  await group.commit([{ topic: 'reset', partition: 0, offset: 1 }]);
  await group.close();
  const committed = await firstOffsets(client, 'reset', { groupId: 'resetters',
    autoOffsetReset: 'earliest' }, 1);
  t.same(committed, [logStart], 'a deleted committed offset resets to the log start');
});

t.test('log start, configs and group offsets survive restarts', async (t) => {
  const before = await partition0(cluster.client, 'sized');
  const configsBefore = (await cluster.client.admin().describeTopic('sized')).configs;
  const group = cluster.client.consumer({ groupId: 'keeper' });
  await group.commit([{ topic: 'sized', partition: 0, offset: before.logStart + 7 }]);
  t.equal(await group.committed('sized', 0), before.logStart + 7);
  await group.close();

  await stopCluster(cluster, false);
  cluster = await startCluster(cluster.storage);
  t.same(await partition0(cluster.client, 'sized'), before, 'broker restart: same log start');
  t.same((await cluster.client.admin().describeTopic('sized')).configs, configsBefore,
    'broker restart: same configs');

  await stopCluster(cluster, true);
  cluster = await startCluster();
  t.same(await partition0(cluster.client, 'sized'), before,
    'storage and broker restart: the log start rebuilt from the region is the same');
  const again = cluster.client.consumer({ groupId: 'keeper' });
  t.equal(await again.committed('sized', 0), before.logStart + 7, 'the group offset survives');
  await again.close();
  t.same(await firstOffsets(cluster.client, 'sized', { groupId: 'keeper' }, 1),
    [before.logStart + 7], 'the group continues at its committed offset');
});

t.teardown(async () => { await stopCluster(cluster, true); });
