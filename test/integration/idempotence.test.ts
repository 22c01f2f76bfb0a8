// Idempotent producers against the real processes: `pmq broker` over one `pmq storage`, this
// process as the producer (lease → validated write → append, batch headers carrying the
// producer id and sequence). A retried batch is stored once — while in flight, once durable,
// and after a broker restart (state rebuilt from the batch headers); a batch whose append never
// came is not stored, and its retry is.
import t from 'tap';

import { PmqError } from '../../common/errors.js';
import {
  decodeRecordBatch, encodeRecordBatch, type RecordInput,
} from '../../common/record-batch/index.js';
import type { Message } from '../../common/wire/messages.js';
import {
  Client, exitOf, startBroker, startStorage, tempDir, type Proc,
} from '../helpers/broker-cluster.js';

const { dir, remove } = tempDir('pmq-idem-');
const storage = [await startStorage(`${dir}/region-1`, 1)];
const BROKER_ARGS = ['--reservation-timeout-ms', '600'];
let broker: Proc = await startBroker(`${dir}/data`, storage, BROKER_ARGS);
const client = new Client();
let welcome = await client.connect(broker);
t.teardown(async () => {
  client.transport.close();
  broker.child.kill('SIGKILL');
  for (const node of storage) node.child.kill('SIGKILL');
  remove();
});

const TOPIC = 'idem';
const text = new TextEncoder();
const decoder = new TextDecoder();
await client.call('topicCreate', { configs: [], topic: TOPIC, partitions: 1 });
const init = await client.call('producerInit', {}) as Message<'producerId'>;
const { producerId, producerEpoch } = init;

interface Batch { bytes: Uint8Array; records: number; sequence: number }

/** A batch of `count` values `${name}-i` (padded), with the producer's id and sequence. */
function batchOf(name: string, count: number, sequence: number, padBytes = 8): Batch {
  const records: RecordInput[] = Array.from({ length: count }, (_, i) =>
    ({ value: text.encode(`${name}-${i}|`.padEnd(padBytes, '.')) }));
  return { bytes: encodeRecordBatch(records, { producerId, producerEpoch,
    baseSequence: sequence }), records: count, sequence };
}

interface Written { lease: Message<'leased'>; batch: Batch; position: number }

function lease(bytes: number): Promise<Message<'leased'>> {
  return client.call('lease', { topic: TOPIC, partition: 0, bytes, bytesMin: bytes,
    releaseEpoch: 0, releaseId: -1 }) as Promise<Message<'leased'>>;
}

/** Writes the batch at the start of a new lease of exactly its size. */
async function write(batch: Batch, into?: Message<'leased'>): Promise<Written> {
  const l = into ?? await lease(batch.bytes.byteLength);
  const node = welcome.storageNodes.find((n) => n.nodeId === l.nodeId)!;
  await client.transport.writeValidated(await client.storage(node.nodeId, node.host, node.port),
    { id: l.grantId, epoch: l.grantEpoch, key: l.grantKey }, l.address, batch.bytes, 0,
    batch.bytes.byteLength);
  return { lease: l, batch, position: l.position };
}

function append(w: Written): Promise<Message> {
  return client.call('append', { topic: TOPIC, partition: 0, epoch: w.lease.epoch,
    leaseId: w.lease.leaseId, position: w.position, bytes: w.batch.bytes.byteLength,
    records: w.batch.records, producerId, sequence: w.batch.sequence });
}

async function produce(batch: Batch): Promise<number> {
  const reply = await append(await write(batch));
  if (reply.kind !== 'acked') throw new Error(`append answered ${reply.kind}`);
  return reply.baseOffset;
}

