// Seeded random batches (0..1000 records, null keys and values, headers, 1 MiB values) survive
// encode → validate → decode unchanged; encodeRecordBatchInto writes the same bytes at any
// position of a larger buffer; keys and values decode as views (zero copy); attributes.
import t from 'tap';

import {
  decodeRecordBatch, encodeRecordBatch, encodeRecordBatchInto, type EncodeOptions,
  type RecordInput, recordBatchSizeBytes, validateRecordBatch,
} from '../../common/record-batch/index.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();
const hex = (bytes: Uint8Array | null | undefined): string | null =>
  bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('hex');

/** Compares decoded records with the input; returns the first difference, or null. */
function firstDifference(records: readonly RecordInput[], bytes: Uint8Array, position: number,
  options: EncodeOptions): string | null {
  const batch = decodeRecordBatch(bytes, position);
  if (batch.records.length !== records.length) return `count ${batch.records.length}`;
  for (const [index, record] of records.entries()) {
    const decoded = batch.records[index];
    if (decoded === undefined) return `record ${index} missing`;
    if (decoded.offset !== (options.baseOffset ?? 0) + index) return `record ${index} offset`;
    if (decoded.timestamp !== (record.timestamp ?? options.timestampDefault)) {
      return `record ${index} timestamp ${decoded.timestamp}`;
    }
    if (hex(decoded.key) !== hex(record.key)) return `record ${index} key`;
    if (hex(decoded.value) !== hex(record.value)) return `record ${index} value`;
    const headers = (record.headers ?? []).map((h) => [h.key, hex(h.value)]);
    const got = decoded.headers.map((h) => [h.key, hex(h.value)]);
    if (JSON.stringify(headers) !== JSON.stringify(got)) return `record ${index} headers`;
  }
  return null;
}

t.test(`random batches round trip (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  const counts = [0, 1, 2, 1000, ...Array.from({ length: 40 }, () => prng.int(1001))];
  let problems = 0;
  for (const count of counts) {
    const records = randomRecords(prng, count, prng.chance(0.5) ? 16 : 2000);
    const options: EncodeOptions = {
      baseOffset: prng.chance(0.5) ? 0 : prng.int(2 ** 40),
      timestampDefault: 1_700_000_000_000 + prng.int(1000),
      ...(prng.chance(0.5) ? { producerId: prng.int(2 ** 40), producerEpoch: prng.int(32768),
        baseSequence: prng.int(2 ** 31 - 1001) } : {}),
    };
    const bytes = encodeRecordBatch(records, options);
    const header = validateRecordBatch(bytes);
    const difference = firstDifference(records, bytes, 0, options);
    if (difference !== null || header.recordCount !== count ||
        header.sizeBytes !== bytes.byteLength ||
        recordBatchSizeBytes(records, options) !== bytes.byteLength ||
        header.producerId !== (options.producerId ?? -1)) {
      problems += 1;
      t.fail(`batch of ${count}: ${difference ?? 'header'}`);
    }
    const position = prng.int(64);
    const target = prng.bytes(position + bytes.byteLength + prng.int(64));
    const written = encodeRecordBatchInto(target, position, records, options);
    if (written !== bytes.byteLength ||
        hex(target.subarray(position, position + written)) !== hex(bytes)) {
      problems += 1;
      t.fail(`encodeRecordBatchInto at ${position} differs for ${count} records`);
    }
  }
  t.equal(problems, 0, `${counts.length} batches`);
});

t.test(`1 MiB values (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed ^ 0x5a5a);
  const records = [
    { key: prng.bytes(16), value: prng.bytes(1 << 20), timestamp: 1 },
    { value: prng.bytes((1 << 20) + 3), timestamp: 2 ** 41 },
    { key: null, value: null, timestamp: 0 },
  ];
  const bytes = encodeRecordBatch(records);
  t.equal(firstDifference(records, bytes, 0, {}), null);
  const batch = decodeRecordBatch(bytes);
  t.equal(batch.records[0]?.value?.buffer, bytes.buffer, 'value is a view, not a copy');
  // header, record length (4-byte varint), attributes, timestampDelta, offsetDelta, keyLength,
  // key, valueLength (zigzag 2^21: a 4-byte varint)
  t.equal(batch.records[0]?.value?.byteOffset, 61 + 4 + 1 + 1 + 1 + 1 + 16 + 4);
  t.equal(batch.maxTimestamp, 2 ** 41);
  t.equal(batch.baseTimestamp, 1);
});

t.test('attributes, empty batch and defaults', async (t) => {
  const control = decodeRecordBatch(encodeRecordBatch([{ value: null, timestamp: 5 }],
    { isControl: true, isTransactional: true, timestampType: 'log-append-time' }));
  t.same(control.attributes, { compression: 'none', timestampType: 'log-append-time',
    isTransactional: true, isControl: true });
  const empty = decodeRecordBatch(encodeRecordBatch([], { baseOffset: 9 }));
  t.same([empty.recordCount, empty.lastOffsetDelta, empty.baseTimestamp, empty.maxTimestamp,
    empty.sizeBytes, empty.batchLength], [0, -1, -1, -1, 61, 49]);
  const before = Date.now();
  const stamped = decodeRecordBatch(encodeRecordBatch([{ value: null }, { value: null }]));
  const [first, second] = stamped.records;
  t.ok((first?.timestamp ?? 0) >= before && first?.timestamp === second?.timestamp,
    'one Date.now() per batch');
  t.same([stamped.producerId, stamped.producerEpoch, stamped.baseSequence,
    stamped.partitionLeaderEpoch], [-1, -1, -1, -1]);
});

t.test('encoder arguments', async (t) => {
  const value = new Uint8Array(1);
  const bad: [string, () => unknown][] = [
    ['records not an array', () => encodeRecordBatch('x' as unknown as RecordInput[])],
    ['value not bytes', () => encodeRecordBatch([{ value: 'v' as unknown as Uint8Array }])],
    ['key not bytes', () => encodeRecordBatch([{ value, key: [1] as unknown as Uint8Array }])],
    ['negative timestamp', () => encodeRecordBatch([{ value, timestamp: -1 }])],
    ['fractional timestamp', () => encodeRecordBatch([{ value, timestamp: 1.5 }])],
    ['header key not a string', () => encodeRecordBatch([{ value,
      headers: [{ key: 1 as unknown as string, value: null }] }])],
    ['negative baseOffset', () => encodeRecordBatch([], { baseOffset: -1 })],
    ['producerEpoch too big', () => encodeRecordBatch([], { producerEpoch: 40000 })],
    ['partitionLeaderEpoch beyond int32', () => encodeRecordBatch([],
      { partitionLeaderEpoch: 2 ** 31 })],
    ['target too small', () => encodeRecordBatchInto(new Uint8Array(60), 0, [])],
    ['target position past the end', () => encodeRecordBatchInto(new Uint8Array(80), 81, [])],
  ];
  for (const [what, call] of bad) t.throws(call, { code: 'PMQ_ERR_ARGUMENT' }, what);
  const target = new Uint8Array(100).fill(7);
  t.throws(() => encodeRecordBatchInto(target, 50, [{ value }]), { code: 'PMQ_ERR_ARGUMENT' });
  t.ok(target.every((byte) => byte === 7), 'nothing written when the target is too small');
});
