// End to end through the client library against `pmq storage` (64 KiB segments) + `pmq broker`
// as processes: keys land where Kafka's murmur2 puts them; a partition spanning many segments
// reads back whole; committed group offsets and topics survive a SIGKILL of the broker, and a
// consumer process of the same group continues exactly after the committed offset.
// (broker.test.ts covers the same restart at the protocol level; this is the client's view.)
import { readFileSync } from 'node:fs';

import t, { type Test } from 'tap';

import { partitionForKey } from '../../common/partitioner.js';
import { connect, type Client, type ConsumerRecord, type Consumer } from '../../clients/index.js';
import { E2eCluster, runFixture } from '../helpers/e2e-cluster.js';

const cluster = await E2eCluster.start({ regionSize: '16MiB', segmentSize: '64KiB' });
let client: Client = await connect({ brokers: [cluster.brokerAddress], transports: 'tcp',
  netDevices: 'lo', clientId: 'e2e-cluster' });
t.teardown(async () => {
  await client.close();
  await cluster.stop();
});

const text = new TextDecoder();
const utf8 = new TextEncoder();

async function take(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  if (count === 0) return records;
  for await (const record of consumer) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

/** mulberry32: a seeded PRNG, so that a failure replays from the printed seed. */
function prngFrom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

// Kafka's UtilsTest.testMurmur2 vectors (key → Utils.murmur2), as in test/unit/partitioner.
const KAFKA_VECTORS: readonly [string, number][] = [
  ['21', -973932308], ['foobar', -790332482], ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971], ['abc', 479470107],
];

t.test('keyed records land on the partition Kafka\'s murmur2 picks, end to end', async (t) => {
  const partitions = 7;
  await client.admin().createTopic('keyed', { partitions });
  const seed = Date.now() % 1_000_000;
  t.comment(`seed ${seed}`);
  const random = prngFrom(seed);
  const keys = [...KAFKA_VECTORS.map(([key]) => key), 'é', '', ...Array.from({ length: 500 },
    () => `user-${Math.floor(random() * 1e9).toString(36)}-${String.fromCharCode(0x400 +
      Math.floor(random() * 200))}`)];
  // Kafka: Utils.toPositive(murmur2(key)) % numPartitions.
  const expected = new Map(keys.map((key) => [key, partitionForKey(utf8.encode(key),
    partitions)]));
  for (const [key, hash] of KAFKA_VECTORS) expected.set(key, (hash & 0x7fffffff) % partitions);
  const producer = client.producer({ lingerMs: 2 });
  const sent = await producer.send({ topic: 'keyed', records: keys.map((key, i) => ({ key,
    value: String(i) })) });
  await producer.close();
  const misplaced = sent.filter((r, i) => r.partition !== expected.get(keys[i]!));
  t.same(misplaced, [], 'the producer placed every key as Kafka would');
  const consumer = client.consumer({ start: 'earliest' });
  await consumer.subscribe('keyed');
  const records = await take(consumer, keys.length);
  await consumer.close();
  const wrong = records.filter((r) => r.partition !== expected.get(text.decode(r.key!)));
  t.same(wrong.map((r) => text.decode(r.key!)), [], 'every record read from its key\'s partition');
  t.equal(new Set(records.map((r) => text.decode(r.value!))).size, keys.length, 'all read back');
  t.same(KAFKA_VECTORS.map(([key]) => expected.get(key)), [3, 0, 1, 0, 3, 4],
    'the Kafka vectors\' partitions of 7 (toPositive(hash) % 7, computed outside JS)');
});

t.test('a partition spanning many 64 KiB segments reads back whole', async (t) => {
  await client.admin().createTopic('roll', { partitions: 1 });
  const seed = Date.now() % 1_000_000;
  t.comment(`seed ${seed}`);
  const random = prngFrom(seed);
  const producer = client.producer({ lingerMs: 1, maxBatchBytes: 16 * 1024 });
  const values: string[] = [];
  const sends = [];
  for (let i = 0; i < 1500; i += 1) {
    // 1..3000 bytes: batches of every size meet the segment ends at every position.
    const value = `${i}:`.padEnd(1 + Math.floor(random() * 3000), String.fromCharCode(97 + i % 26));
    values.push(value);
    sends.push(producer.send({ topic: 'roll', partition: 0, records: [{ value }] }));
  }
  const offsets = (await Promise.all(sends)).map((r) => r[0]!.offset);
  await producer.close();
  t.same(offsets, values.map((_, i) => i), 'offsets follow send order');
  const described = await client.admin().describeTopic('roll');
  const { segments, highWatermark } = described.partitions[0]!;
  t.ok(segments >= 20, `${segments} segments`);
  t.equal(highWatermark, values.length);
  const consumer = client.consumer({ start: 'earliest', readChunkBytes: 48 * 1024 });
  await consumer.assign([{ topic: 'roll', partition: 0 }]);
  const records = await take(consumer, values.length);
  await consumer.close();
  t.same(records.map((r) => r.offset), offsets, 'dense offsets 0..n-1 across segment rolls');
  t.ok(records.every((r, i) => text.decode(r.value!) === values[i]), 'every value intact');
});

