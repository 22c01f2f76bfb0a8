// The storage node's native persist path (native/persist_native.cc; docs/wire-protocol.md,
// "Persist frames") against `pmq storage` in its own process, this process speaking as the
// broker. Which path served a persist shows in its reply: a "PN" frame from native code, a
// msgpack message from the JS persist queue. Checked: plain persists are native and do what the
// JS path does (baseOffsets, readable prefix, write grants revoked or floored); whatever native
// does not serve (a bad batch, pieces that do not tile, a seal, a non-owner) goes to JS and gets
// its answer there; hostile persist frames from the owner itself never stop the node, and what
// they leave durable still verifies batch by batch after a restart.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { pino } from 'pino';
import t from 'tap';

import { BROKER_SESSION } from '../../common/auth/keys.js';
import { decodeRecordBatch, encodeRecordBatch } from '../../common/record-batch/index.js';
import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import {
  encodePersistFrame, isPersistFrameHeader, PERSIST_FRAME_HEADER,
} from '../../common/wire/persist-frame.js';
import { Region } from '../../native/region.js';
import { Transport, type Endpoint, type MessageHandler } from '../../native/transport.js';
import { helloWithKey } from '../../broker-node/storage-auth.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import { RegionStore } from '../../storage-node/region-store.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';
import { startStorage, type StorageProcess } from '../helpers/storage-process.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const KIB = 1024;
const TEST_INSTANCE = 0x7e58;
const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
const channel = new ControlChannel(transport, pino({ level: 'silent' }));
t.teardown(() => transport.close());

/** The frame header of the last reply delivered: which path answered. */
let lastReply: 'native' | 'js' = 'js';
const channelHandler = (transport as unknown as { messageHandler: MessageHandler })
  .messageHandler;
transport.setMessageHandler({
  deliver(ep, header, payload) {
    lastReply = isPersistFrameHeader(header) ? 'native' : 'js';
    channelHandler.deliver(ep, header, payload);
  },
});

const dir = mkdtempSync('/dev/shm/pmq-persist-native-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = testKeyFile(dir);
const key = testKey(keyFile);
const nodes: StorageProcess[] = [];
t.teardown(async () => { for (const node of nodes) await node.kill('SIGKILL'); });

async function start(region: string, extra: string[] = []): Promise<{ node: StorageProcess;
  ep: Endpoint; }> {
  const node = await startStorage(keyFile, ['--path', region, ...extra]);
  nodes.push(node);
  const ep = await transport.connect(node.host, node.port);
  await helloWithKey(channel, ep, key, { epoch: 1, instance: TEST_INSTANCE }, 'test', 5000);
  return { node, ep };
}

function call<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>): Promise<Message> {
  return channel.request(ep, kind, body, 5000);
}

/** Grants of the test's endpoint: authenticated as the broker, it is BROKER_SESSION's. */
const B = { session: BROKER_SESSION, key: 1 } as const;
const allocate = { epoch: 1, topic: 'native', partition: 0, chainPosition: 0, baseOffset: 0,
  sizeBytesMin: 0 };
const records = Array.from({ length: 4 }, (_, i) => ({ key: null,
  value: new TextEncoder().encode(`record ${i} `.repeat(10)) }));
const batch = encodeRecordBatch(records, { baseOffset: 0, timestampDefault: 1_700_000_000_000 });
const size = batch.byteLength;
const piece = (n: number) => ({ position: n * size, baseOffset: n * 4, bytes: size, records: 4 });
const persistUpTo = (n: number, pieces = Array.from({ length: n }, (_, i) => piece(i))) =>
  ({ epoch: 1, segmentIndex: 0, position: n * size, offsetLast: n * 4 - 1, seal: false,
    patches: pieces });

async function writeBatches(ep: Endpoint, grantId: number, address: number, count: number,
  from = 0): Promise<void> {
  for (let n = from; n < from + count; n += 1) {
    await transport.writeValidated(ep, { id: grantId, epoch: 1, key: 1 }, address + n * size,
      batch, 0, size);
  }
}

