// PartitionReader over an in-memory segment (a fake connection: fetchView names the segment,
// reads copy from it): records come back dense and intact, control batches are skipped,
// records below the start offset dropped, batches larger than a chunk and batches cut by a
// chunk's end read whole; records kept across fetches keep their bytes (no buffer is reused
// under them); a damaged batch is refused, and the good batches of its chunk before it are
// returned first; a read whose transfer failed fails retriable and the next fetch asks the broker
// again; one read is issued ahead of the application, never more; records are decoded when
// asked for.
import t from 'tap';

import type { Connection } from '../../clients/connection.js';
import { PartitionReader } from '../../clients/partition-reader.js';
import { CheckedBatch, type ConsumerRecord } from '../../clients/records.js';
import type { SegmentView } from '../../clients/storage-reads.js';
import { encodeRecordBatch } from '../../common/record-batch/index.js';
import { AccessError } from '../../native/transport-core.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();

interface Segment { bytes: Uint8Array; view: SegmentView; values: Map<number, string> }

/** Batches of 1..40 records (values name their offset), every 5th a control batch. */
function segmentOf(batches: number, valueBytesMax: number): Segment {
  const prng = prngFrom(seed);
  const parts: Uint8Array[] = [];
  const values = new Map<number, string>();
  let offset = 0;
  for (let b = 0; b < batches; b += 1) {
    const count = 1 + prng.int(40);
    const isControl = b % 5 === 4;
    const records = Array.from({ length: count }, (_, i) => {
      const value = `${offset + i}:${'x'.repeat(prng.int(valueBytesMax))}`;
      if (!isControl) values.set(offset + i, value);
      return { value: new TextEncoder().encode(value), timestamp: 1000 + offset + i };
    });
    parts.push(encodeRecordBatch(records, { baseOffset: offset, isControl }));
    offset += count;
  }
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let position = 0;
  for (const part of parts) {
    bytes.set(part, position);
    position += part.length;
  }
  const view: SegmentView = { nodeId: 1, grantId: 1, grantKey: 1, grantEpoch: 1, address: 0,
    sizeBytes: bytes.length, chainPosition: 0, baseOffset: 0, position: bytes.length,
    offsetLast: offset - 1, sealed: false };
  return { bytes, view, values };
}

function connectionOver(segment: Segment, readBytes: number[] = []): Connection {
  const fake = {
    call: () => Promise.resolve({ segment: [segment.view] }),
    reads: { read: (_view: SegmentView, position: number, dst: Uint8Array, length: number) => {
      readBytes.push(length);
      dst.set(segment.bytes.subarray(position, position + length));
      return Promise.resolve();
    } },
  };
  return fake as unknown as Connection;
}

async function readAll(segment: Segment, from: number, readChunkBytes: number):
  Promise<ConsumerRecord[]> {
  const reader = new PartitionReader('topic', 3, from, connectionOver(segment),
    { readChunkBytes, maxWaitMs: 0, requestTimeoutMs: 1000, push: false });
  const kept: ConsumerRecord[] = [];
  while (reader.offset <= segment.view.offsetLast) {
    for (const batch of await reader.fetch()) {
      t.ok(batch.records.length > 0 && batch.records[0]!.offset === batch.baseOffset);
      kept.push(...batch.records);
    }
  }
  return kept;
}

t.test(`records dense, intact and kept across fetches (seed ${seed})`, async (t) => {
  const segment = segmentOf(60, 300);
  for (const [from, chunk] of [[0, 1024 * 1024], [0, 700], [17, 4096], [250, 64]] as const) {
    const kept = await readAll(segment, from, chunk);
    const expected = [...segment.values.keys()].filter((offset) => offset >= from);
    t.same(kept.map((r) => r.offset), expected, `from ${from}, chunks of ${chunk} bytes`);
    const decoder = new TextDecoder();
    const wrong = kept.filter((r) => decoder.decode(r.value!) !== segment.values.get(r.offset) ||
      r.topic !== 'topic' || r.partition !== 3 || r.timestamp !== 1000 + r.offset ||
      r.key !== null || r.headers.length !== 0);
    t.equal(wrong.length, 0, 'every kept record still holds its own bytes');
  }
});

