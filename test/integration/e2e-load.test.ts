// End to end under load: `pmq storage` (1 MiB segments) + `pmq broker` as processes, 4 producer
// processes and 2 consumer processes (test/fixtures/e2e-*.ts) over the client library, 200,000
// records with unique values and keys spread over 8 partitions. Proves: every acknowledged record
// is consumed exactly once, at the offset it was acknowledged with; each partition's offsets are
// dense from 0 (no control batches in this run: consumed count = high watermark); every batch
// passed the consumer's CRC check and every value its content check; a producer's records on a
// partition got increasing offsets in send order. PMQ_E2E_RECORDS sets a smaller count for quick
// local runs (CI runs the default).
import { readFileSync } from 'node:fs';

import t, { type Test } from 'tap';

import { connect } from '../../clients/index.js';
import { E2eCluster, runFixture } from '../helpers/e2e-cluster.js';

const RECORDS = Number(process.env.PMQ_E2E_RECORDS ?? 200_000);
const PRODUCERS = 4;
const PARTITIONS = 8;
const VALUE_BYTES = 200;
const TOPIC = 'load';

interface Done { event: string; acked?: number; failed?: number; codes?: Record<string, number>;
  records?: number; bad?: number; ms?: number; code?: string }

const cluster = await E2eCluster.start({ regionSize: '128MiB', segmentSize: '1MiB' });
const client = await connect({ brokers: [cluster.brokerAddress], transports: 'tcp',
  netDevices: 'lo', clientId: 'e2e-load' });
t.teardown(async () => {
  await client.close();
  await cluster.stop();
});

function lines(path: string): string[][] {
  const text = readFileSync(path, 'utf8');
  return text.length === 0 ? [] : text.split('\n').map((line) => line.split(' '));
}

t.test(`${PRODUCERS} producers × ${PARTITIONS} partitions × 2 consumers, ${RECORDS} records`,
  async (t) => {
    await client.admin().createTopic(TOPIC, { partitions: PARTITIONS });
    const consumers = [[0, 1, 2, 3], [4, 5, 6, 7]].map((partitions, i) =>
      runFixture<Done>('e2e-consumer.ts', { broker: cluster.brokerAddress, topic: TOPIC,
        partitions, valueBytes: VALUE_BYTES, outFile: `${cluster.dir}/consumed-${i}` }));
    await Promise.all(consumers.map((c) => c.waitFor((line) => line.event === 'ready')));
    const started = Date.now();
    const perProducer = Math.ceil(RECORDS / PRODUCERS);
    const producers = Array.from({ length: PRODUCERS }, (_, i) => runFixture<Done>(
      'e2e-producer.ts', { broker: cluster.brokerAddress, topic: TOPIC, producer: i,
        count: Math.min(perProducer, RECORDS - i * perProducer), valueBytes: VALUE_BYTES,
        chunk: 1000, window: 8, ackFile: `${cluster.dir}/acks-${i}`,
        options: { maxBatchBytes: 64 * 1024, lingerMs: 5 } }));
    const produced = (await Promise.all(producers.map((p) => p.done))).map((l) => l.at(-1)!);
    const producedMs = Date.now() - started;
    t.same(produced.map((p) => p.failed), produced.map(() => 0), 'no send failed',
      { codes: produced.map((p) => p.codes) });

    const described = await client.admin().describeTopic(TOPIC);
    const highWatermarks = described.partitions.map((p) => p.highWatermark);
    const until = Object.fromEntries(highWatermarks.map((hw, p) => [String(p), hw]));
    for (const consumer of consumers) consumer.tell({ until });
    const consumed = (await Promise.all(consumers.map((c) => c.done))).map((l) => l.at(-1)!);
    const consumedMs = Date.now() - started;

    checkAcked(t, highWatermarks);
    checkConsumed(t, highWatermarks, consumed);
    const segments = described.partitions.map((p) => p.segments);
    t.ok(segments.every((s) => s >= 2), 'every partition spans several segments');
    const sendingMs = Math.max(...produced.map((p) => p.ms!));
    t.comment(`${RECORDS} records (${VALUE_BYTES}-byte values): all acknowledged ` +
      `${producedMs} ms ` +
      `after the producer processes were spawned (${rate(producedMs)} records/s; ` +
      `${rate(sendingMs)} records/s over the slowest producer's sending time, ${sendingMs} ms), ` +
      `all consumed after ${consumedMs} ms (${rate(consumedMs)} records/s end to end); ` +
      `per partition ${highWatermarks.join(', ')} records in ${segments.join(', ')} segments`);
  });

function rate(ms: number): number {
  return Math.round(RECORDS / ms * 1000);
}

/** Acks: every record once, offsets unique per partition and increasing in send order. */
function checkAcked(t: Test, highWatermarks: number[]): void {
  const owner = new Map<string, string>();
  let acked = 0;
  let problems = 0;
  for (let producer = 0; producer < PRODUCERS; producer += 1) {
    const lastOffset = new Array<number>(PARTITIONS).fill(-1);
    for (const [seq, partition, offset] of lines(`${cluster.dir}/acks-${producer}`)) {
      const p = Number(partition);
      const o = Number(offset);
      if (o <= lastOffset[p]!) problems += 1;
      lastOffset[p] = o;
      const at = `${p} ${o}`;
      if (owner.has(at)) problems += 1;
      owner.set(at, `${producer}:${seq}`);
      acked += 1;
    }
  }
  t.equal(acked, RECORDS, 'every record acknowledged');
  t.equal(problems, 0, 'acknowledged offsets unique and in send order per producer');
  // Above RECORDS by the offsets of control batches: the gaps of leases closed with unwritten
  // room (an idle producer's lease with another producer's after it), which consumers skip.
  const offsets = highWatermarks.reduce((a, b) => a + b, 0);
  t.ok(offsets >= RECORDS, `high watermarks add up (${offsets - RECORDS} control offsets)`);
  ackedOwners = owner;
}

let ackedOwners = new Map<string, string>();

function checkConsumed(t: Test, highWatermarks: number[], consumed: Done[]): void {
  t.same(consumed.map((c) => c.bad), [0, 0], 'every value passed its content check');
  const next = new Array<number>(PARTITIONS).fill(0);
  const seen = new Set<string>();
  let gaps = 0;
  let duplicates = 0;
  let mismatched = 0;
  for (const file of [0, 1]) {
    for (const [partition, offset, id] of lines(`${cluster.dir}/consumed-${file}`)) {
      const p = Number(partition);
      if (Number(offset) < next[p]!) gaps += 1; // gaps up are control batches, skipped
      next[p] = Number(offset) + 1;
      if (seen.has(id!)) duplicates += 1;
      seen.add(id!);
      if (ackedOwners.get(`${p} ${offset}`) !== id) mismatched += 1;
    }
  }
  t.equal(seen.size, RECORDS, 'every acknowledged record consumed');
  t.equal(duplicates, 0, 'none twice');
  t.equal(gaps, 0, 'offsets in order per partition');
  t.equal(mismatched, 0, 'each record read at the offset it was acknowledged with');
  t.ok(next.every((end, p) => end <= highWatermarks[p]! && highWatermarks[p]! - end <= 2),
    'read up to each high watermark (a control batch of 1 or 2 offsets may end a partition)');
}
