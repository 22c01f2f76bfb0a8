// The producer's pure parts: record size bounds, batching per partition, the sticky
// partitioner, keyed partitions (Kafka's murmur2 choices), the byte budget and buffer pool.
import t from 'tap';

import { partitionForKey } from '../../common/partitioner.js';
import { recordBatchSizeBytes, type RecordInput } from '../../common/record-batch/index.js';
import {
  Accumulator, recordSizeBytesMax, StickyPartitioner,
} from '../../clients/accumulator.js';
import { BufferPool, ByteBudget, sizeClass } from '../../clients/flow-control.js';
import { toRecordInput } from '../../clients/records.js';

const utf8 = new TextEncoder();

/** mulberry32, seeded so a failure replays from the printed seed. */
function prngFrom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  };
}

t.test('recordSizeBytesMax bounds the exact encoded size', (t) => {
  const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
  t.comment(`seed ${seed}`);
  const random = prngFrom(seed);
  const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => random() * 256);
  for (let round = 0; round < 200; round += 1) {
    const records: RecordInput[] = Array.from({ length: 1 + Math.floor(random() * 80) }, () => ({
      key: random() < 0.3 ? null : bytes(Math.floor(random() * 300)),
      value: random() < 0.1 ? null : bytes(Math.floor(random() * 3000)),
      headers: random() < 0.5 ? [] : [{ key: 'hé-ader', value: bytes(Math.floor(random() * 20)) }],
      timestamp: Math.floor(random() * 2 ** 41),
    }));
    const exact = recordBatchSizeBytes(records, { timestampDefault: 0 });
    const bound = 61 + records.reduce((sum, r) => sum + recordSizeBytesMax(r), 0);
    if (exact > bound) t.fail(`round ${round}: exact ${exact} > bound ${bound}`);
  }
  t.pass('bound holds on 200 random batches');
  t.end();
});

t.test('the accumulator closes a batch before it outgrows maxBatchBytes', (t) => {
  const acc = new Accumulator<string>(1000);
  const r = { value: new Uint8Array(200) };
  const size = recordSizeBytesMax(r);
  const a0 = acc.slot('a', 0);
  t.equal(acc.slot('a', 0), a0, 'one slot per partition');
  t.equal(acc.append(a0, r, size, 's', 0, 0), undefined, 'nothing closed');
  t.equal(acc.openBatches, 1, 'a batch opened');
  acc.append(a0, r, size, 's', 1, 0);
  acc.append(a0, r, size, 's', 2, 0);
  acc.append(acc.slot('a', 1), r, size, 's', 3, 0);
  const fourth = acc.append(a0, r, size, 's', 4, 1);
  t.equal(fourth?.records.length, 3, 'three records of ~236 bytes fit in 1000');
  t.ok(fourth!.sizeBytesMax <= 1000);
  t.same(fourth!.sinks, [{ sink: 's', index: 0, count: 3 }], 'one run of sinks, in order');
  t.equal(acc.openBatches, 2);
  t.same(acc.drain(3, 5), [], 'nothing lingered long enough');
  t.equal(acc.drain(5, 5).length, 1, 'partition 1 batch lingered 5 ms');
  t.equal(acc.drain(5, -1).length, 1, 'drain all');
  t.equal(acc.openBatches, 0);
  t.equal(acc.oldestCreatedAtMs(), undefined);
  const huge = { value: new Uint8Array(5000) };
  t.equal(acc.append(a0, huge, recordSizeBytesMax(huge), 's', 0, 0), undefined);
  t.equal(acc.openBatches, 1, 'a record larger than a batch gets one of its own');
  t.equal(acc.append(a0, r, size, 's', 1, 0)?.records.length, 1);
  t.end();
});

t.test('a held slot keeps its lingered batch open and growing until released', (t) => {
  const acc = new Accumulator<string>(10_000);
  const r = { value: new Uint8Array(100) };
  const size = recordSizeBytesMax(r);
  const [a0, a1] = [acc.slot('a', 0), acc.slot('a', 1)];
  acc.append(a0, r, size, 's', 0, 0);
  acc.append(a1, r, size, 's', 1, 0);
  const busy = new Set([a0]);
  const held = (slot: typeof a0) => busy.has(slot);
  t.same(acc.drain(10, 0, held).map((b) => b.partition), [1], 'the free slot goes');
  t.equal(acc.oldestCreatedAtMs(held), undefined, 'a held batch needs no linger timer');
  t.equal(acc.oldestCreatedAtMs(), 0);
  acc.append(a0, r, size, 's', 2, 11);
  busy.clear();
  const [grown] = acc.drain(12, 0, held);
  t.equal(grown?.records.length, 2, 'records that came while held joined the batch');
  acc.append(a0, r, size, 's', 3, 20);
  busy.add(a0);
  t.equal(acc.drain(20, -1, held).length, 1, 'a flush ignores holds');
  t.end();
});