t.test('a plain persist is served natively and does what the JS path does', async (t) => {
  const { node, ep } = await start(join(dir, 'plain.region'), ['--size', '1MiB',
    '--segment-size', '64KiB']);
  const segment = await call(ep, 'segmentAllocate', allocate) as Message<'segment'>;
  const grant = (grantId: number, position: number, sizeBytes: number,
    direction: 'read' | 'write') => call(ep, 'grantCreate', { ...B, epoch: 1, grantId,
    segmentIndex: 0, position, sizeBytes, direction });
  await grant(1, 0, 2 * size, 'write');    // ends inside what persists: revoked
  await grant(2, 0, 8 * size, 'write');    // a lease's, reaching past it: floored
  await grant(3, 0, 8 * size, 'read');     // reads follow the watermark
  await writeBatches(ep, 1, segment.address, 2);
  await writeBatches(ep, 2, segment.address, 1, 2);
  const reply = await call(ep, 'persist', persistUpTo(3));
  t.match(reply, { kind: 'persisted', segmentIndex: 0, position: 3 * size, offsetLast: 11,
    sealed: false });
  t.equal(lastReply, 'native', 'answered by the native path');

  const back = new Uint8Array(3 * size);
  await transport.readValidated(ep, { id: 3, epoch: 1, key: 1 }, segment.address, back, 0,
    back.byteLength);
  t.same([0, 1, 2].map((n) => decodeRecordBatch(back, n * size).baseOffset), [0, 4, 8],
    'baseOffsets patched, CRCs good, readable up to the new watermark');
  await t.rejects(transport.readValidated(ep, { id: 3, epoch: 1, key: 1 }, segment.address,
    new Uint8Array(4 * size), 0, 4 * size), { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' },
  'and not past it');
  await t.rejects(writeBatches(ep, 1, segment.address, 1), { code: 'PMQ_ERR_GRANT_REVOKED' },
    'a write grant inside the durable range is revoked');
  await t.rejects(writeBatches(ep, 2, segment.address, 1), { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' },
    'a lease\'s grant no longer writes below the watermark');
  await writeBatches(ep, 2, segment.address, 1, 3);
  t.match(await call(ep, 'grantRevoke', { epoch: 1, grantId: 1 }), { kind: 'done' },
    'revoking the natively revoked grant again is a no-op');

  t.match(await call(ep, 'persist', persistUpTo(3)), { kind: 'persisted', position: 3 * size });
  t.equal(lastReply, 'js', 'a repeat (covered) is answered by JS');
  t.match(await call(ep, 'persist', persistUpTo(4)), { kind: 'persisted', position: 4 * size });
  t.equal(lastReply, 'native', 'the next one natively again');
  const again = await helloWithKey(channel, ep, key, { epoch: 1, instance: TEST_INSTANCE },
    'test', 5000);
  t.match(again.segments[0], { position: 4 * size, offsetLast: 15 },
    'JS sees the durable watermark native persisted');

  // The channel decodes every persisted reply into one refilled record; a promise's reply
  // must be a copy, or two replies in a row would both read as the last.
  await writeBatches(ep, 2, segment.address, 2, 4);
  const [five, six] = await Promise.all([call(ep, 'persist', persistUpTo(5)),
    call(ep, 'persist', persistUpTo(6))]);
  t.same([five, six].map((reply) => reply.kind === 'persisted' ? reply.position : -1),
    [5 * size, 6 * size], 'each persisted reply keeps its own watermark');
  t.not(five, six, 'two objects');
  t.equal(node.child.exitCode, null, 'the node is still running');
});

t.test('what native does not serve goes to JS, which answers it', async (t) => {
  const { node, ep } = await start(join(dir, 'declined.region'), ['--size', '1MiB',
    '--segment-size', '64KiB']);
  const segment = await call(ep, 'segmentAllocate', allocate) as Message<'segment'>;
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 1, segmentIndex: 0, position: 0,
    sizeBytes: 16 * size, direction: 'write' });
  await writeBatches(ep, 1, segment.address, 1);
  // Batch 1 is written with one byte flipped: its CRC fails.
  const bad = batch.slice();
  bad[size - 1] = bad[size - 1]! ^ 0xff;
  await transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, segment.address + size, bad,
    0, size);
  t.match(await call(ep, 'persist', persistUpTo(2)), { kind: 'persisted', position: 2 * size });
  t.equal(lastReply, 'js', 'a bad batch: JS replaces it');
  for (let i = 0; i < 100 && !/were replaced by control batches/.test(node.stderr()); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20)); // the log may trail the reply
  }
  t.match(node.stderr(), /were replaced by control batches/, 'and says so');

  await writeBatches(ep, 1, segment.address, 1, 2);
  await t.rejects(call(ep, 'persist', { ...persistUpTo(3), patches: [piece(2), piece(3)] }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'a piece past the persisted range: JS refuses');
  t.equal(lastReply, 'js');
  await t.rejects(call(ep, 'persist', { ...persistUpTo(3), patches: [] }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'pieces that do not tile the range: JS refuses too');
  await t.rejects(call(ep, 'persist', { ...persistUpTo(3), offsetLast: 20 }),
    { code: 'PMQ_ERR_ARGUMENT' }, 'offsets that do not add up: JS refuses too');
  // Found by the hostile frames below: a record count outside 1..2^31-1 reached an invariant.
  for (const records of [0, 2 ** 31, 3_305_111_556]) {
    await t.rejects(call(ep, 'persist', { ...persistUpTo(3), offsetLast: 7 + records,
      patches: [piece(0), piece(1), { ...piece(2), records }] }), { code: 'PMQ_ERR_ARGUMENT' },
    `a piece of ${records} records is refused, the node stays up`);
  }
  t.equal(lastReply, 'js');
  // Another connection, authenticated as another instance of the same epoch: not the owner.
  const other = await transport.connect(node.host, node.port);
  await t.rejects(helloWithKey(channel, other, key, { epoch: 1, instance: 0x1234 }, 'test',
    5000), { code: 'PMQ_ERR_EPOCH_STALE' });
  const stale = await call(other, 'persist', persistUpTo(3)).catch((error: unknown) => error);
  t.match(stale, { code: /PMQ_ERR_(AUTH|EPOCH_STALE)/ }, 'a non-owner gets the JS refusal');
  t.equal(lastReply, 'js');
  t.match(await call(ep, 'persist', persistUpTo(3)), { kind: 'persisted', position: 3 * size });
  t.equal(lastReply, 'native');
  await writeBatches(ep, 1, segment.address, 1, 3);
  t.match(await call(ep, 'persist', { ...persistUpTo(4), seal: true }),
    { kind: 'persisted', sealed: true });
  t.equal(lastReply, 'js', 'a seal: JS');
  await t.rejects(call(ep, 'persist', { ...persistUpTo(5) }), { code: 'PMQ_ERR_SEGMENT_STATE' },
    'a sealed segment: JS refuses');

  t.equal(node.child.exitCode, null, 'the node is still running');
});

