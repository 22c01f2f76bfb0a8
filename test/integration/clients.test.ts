// The client library, end to end, against two back ends (every test that needs no test hook
// runs on both):
// - real: `pmq storage` (a region in /dev/shm, 64 KiB segments) + `pmq broker`, two processes;
// - fixture: test/fixtures/mini-cluster.ts, a broker + storage node in one process on a real
//   UCX transport, real memory behind native grants, with hooks (hold acks, control batches,
//   lease and append counts). A released lease's rest is a control batch on the real broker
//   and given back on the fixture: offsets stay dense only there (REST_OFFSETS_MAX).
// In both, the clients' writes and reads go through writeValidated/readValidated, checked by
// the storage side's native grant table. No mocks of UCX.
import t, { type Test } from 'tap';

import { partitionForKey } from '../../common/partitioner.js';
import {
  connect, NotConnectedError, PartitionOutOfRangeError, RecordTooLargeError, TopicExistsError,
  UnknownTopicError, type Client, type ConsumerRecord, type Consumer,
} from '../../clients/index.js';
import { startBroker, startStorage, tempDir } from '../helpers/broker-cluster.js';
import {
  startMiniCluster, type MiniCluster, type MiniClusterStats,
} from '../helpers/mini-cluster.js';

const utf8 = new TextEncoder();
const text = new TextDecoder();
const SEGMENT_BYTES = 64 * 1024;
/**
 * Offsets a closed lease's unwritten rest takes: the real broker fills it with one control
 * batch of 1 or 2 records (consumers skip it; the reader checks that the stored offsets stay
 * dense); the fixture gives a rest at the segment's tail back instead, so its offsets are dense.
 */