/** The batch written again (a new lease) and appended again: a retry after a lost ack. */
async function resend(batch: Batch): Promise<Message> {
  return append(await write(batch));
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

/**
 * Every value of the partition, in offset order (control batches skipped). A view's segment is
 * read from its start, so records below the offset asked for are skipped: a fill persisted
 * between two views (a released lease's) makes the second view name the same segment again.
 */
async function consumeAll(): Promise<string[]> {
  const values: string[] = [];
  let offset = 0;
  for (;;) {
    const view = await client.call('fetchView', { topic: TOPIC, partition: 0, offset,
      waitMs: 0 }) as Message<'view'>;
    const segment = view.segment[0];
    if (segment === undefined || offset >= view.highWatermark) return values;
    const node = welcome.storageNodes.find((n) => n.nodeId === segment.nodeId)!;
    const bytes = new Uint8Array(segment.position);
    await client.transport.readValidated(await client.storage(node.nodeId, node.host,
      node.port), { id: segment.grantId, epoch: segment.grantEpoch, key: segment.grantKey },
      segment.address,
        bytes, 0,
    bytes.byteLength);
    for (let position = 0; position < bytes.byteLength;) {
      const batch = decodeRecordBatch(bytes, position);
      if (!batch.attributes.isControl) {
        for (const record of batch.records) {
          if (record.offset >= offset) values.push(decoder.decode(record.value!));
        }
      }
      position += batch.sizeBytes;
    }
    offset = segment.offsetLast + 1;
  }
}

const onceEach = (values: string[]): string[] =>
  values.filter((value, index) => values.indexOf(value) !== index);

let sequence = 0;
const sent: Batch[] = [];
function next(name: string, count: number, padBytes?: number): Batch {
  const batch = batchOf(name, count, sequence, padBytes);
  sequence += count;
  sent.push(batch);
  return batch;
}

t.test('a retried append of a durable batch answers its offset and stores nothing', async (t) => {
  const a = next('a', 3);
  const offset = await produce(a);
  const again = await resend(a); // the ack was lost: the producer sends the batch again
  t.same({ kind: again.kind, baseOffset: (again as Message<'duplicate'>).baseOffset },
    { kind: 'duplicate', baseOffset: offset });
  const b = next('b', 2);
  const written = await write(b);
  const [first, repeat, copy] = await Promise.all([append(written), append(written),
    resend(b)]);
  const offsetOf = (m: Message) => (m as Message<'acked'>).baseOffset;
  t.equal(first.kind, 'acked');
  t.same([repeat.kind, offsetOf(repeat)], ['duplicate', offsetOf(first)],
    'an exact repeat (the reply was lost) gets the original\'s offset');
  t.same([copy.kind, offsetOf(copy)], ['duplicate', offsetOf(first)],
    'a copy written elsewhere waits for the original and is not stored');
  t.equal(await codeOf(resend(batchOf('gap', 1, sequence + 7))),
    'PMQ_ERR_OUT_OF_ORDER_SEQUENCE', 'a gap in the sequence is refused');
  t.same(onceEach(await consumeAll()), [], 'each value once');
});

t.test('a batch whose append never came is not stored: its retry is', async (t) => {
  const c = next('c', 1);
  const lost = await write(c); // the producer died between its write and its append
  await new Promise((resolve) => setTimeout(resolve, 1500)); // the lease expired and was filled
  t.equal(await codeOf(append(lost)), 'PMQ_ERR_LEASE_EXPIRED');
  const again = await resend(c);
  t.equal(again.kind, 'acked');
  const values = await consumeAll();
  t.same(onceEach(values), []);
  t.ok(values.some((value) => value.startsWith('c-0|')), 'stored once, after the filled gap');
});

t.test('after a broker restart, retries of durable batches are still duplicates', async (t) => {
  // Enough batches to roll 64 KiB segments: the rebuild reads more than one segment.
  const many = Array.from({ length: 24 }, (_, i) => next(`m${i}`, 2, 2000));
  const offsets: number[] = [];
  for (const batch of many) offsets.push(await produce(batch));
  const info = await client.call('topicDescribe', { topic: TOPIC }) as Message<'topicInfo'>;
  t.ok(info.partitions[0]!.segments >= 2, `${info.partitions[0]!.segments} segments`);
  broker.child.kill('SIGKILL');
  await exitOf(broker.child);
  broker = await startBroker(`${dir}/data`, storage, BROKER_ARGS);
  welcome = await client.connect(broker);
  // The last 10 batches (the state's window) span both segments.
  const answers: Message[] = [];
  for (const batch of many.slice(-10)) answers.push(await resend(batch));
  t.same(answers.map((a) => a.kind), Array(10).fill('duplicate'));
  t.same(answers.map((a) => (a as Message<'duplicate'>).baseOffset), offsets.slice(-10),
    'the original offsets');
  t.equal(await codeOf(resend(sent[0]!)), 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE',
    'a batch older than the window is refused, not stored again');
  const d = next('d', 1);
  await produce(d);
  const values = await consumeAll();
  t.same(onceEach(values), [], 'each value once');
  t.equal(values.length, sent.reduce((sum, batch) => sum + batch.records, 0), 'every value');
});
