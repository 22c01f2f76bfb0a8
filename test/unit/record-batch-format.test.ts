// Kafka RecordBatch v2, byte for byte: a golden batch derived by hand from the format (its CRC
// from an independent bitwise CRC32C), a batch written by another client (Shopify/sarama's
// "uncompressed record" test vector), header constants, varint edge cases and setBaseOffset.
import t from 'tap';

import {
  BatchReader, decodeRecordBatch, encodeRecordBatch, encodeRecordBatchInto, MAGIC_POSITION,
  RECORD_BATCH_HEADER_SIZE_BYTES, RECORDS_POSITION, recordBatchSizeBytes, setBaseOffset,
  validateRecordBatch, varintSizeBytes, varlongSizeBytes, writeVarint, writeVarlong,
} from '../../common/record-batch/index.js';
import * as layout from '../../common/record-batch/layout.js';

const utf8 = new TextEncoder();
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const fromHex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'));

// Two records, as a default (non-idempotent) Kafka producer would write them.
const GOLDEN_RECORDS = [
  { key: utf8.encode('key'), value: utf8.encode('value'), timestamp: 1_700_000_000_000 },
  { key: null, value: utf8.encode('v2'), timestamp: 1_700_000_000_100,
    headers: [{ key: 'h', value: utf8.encode('x') }] },
];
const GOLDEN_FIELDS: readonly [string, string][] = [
  ['0000000000000000', 'baseOffset 0'],
  ['0000004e', 'batchLength 78 = 90 - 12'],
  ['ffffffff', 'partitionLeaderEpoch -1'],
  ['02', 'magic 2'],
  ['b30d8e57', 'crc32c of the 69 bytes from attributes to the end'],
  ['0000', 'attributes: no compression, create time, not transactional, not control'],
  ['00000001', 'lastOffsetDelta 1'],
  ['0000018bcfe56800', 'baseTimestamp 1700000000000'],
  ['0000018bcfe56864', 'maxTimestamp 1700000000100'],
  ['ffffffffffffffff', 'producerId -1'],
  ['ffff', 'producerEpoch -1'],
  ['ffffffff', 'baseSequence -1'],
  ['00000002', 'record count 2'],
  ['1c', 'record 0 length 14 (zigzag 28)'],
  ['00', 'attributes'],
  ['00', 'timestampDelta 0'],
  ['00', 'offsetDelta 0'],
  ['06', 'keyLength 3'],
  ['6b6579', '"key"'],
  ['0a', 'valueLength 5'],
  ['76616c7565', '"value"'],
  ['00', 'header count 0'],
  ['1a', 'record 1 length 13 (zigzag 26)'],
  ['00', 'attributes'],
  ['c801', 'timestampDelta 100 (zigzag 200 = 0x48 | 0x80, 0x01)'],
  ['02', 'offsetDelta 1'],
  ['01', 'keyLength -1 (null)'],
  ['04', 'valueLength 2'],
  ['7632', '"v2"'],
  ['02', 'header count 1'],
  ['02', 'header key length 1'],
  ['68', '"h"'],
  ['02', 'header value length 1'],
  ['78', '"x"'],
];

t.test('golden batch, derived by hand from the format', async (t) => {
  const expected = GOLDEN_FIELDS.map(([bytes]) => bytes).join('');
  const bytes = encodeRecordBatch(GOLDEN_RECORDS);
  t.equal(bytes.byteLength, 90);
  t.equal(hex(bytes), expected);
  t.equal(recordBatchSizeBytes(GOLDEN_RECORDS), 90);
  const batch = decodeRecordBatch(fromHex(expected));
  t.equal(batch.crc, 0xb30d8e57);
  t.equal(batch.lastOffsetDelta, 1);
  t.equal(batch.baseTimestamp, 1_700_000_000_000);
  t.equal(batch.maxTimestamp, 1_700_000_000_100);
  t.same(batch.records.map((r) => [r.offset, r.timestamp, r.key === null, r.headers.length]),
    [[0, 1_700_000_000_000, false, 0], [1, 1_700_000_000_100, true, 1]]);
  t.equal(batch.records[1]?.headers[0]?.key, 'h');
});

