// The decoder's fast paths read exactly what the general ones do: one- and two-byte varints
// (and one-byte varlongs) against a plain reference over every short encoding, at the end of
// the bytes, truncated and overlong; random values of every size; the record cursor against
// decodeRecordBatch; error messages that name the record and header built only on error.
import t from 'tap';

import {
  ATTRIBUTES_POSITION, BatchReader, CRC_POSITION, decodeRecordBatch, encodeRecordBatch,
  openRecordBatch, writeVarint, writeVarlong,
} from '../../common/record-batch/index.js';
import { crc32cSoftware } from '../../native/crc32c.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();

function readerOver(bytes: Uint8Array, end = bytes.length): BatchReader {
  return new BatchReader(bytes, new DataView(bytes.buffer, bytes.byteOffset), 0, end);
}

/** Kafka's varint decoding, spelled out: the value, or the reason it is refused. */
function referenceVarint(bytes: Uint8Array, end: number, groupsMax: number): bigint | string {
  let unsigned = 0n;
  for (let group = 0; group < groupsMax; group += 1) {
    if (group >= end) return 'runs past the end';
    const byte = bytes[group]!;
    unsigned |= BigInt(byte & 0x7f) << BigInt(7 * group);
    if (byte < 0x80) {
      if (byte === 0 && group > 0) return 'overlong';
      return (unsigned & 1n) === 0n ? unsigned >> 1n : -((unsigned + 1n) >> 1n);
    }
  }
  return 'too long';
}

function outcome(read: () => number | bigint): bigint | string {
  try {
    return BigInt(read());
  } catch (error) {
    const message = (error as Error).message;
    return message.includes('past the end') ? 'runs past the end'
      : message.includes('overlong') ? 'overlong' : message;
  }
}

t.test('every one- and two-byte varint, whole and cut short', async (t) => {
  const wrong: string[] = [];
  for (let first = 0; first < 256; first += 1) {
    for (let second = 0; second < 256; second += 1) {
      const bytes = Uint8Array.of(first, second, 0x01);
      for (const end of [0, 1, 2, 3]) {
        const expected = referenceVarint(bytes, end, 5);
        const reader = readerOver(bytes, end);
        const got = outcome(() => reader.varint('v'));
        if (got !== expected) wrong.push(`${first},${second} end ${end}: ${got} vs ${expected}`);
        const expectedLong = referenceVarint(bytes, end, 10);
        const gotLong = outcome(() => readerOver(bytes, end).varlong('v'));
        if (gotLong !== expectedLong) wrong.push(`varlong ${first},${second} end ${end}`);
        if (typeof got === 'bigint') {
          const length = first < 0x80 ? 1 : second < 0x80 ? 2 : 3;
          if (reader.position !== length) wrong.push(`${first},${second}: position`);
        }
      }
    }
  }
  t.same(wrong.slice(0, 10), [], `${wrong.length} differences`);
});

t.test(`random varints and varlongs of every size round-trip (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  const target = new Uint8Array(12);
  const wrong: string[] = [];
  for (let i = 0; i < 100_000; i += 1) {
    const bits = prng.int(32);
    const magnitude = Math.floor(prng.next() * 2 ** bits);
    const int32 = prng.chance(0.5) ? magnitude : -magnitude - 1;
    target.fill(0xaa);
    const size = writeVarint(target, 0, int32);
    const reader = readerOver(target, size);
    if (reader.varint('v') !== int32 || reader.position !== size) wrong.push(`varint ${int32}`);
    const longBits = prng.int(54);
    const long = Math.floor(prng.next() * 2 ** longBits) * (prng.chance(0.5) ? 1 : -1);
    const longSize = writeVarlong(target, 0, long);
    const longReader = readerOver(target, longSize);
    if (longReader.varlong('v') !== long || longReader.position !== longSize) {
      wrong.push(`varlong ${long}`);
    }
  }
  const edges = [0, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 2 ** 31 - 1, -(2 ** 31)];
  for (const value of edges) {
    const size = writeVarint(target, 0, value);
    if (readerOver(target, size).varint('v') !== value) wrong.push(`edge ${value}`);
  }
  t.same(wrong.slice(0, 10), [], `${wrong.length} differences`);
});

t.test(`the record cursor reads what decodeRecordBatch returns (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed + 1);
  const bytes = encodeRecordBatch(randomRecords(prng, 300, 300),
    { baseOffset: 1000, timestampDefault: 1_700_000_000_000 });
  const cursor = openRecordBatch(bytes);
  const read = [];
  while (cursor.next()) {
    read.push({ offset: cursor.offset, timestamp: cursor.timestamp, key: cursor.key,
      value: cursor.value, headers: cursor.headers });
  }
  t.equal(cursor.next(), false, 'stays at the end');
  const decoded = decodeRecordBatch(bytes).records.map(({ offset, timestamp, key, value,
    headers }) => ({ offset, timestamp, key, value, headers }));
  t.same(read, decoded);
  t.equal(cursor.header.recordCount, 300);
  const first = read[0]!;
  const second = read[1]!;
  t.not(first.headers, second.headers, 'each record has its own headers array');
});

t.test('errors name the record and the header', async (t) => {
  const utf8 = new TextEncoder();
  const bytes = encodeRecordBatch([{ value: null, timestamp: 1 },
    { value: utf8.encode('v'), timestamp: 1, headers: [{ key: 'a', value: null },
      { key: 'b', value: utf8.encode('xyz') }] }]);
  // Header 1's value length (3 → 06) grows to 40 (→ 50): past the end of record 1.
  const at = bytes.lastIndexOf(0x06);
  bytes[at] = 0x50;
  const crc = crc32cSoftware(bytes, ATTRIBUTES_POSITION, bytes.length - ATTRIBUTES_POSITION);
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(CRC_POSITION, crc);
  const cursor = openRecordBatch(bytes);
  t.equal(cursor.next(), true, 'record 0 is fine');
  t.throws(() => cursor.next(), { code: 'PMQ_ERR_BATCH_CORRUPT',
    message: /record 1 header 1 value of 40 bytes runs past the end of record 1/ });
  t.throws(() => readerOver(Uint8Array.of(0x80)).varint('v'),
    { message: /varint v runs past the end of the batch/ });
  const named = readerOver(Uint8Array.of(0x80, 0x00));
  named.record = 7;
  named.header = 2;
  t.throws(() => named.varint('key length'),
    { message: /varint record 7 header 2 key length is overlong/ });
  named.header = -1;
  named.position = 0;
  named.endIsRecord = true;
  t.throws(() => named.slice(5, 'value'),
    { message: /record 7 value of 5 bytes runs past the end of record 7/ });
});
