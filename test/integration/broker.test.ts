// The broker as users run it: `pmq broker` in a child process over two `pmq storage` nodes,
// and this process as a client over a real Transport + ControlChannel on 127.0.0.1.
import t from 'tap';

import {
  decodeRecordBatch, encodeRecordBatch, type RecordInput,
} from '../../common/record-batch/index.js';
import { PmqError } from '../../common/errors.js';
import type { Message } from '../../common/wire/messages.js';
import {
  appendWritten, Client, exitOf, startBroker, startStorage, tempDir, type Proc, writeInLease,
} from '../helpers/broker-cluster.js';

const { dir, remove } = tempDir('pmq-broker-');
const storage = [await startStorage(`${dir}/region-1`, 1),
  await startStorage(`${dir}/region-2`, 2)];
const BROKER_ARGS = ['--reservation-timeout-ms', '1500'];
let broker: Proc = await startBroker(`${dir}/data`, storage, BROKER_ARGS);
const client = new Client();
let welcome = await client.connect(broker);
t.teardown(async () => {
  client.transport.close();
  broker.child.kill('SIGKILL');
  for (const node of storage) node.child.kill('SIGKILL');
  remove();
});

const text = new TextEncoder();
const values = (prefix: string, n: number, sizeBytes = 8): RecordInput[] =>
  Array.from({ length: n }, (_, i) => ({ value: text.encode(`${prefix}-${i}-`
    .padEnd(sizeBytes, 'x')) }));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

async function storageEp(nodeId: number) {
  const node = welcome.storageNodes.find((n) => n.nodeId === nodeId)!;
  return client.storage(nodeId, node.host, node.port);
}

/** A lease of `bytes` (at least `bytesMin`) of this client's session. */
async function lease(topic: string, partition: number, bytes: number, bytesMin = 68):
  Promise<Message<'leased'>> {
  return await client.call('lease', { topic, partition, bytes, bytesMin, releaseEpoch: 0,
    releaseId: -1 }) as Message<'leased'>;
}

interface Written { lease: Message<'leased'>; position: number; bytes: number; records: number }

/** Writes a batch `at` bytes into the lease (baseOffset 0: the storage node patches it). */
async function write(l: Message<'leased'>, at: number, records: RecordInput[]):
  Promise<Written> {
  const batch = encodeRecordBatch(records);
  await client.transport.writeValidated(await storageEp(l.nodeId),
    { id: l.grantId, epoch: l.grantEpoch, key: l.grantKey }, l.address + at, batch, 0,
  batch.byteLength);
  return { lease: l, position: l.position + at, bytes: batch.byteLength,
    records: records.length };
}

async function append(topic: string, partition: number, w: Written): Promise<number> {
  const acked = await client.call('append', { topic, partition, epoch: w.lease.epoch,
    leaseId: w.lease.leaseId, position: w.position, bytes: w.bytes, records: w.records,
    producerId: -1, sequence: -1 });
  return (acked as Message<'acked'>).baseOffset;
}

/** One batch in a lease of exactly its size (no gap left to fill). */
async function produce(topic: string, partition: number, records: RecordInput[]):
  Promise<number> {
  const size = encodeRecordBatch(records).byteLength;
  return append(topic, partition, await write(await lease(topic, partition, size, size), 0,
    records));
}

/** Reads every batch of a partition from `offset` up to the high watermark. */
async function readAll(topic: string, partition: number, offset = 0) {
  const batches: ReturnType<typeof decodeRecordBatch>[] = [];
  for (;;) {
    const view = await client.call('fetchView', { topic, partition, offset, waitMs: 0 }) as
      Message<'view'>;
    const segment = view.segment[0];
    if (segment === undefined || offset >= view.highWatermark) return batches;
    const bytes = new Uint8Array(segment.position);
    await client.transport.readValidated(await storageEp(segment.nodeId), { id: segment.grantId,
      epoch: segment.grantEpoch, key: segment.grantKey }, segment.address, bytes, 0,
    bytes.byteLength);
    let position = 0;
    while (position < bytes.byteLength) {
      const batch = decodeRecordBatch(bytes, position);
      if (batch.baseOffset + batch.records.length > offset) batches.push(batch);
      position += batch.batchLength + 12;
    }
    offset = segment.offsetLast + 1;
  }
}

