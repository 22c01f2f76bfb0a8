// Every damaged batch is refused with the right code and position. Every flipped byte under the
// CRC, every truncation, bad magic, and structural damage behind a valid CRC (the CRC is
// recomputed after tampering, as a buggy or hostile writer would). Seeded where random.
import t from 'tap';

import {
  ATTRIBUTES_POSITION, BATCH_LENGTH_POSITION, CRC_POSITION, decodeRecordBatch,
  encodeRecordBatch, LAST_OFFSET_DELTA_POSITION, MAGIC_POSITION, RECORD_COUNT_POSITION,
  PARTITION_LEADER_EPOCH_POSITION, RECORDS_POSITION, validateRecordBatch,
} from '../../common/record-batch/index.js';
import { crc32cSoftware } from '../../native/crc32c.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();
const utf8 = new TextEncoder();

function errorCode(bytes: Uint8Array, position = 0, length?: number): string | null {
  try {
    validateRecordBatch(bytes, position, length);
    decodeRecordBatch(bytes, position, length);
    return null;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Recomputes the CRC after tampering, so that the structural checks are reached. */
function withCrc(bytes: Uint8Array): Uint8Array {
  const crc = crc32cSoftware(bytes, ATTRIBUTES_POSITION, bytes.length - ATTRIBUTES_POSITION);
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(CRC_POSITION, crc);
  return bytes;
}

function patched(bytes: Uint8Array, patch: (view: DataView, b: Uint8Array) => void): Uint8Array {
  const copy = bytes.slice();
  patch(new DataView(copy.buffer), copy);
  return copy;
}

t.test(`any flipped byte under the CRC is a CRC error (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  const bytes = encodeRecordBatch(randomRecords(prng, 5, 20), { timestampDefault: 1 });
  const wrong: string[] = [];
  for (let position = CRC_POSITION; position < bytes.length; position += 1) {
    const copy = bytes.slice();
    copy[position] = (copy[position] ?? 0) ^ (1 + prng.int(255));
    if (errorCode(copy) !== 'PMQ_ERR_BATCH_CRC') wrong.push(`${position}: ${errorCode(copy)}`);
  }
  t.same(wrong, [], `${bytes.length - CRC_POSITION} positions`);
  const copy = bytes.slice();
  copy[0] = 0xff;
  copy[PARTITION_LEADER_EPOCH_POSITION] = 0x12;
  t.equal(errorCode(copy), 'PMQ_ERR_BATCH_CORRUPT', 'baseOffset is outside the CRC (negative)');
  copy[0] = 0;
  t.equal(errorCode(copy), null, 'partitionLeaderEpoch is outside the CRC');
});

t.test('truncation', async (t) => {
  const bytes = encodeRecordBatch([{ value: utf8.encode('value'), timestamp: 3 }]);
  const wrong: string[] = [];
  for (let length = 0; length < bytes.length; length += 1) {
    const code = errorCode(bytes, 0, length);
    if (code !== 'PMQ_ERR_BATCH_TRUNCATED') wrong.push(`${length}: ${code}`);
    if (errorCode(bytes.slice(0, length)) !== 'PMQ_ERR_BATCH_TRUNCATED') wrong.push(`${length}`);
  }
  t.same(wrong, [], `every length below ${bytes.length}`);
  const big = new Uint8Array(bytes.length + 10);
  big.set(bytes, 10);
  t.equal(errorCode(big, 10), null, 'a batch inside a larger buffer');
  t.equal(errorCode(big, 10, bytes.length), null, 'exactly its length');
  t.throws(() => validateRecordBatch(big, 10, bytes.length + 1), { code: 'PMQ_ERR_ARGUMENT' });
  t.throws(() => validateRecordBatch(big, -1), { code: 'PMQ_ERR_ARGUMENT' });
});

t.test('magic', async (t) => {
  const bytes = encodeRecordBatch([{ value: null, timestamp: 3 }]);
  for (const magic of [0, 1, 3, 0xff]) {
    const copy = patched(bytes, (_, b) => { b[MAGIC_POSITION] = magic; });
    t.throws(() => validateRecordBatch(copy),
      { code: 'PMQ_ERR_BATCH_MAGIC', position: MAGIC_POSITION }, `magic ${magic}`);
  }
});

t.test('structural damage behind a valid CRC', async (t) => {
  const records = [
    { key: utf8.encode('k'), value: utf8.encode('v'), timestamp: 10,
      headers: [{ key: 'h', value: utf8.encode('x') }] },
    { key: null, value: utf8.encode('w'), timestamp: 11 },
  ];
  const bytes = encodeRecordBatch(records);
  // record 0 starts at 61: length, attributes 62, timestampDelta 63, offsetDelta 64,
  // keyLength 65, key 66, valueLength 67, value 68, header count 69, header key length 70,
  // header key 71, header value length 72, header value 73; record 1 starts at 74.
  const cases: [string, string, number, (v: DataView, b: Uint8Array) => void][] = [
    ['compression gzip', 'PMQ_ERR_BATCH_COMPRESSION', ATTRIBUTES_POSITION,
      (v) => v.setInt16(ATTRIBUTES_POSITION, 1)],
    ['compression zstd', 'PMQ_ERR_BATCH_COMPRESSION', ATTRIBUTES_POSITION,
      (v) => v.setInt16(ATTRIBUTES_POSITION, 4)],
    ['reserved attribute bit', 'PMQ_ERR_BATCH_CORRUPT', ATTRIBUTES_POSITION,
      (v) => v.setInt16(ATTRIBUTES_POSITION, 0x40)],
    ['lastOffsetDelta not count - 1', 'PMQ_ERR_BATCH_CORRUPT', LAST_OFFSET_DELTA_POSITION,
      (v) => v.setInt32(LAST_OFFSET_DELTA_POSITION, 5)],
    ['record count above what fits', 'PMQ_ERR_BATCH_CORRUPT', RECORD_COUNT_POSITION,
      (v) => {
        v.setInt32(RECORD_COUNT_POSITION, 1e6);
        v.setInt32(LAST_OFFSET_DELTA_POSITION, 1e6 - 1);
      }],
    ['negative record count', 'PMQ_ERR_BATCH_CORRUPT', RECORD_COUNT_POSITION,
      (v) => v.setInt32(RECORD_COUNT_POSITION, -1)],
    ['fewer records than bytes', 'PMQ_ERR_BATCH_CORRUPT', 74,
      (v) => { v.setInt32(RECORD_COUNT_POSITION, 1); v.setInt32(LAST_OFFSET_DELTA_POSITION, 0); }],
    ['offsets not dense', 'PMQ_ERR_BATCH_CORRUPT', 64, (_, b) => { b[64] = 2; }],
    ['record attributes set', 'PMQ_ERR_BATCH_CORRUPT', 62, (_, b) => { b[62] = 1; }],
    ['record length past the batch', 'PMQ_ERR_BATCH_CORRUPT', RECORDS_POSITION,
      (_, b) => { b[RECORDS_POSITION] = 0x7e; }],
    // 9 bytes instead of 12: the header (at least 2 bytes) no longer fits after its count
    ['record length too short', 'PMQ_ERR_BATCH_CORRUPT', 69, (_, b) => { b[61] = 18; }],
    ['key length -2', 'PMQ_ERR_BATCH_CORRUPT', 65, (_, b) => { b[65] = 3; }],
    ['key past its record', 'PMQ_ERR_BATCH_CORRUPT', 66, (_, b) => { b[65] = 40; }],
    ['overlong varint', 'PMQ_ERR_BATCH_CORRUPT', 64, (_, b) => { b[64] = 0x80; b[65] = 0x00; }],
    ['header count beyond the record', 'PMQ_ERR_BATCH_CORRUPT', 69, (_, b) => { b[69] = 20; }],
    ['header key not UTF-8', 'PMQ_ERR_BATCH_CORRUPT', 70, (_, b) => { b[71] = 0xff; }],
    ['negative header key length', 'PMQ_ERR_BATCH_CORRUPT', 70, (_, b) => { b[70] = 1; }],
    ['batchLength below an empty batch', 'PMQ_ERR_BATCH_CORRUPT', BATCH_LENGTH_POSITION,
      (v) => v.setInt32(BATCH_LENGTH_POSITION, 48)],
    ['baseTimestamp beyond 2^53', 'PMQ_ERR_BATCH_CORRUPT', 27,
      (v) => v.setBigInt64(27, 2n ** 60n)],
  ];
  for (const [what, code, position, patch] of cases) {
    const damaged = withCrc(patched(bytes, patch));
    t.throws(() => validateRecordBatch(damaged), { code, position }, what);
    t.throws(() => decodeRecordBatch(damaged), { code, position }, `${what} (decode)`);
  }
  t.equal(errorCode(withCrc(bytes.slice())), null, 'withCrc alone keeps the batch valid');
});

t.test('trailing bytes inside batchLength', async (t) => {
  const bytes = encodeRecordBatch([{ value: null, timestamp: 3 }]);
  const longer = new Uint8Array(bytes.length + 2);
  longer.set(bytes);
  new DataView(longer.buffer).setInt32(BATCH_LENGTH_POSITION, longer.length - 12);
  t.throws(() => validateRecordBatch(withCrc(longer)),
    { code: 'PMQ_ERR_BATCH_CORRUPT', position: bytes.length }, 'two bytes after the last record');
});

t.test('errors say what and where', async (t) => {
  const bytes = encodeRecordBatch([{ value: null, timestamp: 3 }]);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
  t.throws(() => validateRecordBatch(bytes),
    { name: 'RecordBatchError',
      message: /CRC32C stored 0x[0-9a-f]+, computed 0x[0-9a-f]+ .*at batch byte 17/ });
});
