// The storage node as the broker and clients meet it: `pmq storage` in its own process on a
// /dev/shm region, this process as broker (ControlChannel) and client (validated writes and
// reads) on one transport. Durability across SIGKILL, every refusal, garbage on the control
// channel, a full region, a corrupt region.
import { mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

import { Packr } from 'msgpackr';
import { pino } from 'pino';
import t from 'tap';

import { BROKER_SESSION } from '../../common/auth/keys.js';
import {
  decodeRecordBatch, encodeRecordBatch, validateRecordBatch,
} from '../../common/record-batch/index.js';
import { decodeFrame, encodeMessage, FRAME_HEADER } from '../../common/wire/codec.js';
import {
  type Body, type Message, type RequestKind, WIRE_VERSION,
} from '../../common/wire/messages.js';
import { isPersistFrameHeader } from '../../common/wire/persist-frame.js';
import { Transport, type Endpoint, type MessageHandler } from '../../native/transport.js';
import { helloWithKey } from '../../broker-node/storage-auth.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';
import { exitOf, spawnPmq, startStorage, type StorageProcess } from '../helpers/storage-process.js';

const KIB = 1024;
/** This test speaks as one broker instance throughout. */
const TEST_INSTANCE = 0x7e57;
const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
const channel = new ControlChannel(transport, pino({ level: 'silent' }));
t.teardown(() => transport.close());

const dir = mkdtempSync('/dev/shm/pmq-storage-node-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = testKeyFile(dir);
const key = testKey(keyFile);

const nodes: StorageProcess[] = [];
t.teardown(async () => { for (const node of nodes) await node.kill('SIGKILL'); });

async function start(args: string[]): Promise<{ node: StorageProcess; ep: Endpoint }> {
  const node = await startStorage(keyFile, args);
  nodes.push(node);
  return { node, ep: await transport.connect(node.host, node.port) };
}

function call<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>): Promise<Message> {
  return channel.request(ep, kind, body, 5000);
}

/** As the broker does: brokerAuth, check the node's proof, storageHello with ours. */
function hello(ep: Endpoint, epoch: number): Promise<Message<'storageInfo'>> {
  return helloWithKey(channel, ep, key, { epoch, instance: TEST_INSTANCE }, 'test', 5000);
}

async function callAs<R extends Message['kind'], K extends RequestKind>(ep: Endpoint, kind: K,
  body: Body<K>, reply: R): Promise<Message<R>> {
  const message = await call(ep, kind, body);
  if (message.kind !== reply) throw new Error(`expected ${reply}, got ${message.kind}`);
  return message as Message<R>;
}

/** Sends a hand-made map (v 4 and a fresh id added) and returns the decoded reply. */
let rawId = 100_000;
const raw = new Packr({ useRecords: false, mapsAsObjects: true });
function rawRequest(ep: Endpoint, fields: Record<string, unknown>): Promise<Message> {
  rawId += 1;
  const id = rawId;
  return new Promise((resolve, reject) => {
    rawWaiters.set(id, resolve);
    transport.send(ep, FRAME_HEADER, raw.pack({ v: WIRE_VERSION, id, ...fields })).catch(reject);
    setTimeout(() => reject(new Error(`no reply to raw message ${id}`)), 5000).unref();
  });
}
const rawWaiters = new Map<number, (reply: Message) => void>();
// Replies to raw messages are taken here, before the control channel (which would drop them as
// replies to nothing); everything else goes on to it.
const channelHandler = (transport as unknown as { messageHandler: MessageHandler })
  .messageHandler;
transport.setMessageHandler({
  deliver(ep, header, payload) {
    if (isPersistFrameHeader(header)) { // the native persist path's replies: not raw ones
      channelHandler.deliver(ep, header, payload);
      return;
    }
    const message = decodeFrame(header, payload);
    const waiter = rawWaiters.get(message.id);
    if (waiter === undefined) {
      channelHandler.deliver(ep, header, payload);
      return;
    }
    rawWaiters.delete(message.id);
    waiter(message);
  },
});

const records = Array.from({ length: 5 }, (_, i) => ({
  key: new TextEncoder().encode(`key-${i}`),
  value: new TextEncoder().encode(`value ${i} `.repeat(20)),
}));
/** Grants for the test's own endpoint: authenticated as the broker, it is BROKER_SESSION's. */
const B = { session: BROKER_SESSION, key: 1 } as const;

/** Bytes of a region file (the node's mapping is shared: the file shows its stores). */
function fileBytes(path: string, address: number, length: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const bytes = new Uint8Array(length);
    readSync(fd, bytes, 0, length, address);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

const batch = encodeRecordBatch(records, { baseOffset: 0, timestampDefault: 1_700_000_000_000 });
/** The piece of a persist that covers `batch` written at segment position 0. */
const firstBatch = [{ position: 0, baseOffset: 0, bytes: batch.byteLength, records: 5 }];
const allocate = { topic: 'orders', partition: 0, chainPosition: 0, baseOffset: 0,
  sizeBytesMin: 0 };

t.test('a persisted batch survives SIGKILL and reads back byte for byte', async (t) => {
  const region = join(dir, 'durable.region');
  let { node, ep } = await start(['--path', region, '--size', '2MiB', '--segment-size',
    '256KiB', '--node-id', '7']);
  const info = await hello(ep, 1);
  t.match(info, { nodeId: 7, epoch: 1, segmentSizeBytes: 256 * KIB, segments: [] });
  const segment = await callAs(ep, 'segmentAllocate', { epoch: 1, ...allocate }, 'segment');
  t.match(segment, { segmentIndex: 0, state: 'active', position: 0, offsetLast: -1 });
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 1, segmentIndex: 0, position: 0,
    sizeBytes: 8 * KIB, direction: 'write' });
  await transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, segment.address, batch, 0,
    batch.byteLength);
  const persisted = await call(ep, 'persist', { patches: firstBatch, epoch: 1, segmentIndex: 0,
    position: batch.byteLength, offsetLast: 4, seal: false });
  t.match(persisted, { kind: 'persisted', position: batch.byteLength, offsetLast: 4,
    sealed: false });

  t.equal(await node.kill('SIGKILL'), null, 'killed');
  ({ node, ep } = await start(['--path', region]));
  // stderr (the log) may arrive after stdout's "listening": wait for the line.
  for (let i = 0; i < 100 && node.logLines('region recovered').length === 0; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.match(node.logLines('region recovered')[0], { nodeId: 7, epoch: 1, active: 1, free: 6,
    watermarks: [{ segment: 0, position: batch.byteLength, offsetLast: 4 }] });
  const again = await hello(ep, 1);
  t.match(again.segments, [{ segmentIndex: 0, state: 'active', topic: 'orders',
    position: batch.byteLength, offsetLast: 4, address: segment.address }]);
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 2, segmentIndex: 0, position: 0,
    sizeBytes: batch.byteLength, direction: 'read' });
  const back = new Uint8Array(batch.byteLength);
  await transport.readValidated(ep, { id: 2, epoch: 1, key: 1 }, segment.address, back, 0,
    back.byteLength);
  t.same(Buffer.from(back), Buffer.from(batch), 'same bytes');
  t.match(validateRecordBatch(back), { baseOffset: 0, lastOffsetDelta: 4 });
  await node.kill('SIGKILL');
});