t.test('topics: create, list, describe, delete, errors', async (t) => {
  t.equal(welcome.storageNodes.length, 2);
  t.equal((await client.call('topicCreate',
      { topic: 'orders', partitions: 3, configs: [] })).kind, 'topicCreated');
  await client.call('topicCreate', { configs: [], topic: 'scratch', partitions: 1 });
  t.equal(await codeOf(client.call('topicCreate', { configs: [], topic: 'orders', partitions: 1 })),
    'PMQ_ERR_TOPIC_EXISTS');
  const list = await client.call('topicList', {}) as Message<'topics'>;
  t.same(list.topics.map((x) => x.topic).sort(), ['orders', 'scratch']);
  const info = await client.call('topicDescribe', { topic: 'orders' }) as Message<'topicInfo'>;
  t.same(info.partitions.map((p) => p.highWatermark), [0, 0, 0]);
  await produce('scratch', 0, values('s', 3));
  t.equal((await client.call('topicDelete', { topic: 'scratch' })).kind, 'done');
  t.equal(await codeOf(client.call('topicDescribe', { topic: 'scratch' })),
    'PMQ_ERR_UNKNOWN_TOPIC');
  t.equal(await codeOf(client.call('topicDelete', { topic: 'scratch' })),
    'PMQ_ERR_UNKNOWN_TOPIC');
});

t.test('produce: lease, validated writes back to back, appends, acked with dense offsets',
  async (t) => {
    const l = await lease('orders', 0, 4096);
    t.equal(l.sizeBytes, 4096);
    const a = await write(l, 0, values('a', 5));
    const b = await write(l, a.bytes, values('b', 2));
    t.equal(await append('orders', 0, a), 0);
    t.equal(await append('orders', 0, b), 5);
    t.equal(await append('orders', 0, b), 5, 'an exact repeat gets the same ack');
    await client.call('leaseRelease', { topic: 'orders', partition: 0, epoch: l.epoch,
      leaseId: l.leaseId });
    const next = await lease('orders', 0, 4096);
    t.equal(next.position, l.position + a.bytes + b.bytes,
      'the released rest at the segment\'s end went back: the next lease starts there');
    await client.call('leaseRelease', { topic: 'orders', partition: 0, epoch: next.epoch,
      leaseId: next.leaseId });
    const batches = await readAll('orders', 0);
    t.same(batches.map((x) => [x.baseOffset, x.attributes.isControl]),
      [[0, false], [5, false]], 'no control batch, no offset spent');
    t.equal(new TextDecoder().decode(batches[1]!.records[1]!.value!), 'b-1-xxxx');
  });

t.test('appends out of order are acknowledged in position order', async (t) => {
  const l = await lease('orders', 1, 4096);
  const written: Written[] = [];
  let at = 0;
  for (let i = 0; i < 4; i += 1) {
    written.push(await write(l, at, values(`o${i}`, 2)));
    at += written[i]!.bytes;
  }
  const order: number[] = [];
  const acks = [3, 1, 2, 0].map((i) => append('orders', 1, written[i]!)
    .then((baseOffset) => { order.push(baseOffset); return baseOffset; }));
  t.same(await Promise.all(acks), [6, 2, 4, 0]);
  t.same([...order].sort((x, y) => x - y), [0, 2, 4, 6]);
  await client.call('leaseRelease', { topic: 'orders', partition: 1, epoch: l.epoch,
    leaseId: l.leaseId });
  t.same((await readAll('orders', 1)).map((b) => b.baseOffset), [0, 2, 4, 6]);
});

t.test('segments roll at 64 KiB and offsets stay dense', async (t) => {
  let expected = 0;
  for (let i = 0; i < 24; i += 1) {
    t.equal(await produce('orders', 2, values(`r${i}`, 10, 900)), expected, `batch ${i}`);
    expected += 10;
  }
  const info = await client.call('topicDescribe', { topic: 'orders' }) as Message<'topicInfo'>;
  t.ok(info.partitions[2]!.segments >= 3, `${info.partitions[2]!.segments} segments`);
  t.equal(info.partitions[2]!.highWatermark, 240);
  const batches = await readAll('orders', 2);
  t.same(batches.map((b) => b.baseOffset), Array.from({ length: 24 }, (_, i) => i * 10));
  const mid = await readAll('orders', 2, 125);
  t.equal(mid[0]!.baseOffset, 120, 'fetch from the middle starts at the batch holding it');
});