/** Connects and says hello as the owner again; a connection the node drops meanwhile is retried. */
async function reconnect(node: StorageProcess): Promise<Endpoint> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const ep = await transport.connect(node.host, node.port);
      await helloWithKey(channel, ep, key, { epoch: 1, instance: TEST_INSTANCE }, 'test', 5000);
      return ep;
    } catch (error) {
      if (attempt === 5 || node.child.exitCode !== null) throw error;
    }
  }
}

t.test('hostile persist frames from the owner never stop the node', async (t) => {
  const seed = testSeed();
  t.comment(`seed ${seed} (PMQ_TEST_SEED=${seed} replays)`);
  const prng = prngFrom(seed);
  const path = join(dir, 'hostile.region');
  const started = await start(path, ['--size', '1MiB', '--segment-size', '64KiB']);
  const node = started.node;
  let ep = started.ep;
  const segment = await call(ep, 'segmentAllocate', allocate) as Message<'segment'>;
  await call(ep, 'grantCreate', { ...B, epoch: 1, grantId: 1, segmentIndex: 0, position: 0,
    sizeBytes: 64 * KIB, direction: 'write' });
  await writeBatches(ep, 1, segment.address, 40);
  let sent = 0;
  let reconnects = 0;
  for (let i = 0; i < 600; i += 1) {
    const n = 1 + prng.int(40);
    const body = persistUpTo(n);
    if (prng.chance(0.3)) body.patches = body.patches.slice(prng.int(n));
    const bytes = encodePersistFrame(1_000_000 + i, body);
    const flips = prng.int(4);
    for (let f = 0; f < flips; f += 1) bytes[prng.int(bytes.byteLength)] = prng.int(256);
    const cut = prng.chance(0.1) ? bytes.subarray(0, prng.int(bytes.byteLength)) : bytes;
    if (!transport.openEndpoints().includes(ep)) {
      // The node dropped us (a frame with no id, or too many bad ones in a row): as a broker
      // would, connect and say hello again. The grant is bound to the broker session.
      ep = await reconnect(node);
      reconnects += 1;
    }
    await transport.send(ep, PERSIST_FRAME_HEADER, cut).catch(() => undefined);
    sent += 1;
    if (prng.chance(0.05)) {
      // Below the durable watermark the grant's floor refuses it: expected.
      await writeBatches(ep, 1, segment.address, 1, prng.int(40)).catch(() => undefined);
    }
  }
  // A legitimate persist still works afterwards (the node kept the connection or we reconnect).
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(node.child.exitCode, null, `the node is still running after ${sent} frames ` +
    `(${reconnects} reconnects)`);
  t.notMatch(node.stderr(), /invariant failed|Aborted/, 'no invariant broke');
  await node.kill('SIGKILL');
  const region = Region.open({ path, mode: 'open' });
  try {
    const store = RegionStore.open(region);
    for (const info of store.segments()) {
      if (info.state === 'free') continue;
      t.doesNotThrow(() => store.verifySegmentData(info.segmentIndex),
        `segment ${info.segmentIndex}: every batch below ${info.watermark.position} verifies`);
    }
  } finally {
    region.close();
  }
});
