// The gathered encoding (zero-copy produce, docs/clients.md "Zero copy") is the contiguous
// encoding cut into pieces: over seeded random batches (keys, null values, headers, mixed small
// and large values), the pieces concatenate to encodeRecordBatchInto's bytes, CRC included; the
// large values are the records' own Uint8Arrays (not copies), nothing else is; the copied part
// takes exactly gatherCopiedBytes.
import t from 'tap';

import {
  encodePlannedRecordBatchGather, encodeRecordBatch, gatherCopiedBytes, planRecordBatch,
  validateRecordBatch, type EncodeOptions, type RecordInput,
} from '../../common/record-batch/index.js';
import { sizeClass } from '../../clients/flow-control.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(pieces.map((piece) => Buffer.from(piece.buffer, piece.byteOffset,
    piece.byteLength)));
}

t.test(`gathered pieces are the contiguous batch (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  let problems = 0;
  let referencedTotal = 0;
  for (let round = 0; round < 80; round += 1) {
    const records: RecordInput[] = randomRecords(prng, 1 + prng.int(40), 300);
    // Some values large: referenced when ≥ the threshold (some exactly at it).
    const threshold = 64 + prng.int(400);
    for (const record of records) {
      if (prng.chance(0.3)) record.value = new Uint8Array(threshold + prng.int(3) - 1)
        .map(() => prng.int(256));
    }
    const options: EncodeOptions = { timestampDefault: 1_700_000_000_000 };
    const plan = planRecordBatch(records, options);
    const copied = gatherCopiedBytes(plan, threshold);
    const target = new Uint8Array(sizeClass(copied)).fill(0xee); // a pooled buffer's shape
    const pieces = encodePlannedRecordBatchGather(target, plan, threshold);
    const expected = encodeRecordBatch(records, options);
    const actual = concat(pieces);
    const large = records.filter((r) => r.value != null && r.value.byteLength >= threshold);
    const referenced = pieces.filter((piece) => piece.buffer !== target.buffer);
    referencedTotal += referenced.length;
    const copiedSent = pieces.filter((piece) => piece.buffer === target.buffer)
      .reduce((sum, piece) => sum + piece.byteLength, 0);
    if (Buffer.compare(actual, Buffer.from(expected)) !== 0 ||
        referenced.length !== large.length ||
        referenced.some((piece, i) => piece !== large[i]!.value) ||
        pieces.some((piece) => piece.byteLength === 0) || copiedSent !== copied) {
      problems += 1;
      t.fail(`round ${round}: ${records.length} records, threshold ${threshold}`);
    }
    validateRecordBatch(actual, 0, actual.byteLength); // CRC and structure
  }
  t.equal(problems, 0, '80 batches byte for byte');
  t.ok(referencedTotal > 50, `${referencedTotal} values referenced, not copied`);
});

t.test('a batch without large values is one piece; a target too small writes nothing',
  async (t) => {
    const records = [{ value: new Uint8Array(10) }, { key: new Uint8Array(3), value: null }];
    const plan = planRecordBatch(records, { timestampDefault: 1 });
    const target = new Uint8Array(plan.sizeBytes);
    const pieces = encodePlannedRecordBatchGather(target, plan, 1024);
    t.equal(pieces.length, 1);
    t.same(concat(pieces), Buffer.from(encodeRecordBatch(records, { timestampDefault: 1 })));
    const big = planRecordBatch([{ value: new Uint8Array(5000) }], { timestampDefault: 1 });
    const small = new Uint8Array(40).fill(7);
    t.throws(() => encodePlannedRecordBatchGather(small, big, 1024), /do not fit/);
    t.ok(small.every((byte) => byte === 7), 'nothing written');
    t.throws(() => encodePlannedRecordBatchGather(target, plan, 0), /referenceMinBytes/);
  });