t.test('batches larger than a chunk are read once each, not cut and read again', async (t) => {
  const batches = Array.from({ length: 6 }, (_, b) => encodeRecordBatch(
    Array.from({ length: 10 }, (_, i) => ({ value: new Uint8Array(100).fill(b * 10 + i) })),
    { baseOffset: b * 10 }));
  const batchBytes = batches[0]!.length;
  const bytes = new Uint8Array(batchBytes * batches.length);
  batches.forEach((batch, b) => bytes.set(batch, b * batchBytes));
  const segment: Segment = { bytes, values: new Map(Array.from({ length: 60 }, (_, i) =>
    [i, ''])), view: { nodeId: 1, grantId: 1, grantKey: 1, grantEpoch: 1, address: 0,
    sizeBytes: bytes.length, chainPosition: 0, baseOffset: 0, position: bytes.length,
    offsetLast: 59, sealed: false } };
  const readBytes: number[] = [];
  const reader = new PartitionReader('topic', 3, 0, connectionOver(segment, readBytes),
    { readChunkBytes: 256, maxWaitMs: 0, requestTimeoutMs: 1000, push: false });
  let records = 0;
  while (reader.offset <= segment.view.offsetLast) {
    for (const batch of await reader.fetch()) records += batch.records.length;
  }
  t.equal(records, segment.values.size, 'every record');
  t.same(readBytes, [256, ...batches.map(() => batchBytes)],
    'one cut chunk to learn the size, then one read per batch');
});

t.test('a damaged batch is refused', async (t) => {
  const segment = segmentOf(3, 20);
  segment.bytes[segment.bytes.length - 1]! ^= 0xff;
  await t.rejects(readAll(segment, 0, 1024 * 1024), { code: 'PMQ_ERR_BATCH_CRC' });
});

t.test('a read whose transfer failed fails retriable; the next fetch asks again', async (t) => {
  const segment = segmentOf(3, 20);
  const inner = connectionOver(segment);
  let views = 0;
  let failures = 1;
  const connection = {
    call: (...args: Parameters<Connection['call']>) => {
      views += 1;
      return inner.call(...args);
    },
    reads: { read: (...args: Parameters<Connection['reads']['read']>) => {
      if (failures === 0) return inner.reads.read(...args);
      failures -= 1;
      return Promise.reject(new AccessError(7));  // native/transport.h Status::transfer_failed
    } },
  } as unknown as Connection;
  const reader = new PartitionReader('topic', 3, 0, connection,
    { readChunkBytes: 1024 * 1024, maxWaitMs: 0, requestTimeoutMs: 1000, push: false });
  await t.rejects(reader.fetch(), { code: 'PMQ_ERR_TRANSFER_FAILED', retriable: true });
  t.ok((await reader.fetch()).length > 0, 'read after asking again');
  t.equal(views, 2, 'the broker was asked again');
});

t.test('a damaged batch after good ones: the good ones first, then the failure', async (t) => {
  const segment = segmentOf(4, 20);
  segment.bytes[segment.bytes.length - 1]! ^= 0xff; // the last batch's CRC fails
  const reader = new PartitionReader('topic', 3, 0, connectionOver(segment),
    { readChunkBytes: 1024 * 1024, maxWaitMs: 0, requestTimeoutMs: 1000, push: false });
  const batches = await reader.fetch(); // the whole segment is one chunk
  const offsets = batches.flatMap((batch) => batch.records.map((r) => r.offset));
  const lastGood = [...segment.values.keys()].filter((offset) => offset < reader.offset);
  t.ok(batches.length > 0, 'the batches before the damaged one are returned');
  t.same(offsets, lastGood, 'every record the cursor moved past is among them');
  await t.rejects(reader.fetch(), { code: 'PMQ_ERR_BATCH_CRC' }, 'then the failure');
  await t.rejects(reader.fetch(), { code: 'PMQ_ERR_BATCH_CRC' }, 'and again: nothing skipped');
});

t.test('one read ahead of the application, never more', async (t) => {
  const segment = segmentOf(60, 100); // batches ≤ ~5 KiB: a chunk of 8 KiB holds one at least
  let inFlight = 0;
  let inFlightMax = 0;
  let started = 0;
  const fake = {
    call: () => Promise.resolve({ segment: [segment.view] }),
    reads: { read: (_view: SegmentView, position: number, dst: Uint8Array, length: number) => {
      started += 1;
      inFlight += 1;
      inFlightMax = Math.max(inFlightMax, inFlight);
      dst.set(segment.bytes.subarray(position, position + length));
      return new Promise<void>((resolve) => setImmediate(() => { inFlight -= 1; resolve(); }));
    } },
  };
  const reader = new PartitionReader('topic', 3, 0, fake as unknown as Connection,
    { readChunkBytes: 8192, maxWaitMs: 0, requestTimeoutMs: 1000, push: false });
  const batches = await reader.fetch();
  t.ok(batches.length > 0, 'the first chunk');
  t.equal(started, 2, 'the next chunk was asked for before the application got this one');
  t.equal(inFlight, 1, 'one read in flight while the application works');
  let records = batches.flatMap((batch) => batch.records).length;
  while (reader.offset <= segment.view.offsetLast) {
    for (const batch of await reader.fetch()) records += batch.records.length;
  }
  t.equal(records, segment.values.size, 'every record');
  t.equal(inFlightMax, 1, 'never more than one read in flight');
  t.ok(batches.every((batch) => batch instanceof CheckedBatch), 'batches decode lazily');
  const batch = batches[0]!;
  t.equal(batch.records, batch.records, 'records are decoded once, then kept');
});
