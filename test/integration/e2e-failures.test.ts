// Bad input end to end, against `pmq storage` + `pmq broker` processes through the client
// library: a storage node that is down (a retriable error for the producer; after it restarts
// sends succeed and nothing acknowledged before is lost); a region whose segments are all in use
// (a clear PMQ_ERR_REGION_FULL for the producer; everything acknowledged still reads back);
// malformed and truncated control messages from one client process (test/fixtures/e2e-rogue.ts):
// the broker drops that client's connections, other clients keep producing and consuming.
import t, { type Test } from 'tap';

import {
  connect, PmqError, type Client, type Consumer, type ConsumerRecord, type Producer,
} from '../../clients/index.js';
import { E2eCluster, runFixture } from '../helpers/e2e-cluster.js';

const CLIENT = { transports: 'tcp', netDevices: 'lo', logLevel: 'silent' } as const;
const text = new TextDecoder();

async function take(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  if (count === 0) return records;
  for await (const record of consumer) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

async function failureOf(promise: Promise<unknown>): Promise<PmqError | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof PmqError) return error;
    throw error;
  }
}

/** Acknowledged values, read back from the beginning of every partition of `topic`. */
async function readBack(client: Client, topic: string): Promise<ConsumerRecord[]> {
  const described = await client.admin().describeTopic(topic);
  const consumer = client.consumer({ start: 'earliest' });
  await consumer.subscribe(topic);
  const records: ConsumerRecord[] = [];
  // Control batches (hole fillers) take offsets but yield nothing: stop at the high watermarks.
  const ends = described.partitions.map((p) => p.highWatermark);
  if (ends.some((end) => end > 0)) {
    for await (const record of consumer) {
      records.push(record);
      const positions = consumer.positions();
      if (positions.every(({ partition, offset }) => offset >= ends[partition]!)) break;
    }
  }
  await consumer.close();
  return records;
}

function checkReadBack(t: Test, acked: Map<string, { partition: number; offset: number }>,
  records: ConsumerRecord[]): void {
  const read = new Map(records.map((r) => [text.decode(r.value!), r]));
  t.equal(read.size, records.length, 'no value read twice');
  const lost = [...acked].filter(([value, at]) => read.get(value)?.offset !== at.offset ||
    read.get(value)?.partition !== at.partition).map(([value]) => value);
  t.same(lost, [], `all ${acked.size} acknowledged records read back where acknowledged`);
}

async function sendAll(producer: Producer, topic: string, values: string[],
  acked: Map<string, { partition: number; offset: number }>): Promise<void> {
  const results = await producer.send({ topic, records: values.map((value) => ({
    key: value, value })) });
  results.forEach(({ partition, offset }, i) => acked.set(values[i]!, { partition, offset }));
}

t.test('storage node down: retriable error; after its restart sends succeed, nothing lost',
  async (t) => {
    const cluster = await E2eCluster.start({ reservationTimeoutMs: 1000 });
    t.teardown(() => cluster.stop());
    const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
    t.teardown(() => client.close());
    await client.admin().createTopic('fragile', { partitions: 2 });
    const producer = client.producer({ retries: 2, retryBackoffMs: 50, lingerMs: 1 });
    const acked = new Map<string, { partition: number; offset: number }>();
    await sendAll(producer, 'fragile', Array.from({ length: 300 }, (_, i) => `before-${i}`),
      acked);

    await cluster.killStorage();
    for (const partition of [0, 1]) {
      const error = await failureOf(producer.send({ topic: 'fragile', partition,
        records: [{ value: `down-${partition}` }] }));
      t.ok(error?.retriable, `partition ${partition}: ${error?.code} (retriable)`);
    }
    await cluster.startStorage();
    const sentAt = Date.now();
    let attempts = 0;
    for (;; attempts += 1) {
      const error = await failureOf(sendAll(producer, 'fragile', ['first-after'], acked));
      if (error === undefined) break;
      if (!error.retriable || Date.now() - sentAt > 20_000) throw error;
    }
    t.comment(`a send succeeded ${Date.now() - sentAt} ms after the storage node restarted ` +
      `(${attempts} failed attempts before)`);
    await sendAll(producer, 'fragile', Array.from({ length: 300 }, (_, i) => `after-${i}`),
      acked);
    await producer.close();
    const records = await readBack(client, 'fragile');
    checkReadBack(t, acked, records);
    const unacked = records.map((r) => text.decode(r.value!)).filter((v) => !acked.has(v));
    t.ok(unacked.every((v) => v.startsWith('down-')), 'nothing read that was never sent');
  });