t.test('the accumulator keeps each record\'s send and index, in runs', (t) => {
  const acc = new Accumulator<string>(10_000);
  const r = { value: new Uint8Array(10) };
  const size = recordSizeBytesMax(r);
  const slot = acc.slot('b', 2);
  const appends: [string, number][] = [['x', 0], ['x', 1], ['y', 0], ['x', 3], ['x', 4],
    ['y', 1], ['y', 2]];
  for (const [sink, index] of appends) acc.append(slot, r, size, sink, index, 7);
  t.equal(acc.oldestCreatedAtMs(), 7);
  const [batch] = acc.drain(7, -1);
  t.equal(batch?.topic, 'b');
  t.equal(batch?.partition, 2);
  t.same(batch?.sinks, [{ sink: 'x', index: 0, count: 2 }, { sink: 'y', index: 0, count: 1 },
    { sink: 'x', index: 3, count: 2 }, { sink: 'y', index: 1, count: 2 }]);
  const counted = batch!.sinks.reduce((sum, run) => sum + run.count, 0);
  t.equal(counted, batch!.records.length, 'runs cover every record');
  t.end();
});

t.test('the sticky partitioner fills one partition per batch, then moves round robin', (t) => {
  const sticky = new StickyPartitioner();
  t.equal(sticky.partition('a', 3), 0);
  t.equal(sticky.partition('a', 3), 0, 'sticky until its batch closes');
  sticky.batchClosed('a', 1);
  t.equal(sticky.partition('a', 3), 0, 'another partition closing does not move it');
  sticky.batchClosed('a', 0);
  t.equal(sticky.partition('a', 3), 1);
  sticky.batchClosed('a', 1);
  t.equal(sticky.partition('a', 3), 2);
  sticky.batchClosed('a', 2);
  t.equal(sticky.partition('a', 3), 0, 'wraps');
  t.end();
});

t.test('keys land where Kafka puts them', (t) => {
  // toPositive(murmur2) of Kafka's UtilsTest vectors, modulo the partition count.
  const cases: [string, number, number][] = [
    ['21', 4, (-973932308 & 0x7fffffff) % 4],
    ['foobar', 6, (-790332482 & 0x7fffffff) % 6],
    ['abc', 5, 479470107 % 5],
  ];
  for (const [key, count, expected] of cases) {
    t.equal(partitionForKey(toRecordInput({ key, value: null }).key!, count), expected,
      `${key} → ${expected} of ${count}`);
  }
  t.same(toRecordInput({ key: 'k', value: 'v', headers: { h: 'x' } }),
    { key: utf8.encode('k'), value: utf8.encode('v'), headers: [{ key: 'h',
      value: utf8.encode('x') }] });
  t.throws(() => toRecordInput({ value: 42 as unknown as string }), { code: 'PMQ_ERR_ARGUMENT' });
  t.end();
});

t.test('the byte budget waits in FIFO order and never exceeds its limit', async (t) => {
  const budget = new ByteBudget(100);
  const order: string[] = [];
  await budget.acquire(60);
  const big = budget.acquire(50).then(() => order.push('big'));
  const small = budget.acquire(10).then(() => order.push('small'));
  await Promise.resolve();
  t.same(order, [], 'both wait: the small one may not overtake');
  t.equal(budget.waiting, 2);
  budget.release(60);
  await Promise.all([big, small]);
  t.same(order, ['big', 'small']);
  t.equal(budget.held, 60);
  budget.release(60);
  await budget.acquire(500);
  t.equal(budget.held, 500, 'one request over the limit passes when nothing is held');
  let passed = false;
  const after = budget.acquire(1).then(() => { passed = true; });
  await Promise.resolve();
  t.notOk(passed, 'but nothing else until it is released');
  budget.release(500);
  await after;
  t.ok(passed);
});

t.test('the buffer pool reuses size classes and bounds idle memory', (t) => {
  const pool = new BufferPool(16384);
  t.equal(sizeClass(1), 4096);
  t.equal(sizeClass(4097), 8192);
  const a = pool.take(5000);
  t.equal(a.byteLength, 8192);
  pool.give(a);
  t.equal(pool.take(6000), a, 'same buffer again');
  pool.give(a);
  pool.give(new Uint8Array(8192));
  pool.give(new Uint8Array(8192));
  t.equal(pool.idle, 16384, 'idle bytes capped');
  t.end();
});
