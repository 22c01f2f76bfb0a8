// The encoder's fast paths write exactly the bytes of the general ones: a planned batch
// (planRecordBatch + encodePlannedRecordBatchInto) matches encodeRecordBatchInto byte for byte
// over seeded random records (keys, null values, headers, timestamps, idempotence fields), and
// varlongs of int32 numbers (written as varints) match the int64 (bigint) path.
import t from 'tap';

import {
  encodePlannedRecordBatchInto, encodeRecordBatchInto, planRecordBatch, recordBatchSizeBytes,
  varlongSizeBytes, writeVarlong, type EncodeOptions, type RecordBatchPlan,
} from '../../common/record-batch/index.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

t.test(`a planned batch encodes to the same bytes (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  const counts = [0, 1, 2, 700, ...Array.from({ length: 60 }, () => prng.int(700))];
  let problems = 0;
  for (const count of counts) {
    const records = randomRecords(prng, count, prng.chance(0.5) ? 16 : 300);
    const options: EncodeOptions = {
      timestampDefault: 1_700_000_000_000 + prng.int(1000),
      ...(prng.chance(0.5) ? { producerId: prng.int(2 ** 40), producerEpoch: prng.int(32768),
        baseSequence: prng.int(2 ** 31 - 1001) } : {}),
    };
    const plan = planRecordBatch(records, options);
    const position = prng.int(64);
    const size = plan.sizeBytes + position + prng.int(64);
    const expected = new Uint8Array(size);
    const actual = new Uint8Array(size);
    const written = encodePlannedRecordBatchInto(actual, position, plan);
    encodeRecordBatchInto(expected, position, records, options);
    if (written !== plan.sizeBytes || plan.sizeBytes !== recordBatchSizeBytes(records, options) ||
        hex(actual) !== hex(expected)) {
      problems += 1;
      t.fail(`batch of ${count} records at ${position}`);
    }
  }
  t.equal(problems, 0, `${counts.length} batches byte for byte`);
});

t.test('a plan is checked like the records it came from', async (t) => {
  const records = [{ value: new Uint8Array(10) }, { key: new Uint8Array(3), value: null }];
  const plan = planRecordBatch(records, { timestampDefault: 5 });
  t.throws(() => encodePlannedRecordBatchInto(new Uint8Array(plan.sizeBytes - 1), 0, plan),
    { code: 'PMQ_ERR_ARGUMENT' }, 'a target too small');
  const forged: RecordBatchPlan = { sizeBytes: 100 };
  t.throws(() => encodePlannedRecordBatchInto(new Uint8Array(100), 0, forged),
    { code: 'PMQ_ERR_ARGUMENT' }, 'a plan not from planRecordBatch');
  t.throws(() => planRecordBatch([{ value: 'text' as unknown as Uint8Array }]),
    { code: 'PMQ_ERR_ARGUMENT', message: /record 0 value must be a Uint8Array/ });
  t.throws(() => planRecordBatch([{ value: null }, { value: null, timestamp: -1 }]),
    { code: 'PMQ_ERR_ARGUMENT', message: /record 1 timestamp -1/ });
  t.throws(() => planRecordBatch([{ value: null, headers: [{ key: 'h', value: [1] as never }] }]),
    { code: 'PMQ_ERR_ARGUMENT', message: /record 0 header "h" value must be a Uint8Array/ });
});

t.test(`varlongs of int32 numbers match the int64 path (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  const values = [0, -0, 1, -1, 63, -64, 64, -65, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1];
  for (let i = 0; i < 2000; i += 1) {
    const magnitude = 2 ** prng.int(53);
    values.push(Math.floor((prng.next() * 2 - 1) * magnitude));
  }
  let problems = 0;
  for (const value of values) {
    const viaNumber = new Uint8Array(10);
    const viaBigInt = new Uint8Array(10);
    const end = writeVarlong(viaNumber, 0, value);
    const endBigInt = writeVarlong(viaBigInt, 0, BigInt(value));
    if (end !== endBigInt || hex(viaNumber) !== hex(viaBigInt) ||
        varlongSizeBytes(value) !== end || varlongSizeBytes(BigInt(value)) !== end) {
      problems += 1;
      t.fail(`varlong ${value}`);
    }
  }
  t.equal(problems, 0, `${values.length} values`);
  t.throws(() => writeVarlong(new Uint8Array(10), 0, 0.5), { code: 'PMQ_ERR_ARGUMENT' });
  t.throws(() => varlongSizeBytes(1.5), { code: 'PMQ_ERR_ARGUMENT' });
});