t.test('bad requests are refused and change nothing', async (t) => {
  const { node, ep } = await start(['--path', join(dir, 'bad.region'), '--size', '1MiB',
    '--segment-size', '64KiB']);
  await hello(ep, 2);
  const segment = await callAs(ep, 'segmentAllocate', { epoch: 2, ...allocate }, 'segment');
  const base = { epoch: 2, segmentIndex: 0, direction: 'write' } as const;
  const refuse = (what: string, promise: Promise<unknown>, code: string | RegExp) =>
    t.rejects(promise, { code }, what);

  await refuse('stale epoch', call(ep, 'grantCreate', { ...B, ...base, epoch: 1, grantId: 9,
    position: 0, sizeBytes: 4096 }), 'PMQ_ERR_EPOCH_STALE');
  await refuse('stale hello', hello(ep, 1), 'PMQ_ERR_EPOCH_STALE');
  await refuse('future epoch', call(ep, 'persist', { epoch: 3, segmentIndex: 0, position: 0,
    offsetLast: -1, seal: false, patches: [] }), 'PMQ_ERR_EPOCH_FUTURE');
  await refuse('grant past the segment', call(ep, 'grantCreate', { ...B, ...base, grantId: 9,
    position: 60 * KIB, sizeBytes: 8 * KIB }), 'PMQ_ERR_GRANT_RANGE');
  await refuse('unknown segment', call(ep, 'grantCreate', { ...B, ...base, grantId: 9,
    segmentIndex: 999, position: 0, sizeBytes: 4096 }), 'PMQ_ERR_SEGMENT_UNKNOWN');
  await refuse('grant on a free segment', call(ep, 'grantCreate', { ...B, ...base, grantId: 9,
    segmentIndex: 1, position: 0, sizeBytes: 4096 }), 'PMQ_ERR_SEGMENT_STATE');
  await refuse('persist past the end', call(ep, 'persist', { patches: [], epoch: 2, segmentIndex: 0,
    position: 64 * KIB + 1, offsetLast: 10, seal: false }), 'PMQ_ERR_WATERMARK_BEYOND_SEGMENT');

  // Revoked grant: the write is refused and the bytes stay as they were.
  await call(ep, 'grantCreate', { ...B, ...base, grantId: 10, position: 0, sizeBytes: 8 * KIB });
  await call(ep, 'grantCreate', { ...B, ...base, grantId: 11, position: 0, sizeBytes: 8 * KIB,
    direction: 'read' });
  // Nothing is durable yet, so no grant may read these bytes: look at the region file.
  await refuse('read above the durable watermark', transport.readValidated(ep,
    { id: 11, epoch: 2, key: 1 }, segment.address, new Uint8Array(16), 0, 16),
  'PMQ_ERR_GRANT_OUT_OF_RANGE');
  const before = fileBytes(join(dir, 'bad.region'), segment.address, batch.byteLength);
  await call(ep, 'grantRevoke', { epoch: 2, grantId: 10 });
  await call(ep, 'grantRevoke', { epoch: 2, grantId: 10 }); // idempotent
  await refuse('write with a revoked grant', transport.writeValidated(ep, { id: 10, epoch: 2,
    key: 1 },
    segment.address, batch, 0, batch.byteLength), 'PMQ_ERR_GRANT_REVOKED');
  const after = fileBytes(join(dir, 'bad.region'), segment.address, batch.byteLength);
  t.same(Buffer.from(after), Buffer.from(before), 'bytes unchanged');
  await refuse('grant id reused', call(ep, 'grantCreate', { ...B, ...base, grantId: 10, position: 0,
    sizeBytes: 4096 }), 'PMQ_ERR_GRANT_EXISTS');
  await refuse('revoke unknown', call(ep, 'grantRevoke', { epoch: 2, grantId: 404 }),
    'PMQ_ERR_GRANT_UNKNOWN');

  // Seal: revokes the segment's write grants; no new write grant afterwards.
  await call(ep, 'grantCreate', { ...B, ...base, grantId: 12, position: 0, sizeBytes: 8 * KIB });
  await transport.writeValidated(ep, { id: 12, epoch: 2, key: 1 }, segment.address, batch, 0,
    batch.byteLength);
  await refuse('write outside the grant', transport.writeValidated(ep, { id: 12, epoch: 2, key: 1 },
    segment.address + 8 * KIB - 10, batch, 0, batch.byteLength), 'PMQ_ERR_GRANT_OUT_OF_RANGE');
  t.match(await call(ep, 'persist', { epoch: 2, segmentIndex: 0, position: batch.byteLength,
    offsetLast: 4, seal: true, patches: firstBatch }), { kind: 'persisted', sealed: true });
  await refuse('write after seal', transport.writeValidated(ep, { id: 12, epoch: 2, key: 1 },
    segment.address, batch, 0, batch.byteLength), 'PMQ_ERR_GRANT_REVOKED');
  await refuse('write grant on a sealed segment', call(ep, 'grantCreate', { ...B, ...base,
    grantId: 13, position: 4 * KIB, sizeBytes: 4096 }), 'PMQ_ERR_SEGMENT_STATE');
  await refuse('persist on a sealed segment', call(ep, 'persist', { epoch: 2, segmentIndex: 0,
    position: batch.byteLength + 10, offsetLast: 5, seal: false, patches: [] }),
  'PMQ_ERR_SEGMENT_STATE');
  t.match(await call(ep, 'persist', { epoch: 2, segmentIndex: 0, position: batch.byteLength,
    offsetLast: 4, seal: true, patches: [] }), { kind: 'persisted', sealed: true },
  'seal retry answers');

  // A newer broker fences the old one's grants.
  await call(ep, 'epochRaise', { epoch: 3 });
  await refuse('read with a grant of the old epoch', transport.readValidated(ep,
    { id: 11, epoch: 2, key: 1 }, segment.address, after, 0, after.byteLength),
  /PMQ_ERR_GRANT_(REVOKED|STALE_EPOCH)/);
  t.equal(node.child.exitCode, null, 'the node is still running');
});