t.test('fetchView long poll wakes when new data is durable', async (t) => {
  const started = Date.now();
  const idle = await client.call('fetchView', { topic: 'orders', partition: 0, offset: 7,
    waitMs: 300 }) as Message<'view'>;
  t.equal(idle.highWatermark, 7);
  t.ok(Date.now() - started >= 250, 'waited for waitMs without data');
  const polling = client.call('fetchView', { topic: 'orders', partition: 0, offset: 7,
    waitMs: 8000 });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const producedAt = Date.now();
  await produce('orders', 0, values('c', 1));
  const view = await polling as Message<'view'>;
  t.equal(view.highWatermark, 8);
  t.ok(Date.now() - producedAt < 2000, 'woke on the new data, not at the timeout');
});

t.test('an abandoned lease holding back a batch is cut and filled long before it expires',
  async (t) => {
    const abandoned = await lease('orders', 0, 200);
    const dLease = await lease('orders', 0, 4096);
    const d = await write(dLease, 0, values('d', 1));
    const started = Date.now();
    const acking = append('orders', 0, d);
    // Released at once (else it too would expire while d waits, and its rest be filled).
    await client.call('leaseRelease', { topic: 'orders', partition: 0, epoch: dLease.epoch,
      leaseId: dLease.leaseId });
    t.equal(await acking, 9, 'acked once the gap before it is filled');
    // Cut after leaseBlockingIdleMs (half the 1500 ms reservation timeout), not at expiry.
    t.ok(Date.now() - started < 1300, 'the abandoned lease was cut, it did not expire');
    const batches = await readAll('orders', 0, 8);
    t.ok(batches[0]!.attributes.isControl, 'the filler is a control batch');
    t.equal(batches[0]!.records.length, 1, 'a gap costs one offset (two for some sizes)');
    t.equal(await codeOf(append('orders', 0, { lease: abandoned, position: abandoned.position,
      bytes: 100, records: 1 })), 'PMQ_ERR_LEASE_EXPIRED');
  });

t.test('bad requests get clear errors and the broker keeps serving', async (t) => {
  const leaseOf = (topic: string, partition: number, bytesMin: number) =>
    lease(topic, partition, 4096, bytesMin);
  t.equal(await codeOf(leaseOf('nope', 0, 100)), 'PMQ_ERR_UNKNOWN_TOPIC');
  t.equal(await codeOf(leaseOf('orders', 3, 100)), 'PMQ_ERR_PARTITION_RANGE');
  t.equal(await codeOf(leaseOf('orders', 0, 65537)), 'PMQ_ERR_RECORD_TOO_LARGE');
  t.equal(await codeOf(leaseOf('orders', 0, 10)), 'PMQ_ERR_LEASE_INVALID');
  const l = await lease('orders', 0, 1024);
  const w = await write(l, 0, values('e', 1));
  const wrong = (change: Partial<Written>) => codeOf(append('orders', 0, { ...w, ...change }));
  t.equal(await wrong({ position: l.position + 10 }), 'PMQ_ERR_LEASE_INVALID', 'a 10-byte gap');
  t.equal(await wrong({ position: l.position + 1000 }), 'PMQ_ERR_LEASE_INVALID',
    'past the lease');
  t.equal(await wrong({ records: 1000 }), 'PMQ_ERR_LEASE_INVALID', 'more records than bytes');
  t.equal(await append('orders', 0, w), 10,
    'right after the lease before (its rest went back)');
  t.equal(await wrong({ bytes: w.bytes + 80 }), 'PMQ_ERR_LEASE_INVALID',
    'overlapping an appended batch');
  await client.call('leaseRelease', { topic: 'orders', partition: 0, epoch: l.epoch,
    leaseId: l.leaseId });
  t.equal(await codeOf(client.call('fetchView', { topic: 'orders', partition: 0, offset: 999,
    waitMs: 0 })), 'PMQ_ERR_OFFSET_OUT_OF_RANGE');
  t.equal(await codeOf(client.call('topicCreate', { configs: [], topic: 'zero', partitions: 0 })),
    'PMQ_ERR_ARGUMENT');
  // Garbage on the control channel: the broker drops that connection only.
  const rogue = await client.transport.connect(broker.host, broker.port);
  const closed = new Promise((resolve) => client.transport.on('closed', (ep) => {
    if (ep === rogue) resolve(ep);
  }));
  await client.transport.send(rogue, Uint8Array.of(0x50, 0x51, 1, 0), Uint8Array.of(1, 2, 3));
  await closed;
  t.pass('the rogue connection was closed');
  t.equal((await client.call('topicList', {})).kind, 'topics', 'others are still served');
});

