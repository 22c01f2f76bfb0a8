// Capacity end to end (issue 12), against `pmq storage` + `pmq broker` processes: a topic of
// 1 000 partitions on a `pmq dev`-sized region (1 GiB, segments sized to need) takes a record
// in every partition and reads all of them back; a region that fills up answers the producer
// with PMQ_ERR_REGION_FULL before a single retry could have happened (its retry backoff is
// 5 s: a fast answer is one that came sooner), saying what to do, and loses nothing it
// acknowledged; `pmq topic create` warns when the partitions cannot all get a segment.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import {
  connect, PmqError, type Client, type ConsumerRecord,
} from '../../clients/index.js';
import { E2eCluster } from '../helpers/e2e-cluster.js';

const CLIENT = { transports: 'tcp', netDevices: 'lo', logLevel: 'silent' } as const;
const PMQ = fileURLToPath(new URL('../../cli/pmq.ts', import.meta.url));
const text = new TextDecoder();

/** Every record of `topic` up to the partitions' high watermarks, from the beginning. */
async function readAll(client: Client, topic: string): Promise<ConsumerRecord[]> {
  const described = await client.admin().describeTopic(topic);
  const ends = described.partitions.map((p) => p.highWatermark);
  const consumer = client.consumer({ start: 'earliest' });
  await consumer.subscribe(topic);
  const records: ConsumerRecord[] = [];
  if (ends.some((end) => end > 0)) {
    for await (const record of consumer) {
      records.push(record);
      if (consumer.positions().every(({ partition, offset }) => offset >= ends[partition]!)) {
        break;
      }
    }
  }
  await consumer.close();
  return records;
}

t.test('1 000 partitions on a 1 GiB region: a record each, all read back', async (t) => {
  const cluster = await E2eCluster.start({ regionSize: '1GiB', segmentSize: '64MiB' });
  t.teardown(() => cluster.stop());
  const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
  t.teardown(() => client.close());
  const created = await client.admin().createTopic('wide', { partitions: 1000 });
  t.equal(created.warning, null, 'no warning: the region has room for every partition');
  const producer = client.producer({ lingerMs: 0 });
  const sends: Promise<unknown>[] = [];
  for (let partition = 0; partition < 1000; partition += 1) {
    sends.push(producer.send({ topic: 'wide', partition,
      records: [{ value: `record of partition ${partition}` }] }));
    if (sends.length === 50) await Promise.all(sends.splice(0));
  }
  await Promise.all(sends);
  // W2's records (1 MiB) into a partition whose first segment is 256 KiB: the next segment is
  // allocated to hold the batch.
  const large = new Uint8Array(1023 * 1024).fill(0x6c); // with its batch: the 1 MiB maximum
  const [big] = await producer.send({ topic: 'wide', partition: 999, records: [{ value: large }] });
  t.equal(big?.offset, 1, 'a ~1 MiB record after a 256 KiB first segment');
  await producer.close();
  const described = await client.admin().describeTopic('wide');
  t.ok(described.partitions.every((p) => p.highWatermark === (p.partition === 999 ? 2 : 1)),
    'one record in every partition (two in the last)');
  t.equal(described.partitions[999]?.segments, 2, 'the large record went into a new segment');
  const all = await readAll(client, 'wide');
  const records = all.filter((r) => r.offset === 0);
  t.equal(all.find((r) => r.offset === 1)?.value?.byteLength, 1023 * 1024, 'read back whole');
  t.equal(records.length, 1000);
  const wrong = records.filter((r) => text.decode(r.value!) !== `record of partition ` +
    `${r.partition}` || r.offset !== 0);
  t.same(wrong, [], 'each partition holds its own record at offset 0');
  t.equal(new Set(records.map((r) => r.partition)).size, 1000, 'all 1 000 partitions');
});

t.test('a full region: PMQ_ERR_REGION_FULL before any retry, nothing acknowledged lost; ' +
  'topic create warns', async (t) => {
  // 4 MiB of segments from 256 KiB up to 1 MiB: about a dozen first segments.
  const cluster = await E2eCluster.start({ regionSize: '4MiB', segmentSize: '1MiB',
    storageFlags: ['--first-segment-size', '256KiB'] });
  t.teardown(() => cluster.stop());
  const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
  t.teardown(() => client.close());
  const created = await client.admin().createTopic('many', { partitions: 64 });
  t.match(created.warning, /room for about \d+ more first segments, and 64 partitions/,
    'the client is warned at create time');
  // A retry would come 5 s after the first try at the earliest: an error sooner is the answer.
  const RETRY_BACKOFF_MS = 5000;
  const producer = client.producer({ lingerMs: 0, retries: 5, retryBackoffMs: RETRY_BACKOFF_MS });
  const acked = new Map<number, number>();
  let full: { error: PmqError; ms: number } | null = null;
  for (let partition = 0; partition < 64 && full === null; partition += 1) {
    const started = performance.now();
    try {
      const [meta] = await producer.send({ topic: 'many', partition,
        records: [{ value: `p${partition}` }] });
      acked.set(partition, meta!.offset);
    } catch (error) {
      if (!(error instanceof PmqError)) throw error;
      full = { error, ms: performance.now() - started };
    }
  }
  if (full === null) throw new Error('64 first segments fitted a 4 MiB region');
  t.equal(full.error.code, 'PMQ_ERR_REGION_FULL');
  t.match(full.error.message, /region full.*(delete topics|free sealed segments)/,
    'the message says what to do');
  t.equal(full.error.retriable, false, 'final: retrying does not make room');
  t.ok(full.ms < RETRY_BACKOFF_MS, `answered in ${Math.round(full.ms)} ms, before the first ` +
    `retry could have been sent (${RETRY_BACKOFF_MS} ms)`);
  t.ok(acked.size >= 5, `${acked.size} partitions got a segment first`);
  // A partition with a segment still takes records.
  const [again] = await producer.send({ topic: 'many', partition: 0,
    records: [{ value: 'p0 again' }] });
  t.equal(again?.offset, 1);
  await producer.close();
  const records = await readAll(client, 'many');
  const read = new Map(records.map((r) => [text.decode(r.value!), r]));
  const lost = [...acked].filter(([partition, offset]) =>
    read.get(`p${partition}`)?.offset !== offset || read.get(`p${partition}`)?.partition !==
      partition);
  t.same(lost, [], 'every acknowledged record reads back where it was acknowledged');
  // The CLI prints the warning (a user asking for 1 024 partitions of this region).
  const cli = spawn(process.execPath, ['--import', 'tsx', PMQ, 'topic', 'create', 'huge',
    '--partitions', '1024', '--broker', cluster.brokerAddress, '--transports', 'tcp'],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  let stderr = '';
  cli.stderr.on('data', (chunk: Buffer) => { stderr += String(chunk); });
  const [code] = await once(cli, 'close');
  t.equal(code, 0, 'the topic is created all the same');
  t.match(stderr, /pmq: warning: the storage nodes have room for about \d+ more first segments/);
});
