// The client library, end to end, against two back ends (every test that needs no test hook
// runs on both):
// - real: `pmq storage` (a region in /dev/shm, 64 KiB segments) + `pmq broker`, two processes;
// - fixture: test/fixtures/mini-cluster.ts, a broker + storage node in one process on a real
//   UCX transport, real memory behind native grants, with hooks (hold acks, control batches).
// In both, the clients' writes and reads go through writeValidated/readValidated, checked by
// the storage side's native grant table. No mocks of UCX.
import t, { type Test } from 'tap';

import { partitionForKey } from '../../common/partitioner.js';
import {
  connect, NotConnectedError, PartitionOutOfRangeError, RecordTooLargeError, TopicExistsError,
  UnknownTopicError, type Client, type ConsumerRecord, type Consumer,
} from '../../clients/index.js';
import { startBroker, startStorage, tempDir } from '../helpers/broker-cluster.js';
import { startMiniCluster, type MiniCluster } from '../helpers/mini-cluster.js';

const utf8 = new TextEncoder();
const text = new TextDecoder();
const SEGMENT_BYTES = 64 * 1024;


interface Cluster {
  address: string;
  /** Test hooks: only the fixture has them. */
  hooks?: MiniCluster;
  /** Stops the broker hard (SIGKILL). */
  killBroker(): Promise<void>;
  stop(): Promise<void>;
}

interface Backend { name: string; start(): Promise<Cluster>; hooks: boolean }

async function startReal(): Promise<Cluster> {
  const { dir, remove } = tempDir('pmq-clients-');
  const storage = await startStorage(`${dir}/region`, 1);
  const kill = async (child: typeof storage.child): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  const broker = await startBroker(`${dir}/broker`, [storage]).catch(async (error: unknown) => {
    await kill(storage.child);
    remove();
    throw error;
  });
  return {
    address: `${broker.host}:${broker.port}`,
    killBroker: () => kill(broker.child),
    async stop() {
      await kill(broker.child);
      await kill(storage.child);
      remove();
    },
  };
}

async function startFixture(): Promise<Cluster> {
  const hooks = await startMiniCluster({ segmentSizeBytes: SEGMENT_BYTES });
  return { address: hooks.address, hooks, killBroker: () => hooks.kill(),
    stop: () => hooks.stop() };
}

const BACKENDS: Backend[] = [
  { name: 'real broker + storage', start: startReal, hooks: false },
  { name: 'fixture', start: startFixture, hooks: true },
];

const CLIENT = { transports: 'tcp', netDevices: 'lo' } as const;

