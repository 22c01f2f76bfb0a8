// Zero-copy produce (docs/clients.md, "Zero copy"), through real processes (`pmq dev`: a
// storage node and a broker) and the client library: record values of at least
// zeroCopyMinBytes are written from the caller's own buffers, one validated write per piece.
// - large records, mixed small and large records in one batch, keys and headers: consumed
//   byte for byte, and the large values really went uncopied (one write per piece);
// - a caller who changes a value after its batch's CRC, while its write is in flight (done
//   deterministically, from the write call): send() still resolves, but the storage node
//   finds the CRC wrong at persist and stores a control batch in its place, so consumers skip
//   that offset and never see bytes the CRC does not cover; with zeroCopyMinBytes Infinity (a
//   copy at encode) the record is stored as copied;
// - the same without timing control: a worker thread rewrites the value without pause while
//   zero-copy and copying producers send it; every send resolves, every stored batch passes
//   its CRC (the consumer checks), every copied record is stored.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import t, { type Test } from 'tap';

import type { Connection } from '../../clients/connection.js';
import {
  connect, type Client, type ConsumerRecord, type Consumer, type ZeroCopyWrites,
} from '../../clients/index.js';
import { ZERO_COPY_MIN_BYTES_DEFAULT } from '../../clients/producer.js';
import { exitOf, waitForLine } from '../helpers/broker-cluster.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];
const KIB = 1024;
const MIB = 1024 * KIB;
const dir = mkdtempSync('/dev/shm/pmq-zero-copy-');
let dev: ChildProcess | undefined;
let output = '';
let client: Client;