t.test('a persist checks and patches each appended batch first', async (t) => {
  const { node, ep } = await start(['--path', join(dir, 'patch.region'), '--size', '1MiB',
    '--segment-size', '64KiB']);
  await hello(ep, 1);
  const segment = await callAs(ep, 'segmentAllocate', { epoch: 1, ...allocate,
    baseOffset: 100 }, 'segment');
  const size = batch.byteLength; // 5 records written with baseOffset 0, as producers do
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 1, segmentIndex: 0, position: 0,
    sizeBytes: 4 * size, direction: 'write' });
  for (const n of [0, 1]) {
    await transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, segment.address + n * size,
      batch, 0, size);
  }
  const patch = (n: number, baseOffset: number) => ({ position: n * size, baseOffset,
    bytes: size, records: 5 });
  await t.rejects(call(ep, 'persist', { epoch: 1, segmentIndex: 0, position: size,
    offsetLast: 104, seal: false, patches: [patch(1, 105)] }),
  { code: 'PMQ_ERR_ARGUMENT' }, 'a patch past the persisted range is refused');
  // The third batch was never written (a producer appended bytes it did not write).
  t.match(await call(ep, 'persist', { epoch: 1, segmentIndex: 0, position: 3 * size,
    offsetLast: 114, seal: false, patches: [patch(0, 100), patch(1, 105), patch(2, 110)] }),
  { kind: 'persisted', position: 3 * size });
  t.match(await call(ep, 'persist', { epoch: 1, segmentIndex: 0, position: 3 * size,
    offsetLast: 114, seal: false, patches: [patch(0, 7)] }),
  { kind: 'persisted' }, 'a repeat below the durable watermark changes nothing');
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 2, segmentIndex: 0, position: 0,
    sizeBytes: 3 * size, direction: 'read' });
  const back = new Uint8Array(3 * size);
  await transport.readValidated(ep, { id: 2, epoch: 1, key: 1 }, segment.address, back, 0,
    back.byteLength);
  const read = [0, 1, 2].map((n) => decodeRecordBatch(back, n * size));
  t.same(read.map((b) => [b.baseOffset, b.attributes.isControl, b.records.length]),
    [[100, false, 5], [105, false, 5], [110, true, 5]],
  'patched headers, CRCs good; the batch that was not there is a control batch of its shape');
  // The log line may reach stderr after the reply (a loaded full-suite run saw it lag).
  for (let i = 0; i < 100 && !/were replaced by control batches/.test(node.stderr()); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.match(node.stderr(), /were replaced by control batches/, 'and the node says so');
  t.equal(node.child.exitCode, null, 'the node is still running');
});