const REST_OFFSETS_MAX = { real: 2, fixture: 0 } as const;

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

  const restOffsetsMax = backend.hooks ? REST_OFFSETS_MAX.fixture : REST_OFFSETS_MAX.real;

  t.test('produce to 4 partitions, consume back exactly once, in order', async (t) => {
    await client.admin().createTopic('orders', { partitions: 4 });
    const producer = client.producer({ maxBatchBytes: 8192, lingerMs: 2 });
    const sends = [];
    const total = 3000;
    // Recent timestamps: the broker's default retention.ms (7 days) deletes older segments.
    const stamp = Date.now();
    for (let i = 0; i < total; i += 1) {
      const key = i % 3 === 0 ? null : `customer-${i % 17}`;
      sends.push(producer.send({ topic: 'orders', records: [{ key, value: `order-${i}`.padEnd(90),
        headers: { n: String(i) }, timestamp: stamp + i }] }));
    }
    const results = (await Promise.all(sends)).map((r) => r[0]!);
    await producer.close();
    // Once a lease told each partition's topic id, appends went in the fixed layout (wire v8).
    const stats = client.stats();
    t.ok(stats.fixedRequests > 0 && stats.fixedRequests >= (stats.requests.append ?? 0) - 4,
      `${stats.fixedRequests} fixed-layout requests for ${stats.requests.append} appends`);
    const described = await client.admin().describeTopic('orders');
    const watermarks = described.partitions.map((p) => p.highWatermark);
    const sum = watermarks.reduce((s, w) => s + w, 0);
    if (restOffsetsMax === 0) t.equal(sum, total, 'high watermarks add up');
    else t.ok(sum >= total, `high watermarks add up to ${sum}: the records and lease rests`);
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
      // A batch that did not fit its lease's rest went to a new lease (in a new segment): the
      // rest left behind is a control batch on the real broker.
      const gap = record.offset - next[record.partition]!;
      if (gap < 0 || gap > restOffsetsMax) t.fail(`offset gap of ${gap} at ${record.offset}`);
      next[record.partition] = record.offset + 1;
      const sent = results[i]!;
      if (sent.partition !== record.partition || sent.offset !== record.offset) {
        t.fail(`record ${i}: sent to ${sent.partition}@${sent.offset}, read at ` +
          `${record.partition}@${record.offset}`);
      }
      if (i % 3 !== 0 && record.partition !== partitionForKey(record.key!, 4)) {
        t.fail(`record ${i}: key not on its murmur2 partition`);
      }
      if (record.timestamp !== stamp + i) t.fail(`record ${i}: timestamp`);
      if (text.decode(record.headers[0]!.value!) !== String(i)) t.fail(`record ${i}: header`);
    }
    t.equal(seen.size, total, 'every record exactly once');
    // The producer's close releases its leases without waiting: their rests may be filled.
    const tails = next.map((n, p) => watermarks[p]! - n);
    t.ok(tails.every((tail) => tail >= 0 && tail <= restOffsetsMax),
      `up to the watermark (beyond the last records: ${tails.join(', ')})`);
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

  t.test('a steady producer appends its batches under one lease; close releases it',
    async (t) => {
      await client.admin().createTopic('steady', { partitions: 1 });
      const stats = async (): Promise<MiniClusterStats | undefined> =>
        await cluster.hooks?.call('stats') as MiniClusterStats | undefined;
      const before = await stats();
      const producer = client.producer({ lingerMs: 0 });
      const offsets: number[] = [];
      for (let i = 0; i < 20; i += 1) {
        const [sent] = await producer.send({ topic: 'steady', records: [{ value: `s${i}` }] });
        offsets.push(sent!.offset);
      }
      t.same(offsets, Array.from({ length: 20 }, (_, i) => i), 'a batch per send, back to back');
      const during = await stats();
      if (before !== undefined && during !== undefined) {
        t.equal(during.appends - before.appends, 20, '20 batches appended');
        t.equal(during.leasesGranted - before.leasesGranted, 1, 'all under one lease');
      }
      await producer.close();
      if (before !== undefined) {
        // close() waits for the release (bounded); the fixture counts it a little later.
        let open = (await stats())!.leasesOpen;
        for (let polls = 0; open !== before.leasesOpen && polls < 100; polls += 1) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          open = (await stats())!.leasesOpen;
        }
        t.equal(open, before.leasesOpen, 'closing the producer released its lease');
      }

      const again = client.producer({ lingerMs: 0 });
      const [after] = await again.send({ topic: 'steady', records: [{ value: 'after' }] });
      await again.close();
      const { segments } = (await client.admin().describeTopic('steady')).partitions[0]!;
      // The fixture and the real broker alike: the released rest at the segment's end went
      // back (the broker revoked the lease's grant first), so no control batch, no offset.
      t.equal(after!.offset, 20, 'the released rest was given back (no control batch)');
      t.equal(segments, 1, 'and the next lease continued in the same segment');
      const consumer = client.consumer({ start: 'earliest' });
      await consumer.assign([{ topic: 'steady', partition: 0 }]);
      const records = await take(consumer, 21);
      await consumer.close();
      t.same(records.map((r) => text.decode(r.value!)),
        [...offsets.map((i) => `s${i}`), 'after'], 'read back in order (control batches skipped)');
      t.same(records.map((r) => r.offset), [...offsets, after!.offset], 'at their acked offsets');
    });

  t.test('leases side by side: a released rest between them becomes a control batch',
    async (t) => {
      await client.admin().createTopic('shared', { partitions: 1 });
      const first = client.producer({ lingerMs: 0, leaseBytes: 2048 });
      const second = client.producer({ lingerMs: 0, leaseBytes: 2048 });
      const [a] = await first.send({ topic: 'shared', records: [{ value: 'a' }] });
      // The second lease starts after the first one's 2 KiB: its batch gets an offset (and is
      // acknowledged) only once the first lease's rest is filled, when that lease is released
      // (its producer is idle).
      const [b] = await second.send({ topic: 'shared', records: [{ value: 'b' }] });
      await first.close();
      await second.close();
      t.equal(a!.offset, 0);
      t.ok(b!.offset === 2 || b!.offset === 3,
        `the rest between the batches took 1 or 2 offsets (b at ${b!.offset})`);
      const consumer = client.consumer({ start: 'earliest' });
      await consumer.assign([{ topic: 'shared', partition: 0 }]);
      const records = await take(consumer, 2);
      await consumer.close();
      t.same(records.map((r) => [r.offset, text.decode(r.value!)]),
        [[0, 'a'], [b!.offset, 'b']], 'the control batch skipped');
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
    // Two sends of 1.5 KiB fit in 4 KiB; sent in one turn they share one batch. The other two
    // wait in send(), not appended. Plus the acks 'none' batch (its append follows the write
    // that resolved its send, so it may still be on its way): 2 appends awaiting their acks.
    let stats = await cluster.hooks!.call('stats') as MiniClusterStats;
    for (let polls = 0; stats.appendsInFlight < 2 && polls < 100; polls += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      stats = await cluster.hooks!.call('stats') as MiniClusterStats;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    stats = await cluster.hooks!.call('stats') as MiniClusterStats;
    t.equal(stats.appendsInFlight, 2, 'sends past maxInFlightBytes wait in send()');
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
