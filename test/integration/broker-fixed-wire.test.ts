// The fixed-layout control messages (wire v8, docs/wire-protocol.md, "Fixed-layout messages")
// against `pmq broker` over `pmq storage`, real processes on 127.0.0.1: a produce in the fixed
// layout is acknowledged and readable, pushes arrive fixed, topic ids are the topic's for its
// life (restarts included) and never another's, and a fixed request naming an id of no live
// topic is refused PMQ_ERR_UNKNOWN_TOPIC.
import t from 'tap';

import { PmqError } from '../../common/errors.js';
import { encodeRecordBatch, type RecordInput } from '../../common/record-batch/index.js';
import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import {
  Client, startBroker, startStorage, stopProc, tempDir, type Proc, type WrittenBatch,
} from '../helpers/broker-cluster.js';

const { dir, remove } = tempDir('pmq-fixed-wire-');
const storage = [await startStorage(`${dir}/region-1`, 1)];
let broker: Proc = await startBroker(`${dir}/data`, storage);
let client = new Client();
let welcome = await client.connect(broker);
t.teardown(async () => {
  client.transport.close();
  await stopProc(broker);
  for (const node of storage) await stopProc(node);
  remove();
});

const text = new TextEncoder();
const values = (prefix: string, n: number): RecordInput[] =>
  Array.from({ length: n }, (_, i) => ({ value: text.encode(`${prefix}-${i}`) }));