t.test('group commit: concurrent persists of one segment all answer', async (t) => {
  const { ep } = await start(['--path', join(dir, 'group.region'), '--size', '1MiB',
    '--segment-size', '64KiB']);
  await hello(ep, 1);
  await call(ep, 'segmentAllocate', { epoch: 1, ...allocate });
  // n pieces of 100 bytes and one record each: nothing written there, control batches result.
  const at = (n: number) => ({ epoch: 1, segmentIndex: 0, position: n * 100, offsetLast: n - 1,
    seal: false, patches: Array.from({ length: n }, (_, i) => ({ position: i * 100,
      baseOffset: i, bytes: 100, records: 1 })) });
  const replies = await Promise.all([1, 2, 3, 4, 5].map((n) => call(ep, 'persist', at(n))));
  t.same(replies.map((r) => r.kind === 'persisted' && r.position), [100, 200, 300, 400, 500]);
  const info = await hello(ep, 1);
  t.match(info.segments[0], { position: 500, offsetLast: 4 });
  t.match(await call(ep, 'persist', at(2)), { kind: 'persisted', position: 200 },
    'a request below the durable watermark is already durable');
  await t.rejects(call(ep, 'persist', { ...at(6), offsetLast: 2 }),
    { code: 'PMQ_ERR_WATERMARK_BACKWARD' });
});