t.before(async () => {
  dev = spawn(process.execPath, [...PMQ, 'dev', '--path', join(dir, 'region'), '--size',
    '64MiB', '--segment-size', '4MiB', '--listen', '127.0.0.1:0', '--broker-listen',
    '127.0.0.1:0', '--data-dir', join(dir, 'broker'), '--transports', 'tcp', '--log-level',
    'warn'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  dev.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  dev.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const broker = (await waitForLine(dev, /broker at ([\d.]+:\d+)/))[1]!;
  client = await connect({ brokers: [broker], transports: 'tcp', netDevices: 'lo',
    clientId: 'zero-copy' });
});

t.teardown(async () => {
  await client?.close();
  if (dev !== undefined && dev.exitCode === null) {
    dev.kill('SIGTERM'); // pmq dev stops its children, then exits
    await exitOf(dev);
  }
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Counts the client's validated writes (one per call, gathered or not), and runs `before(src)`
 * for each buffer just before its write is issued (instrumentation of the real transport, no
 * mock).
 */
function watchWrites(before: (src: Uint8Array) => void = () => undefined): { count: number } {
  const { transport } = (client as unknown as { connection: Connection }).connection;
  const counter = { count: 0 };
  const write = transport.writeValidated.bind(transport);
  transport.writeValidated = (ep, grant, address, src, srcOffset, length) => {
    counter.count += 1;
    before(src);
    return write(ep, grant, address, src, srcOffset, length);
  };
  const gathered = transport.writeValidatedIov.bind(transport);
  transport.writeValidatedIov = (ep, grant, address, pieces) => {
    counter.count += 1;
    for (const piece of pieces) before(piece);
    return gathered(ep, grant, address, pieces);
  };
  return counter;
}

async function take(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  for await (const record of consumer) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

const same = (a: Uint8Array | null, b: Uint8Array | string | null | undefined): boolean =>
  a !== null && b !== null && b !== undefined && Buffer.from(a).equals(Buffer.from(b));

for (const writes of ['pieces', 'iov'] as const) {
  t.test(`large and mixed records round-trip byte for byte, large values uncopied (${writes})`,
    (t) => roundTrip(t, writes));
}

async function roundTrip(t: Test, mode: ZeroCopyWrites): Promise<void> {
  const topic = `big-${mode}`;
  await client.admin().createTopic(topic, { partitions: 1 });
  const writes = watchWrites();
  const producer = client.producer({ lingerMs: 20, maxRecordBatchBytes: 3 * MIB,
    maxBatchBytes: 3 * MIB, zeroCopyWrites: mode });
  const large = (bytes: number): Buffer => randomBytes(bytes);
  // One send: one batch of small, large (at and above the threshold), null and keyed records.
  const mixed = [
    { value: 'small-1' },
    { key: 'k-large', value: large(MIB), headers: { h1: 'v1', h2: large(300) } },
    { value: large(ZERO_COPY_MIN_BYTES_DEFAULT) },
    { key: large(20), value: large(ZERO_COPY_MIN_BYTES_DEFAULT - 1) }, // copied: below
    { value: null, headers: [{ key: 'tomb', value: null }] },
    { value: large(700 * KIB), headers: [{ key: 'last', value: 'header after a large value' }] },
  ];
  const offsets = await producer.send({ topic, records: mixed });
  t.same(offsets.map((o) => o.offset), [0, 1, 2, 3, 4, 5], 'one batch, dense offsets');
  // Header+framing, three referenced values and the framing between and after them: 7 pieces.
  t.equal(writes.count, mode === 'iov' ? 1 : 7, mode === 'iov' ? 'one gathered write'
    : 'one validated write per piece: three values went uncopied');
  const alone = [{ value: large(MIB - 200) }, { value: large(2 * MIB) }];
  for (const record of alone) await producer.send({ topic, records: [record] });
  await producer.close();

  const consumer = client.consumer({ start: 'earliest' });
  await consumer.assign([{ topic, partition: 0 }]);
  const records = await take(consumer, 8);
  await consumer.close();
  const sent = [...mixed, ...alone];
  let problems = 0;
  for (const [i, record] of records.entries()) {
    const want = sent[i]!;
    const valueOk = want.value === null ? record.value === null : same(record.value, want.value);
    const keyOk = 'key' in want ? same(record.key, want.key) : record.key === null;
    if (!valueOk || !keyOk || record.offset !== i) {
      problems += 1;
      t.fail(`record ${i}`);
    }
  }
  t.equal(problems, 0, '8 records identical');
  t.same(records[1]!.headers.map((h) => h.key), ['h1', 'h2']);
  t.ok(same(records[1]!.headers[1]!.value, (mixed[1]!.headers as { h2: Buffer }).h2));
  t.same(records[4]!.headers, [{ key: 'tomb', value: null }]);
  t.equal(Buffer.from(records[5]!.headers[0]!.value!).toString(), 'header after a large value');
}

async function consumeUntilEnd(topic: string): Promise<ConsumerRecord[]> {
  const consumer = client.consumer({ start: 'earliest' });
  await consumer.assign([{ topic, partition: 0 }]);
  const records: ConsumerRecord[] = [];
  for await (const record of consumer) { // the reader checked every batch's CRC
    records.push(record);
    if (record.key !== null && Buffer.from(record.key).toString() === 'end') break;
  }
  await consumer.close();
  return records;
}

const keyOf = (record: ConsumerRecord): string => Buffer.from(record.key!).toString();

for (const writes of ['pieces', 'iov'] as const) {
  t.test('a value changed after its CRC, before it is sent: send() resolves, the batch is ' +
    `replaced by a control batch, consumers skip it; copied, it is stored (${writes})`,
  (t) => changedMidSend(t, writes));
}

/** Storage-node log lines about batches replaced at persist so far. */
const replacements = (): number => output.split('replaced by control batches').length - 1;

async function changedMidSend(t: Test, mode: ZeroCopyWrites): Promise<void> {
  const topic = `changed-${mode}`;
  await client.admin().createTopic(topic, { partitions: 1 });
  const replacedBefore = replacements();
  const value = Buffer.alloc(MIB, 1);
  const original = Buffer.from(value);
  // The caller changes its buffer while the write of it is in flight (after encode and CRC).
  watchWrites((src) => { if (src === value) value[12345] = 99; });
  const zeroCopy = client.producer({ lingerMs: 0, maxRecordBatchBytes: 2 * MIB,
    zeroCopyWrites: mode });
  const copying = client.producer({ lingerMs: 0, maxRecordBatchBytes: 2 * MIB,
    zeroCopyMinBytes: Infinity });
  const [zero] = await zeroCopy.send({ topic, records: [{ key: 'zero', value }] });
  value.set(original);
  const [copied] = await copying.send({ topic, records: [{ key: 'copy', value }] });
  await zeroCopy.send({ topic, records: [{ key: 'end', value: 'after' }] });
  await zeroCopy.close();
  await copying.close();
  t.equal(zero!.offset, 0, 'the zero-copy send resolved: acknowledged at offset 0');
  const records = await consumeUntilEnd(topic);
  t.same(records.map(keyOf), ['copy', 'end'], 'offset 0 is a control batch: consumers skip it');
  t.equal(records[0]!.offset, copied!.offset);
  t.ok(same(records[0]!.value, original), 'the copied record is stored as it was copied');
  // The log line is written at persist, before the ack; its pipe may deliver it a bit later.
  for (let i = 0; i < 100 && replacements() === replacedBefore; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.equal(replacements(), replacedBefore + 1, 'the storage node logs the replacement');
}

/** A worker thread that rewrites `shared` without pause until terminated. */
function startMutating(shared: SharedArrayBuffer): Worker {
  return new Worker(`
    const { workerData } = require('node:worker_threads');
    const bytes = new Uint8Array(workerData);
    for (let round = 1; ; round += 1) {
      for (let i = 0; i < bytes.length; i += 64) bytes[i] = round;
    }`, { eval: true, workerData: shared });
}

t.test('values rewritten without pause while sent: every send resolves, every stored batch ' +
  'passes its CRC, the copied ones are all stored', async (t) => {
  await client.admin().createTopic('mutated', { partitions: 1 });
  const sends = 4;
  const shared = new SharedArrayBuffer(MIB);
  const value = new Uint8Array(shared);
  const mutator = startMutating(shared);
  const zeroCopy = client.producer({ lingerMs: 0, maxRecordBatchBytes: 2 * MIB });
  const copying = client.producer({ lingerMs: 0, maxRecordBatchBytes: 2 * MIB,
    zeroCopyMinBytes: Infinity });
  try {
    for (let i = 0; i < sends; i += 1) {
      await zeroCopy.send({ topic: 'mutated', records: [{ key: `z${i}`, value }] });
      await copying.send({ topic: 'mutated', records: [{ key: `c${i}`, value }] });
    }
  } finally {
    await mutator.terminate();
  }
  await zeroCopy.send({ topic: 'mutated', records: [{ key: 'end', value: 'after' }] });
  await zeroCopy.close();
  await copying.close();
  const records = await consumeUntilEnd('mutated');
  const keys = records.map(keyOf);
  t.same(keys.filter((key) => key.startsWith('c')),
    Array.from({ length: sends }, (_, i) => `c${i}`), 'the copied records are all stored');
  const zeroStored = keys.filter((key) => key.startsWith('z')).length;
  t.comment(`${sends - zeroStored} of ${sends} zero-copy batches replaced (changed mid-send)`);
  t.ok(records.every((r) => keyOf(r) === 'end' || r.value!.byteLength === MIB));
});
