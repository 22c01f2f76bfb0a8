// The broker's allocation-free structures (issue 11): IntMap (per-batch tables), OutcomeRing
// (remembered acks), BatchLog (a lease's durable batches), RecordPool (pooled records with a
// generation) and the producer-state rings — wrap-around, eviction, growth, and reuse after
// release caught. The random parts take their seed from the test name (PMQ_SEED=<seed>).
import t from 'tap';

import { BatchLog, type LoggedBatch } from '../../broker-node/batch-log.js';
import { IntMap } from '../../common/int-map.js';
import { OutcomeRing } from '../../broker-node/outcome-ring.js';
import { ProducerStates, SEQUENCE_MODULUS } from '../../broker-node/producer-state.js';
import { checkLive, type Pooled, RecordPool } from '../../broker-node/record-pool.js';
import type { Ack } from '../../broker-node/sequencer-types.js';
import { setFatalSink } from '../../common/invariant.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();

/** Runs `fn` with process.abort replaced by a throw, and returns the invariant's message. */
function abortMessage(fn: () => void): string {
  const abort = process.abort;
  let message = '';
  setFatalSink((fields) => { message = String(fields.invariant); });
  process.abort = (() => { throw new Error('aborted'); }) as typeof process.abort;
  try {
    fn();
  } catch {
    // the replaced abort
  } finally {
    process.abort = abort;
    setFatalSink((fields, msg) => {
      process.stderr.write(`${JSON.stringify({ level: 'fatal', msg, ...fields })}\n`);
    });
  }
  return message;
}

t.test(`IntMap behaves as a Map under random churn (seed ${seed})`, async (t) => {
  const prng = prngFrom(seed);
  // Sequential ids, positions that share their low bits, and keys past 2^32.
  const keyOf = [(n: number): number => n, (n: number): number => n * 512,
    (n: number): number => 2 ** 40 + n * 4096];
  for (const key of keyOf) {
    const map = new IntMap<string>();
    const model = new Map<number, string>();
    let agree = true;
    for (let step = 0; step < 20_000; step += 1) {
      const k = key(prng.int(64));
      if (prng.chance(0.5)) {
        map.set(k, `v${step}`);
        model.set(k, `v${step}`);
      } else {
        agree &&= map.delete(k) === model.delete(k);
      }
      agree &&= map.size === model.size && map.get(k) === model.get(k) &&
        map.has(k) === model.has(k);
    }
    for (const [k, v] of model) agree &&= map.get(k) === v;
    const seen = new Map<number, string>();
    map.forEach((v, k) => seen.set(k, v));
    t.ok(agree, 'every answer as the Map\'s');
    t.same([...seen].sort((a, b) => a[0] - b[0]), [...model].sort((a, b) => a[0] - b[0]),
      'forEach visits exactly the entries');
    t.ok(map.capacity <= 256, `bounded by its peak (capacity ${map.capacity})`);
  }
});

t.test('IntMap grows at half full, never shrinks, and refuses bad keys', async (t) => {
  const map = new IntMap<number>();
  for (let i = 0; i < 100; i += 1) map.set(i, i);
  t.equal(map.size, 100);
  const grown = map.capacity;
  t.ok(grown >= 200, 'at most half full');
  for (let i = 0; i < 100; i += 1) t.equal(map.get(i), i);
  for (let i = 0; i < 100; i += 1) map.delete(i);
  t.same([map.size, map.capacity], [0, grown], 'emptied: the table stays (no shrink churn)');
  for (let i = 100; i < 200; i += 1) map.set(i, i);
  t.equal(map.capacity, grown, 'refilled to the same peak: no growth');
  t.match(abortMessage(() => map.set(-1, 0)), /non-negative integers/);
  t.match(abortMessage(() => map.set(1.5, 0)), /non-negative integers/);
});

const ackOf = (id: number, baseOffset: number): Ack => ({ epoch: 3, id, producer: 'p',
  segmentId: 's', position: id * 100, bytes: 100, baseOffset, records: 1 });

t.test('OutcomeRing keeps the last `capacity` acks, oldest overwritten first', async (t) => {
  const ring = new OutcomeRing(4);
  for (let id = 1; id <= 10; id += 1) ring.remember(ackOf(id, id * 10));
  t.equal(ring.size, 4);
  t.same([1, 5, 6].map((id) => ring.has(3, id)), [false, false, false], 'evicted');
  t.same([7, 8, 9, 10].map((id) => ring.get(3, id)?.baseOffset), [70, 80, 90, 100],
    'the last four, after the ring wrapped twice');
  t.same(ring.get(3, 9), ackOf(9, 90), 'every field copied');
  t.equal(ring.get(2, 9), null, 'another epoch is not this batch');
  const fresh = new OutcomeRing(3);
  t.same([fresh.size, fresh.has(0, 0)], [0, false], 'empty slots match nothing');
});