// Shopify/sarama record_test.go, "uncompressed record": written by another Kafka client.
// Its CRC 0x547961fd was re-derived with an independent bitwise CRC32C.
const SARAMA_UNCOMPRESSED = [
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 70, 0, 0, 0, 0, 2, 84, 121, 97, 253, 0, 0, 0, 0, 0, 0,
  0, 0, 1, 88, 141, 205, 89, 56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 1,
  40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
];

t.test('a batch written by another Kafka client decodes', async (t) => {
  const batch = decodeRecordBatch(Uint8Array.from(SARAMA_UNCOMPRESSED));
  t.equal(batch.crc, 0x547961fd);
  t.equal(batch.baseTimestamp, 1_479_847_795_000);
  const [record] = batch.records;
  t.equal(record?.timestampDelta, 5);
  t.same(Array.from(record?.key ?? []), [1, 2, 3, 4]);
  t.same(Array.from(record?.value ?? []), [5, 6, 7]);
  t.same(Array.from(record?.headers[0]?.value ?? []), [11, 12]);
  t.equal(record?.headers[0]?.key, '\x08\x09\x0a');
});

t.test('header constants match Kafka DefaultRecordBatch', async (t) => {
  t.equal(RECORD_BATCH_HEADER_SIZE_BYTES, 61, 'RECORD_BATCH_OVERHEAD');
  t.equal(RECORDS_POSITION, 61);
  t.same([layout.BASE_OFFSET_POSITION, layout.BATCH_LENGTH_POSITION,
    layout.PARTITION_LEADER_EPOCH_POSITION, MAGIC_POSITION, layout.CRC_POSITION,
    layout.ATTRIBUTES_POSITION, layout.LAST_OFFSET_DELTA_POSITION,
    layout.BASE_TIMESTAMP_POSITION, layout.MAX_TIMESTAMP_POSITION, layout.PRODUCER_ID_POSITION,
    layout.PRODUCER_EPOCH_POSITION, layout.BASE_SEQUENCE_POSITION, layout.RECORD_COUNT_POSITION],
  [0, 8, 12, 16, 17, 21, 23, 27, 35, 43, 51, 53, 57]);
  t.equal(layout.BATCH_LENGTH_MIN, 49);
});

const VARINTS: readonly [number, string][] = [
  [0, '00'], [-1, '01'], [1, '02'], [63, '7e'], [-64, '7f'], [64, '8001'], [-65, '8101'],
  [300, 'd804'], [2 ** 31 - 1, 'feffffff0f'], [-(2 ** 31), 'ffffffff0f'],
];
const VARLONGS: readonly [bigint, string][] = [
  [0n, '00'], [-1n, '01'], [63n, '7e'], [64n, '8001'], [-65n, '8101'],
  [2n ** 31n - 1n, 'feffffff0f'], [-(2n ** 31n), 'ffffffff0f'],
  [2n ** 53n - 1n, 'feffffffffffff1f'], [-(2n ** 53n), 'ffffffffffffff1f'],
  [2n ** 63n - 1n, 'feffffffffffffffff01'], [-(2n ** 63n), 'ffffffffffffffffff01'],
];

function readerOver(bytes: Uint8Array): BatchReader {
  return new BatchReader(bytes, new DataView(bytes.buffer, bytes.byteOffset), 0, bytes.length);
}

