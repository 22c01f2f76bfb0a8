// Pushed watermarks (docs/broker.md, "Subscriptions"; wire v7 subscribe / unsubscribe /
// watermark) against `pmq broker` over `pmq storage`, real processes on 127.0.0.1: a subscriber
// is pushed each durable advance (coalesced, at the broker's epoch, never a head it already
// had), unsubscribe and a session's end stop its pushes, a session holds at most
// subscriptionsPerSessionMax, a client that sends the push kind is treated like a malformed
// peer. Then the client library end to end: a caught-up consumer gets new records through
// pushes without a single fetchView, and with pushes off it long-polls as before; a client drops
// pushes for subscriptions it does not hold or of another epoch than its broker's.
import { pino } from 'pino';
import t from 'tap';

import { connect } from '../../clients/index.js';
import { BROKER_LIMITS } from '../../common/limits.js';
import { PmqError } from '../../common/errors.js';
import { encodeRecordBatch } from '../../common/record-batch/index.js';
import type { Message } from '../../common/wire/messages.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import {
  appendWritten, Client, startBroker, startStorage, tempDir, writeInLease,
} from '../helpers/broker-cluster.js';

const { dir, remove } = tempDir('pmq-subscriptions-');
const storage = await startStorage(`${dir}/region`, 1, 0, ['--size', '16MiB',
  '--segment-size', '1MiB']);
const broker = await startBroker(`${dir}/data`, [storage]);
const client = new Client();
const welcome = await client.connect(broker);
const pushes: Message<'watermark'>[] = [];
client.channel.listen('watermark', (ep, message) => {
  if (ep === client.ep) pushes.push(message);
});
const others: Client[] = [];
t.teardown(() => {
  for (const other of others) other.transport.close();
  client.transport.close();
  broker.child.kill('SIGKILL');
  storage.child.kill('SIGKILL');
  remove();
});

const utf8 = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    return ((await promise) as { kind: string }).kind;
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