t.test('BatchLog finds batches by position after growing; order is checked', async (t) => {
  const log = new BatchLog();
  for (let i = 0; i < 1000; i += 1) log.add(i * 70, 70, 2, i * 2, 100 + i);
  const found: LoggedBatch = { position: -1, bytes: -1, records: -1, baseOffset: -1, id: -1 };
  t.equal(log.count, 1000);
  t.ok(log.find(0, found) && found.id === 100, 'first');
  t.ok(log.find(999 * 70, found) && found.id === 1099 && found.baseOffset === 1998, 'last');
  t.ok(log.find(500 * 70, found) && found.bytes === 70 && found.records === 2, 'middle');
  t.notOk(log.find(35, found), 'inside a batch is no batch');
  t.notOk(log.find(1000 * 70, found), 'past the end');
  t.match(abortMessage(() => log.add(10, 70, 1, 5000, 1)), /position order/);
});

interface Item extends Pooled { value: number; ref: object | null }

t.test('RecordPool reuses records and catches use and release after release', async (t) => {
  const pool = new RecordPool<Item>(() => ({ generation: 0, live: false, value: 0, ref: null }),
    (item) => { item.ref = null; }, 2);
  const a = pool.acquire();
  a.ref = {};
  const generation = a.generation;
  checkLive(a, generation, 'item'); // its own: fine
  pool.release(a);
  t.same([a.live, a.generation, a.ref], [false, generation + 1, null],
    'released: a new generation, references dropped');
  t.match(abortMessage(() => checkLive(a, generation, 'item')), /used after its release/);
  t.match(abortMessage(() => pool.release(a)), /released once/);
  const b = pool.acquire();
  t.equal(b, a, 'the same record again');
  t.match(abortMessage(() => checkLive(b, generation, 'item')), /used after its release/,
    'the old holder\'s generation is stale although the record is live again');
  const c = pool.acquire();
  const d = pool.acquire();
  t.same([pool.made, pool.live], [3, 3]);
  pool.release(b);
  pool.release(c);
  pool.release(d);
  t.same([pool.made, pool.live], [3, 0], 'at most `kept` wait in the list');
  pool.acquire();
  pool.acquire();
  pool.acquire();
  t.equal(pool.made, 4, 'beyond kept: a new one');
});

t.test('producer rings wrap around; a batch pushed out in flight is forgotten', async (t) => {
  const states = new ProducerStates({ batchesPerProducer: 3, producersMax: 4 });
  const top = SEQUENCE_MODULUS - 4;
  // Eight batches of two records from near the top of the sequence space: ring and sequence
  // both wrap.
  for (let i = 0; i < 8; i += 1) {
    const sequence = (top + 2 * i) % SEQUENCE_MODULUS;
    t.same(states.check(7, sequence, 2), { kind: 'new' });
    states.appended(7, sequence, 2, { epoch: 1, id: i + 1 });
  }
  t.equal(states.pending, 3, 'five pushed out before they were durable');
  states.durable({ epoch: 1, id: 2 }, 99); // pushed out: nothing to update
  states.durable({ epoch: 1, id: 7 }, 700);
  const view = states.view(7);
  t.same(view?.batches.map((b) => [b.baseSequence, b.baseOffset]),
    [[6, -1], [8, 700], [10, -1]], 'the last three, oldest first');
  t.equal(view?.sequenceNext, 12);
  t.same(states.check(7, 8, 2), { kind: 'duplicate', baseOffset: 700 });
  t.same(states.check(7, 10, 2), { kind: 'in-flight', ref: { epoch: 1, id: 8 } });
  t.equal(states.pending, 2);
  t.match(abortMessage(() => states.appended(8, 0, 1, { epoch: 1, id: 8 })),
    /appended once/, 'a ref in flight twice is our bug');
});

t.test('producers are evicted least recently used first, their refs with them', async (t) => {
  const states = new ProducerStates({ batchesPerProducer: 2, producersMax: 2 });
  states.appended(1, 0, 1, { epoch: 1, id: 1 });
  states.appended(2, 0, 1, { epoch: 1, id: 2 });
  states.check(1, 1, 1); // 1 is now the most recently used
  states.appended(3, 0, 1, { epoch: 1, id: 3 });
  t.same([states.view(1) !== undefined, states.view(2), states.view(3) !== undefined],
    [true, undefined, true], '2 forgotten');
  t.equal(states.pending, 2, 'its batch in flight with it');
  states.durable({ epoch: 1, id: 2 }, 5); // nothing to update
  states.appended(4, 0, 1, { epoch: 1, id: 4 });
  t.same([states.view(1), states.producers], [undefined, 2], 'then 1');
  for (let id = 5; id < 1000; id += 1) states.appended(5 + (id % 7), id, 1, { epoch: 1, id });
  t.ok(states.producers === 2 && states.pending <= 4, 'bounded under churn');
});