t.test('varint and varlong edge cases', async (t) => {
  for (const [value, encoded] of VARINTS) {
    const target = new Uint8Array(5);
    t.equal(writeVarint(target, 0, value), encoded.length / 2, `size of varint ${value}`);
    t.equal(varintSizeBytes(value), encoded.length / 2);
    t.equal(hex(target.subarray(0, encoded.length / 2)), encoded, `varint ${value}`);
    t.equal(readerOver(fromHex(encoded)).varint('v'), value, `read varint ${value}`);
  }
  for (const [value, encoded] of VARLONGS) {
    const target = new Uint8Array(10);
    t.equal(writeVarlong(target, 0, value), encoded.length / 2, `size of varlong ${value}`);
    t.equal(varlongSizeBytes(value), encoded.length / 2);
    t.equal(hex(target.subarray(0, encoded.length / 2)), encoded, `varlong ${value}`);
    t.equal(readerOver(fromHex(encoded)).varlongBigInt('v'), value, `read varlong ${value}`);
    const safe = value >= BigInt(Number.MIN_SAFE_INTEGER) &&
      value <= BigInt(Number.MAX_SAFE_INTEGER);
    if (safe) {
      t.equal(readerOver(fromHex(encoded)).varlong('v'), Number(value), `number ${value}`);
      const viaNumber = new Uint8Array(10);
      writeVarlong(viaNumber, 0, Number(value));
      t.equal(hex(viaNumber.subarray(0, encoded.length / 2)), encoded, `from number ${value}`);
    } else {
      t.throws(() => readerOver(fromHex(encoded)).varlong('v'),
        { code: 'PMQ_ERR_BATCH_CORRUPT' }, `${value} is beyond a number`);
    }
  }
});

t.test('malformed varints are rejected', async (t) => {
  const bad: readonly [string, string, 'varint' | 'varlong'][] = [
    ['8000', 'overlong zero', 'varint'], ['ff00', 'overlong 127', 'varint'],
    ['ffffffff10', 'fifth byte beyond int32', 'varint'],
    ['ffffffff8f01', 'six bytes', 'varint'], ['80', 'truncated', 'varint'],
    ['', 'empty', 'varint'],
    ['ffffffffffffffffff02', 'tenth byte beyond int64', 'varlong'],
    ['ffffffffffffffffff8101', 'eleven bytes', 'varlong'], ['8080', 'truncated', 'varlong'],
    ['ff80808080808000', 'overlong, past the number fast path', 'varlong'],
    ['8100', 'overlong', 'varlong'],
  ];
  for (const [encoded, what, kind] of bad) {
    const reader = readerOver(fromHex(encoded));
    t.throws(() => (kind === 'varint' ? reader.varint('v') : reader.varlongBigInt('v')),
      { code: 'PMQ_ERR_BATCH_CORRUPT', position: 0 }, `${kind} ${encoded}: ${what}`);
  }
});

t.test('setBaseOffset patches in place and keeps the CRC valid', async (t) => {
  const bytes = encodeRecordBatch(GOLDEN_RECORDS, { baseOffset: 7 });
  const before = bytes.slice();
  for (const baseOffset of [0, 1, 2 ** 32, 123_456_789_012, Number.MAX_SAFE_INTEGER - 1]) {
    setBaseOffset(bytes, 0, baseOffset);
    t.equal(hex(bytes.subarray(8)), hex(before.subarray(8)), 'only bytes 0..7 change');
    const batch = decodeRecordBatch(bytes);
    t.equal(batch.baseOffset, baseOffset);
    t.same(batch.records.map((r) => r.offset), [baseOffset, baseOffset + 1]);
  }
  setBaseOffset(bytes, 0, 0x0102030405);
  t.equal(hex(bytes.subarray(0, 8)), '0000000102030405', 'big-endian int64');
  const region = new Uint8Array(1000).fill(0xee);
  const size = encodeRecordBatchInto(region, 333, GOLDEN_RECORDS);
  setBaseOffset(region, 333, 42);
  t.equal(validateRecordBatch(region, 333, size).baseOffset, 42, 'inside a larger buffer');
  t.throws(() => setBaseOffset(bytes, 0, -1), { code: 'PMQ_ERR_ARGUMENT' });
  t.throws(() => setBaseOffset(bytes, 0, 2 ** 53), { code: 'PMQ_ERR_ARGUMENT' });
  t.throws(() => setBaseOffset(bytes, 40, 1), { code: 'PMQ_ERR_BATCH_TRUNCATED' });
  const wrongMagic = bytes.slice();
  wrongMagic[MAGIC_POSITION] = 1;
  t.throws(() => setBaseOffset(wrongMagic, 0, 1), { code: 'PMQ_ERR_BATCH_MAGIC' });
});