t.test('a persist revokes the write grants it makes durable, and only those', async (t) => {
  const { node, ep } = await start(['--path', join(dir, 'revoke.region'), '--size', '1MiB',
    '--segment-size', '64KiB']);
  await hello(ep, 1);
  const segment = await callAs(ep, 'segmentAllocate', { epoch: 1, ...allocate }, 'segment');
  const size = batch.byteLength;
  const grant = (grantId: number, position: number, sizeBytes: number) => call(ep,
    'grantCreate', { ...B, epoch: 1, grantId, segmentIndex: 0, position, sizeBytes,
      direction: 'write' });
  await grant(1, 0, size);                 // the batch persisted below
  await grant(2, size, size);              // the next one, not yet durable
  await grant(3, 0, 2 * size);             // reaches past the new watermark
  await transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, segment.address, batch, 0, size);
  t.match(await call(ep, 'persist', { patches: firstBatch, epoch: 1, segmentIndex: 0,
    position: size, offsetLast: 4, seal: false }), { kind: 'persisted', position: size });
  await t.rejects(transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, segment.address,
    batch, 0,
    size), { code: 'PMQ_ERR_GRANT_REVOKED' }, 'a durable batch cannot be overwritten');
  await transport.writeValidated(ep, { id: 2, epoch: 1, key: 1 }, segment.address + size, batch, 0,
    size);
  await transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 }, segment.address + size, batch, 0,
    size);
  t.pass('grants ending past the watermark still write');
  await t.rejects(transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 }, segment.address,
    batch, 0, size), { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' },
  'but not below it: durable bytes never change (a lease\'s grant has a floor)');
  t.match(await call(ep, 'grantRevoke', { epoch: 1, grantId: 1 }), { kind: 'done' },
    'revoking it again is a no-op');
  t.equal(node.child.exitCode, null, 'the node is still running');
});

t.test('a full region says what to do; a freed segment can be allocated again', async (t) => {
  const { ep } = await start(['--path', join(dir, 'small.region'), '--size', '256KiB',
    '--segment-size', '64KiB']);
  const info = await hello(ep, 1);
  t.equal(info.segmentCount, 3);
  for (const chainPosition of [0, 1, 2]) {
    await call(ep, 'segmentAllocate', { epoch: 1, ...allocate, chainPosition });
  }
  await t.rejects(call(ep, 'segmentAllocate', { epoch: 1, ...allocate, chainPosition: 3 }),
    { code: 'PMQ_ERR_REGION_FULL', message: /segmentFree/, retriable: false });
  await t.rejects(call(ep, 'segmentAllocate', { epoch: 1, ...allocate, chainPosition: 1 }),
    { code: 'PMQ_ERR_SEGMENT_EXISTS' });
  await call(ep, 'segmentFree', { epoch: 1, segmentIndex: 0 });
  t.match(await call(ep, 'segmentAllocate', { epoch: 1, ...allocate, chainPosition: 3 }),
    { kind: 'segment', segmentIndex: 0, chainPosition: 3 });
});