t.test('region full: PMQ_ERR_REGION_FULL for the producer; everything acknowledged reads back',
  async (t) => {
    // 1 MiB of 64 KiB segments: 15 segments after the superblock and segment table.
    const cluster = await E2eCluster.start({ regionSize: '1MiB', segmentSize: '64KiB' });
    t.teardown(() => cluster.stop());
    const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
    t.teardown(() => client.close());
    await client.admin().createTopic('big', { partitions: 1 });
    await client.admin().createTopic('small', { partitions: 1 });
    const producer = client.producer({ retries: 1, retryBackoffMs: 20, lingerMs: 0 });
    const acked = new Map<string, { partition: number; offset: number }>();
    await sendAll(producer, 'small', ['small-0'], acked);
    let error: PmqError | undefined;
    for (let i = 0; error === undefined && i < 200; i += 1) {
      error = await failureOf(sendAll(producer, 'big', [`${i}:`.padEnd(20_000, 'x')], acked));
    }
    if (error === undefined) throw new Error('200 records of 20 KB did not fill 1 MiB');
    t.equal(error.code, 'PMQ_ERR_REGION_FULL', 'the producer is told the region is full');
    t.match(error.message, /region full/);
    t.equal(await failureOf(producer.send({ topic: 'small', records: [{ value: 'fits' }] })),
      undefined, 'a partition with room in its segment still takes records');
    acked.set('fits', { partition: 0, offset: 1 });
    // Metadata still changes with the region full: one segment is kept for the metadata log's
    // rotation (~700 commits of ~90 bytes fill one 64 KiB metadata segment).
    const committer = client.consumer({ groupId: 'full' });
    for (let i = 0; i < 800; i += 1) {
      await committer.commit([{ topic: 'big', partition: 0, offset: i }]);
    }
    t.equal(await committer.committed('big', 0), 799, 'group commits go on, the log rotated');
    await committer.close();
    checkReadBack(t, new Map([...acked].filter(([v]) => v !== 'small-0' && v !== 'fits')),
      await readBack(client, 'big'));
    checkReadBack(t, new Map([...acked].filter(([v]) => v === 'small-0' || v === 'fits')),
      await readBack(client, 'small'));
    await client.admin().deleteTopic('small');
    t.equal((await failureOf(producer.send({ topic: 'big', records: [{ value: 'freed' }] })))
      ?.code, undefined, 'deleting a topic frees a segment: the next send succeeds');
    await producer.close();
  });

interface RogueLine {
  case: string; closed?: boolean; ms?: number; answered?: string[]; reply?: string;
}
/** Schema failures with a usable id are answered and keep the connection (up to 16 in a row). */
const ANSWERED = new Set(['unknown wire version', 'field of the wrong type']);

t.test('malformed control messages: that client is dropped, the others keep working',
  async (t) => {
    const cluster = await E2eCluster.start();
    t.teardown(() => cluster.stop());
    const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
    t.teardown(() => client.close());
    await client.admin().createTopic('steady', { partitions: 1 });
    const consumer = client.consumer({ start: 'earliest', maxWaitMs: 5000 });
    await consumer.assign([{ topic: 'steady', partition: 0 }]);
    const received = take(consumer, 3);
    const producer = client.producer({ lingerMs: 0 });
    await producer.send({ topic: 'steady', records: [{ value: 'one' }] });

    const rogue = runFixture<RogueLine>('e2e-rogue.ts', cluster.brokerAddress);
    const during = producer.send({ topic: 'steady', records: [{ value: 'two' }] });
    const lines = await rogue.done;
    await during;
    await producer.send({ topic: 'steady', records: [{ value: 'three' }] });
    const cases = lines.filter((line) => line.closed !== undefined);
    t.equal(cases.length, 8);
    for (const line of cases) {
      if (ANSWERED.has(line.case)) {
        t.notOk(line.closed, `${line.case}: connection kept`);
        t.same(line.answered, ['PMQ_ERR_PROTOCOL'], `${line.case}: answered PMQ_ERR_PROTOCOL`);
      } else {
        t.ok(line.closed, `${line.case}: connection dropped (after ${line.ms} ms)`);
      }
    }
    t.equal(cases.at(-1)!.answered!.length, 16, 'the first 16 in a row were answered');
    t.same(lines.at(-1), { case: 'well-formed hello', reply: 'welcome' },
      'the same process is served again on a new connection with good messages');
    t.same((await received).map((r) => text.decode(r.value!)), ['one', 'two', 'three'],
      'the other client produced and consumed throughout');
    t.equal(cluster.broker!.child.exitCode, null, 'the broker is still running');
    await producer.close();
    await consumer.close();
  });