t.test('two sessions on one partition: one-batch leases, and the large rest ends', async (t) => {
  t.equal((await client.call('topicCreate',
      { topic: 'shared', partitions: 1, configs: [] })).kind, 'topicCreated');
  const big = await lease('shared', 0, 8192);
  t.equal(big.sizeBytes, 8192, 'alone: the lease asked for');
  const other = new Client();
  t.teardown(() => other.transport.close());
  const otherWelcome = await other.connect(broker);
  const batch = encodeRecordBatch(values('o', 2));
  const mine = await writeInLease(other, otherWelcome, 'shared', 0, batch, 2);
  const asked = await other.call('lease', { topic: 'shared', partition: 0, bytes: 8192,
    bytesMin: batch.byteLength, releaseEpoch: mine.lease.epoch, releaseId: -1 }) as
    Message<'leased'>;
  t.equal(asked.sizeBytes, batch.byteLength, 'shared: just the batch asked for');
  t.equal(mine.lease.sizeBytes, batch.byteLength);
  const acking = appendWritten(other, 'shared', 0, mine);
  const first = await write(big, 0, values('b', 1));
  const ack = await client.call('append', { topic: 'shared', partition: 0, epoch: big.epoch,
    leaseId: big.leaseId, position: first.position, bytes: first.bytes, records: 1,
    producerId: -1, sequence: -1 }) as Message<'acked'>;
  t.equal(ack.baseOffset, 0);
  t.ok(ack.leaseEnd, 'its rest holds the other session back: leaseEnd');
  await client.call('leaseRelease', { topic: 'shared', partition: 0, epoch: big.epoch,
    leaseId: big.leaseId });
  t.equal((await acking as Message<'acked'>).baseOffset, 2,
    "the other session's batch after the filled rest (a control offset at 1)");
  await other.call('leaseRelease', { topic: 'shared', partition: 0, epoch: asked.epoch,
    leaseId: asked.leaseId });
  t.equal((await client.call('topicDelete', { topic: 'shared' })).kind, 'done');
});

t.test('group offsets commit and fetch', async (t) => {
  t.equal((await client.call('offsetFetch', { group: 'g', topic: 'orders', partition: 0 }) as
    Message<'offset'>).offset, -1);
  await Promise.all([1, 2, 3].map((offset) => client.call('offsetCommit', { group: 'g',
    topic: 'orders', partition: offset - 1, offset: offset * 10 })));
  t.equal((await client.call('offsetFetch', { group: 'g', topic: 'orders', partition: 2 }) as
    Message<'offset'>).offset, 30);
  t.equal(await codeOf(client.call('offsetCommit', { group: 'g', topic: 'nope', partition: 0,
    offset: 1 })), 'PMQ_ERR_UNKNOWN_TOPIC');
});

t.test('a broker restart (SIGKILL) keeps topics, data and offsets, and fences the old epoch',
  async (t) => {
    const epochBefore = welcome.brokerEpoch;
    const stale = await write(await lease('orders', 0, 4096), 0, values('stale', 1));
    broker.child.kill('SIGKILL');
    await exitOf(broker.child);
    broker = await startBroker(`${dir}/data`, storage, BROKER_ARGS);
    welcome = await client.connect(broker);
    t.ok(welcome.brokerEpoch > epochBefore, `epoch ${epochBefore} → ${welcome.brokerEpoch}`);
    const list = await client.call('topicList', {}) as Message<'topics'>;
    t.same(list.topics, [{ topic: 'orders', partitions: 3 }]);
    const info = await client.call('topicDescribe', { topic: 'orders' }) as Message<'topicInfo'>;
    t.same(info.partitions.map((p) => p.highWatermark), [11, 8, 240]);
    t.equal((await client.call('offsetFetch', { group: 'g', topic: 'orders', partition: 2 }) as
      Message<'offset'>).offset, 30);
    t.equal(await codeOf(append('orders', 0, stale)), 'PMQ_ERR_LEASE_EXPIRED',
      'an append to a lease of the old epoch is refused');
    const batch = encodeRecordBatch(values('late', 1));
    // The storage node revokes every older grant when the epoch rises (stale, then revoked);
    // and the endpoint now speaks for the new broker's session, not the old grant's.
    const old = stale.lease;
    t.match(await codeOf(client.transport.writeValidated(await storageEp(old.nodeId),
      { id: old.grantId, epoch: old.grantEpoch, key: old.grantKey }, old.address, batch, 0,
      batch.byteLength)), /^PMQ_ERR_GRANT_(STALE_EPOCH|REVOKED|UNKNOWN)$/,
    'a write with the old grant is refused');
    t.equal(await produce('orders', 0, values('new', 2)), 11, 'appends after the durable data');
    t.same((await readAll('orders', 2)).length, 24, 'rolled segments read back');
  });