t.test('garbage on the control channel drops that connection only', async (t) => {
  const { node, ep: good } = await start(['--path', join(dir, 'garbage.region'), '--size',
    '1MiB', '--segment-size', '64KiB']);
  const closedEp = (ep: Endpoint) => new Promise<void>((resolve) => {
    const onClosed = (closed: Endpoint) => {
      if (closed !== ep) return;
      transport.off('closed', onClosed);
      resolve();
    };
    transport.on('closed', onClosed);
  });
  const whole = encodeMessage('storageHello', 1,
    { epoch: 1, instance: 1, proof: new Uint8Array(32) });
  const cases: [string, Uint8Array, Uint8Array][] = [
    ['random bytes', FRAME_HEADER, Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff)],
    ['truncated message', FRAME_HEADER, whole.subarray(0, whole.byteLength - 3)],
    ['bad frame header', Uint8Array.of(1, 2, 3, 4), whole],
  ];
  for (const [what, header, payload] of cases) {
    const bad = await transport.connect(node.host, node.port);
    const closed = closedEp(bad);
    await transport.send(bad, header, payload);
    await closed;
    t.pass(`${what}: connection dropped`);
    t.match(await hello(good, 1), { kind: 'storageInfo' },
      `${what}: the other connection keeps working`);
  }

  // Schema failures with a usable id are answered, and the connection stays, up to a bound.
  const strict = await transport.connect(node.host, node.port);
  const strictClosed = closedEp(strict);
  let dropped = false;
  void strictClosed.then(() => { dropped = true; });
  const schemaCases: [string, Record<string, unknown>, RegExp][] = [
    ['bad field', { kind: 'grantRevoke', epoch: 'one', grantId: 1 }, /bad grantRevoke: .*epoch/],
    ['unknown kind', { kind: 'launchMissiles' }, /unknown message kind launchMissiles/],
    ['wrong version', { v: 3, kind: 'storageHello', epoch: 1 }, /version 3 not supported/],
    ['unknown field', { kind: 'brokerAuth', nonce: new Uint8Array(32), extra: 1 }, /extra/],
  ];
  for (const [what, fields, message] of schemaCases) {
    const reply = await rawRequest(strict, fields);
    t.match(reply, { kind: 'error', code: 'PMQ_ERR_PROTOCOL', message },
      `${what}: answered`);
  }
  t.match(await hello(strict, 1), { kind: 'storageInfo' },
    'and the connection still serves');
  for (let i = 0; i < 16; i += 1) {
    t.match(await rawRequest(strict, { kind: 'nonsense' }), { code: 'PMQ_ERR_PROTOCOL' });
  }
  t.notOk(dropped, '16 malformed messages in a row are answered');
  await transport.send(strict, FRAME_HEADER,
    raw.pack({ v: WIRE_VERSION, id: 999, kind: 'nonsense' }));
  await strictClosed;
  t.pass('the 17th in a row closes the connection');
  t.equal(node.child.exitCode, null, 'the node is still running');
});

t.test('a corrupt region refuses to start and names the segment and address', async (t) => {
  const region = join(dir, 'corrupt.region');
  const { node } = await start(['--path', region, '--size', '1MiB', '--segment-size', '64KiB']);
  await node.kill('SIGKILL');
  const fd = openSync(region, 'r+');
  for (const address of [8192 + 1024 + 20, 8192 + 1024 + 512 + 20]) { // segment 1, both slots
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, address);
    writeSync(fd, Uint8Array.of(byte[0]! ^ 0xff), 0, 1, address);
  }
  closeSync(fd);
  const { child, stderr } = spawnPmq(['storage', '--path', region, '--listen', '127.0.0.1:0',
    '--transports', 'tcp', '--log-level', 'error', '--cluster-key-file', keyFile]);
  t.equal(await exitOf(child), 1, 'exit 1');
  t.match(stderr(), /segment 1 entry slot 0 at address 9216/);
  t.match(stderr(), /PMQ_ERR_REGION_CORRUPT/);
});