/** A request in the fixed layout (the channel falls back to msgpack only if it cannot). */
async function fixed<K extends RequestKind>(kind: K, body: Body<K>, topicId: number):
  Promise<Message> {
  const sent = client.channel.fixedCounts.sent;
  const reply = client.channel.request(client.ep!, kind, body, 10_000, topicId);
  t.equal(client.channel.fixedCounts.sent, sent + 1, `${kind} went in the fixed layout`);
  return reply;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

/** A lease by name (msgpack): answers the topic's id. */
async function leaseByName(topic: string, bytes = 4096): Promise<Message<'leased'>> {
  const reply = await client.call('lease', { topic, partition: 0, bytes, bytesMin: 68,
    releaseEpoch: 0, releaseId: -1 });
  if (reply.kind !== 'leased') throw new Error(`lease answered ${reply.kind}`);
  return reply as Message<'leased'>;
}

/** Writes `batch` at the lease's `position` (validated write under its grant). */
async function writeAt(lease: Message<'leased'>, position: number, batch: Uint8Array):
  Promise<void> {
  const node = welcome.storageNodes.find((n) => n.nodeId === lease.nodeId)!;
  await client.transport.writeValidated(await client.storage(node.nodeId, node.host, node.port),
    { id: lease.grantId, epoch: lease.grantEpoch, key: lease.grantKey },
    lease.address + (position - lease.position), batch, 0, batch.byteLength);
}

function appendBody(topic: string, written: WrittenBatch): Body<'append'> {
  return { topic, partition: 0, epoch: written.lease.epoch, leaseId: written.lease.leaseId,
    position: written.position, bytes: written.bytes, records: written.records,
    producerId: -1, sequence: -1 };
}

await client.call('topicCreate', { configs: [], topic: 'fx', partitions: 1 });
await client.call('topicCreate', { configs: [], topic: 'fy', partitions: 1 });
const ids = new Map<string, number>();

t.test('produce in the fixed layout: leased tells the id, appends are acked fixed', async (t) => {
  const lease = await leaseByName('fx');
  t.ok(lease.topicId >= 1, 'a topic id');
  ids.set('fx', lease.topicId);
  const first = encodeRecordBatch(values('a', 3));
  await writeAt(lease, lease.position, first);
  const received = client.channel.fixedCounts.received;
  const acked = await fixed('append', appendBody('fx', { lease, position: lease.position,
    bytes: first.byteLength, records: 3 }), lease.topicId);
  t.match(acked, { kind: 'acked', baseOffset: 0 });
  t.equal(client.channel.fixedCounts.received, received + 1, 'acked came fixed');

  const second = encodeRecordBatch(values('b', 2));
  const position = lease.position + first.byteLength;
  await writeAt(lease, position, second);
  t.match(await fixed('append', appendBody('fx', { lease, position, bytes: second.byteLength,
    records: 2 }), lease.topicId), { kind: 'acked', baseOffset: 3 });
  t.equal(await codeOf(fixed('append', appendBody('fx', { lease, position,
    bytes: second.byteLength, records: 2 }), lease.topicId)), 'ok', 'a repeat is answered');
  t.match(await fixed('leaseRelease', { topic: 'fx', partition: 0, epoch: lease.epoch,
    leaseId: lease.leaseId }, lease.topicId), { kind: 'done' });
  const view = await client.call('fetchView', { topic: 'fx', partition: 0, offset: 0,
    waitMs: 0 }) as Message<'view'>;
  t.equal(view.highWatermark, 5, 'both batches durable and visible');
});

t.test('a fixed lease, its write and append; the push of the advance is fixed', async (t) => {
  const topicId = ids.get('fx')!;
  const pushes: Message<'watermark'>[] = [];
  const stop = client.channel.listen('watermark', (_ep, message) => { pushes.push(message); });
  t.teardown(stop);
  const subscribed = await client.call('subscribe', { subscription: 7, topic: 'fx',
    partition: 0, offset: 0 });
  t.equal(subscribed.kind, 'subscribed');
  const lease = await fixed('lease', { topic: 'fx', partition: 0, bytes: 4096, bytesMin: 68,
    releaseEpoch: 0, releaseId: -1 }, topicId) as Message<'leased'>;
  t.match(lease, { kind: 'leased', topicId });
  const batch = encodeRecordBatch(values('c', 4));
  await writeAt(lease, lease.position, batch);
  const received = client.channel.fixedCounts.received;
  t.match(await fixed('append', appendBody('fx', { lease, position: lease.position,
    bytes: batch.byteLength, records: 4 }), topicId), { kind: 'acked', baseOffset: 5 });
  for (let i = 0; i < 200 && !pushes.some((p) => p.highWatermark === 9); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.ok(pushes.some((p) => p.subscription === 7 && p.highWatermark === 9 && p.offsetLast === 8),
    'the advance was pushed');
  t.ok(client.channel.fixedCounts.received >= received + 2, 'acked and the push came fixed');
  await client.call('unsubscribe', { subscription: 7 });
  await fixed('leaseRelease', { topic: 'fx', partition: 0, epoch: lease.epoch,
    leaseId: lease.leaseId }, topicId);
});

t.test('an id of no live topic is refused PMQ_ERR_UNKNOWN_TOPIC, never reused', async (t) => {
  const fy = (await leaseByName('fy')).topicId;
  t.not(fy, ids.get('fx'), 'each topic its own id');
  const lease = { topic: 'fy', partition: 0, bytes: 4096, bytesMin: 68, releaseEpoch: 0,
    releaseId: -1 };
  t.equal(await codeOf(fixed('lease', lease, 999_999)), 'PMQ_ERR_UNKNOWN_TOPIC', 'lease');
  t.equal(await codeOf(fixed('append', { topic: 'fy', partition: 0, epoch: 1, leaseId: 1,
    position: 0, bytes: 68, records: 1, producerId: -1, sequence: -1 }, 0)),
  'PMQ_ERR_UNKNOWN_TOPIC', 'append, id 0');
  t.equal(await codeOf(fixed('leaseRelease', { topic: 'fy', partition: 0, epoch: 1,
    leaseId: 1 }, 2 ** 32 - 1)), 'PMQ_ERR_UNKNOWN_TOPIC', 'leaseRelease');
  t.equal(await codeOf(fixed('lease', { ...lease, partition: 1 }, fy)),
    'PMQ_ERR_PARTITION_RANGE', 'a partition out of range, as by name');

  await client.call('topicDelete', { topic: 'fy' });
  t.equal(await codeOf(fixed('lease', lease, fy)), 'PMQ_ERR_UNKNOWN_TOPIC', 'deleted');
  await client.call('topicCreate', { configs: [], topic: 'fy', partitions: 1 });
  const again = (await leaseByName('fy')).topicId;
  t.not(again, fy, 'created again: a new id');
  t.equal(await codeOf(fixed('lease', lease, fy)), 'PMQ_ERR_UNKNOWN_TOPIC',
    'the old id does not name the new topic');
  ids.set('fy', again);
  ids.set('fy-deleted', fy);
});

t.test('topic ids survive a broker restart; deleted ones stay unused', async (t) => {
  await client.call('topicCreate', { configs: [], topic: 'fz', partitions: 1 });
  const fz = (await leaseByName('fz')).topicId;
  await client.call('topicDelete', { topic: 'fz' });
  client.transport.close();
  await stopProc(broker);
  broker = await startBroker(`${dir}/data`, storage);
  client = new Client();
  welcome = await client.connect(broker);
  t.equal((await leaseByName('fx')).topicId, ids.get('fx'), 'fx');
  t.equal((await leaseByName('fy')).topicId, ids.get('fy'), 'fy');
  t.equal(await codeOf(fixed('lease', { topic: 'fy', partition: 0, bytes: 4096, bytesMin: 68,
    releaseEpoch: 0, releaseId: -1 }, ids.get('fy-deleted')!)), 'PMQ_ERR_UNKNOWN_TOPIC');
  await client.call('topicCreate', { configs: [], topic: 'fz', partitions: 1 });
  const newer = (await leaseByName('fz')).topicId;
  t.ok(newer > fz, `a topic created after the restart gets a new id (${newer} > ${fz})`);
});