function consumedLines(path: string): [number, number, string][] {
  const content = readFileSync(path, 'utf8');
  if (content.length === 0) return [];
  return content.split('\n').map((line) => {
    const [partition, offset, id] = line.split(' ');
    return [Number(partition), Number(offset), id!];
  });
}

interface Done { event: string; positions?: [number, number][]; acked?: number; failed?: number }

t.test('topics and committed group offsets survive a broker SIGKILL; the group continues',
  async (t) => {
    await client.admin().createTopic('orders', { partitions: 4 });
    const broker = cluster.brokerAddress; // the restarted broker listens on the same port
    const produce = (producer: number, count: number) => runFixture<Done>('e2e-producer.ts',
      { broker, topic: 'orders', producer, count, valueBytes: 64, chunk: 100, window: 4,
        ackFile: `${cluster.dir}/orders-acks-${producer}` }).done;
    t.equal((await produce(0, 2000)).at(-1)!.acked, 2000);
    const half = (await client.admin().describeTopic('orders')).partitions
      .map((p) => Math.floor(p.highWatermark / 2));
    const first = runFixture<Done>('e2e-consumer.ts', { broker, topic: 'orders', partitions:
      [0, 1, 2, 3], valueBytes: 64, outFile: `${cluster.dir}/orders-first`, groupId: 'billing',
      start: 'committed', commit: true });
    first.tell({ until: Object.fromEntries(half.map((offset, p) => [String(p), offset])) });
    const committed = new Map((await first.done).at(-1)!.positions!);
    t.ok([...committed].every(([p, offset]) => offset >= half[p]!), `committed ${[...committed]}`);
    const topicsBefore = await client.admin().listTopics();

    await cluster.killBroker();
    await cluster.startBroker();
    await client.close();
    client = await connect({ brokers: [cluster.brokerAddress], transports: 'tcp',
      netDevices: 'lo', clientId: 'e2e-cluster' });
    t.same(await client.admin().listTopics(), topicsBefore, 'topic list unchanged');
    const reader = client.consumer({ groupId: 'billing' });
    for (const [partition, offset] of committed) {
      t.equal(await reader.committed('orders', partition), offset, `p${partition} committed`);
    }
    await reader.close();

    t.equal((await produce(1, 500)).at(-1)!.acked, 500, 'produce after the restart');
    const end = (await client.admin().describeTopic('orders')).partitions
      .map((p) => p.highWatermark);
    const second = runFixture<Done>('e2e-consumer.ts', { broker, topic: 'orders', partitions:
      [0, 1, 2, 3], valueBytes: 64, outFile: `${cluster.dir}/orders-second`,
      groupId: 'billing', start: 'committed' });
    second.tell({ until: Object.fromEntries(end.map((offset, p) => [String(p), offset])) });
    await second.done;
    checkContinues(t, consumedLines(`${cluster.dir}/orders-first`),
      consumedLines(`${cluster.dir}/orders-second`), committed, end);
  });

/** The first run read [0, committed) densely, the second exactly [committed, end). */
function checkContinues(t: Test, firstRun: [number, number, string][],
  secondRun: [number, number, string][], committed: Map<number, number>, end: number[]): void {
  for (const [partition, offset] of committed) {
    const before = firstRun.filter(([p]) => p === partition).map(([, o]) => o);
    const after = secondRun.filter(([p]) => p === partition).map(([, o]) => o);
    t.same(before, Array.from({ length: offset }, (_, i) => i), `p${partition}: first run`);
    t.same(after, Array.from({ length: end[partition]! - offset }, (_, i) => offset + i),
      `p${partition}: the group continued at ${offset}, up to ${end[partition]}`);
  }
  const ids = [...firstRun, ...secondRun].map(([, , id]) => id);
  t.equal(new Set(ids).size, 2500, 'every record once across the two runs');
}