/** One batch of `count` records, leased, written and appended: resolves once durable. */
async function produce(topic: string, count: number): Promise<number> {
  const batch = encodeRecordBatch(Array.from({ length: count }, (_, i) =>
    ({ value: utf8.encode(`v${i}`) })));
  const written = await writeInLease(client, welcome, topic, 0, batch, count);
  return (await appendWritten(client, topic, 0, written) as Message<'acked'>).baseOffset;
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  for (let waited = 0; !check(); waited += 10) {
    if (waited > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

async function another(): Promise<Client> {
  const other = new Client();
  others.push(other);
  await other.connect(broker);
  return other;
}

await client.call('topicCreate', { configs: [], topic: 'pushed', partitions: 1 });

t.test('subscribe answers the view; each durable advance is pushed', async (t) => {
  const reply = await client.call('subscribe', { subscription: 1, topic: 'pushed', partition: 0,
    offset: 0 }) as Message<'subscribed'>;
  t.equal(reply.kind, 'subscribed');
  t.equal(reply.subscription, 1);
  t.equal(reply.highWatermark, 0, 'an empty partition');
  t.same(reply.segment, [], 'no segment yet');
  await produce('pushed', 3);
  await until('the first push', () => pushes.some((p) => p.highWatermark === 3));
  const first = pushes.find((p) => p.highWatermark === 3)!;
  t.equal(first.subscription, 1, 'for the subscription');
  t.equal(first.epoch, welcome.brokerEpoch, 'at the broker\'s epoch');
  t.equal(first.offsetLast, 2, 'the durable watermark');
  t.equal(first.sealed, false);
  const view = await client.call('fetchView', { topic: 'pushed', partition: 0, offset: 0,
    waitMs: 0 }) as Message<'view'>;
  t.equal(first.position, view.segment[0]!.position, 'the same position fetchView names');
  t.equal(first.chainPosition, view.segment[0]!.chainPosition, 'and the same segment');
  for (let i = 0; i < 10; i += 1) await produce('pushed', 2);
  await until('the last push', () => pushes.at(-1)?.highWatermark === 23);
  const marks = pushes.map((p) => p.highWatermark);
  t.ok(marks.every((mark, i) => i === 0 || mark > marks[i - 1]!),
    `every push is a new head (${marks.join(', ')})`);
  t.ok(pushes.length <= 11, 'at most one push per advance');
});

t.test('unsubscribe stops the pushes; an unknown id is answered done', async (t) => {
  t.equal((await client.call('unsubscribe', { subscription: 1 })).kind, 'done');
  t.equal((await client.call('unsubscribe', { subscription: 999 })).kind, 'done');
  const before = pushes.length;
  await produce('pushed', 1);
  await sleep(300);
  t.equal(pushes.length, before, 'no push after unsubscribe');
});

t.test('a session that ends loses its subscriptions; the others are still pushed',
  async (t) => {
    const gone = await another();
    t.equal((await gone.call('subscribe', { subscription: 1, topic: 'pushed', partition: 0,
      offset: 0 })).kind, 'subscribed');
    await gone.transport.closeEndpoint(gone.ep!);
    await client.call('subscribe', { subscription: 2, topic: 'pushed', partition: 0,
      offset: 0 });
    const before = pushes.length;
    const base = await produce('pushed', 1);
    await until('a push to the live session', () => pushes.slice(before)
      .some((p) => p.subscription === 2 && p.highWatermark === base + 1));
    t.equal(broker.child.exitCode, null, 'the broker is alive');
    await client.call('unsubscribe', { subscription: 2 });
  });

t.test('a session holds at most subscriptionsPerSessionMax subscriptions', async (t) => {
  const many = await another();
  const max = BROKER_LIMITS.subscriptionsPerSessionMax;
  for (let from = 1; from <= max; from += 128) {
    const replies = await Promise.all(Array.from({ length: Math.min(128, max - from + 1) },
      (_, i) => codeOf(many.call('subscribe', { subscription: from + i, topic: 'pushed',
        partition: 0, offset: 0 }))));
    t.ok(replies.every((kind) => kind === 'subscribed'), `subscriptions ${from}..`);
  }
  const over = { subscription: max + 1, topic: 'pushed', partition: 0, offset: 0 };
  t.equal(await codeOf(many.call('subscribe', over)), 'PMQ_ERR_LIMIT', 'one more is refused');
  t.equal(await codeOf(many.call('subscribe', { ...over, subscription: 5 })), 'subscribed',
    'an id in use is replaced, not added');
  await many.call('unsubscribe', { subscription: 6 });
  t.equal(await codeOf(many.call('subscribe', over)), 'subscribed', 'room after unsubscribe');
  t.equal(await codeOf(client.call('subscribe', { ...over, subscription: 3 })), 'subscribed',
    'another session has its own limit');
  await client.call('unsubscribe', { subscription: 3 });
});

t.test('subscribe refusals: unknown topic, partition, offset', async (t) => {
  const at = { subscription: 9, topic: 'pushed', partition: 0, offset: 0 };
  t.equal(await codeOf(client.call('subscribe', { ...at, topic: 'nope' })),
    'PMQ_ERR_UNKNOWN_TOPIC');
  t.equal(await codeOf(client.call('subscribe', { ...at, partition: 1 })),
    'PMQ_ERR_PARTITION_RANGE');
  t.equal(await codeOf(client.call('subscribe', { ...at, offset: 1_000_000 })),
    'PMQ_ERR_OFFSET_OUT_OF_RANGE');
});

t.test('a client that sends the push kind is answered as a malformed peer', async (t) => {
  const rogue = await another();
  const closed = new Promise<void>((resolve) => rogue.transport.on('closed', (ep) => {
    if (ep === rogue.ep) resolve();
  }));
  const push = { subscription: 1, epoch: welcome.brokerEpoch, chainPosition: 0, position: 0,
    offsetLast: -1, sealed: false, highWatermark: 0 };
  await rogue.channel.notify(rogue.ep!, 'watermark', push);
  t.equal((await rogue.call('topicList', {})).kind, 'topics', 'one is answered, not fatal');
  for (let i = 0; i < 17; i += 1) await rogue.channel.notify(rogue.ep!, 'watermark', push);
  await Promise.race([closed, sleep(5000).then(() => { throw new Error('not closed'); })]);
  t.pass('17 in a row close the connection, as for any malformed message');
  t.equal((await client.call('topicList', {})).kind, 'topics', 'the broker serves the others');
});

t.test('a caught-up consumer is pushed new records: no fetchView, no long poll', async (t) => {
  await client.call('topicCreate', { configs: [], topic: 'consumed', partitions: 1 });
  const app = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp',
    netDevices: 'lo' });
  t.teardown(() => app.close());
  const producer = app.producer({ lingerMs: 0 });
  await producer.send({ topic: 'consumed', records: [{ value: 'before' }] });
  // maxWaitMs far beyond the test: an idle wait never ends in a confirming fetchView here.
  const consumer = app.consumer({ start: 'earliest', maxWaitMs: 60_000 });
  await consumer.assign([{ topic: 'consumed', partition: 0 }]);
  const records = consumer[Symbol.asyncIterator]();
  const started = performance.now();
  t.equal(utf8Decode((await records.next()).value!.value), 'before', 'caught up');
  t.ok(performance.now() - started < 30_000, 'read at once from the subscribe reply\'s view');
  await sleep(100);
  const before = app.stats();
  for (let i = 0; i < 20; i += 1) {
    await producer.send({ topic: 'consumed', records: [{ value: `new-${i}` }] });
    const record = (await records.next()).value!;
    t.equal(utf8Decode(record.value), `new-${i}`, `record ${i}`);
  }
  const after = app.stats();
  const count = (kind: string, stats: typeof before): number => stats.requests[kind] ?? 0;
  t.equal(count('fetchView', after) - count('fetchView', before), 0, 'no fetchView at all');
  t.equal(count('subscribe', after), 1, 'one subscription');
  t.ok(after.pushes - before.pushes >= 20, `pushed (${after.pushes - before.pushes})`);
  await consumer.close();
});

t.test('with pushes off the consumer long-polls fetchView, as before', async (t) => {
  const app = await connect({ brokers: [`${broker.host}:${broker.port}`], transports: 'tcp',
    netDevices: 'lo' });
  t.teardown(() => app.close());
  const producer = app.producer({ lingerMs: 0 });
  const consumer = app.consumer({ start: 'latest', maxWaitMs: 60_000, push: false });
  await consumer.assign([{ topic: 'consumed', partition: 0 }]);
  const records = consumer[Symbol.asyncIterator]();
  const next = records.next();
  await sleep(200); // parked in a long poll
  await producer.send({ topic: 'consumed', records: [{ value: 'polled' }] });
  t.equal(utf8Decode((await next).value!.value), 'polled', 'the long poll woke');
  t.equal(app.stats().requests.subscribe ?? 0, 0, 'no subscription');
  t.ok((app.stats().requests.fetchView ?? 0) > 0, 'fetchView');
  await consumer.close();
});

function utf8Decode(bytes: Uint8Array | null): string {
  return new TextDecoder().decode(bytes ?? new Uint8Array());
}

t.test('the client drops pushes of unknown subscriptions and of another epoch', async (t) => {
  // A broker of the test's own (a real transport and control channel): it answers what a
  // consumer asks and pushes what a hostile or stale broker could.
  const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
  t.teardown(() => transport.close());
  const channel = new ControlChannel(transport, pino({ level: 'silent' }));
  const epoch = 5;
  const head = { chainPosition: 0, position: 0, offsetLast: -1, sealed: false,
    highWatermark: 0 };
  let subscribed: (ep: Endpoint, id: number) => void = () => undefined;
  channel.handle('hello', () => ({ kind: 'welcome', body: { brokerEpoch: epoch,
    storageNodes: [], segmentSizeBytes: 65_536, ticket: new Uint8Array(8),
    ticketExpiresInMs: 3_600_000 } }));
  channel.handle('topicDescribe', (_ep, r) => ({ kind: 'topicInfo', body: { topic: r.topic,
    partitions: [{ partition: 0, logStart: 0, highWatermark: 0, bytes: 0, segments: 0 }],
    configs: [] } }));
  channel.handle('fetchView', () => ({ kind: 'view', body: { highWatermark: 0, segment: [] } }));
  channel.handle('subscribe', (ep, r) => {
    setImmediate(() => subscribed(ep, r.subscription));
    return { kind: 'subscribed', body: { subscription: r.subscription, highWatermark: 0,
      segment: [] } };
  });
  const address = transport.listen('127.0.0.1', 0);
  const app = await connect({ brokers: [`${address.host}:${address.port}`], transports: 'tcp',
    netDevices: 'lo' });
  t.teardown(() => app.close());
  const consumer = app.consumer({ start: { offset: 0 }, maxWaitMs: 60_000 });
  const id = await new Promise<number>((resolve) => {
    subscribed = (ep, subscription) => {
      void channel.notify(ep, 'watermark', { ...head, subscription: subscription + 1000,
        epoch, highWatermark: 1 });
      void channel.notify(ep, 'watermark', { ...head, subscription, epoch: epoch - 1,
        highWatermark: 1 });
      resolve(subscription);
    };
    void consumer.assign([{ topic: 'impostor', partition: 0 }]);
  });
  await until('both pushes seen', () => app.stats().pushesDropped >= 2);
  t.equal(app.stats().pushes, 0, 'neither delivered');
  t.ok(id > 0, 'the consumer subscribed');
  await consumer.close();
});
