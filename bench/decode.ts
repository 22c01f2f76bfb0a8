/**
 * `node --import tsx bench/decode.ts [recordBytes ...]`: the CPU cost of reading record
 * batches, without processes or transports: validateRecordBatch (what a storage node checks),
 * decodeRecordBatch, and the record cursor as the consumer uses it (openRecordBatch, one
 * object per record). Batches of about 64 KiB (the producer's default maxBatchBytes) of
 * records with a null key and a value of each size (default 100 and 1024 bytes). Prints ns
 * per record and CPU seconds per GB of values (process.cpuUsage, best of 5 rounds of ~0.5 s).
 */
import {
  decodeRecordBatch, encodeRecordBatch, openRecordBatch, validateRecordBatch,
} from '../common/record-batch/index.js';

const BATCH_BYTES = 64 * 1024;
const ROUNDS = 5;
const ROUND_RECORDS = 2_000_000;

function batchOf(recordBytes: number): { bytes: Uint8Array; records: number } {
  const records = Math.max(1, Math.floor(BATCH_BYTES / (recordBytes + 8)));
  const value = new Uint8Array(recordBytes).fill(0x61);
  const bytes = encodeRecordBatch(Array.from({ length: records }, () => ({ value })),
    { timestampDefault: Date.now() });
  return { bytes, records };
}

/** One pass over the batch as the consumer reads it: every record becomes an object. */
function cursorPass(bytes: Uint8Array): number {
  const cursor = openRecordBatch(bytes);
  const records: { offset: number; value: Uint8Array | null }[] = [];
  while (cursor.next()) records.push({ offset: cursor.offset, value: cursor.value });
  return records.length;
}

const WAYS: [string, (bytes: Uint8Array) => unknown][] = [
  ['validate', validateRecordBatch],
  ['decode', decodeRecordBatch],
  ['cursor', cursorPass],
];

/** CPU seconds of the fastest round: the least disturbed by other work on the machine. */
function bestRound(pass: (bytes: Uint8Array) => unknown, bytes: Uint8Array,
  passes: number): number {
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < ROUNDS; round += 1) {
    const start = process.cpuUsage();
    for (let i = 0; i < passes; i += 1) pass(bytes);
    const used = process.cpuUsage(start);
    best = Math.min(best, (used.user + used.system) / 1e6);
  }
  return best;
}

const sizes = process.argv.slice(2).map(Number);
for (const recordBytes of sizes.length > 0 ? sizes : [100, 1024]) {
  const { bytes, records } = batchOf(recordBytes);
  const passes = Math.ceil(ROUND_RECORDS / records);
  for (const [name, pass] of WAYS) {
    pass(bytes); // warm up before the measured rounds
    const seconds = bestRound(pass, bytes, passes);
    const count = passes * records;
    process.stdout.write(`${name.padEnd(8)} ${String(recordBytes).padStart(6)} B  ` +
      `${(seconds / count * 1e9).toFixed(1).padStart(7)} ns/record  ` +
      `${(seconds / (count * recordBytes / 1e9)).toFixed(3).padStart(7)} s/GB\n`);
  }
}