async function take(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  if (count === 0) return records;
  for await (const record of consumer) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

function suite(t: Test, backend: Backend): void {
  let cluster: Cluster;
  let client: Client;
  t.before(async () => {
    cluster = await backend.start();
    client = await connect({ brokers: [cluster.address], ...CLIENT, clientId: 'test' });
  });
  t.teardown(async () => {
    await client?.close();
    await cluster?.stop();
  });

  t.test('produce to 4 partitions, consume back exactly once, in order, dense', async (t) => {
    await client.admin().createTopic('orders', { partitions: 4 });
    const producer = client.producer({ maxBatchBytes: 8192, lingerMs: 2 });
    const sends = [];
    const total = 3000;
    for (let i = 0; i < total; i += 1) {
      const key = i % 3 === 0 ? null : `customer-${i % 17}`;
      sends.push(producer.send({ topic: 'orders', records: [{ key, value: `order-${i}`.padEnd(90),
        headers: { n: String(i) }, timestamp: 1_700_000_000_000 + i }] }));
    }
    const results = (await Promise.all(sends)).map((r) => r[0]!);
    await producer.close();
    const described = await client.admin().describeTopic('orders');
    t.equal(described.partitions.reduce((s, p) => s + p.highWatermark, 0), total,
      'high watermarks add up');
    t.ok(described.partitions.some((p) => p.segments > 1), 'some partition rolled segments');

    const consumer = client.consumer({ fromBeginning: true });
    await consumer.subscribe('orders');
    const records = await take(consumer, total);
    await consumer.close();
    const seen = new Set<number>();
    const next = [0, 0, 0, 0];
    for (const record of records) {
      const i = Number(text.decode(record.value!).slice('order-'.length).trim());
      if (seen.has(i)) t.fail(`record ${i} twice`);
      seen.add(i);
      if (record.offset !== next[record.partition]) t.fail(`offset gap at ${record.offset}`);
      next[record.partition] = record.offset + 1;
      const sent = results[i]!;
      if (sent.partition !== record.partition || sent.offset !== record.offset) {
        t.fail(`record ${i}: sent to ${sent.partition}@${sent.offset}, read at ` +
          `${record.partition}@${record.offset}`);
      }
      if (i % 3 !== 0 && record.partition !== partitionForKey(record.key!, 4)) {
        t.fail(`record ${i}: key not on its murmur2 partition`);
      }
      if (record.timestamp !== 1_700_000_000_000 + i) t.fail(`record ${i}: timestamp`);
      if (text.decode(record.headers[0]!.value!) !== String(i)) t.fail(`record ${i}: header`);
    }
    t.equal(seen.size, total, 'every record exactly once');
    t.same(next, described.partitions.map((p) => p.highWatermark), 'dense up to the watermark');
  });

  t.test('keyless records fill batches on one partition at a time (sticky)', async (t) => {
    await client.admin().createTopic('sticky', { partitions: 3 });
    const producer = client.producer({ lingerMs: 20 });
    const results = await producer.send({ topic: 'sticky', records: Array.from({ length: 10 },
      (_, i) => ({ value: `v${i}` })) });
    t.equal(new Set(results.map((r) => r.partition)).size, 1, 'one batch, one partition');
    t.same(results.map((r) => r.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'offsets per record');
    const explicit = await producer.send({ topic: 'sticky', partition: 2,
      records: [{ value: 'x' }] });
    t.equal(explicit[0]!.partition, 2);
    await producer.close();
  });

  t.test('seek, batches(), control batches skipped', async (t) => {
    await client.admin().createTopic('seekable', { partitions: 1 });
    const producer = client.producer({ lingerMs: 0 });
    await producer.send({ topic: 'seekable', records: Array.from({ length: 20 },
      (_, i) => ({ value: `a${i}` })) });
    if (cluster.hooks !== undefined) {
      const fillOffset = await cluster.hooks.call('fill', { topic: 'seekable', partition: 0,
        records: 3 });
      t.equal(fillOffset, 20, 'a control batch (hole filler) at 20..22');
    } else {
      await producer.send({ topic: 'seekable', records: Array.from({ length: 3 },
        (_, i) => ({ value: `b${i}` })) });
    }
    await producer.send({ topic: 'seekable', records: [{ value: 'after' }] });
    await producer.close();

    const consumer = client.consumer({ start: 'earliest' });
    await consumer.assign([{ topic: 'seekable', partition: 0 }]);
    consumer.seek('seekable', 0, 15);
    const records = await take(consumer, 6);
    const offsets = [15, 16, 17, 18, 19, ...(cluster.hooks ? [23] : [20])];
    t.same(records.map((r) => r.offset), offsets, 'from the seek target, control batches skipped');
    if (cluster.hooks) t.equal(text.decode(records[5]!.value!), 'after');
    consumer.seek('seekable', 0, 2);
    const batches = consumer.batches();
    const batch = (await batches.next()).value!;
    t.equal(batch.baseOffset, 2, 'records below the seek target are dropped');
    t.equal(batch.records[0]!.offset, 2);
    await consumer.close();
  });

  t.test('a caught-up consumer long-polls and gets new records promptly', async (t) => {
    await client.admin().createTopic('live', { partitions: 1 });
    const consumer = client.consumer({ start: 'latest', maxWaitMs: 5000 });
    await consumer.subscribe('live');
    const got = take(consumer, 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const producer = client.producer({ lingerMs: 0 });
    const sentAt = Date.now();
    await producer.send({ topic: 'live', records: [{ value: 'ping' }] });
    const [record] = await got;
    t.equal(text.decode(record!.value!), 'ping');
    t.ok(Date.now() - sentAt < 2000, `delivered in ${Date.now() - sentAt} ms, not after the wait`);
    await producer.close();
    await consumer.close();
  });

  t.test('group commit, then a new consumer resumes at the committed offset', async (t) => {
    await client.admin().createTopic('resume', { partitions: 2 });
    const producer = client.producer();
    await producer.send({ topic: 'resume', partition: 0, records: Array.from({ length: 50 },
      (_, i) => ({ value: `r${i}` })) });
    await producer.close();
    const first = client.consumer({ groupId: 'g1', fromBeginning: true });
    await first.assign([{ topic: 'resume', partition: 0 }]);
    const read = await take(first, 30);
    t.equal(read.at(-1)!.offset, 29);
    await first.commit();
    t.equal(await first.committed('resume', 0), 30, 'committed = next offset to read');
    await first.commit([{ topic: 'resume', partition: 1, offset: 0 }]);
    await first.close();

    const second = client.consumer({ groupId: 'g1' });
    await second.assign([{ topic: 'resume', partition: 0 }]);
    const rest = await take(second, 20);
    t.same([rest[0]!.offset, rest.at(-1)!.offset], [30, 49], 'resumed where g1 committed');
    await second.close();
  });

  t.test('typed errors: unknown topic, bad partition, too large, topic exists', async (t) => {
    const admin = client.admin();
    const producer = client.producer({ maxRecordBatchBytes: 4 * SEGMENT_BYTES });
    await t.rejects(producer.send({ topic: 'nope', records: [{ value: 'x' }] }),
      UnknownTopicError);
    await t.rejects(admin.describeTopic('nope'), { code: 'PMQ_ERR_UNKNOWN_TOPIC' });
    await admin.createTopic('small', { partitions: 2 });
    await t.rejects(admin.createTopic('small', { partitions: 2 }), TopicExistsError);
    await t.rejects(producer.send({ topic: 'small', partition: 2, records: [{ value: 'x' }] }),
      PartitionOutOfRangeError);
    await t.rejects(producer.send({ topic: 'small', records: [{ value: new Uint8Array(
      2 * SEGMENT_BYTES) }] }), RecordTooLargeError, 'the broker refuses more than a segment');
    const strict = client.producer();
    await t.rejects(strict.send({ topic: 'small', records: [{ value: new Uint8Array(
      2 * 1024 * 1024) }] }), { code: 'PMQ_ERR_RECORD_TOO_LARGE', message: /maxRecordBatchBytes/ },
    'refused locally over maxRecordBatchBytes');
    const consumer = client.consumer();
    await t.rejects(consumer.assign([{ topic: 'small', partition: 5 }]),
      PartitionOutOfRangeError);
    await admin.deleteTopic('small');
    await t.rejects(admin.deleteTopic('small'), UnknownTopicError);
    t.ok((await admin.listTopics()).every((x) => x.topic !== 'small'), 'deleted');
    await producer.close();
    await strict.close();
    await consumer.close();
  });

  const needsHooks = backend.hooks ? t.test.bind(t) : t.skip.bind(t);
  needsHooks('backpressure: send() waits when full; acks none does not', async (t) => {
    await client.admin().createTopic('slow', { partitions: 1 });
    await cluster.hooks!.call('holdAcks', { on: true });
    const producer = client.producer({ maxInFlightBytes: 4096, lingerMs: 0 });
    const value = new Uint8Array(1500);
    const states: string[] = [];
    const sends = [0, 1, 2, 3].map((i) => producer.send({ topic: 'slow', records: [{ value }] })
      .then(() => states.push(`acked ${i}`)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.same(states, [], 'nothing acknowledged while the broker holds acks');
    const quick = client.producer({ acks: 'none', lingerMs: 0 });
    const written = await quick.send({ topic: 'slow', records: [{ value: utf8.encode('q') }] });
    t.equal(written[0]!.partition, 0, 'acks none resolves once written, before durability');
    const stats = await cluster.hooks!.call('stats') as { reservations: number };
    // Two sends of 1.5 KiB fit in 4 KiB; sent in one turn they share one batch. The other two
    // wait in send(), not reserved. Plus the acks 'none' batch: 2 reservations in flight.
    t.equal(stats.reservations, 2, 'sends past maxInFlightBytes wait in send()');
    await cluster.hooks!.call('holdAcks', { on: false });
    await Promise.all(sends);
    t.same(states, ['acked 0', 'acked 1', 'acked 2', 'acked 3'], 'in order once released');
    await producer.close();
    await quick.close();
  });

  // Last: it kills this back end's broker (the teardown copes).
  t.test('broker down: NotConnectedError (retriable)', async (t) => {
    await client.admin().createTopic('gone', { partitions: 1 });
    const producer = client.producer({ retries: 1, retryBackoffMs: 50 });
    await producer.send({ topic: 'gone', records: [{ value: 'before' }] });
    await cluster.killBroker();
    const error = await producer.send({ topic: 'gone', records: [{ value: 'after' }] })
      .catch((e: unknown) => e);
    t.type(error, NotConnectedError);
    t.equal((error as NotConnectedError).retriable, true);
    await t.rejects(client.admin().listTopics(), NotConnectedError);
    await t.rejects(connect({ brokers: [cluster.address], ...CLIENT }), NotConnectedError,
      'connect to a dead broker');
  });
}

for (const backend of BACKENDS) {
  t.test(backend.name, async (t) => suite(t, backend));
}
