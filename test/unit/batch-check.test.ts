/**
 * The storage node's native batch check (native/batch_check.cc, used by the native persist
 * path) against validateRecordBatch, the rules of record. The native check may refuse what the
 * TS check accepts (the persist then goes to the JS path, which decides), never the reverse:
 * a batch the native path accepted and persisted must decode for every consumer.
 */
import t from 'tap';

import { crc32c, nativeRecordBatchCheck } from '../../native/crc32c.js';
import { encodeFiller } from '../../common/record-batch/filler.js';
import { encodeRecordBatch, type RecordInput } from '../../common/record-batch/encode.js';
import { validateRecordBatch } from '../../common/record-batch/decode.js';

/** Deterministic PRNG (mulberry32): a failing seed reproduces. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

function bytes(next: () => number, max: number): Uint8Array {
  const out = new Uint8Array(Math.floor(next() * max));
  for (let i = 0; i < out.length; i += 1) out[i] = Math.floor(next() * 256);
  return out;
}

function randomBatch(next: () => number): Uint8Array {
  const count = 1 + Math.floor(next() * 6);
  const records: RecordInput[] = [];
  for (let i = 0; i < count; i += 1) {
    const headers = next() < 0.3 ? [{ key: next() < 0.2 ? 'ünï' : 'h', value: bytes(next, 8) },
      { key: 'trace', value: null }] : [];
    records.push({ key: next() < 0.5 ? null : bytes(next, 12),
      value: next() < 0.1 ? null : bytes(next, next() < 0.1 ? 3000 : 200), headers,
      timestamp: 1_700_000_000_000 + Math.floor(next() * 1e6) });
  }
  return encodeRecordBatch(records, next() < 0.3 ? { producerId: 7, producerEpoch: 1,
    baseSequence: Math.floor(next() * 1000) } : {});
}

/** The TS verdict: a whole valid batch of `records` records in exactly these bytes. */
function tsAccepts(batch: Uint8Array, records: number): boolean {
  try {
    const header = validateRecordBatch(batch, 0, batch.byteLength);
    return header.sizeBytes === batch.byteLength && header.recordCount === records;
  } catch {
    return false;
  }
}

function recountCrc(batch: Uint8Array): void {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  view.setUint32(17, crc32c(batch, 21, batch.byteLength - 21));
}

t.test('every well-formed batch with ASCII header keys passes both checks', async (t) => {
  const next = random(1);
  let checked = 0;
  for (let i = 0; i < 400; i += 1) {
    const batch = randomBatch(next);
    const records = new DataView(batch.buffer, batch.byteOffset).getInt32(57);
    t.ok(tsAccepts(batch, records), 'TS accepts what it encoded');
    const native = nativeRecordBatchCheck(batch, 0, batch.byteLength, records);
    if (!native) {
      // Only non-ASCII header keys may send a good batch to the JS path.
      t.ok(new TextDecoder().decode(batch).includes('ünï'), `batch ${i}: refused ` +
        'natively although its header keys are ASCII');
    } else {
      checked += 1;
    }
    t.notOk(nativeRecordBatchCheck(batch, 0, batch.byteLength, records + 1),
      'another record count is refused');
  }
  t.ok(checked > 300, `${checked} accepted natively`);
});

t.test('control batches (fillers) pass both checks', async (t) => {
  for (const [size, records] of [[68, 1], [69, 1], [200, 3], [4096, 100]] as const) {
    const filler = encodeFiller(size, records, 0);
    t.ok(tsAccepts(filler, records), `TS: ${size} B, ${records} records`);
    t.ok(nativeRecordBatchCheck(filler, 0, size, records), `native: ${size} B, ${records} records`);
  }
});

t.test('mutated batches: native accepts only what TS accepts', async (t) => {
  let nativeAccepted = 0;
  let tsAccepted = 0;
  for (let seed = 1; seed <= 4000; seed += 1) {
    const next = random(seed);
    const batch = randomBatch(next);
    const records = new DataView(batch.buffer, batch.byteOffset).getInt32(57);
    const flips = 1 + Math.floor(next() * 3);
    for (let f = 0; f < flips; f += 1) {
      const at = Math.floor(next() * batch.byteLength);
      batch[at] = next() < 0.5 ? Math.floor(next() * 256) : batch[at]! ^ (1 << (seed % 8));
    }
    // Mostly with a recomputed CRC, so the record checks behind it are what is tested.
    if (next() < 0.85) recountCrc(batch);
    const claimed = next() < 0.9 ? records : Math.floor(next() * 8);
    const native = nativeRecordBatchCheck(batch, 0, batch.byteLength, claimed);
    const ts = tsAccepts(batch, claimed);
    if (native && !ts) t.fail(`seed ${seed}: native accepts a batch TS refuses`);
    if (native) nativeAccepted += 1;
    if (ts) tsAccepted += 1;
  }
  t.ok(nativeAccepted > 50, `${nativeAccepted} mutated batches still valid natively`);
  t.ok(tsAccepted >= nativeAccepted, `TS accepted ${tsAccepted}`);
});

t.test('truncated and extended ranges are refused', async (t) => {
  const batch = randomBatch(random(99));
  const records = new DataView(batch.buffer, batch.byteOffset).getInt32(57);
  const longer = new Uint8Array(batch.byteLength + 8);
  longer.set(batch);
  t.ok(nativeRecordBatchCheck(batch, 0, batch.byteLength, records));
  t.notOk(nativeRecordBatchCheck(batch, 0, batch.byteLength - 1, records), 'one byte short');
  t.notOk(nativeRecordBatchCheck(longer, 0, longer.byteLength, records), 'bytes after it');
  t.notOk(nativeRecordBatchCheck(batch, 0, 20, records), 'shorter than a header');
});
