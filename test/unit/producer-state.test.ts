// Idempotent producers' state (broker-node/producer-state.ts): each rule, then a seeded random
// workload of retries, lost replies and broker restarts against a model partition.
// The seed is in the test name; PMQ_SEED=<seed> replays one run.
import t, { type Test } from 'tap';

import { PmqError } from '../../common/errors.js';
import { ProducerStates, type SequenceCheck } from '../../broker-node/producer-state.js';
import type { ReservationRef } from '../../broker-node/sequencer-types.js';
import { type Prng, prngFrom } from '../fixtures/record-batch-random.js';

const ref = (id: number, epoch = 1): ReservationRef => ({ epoch, id });

function codeOf(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

t.test('first batch, retry in flight, retry once durable', async (t) => {
  const states = new ProducerStates();
  t.same(states.check(7, 40, 3), { kind: 'new' }, 'an unknown producer starts anywhere');
  states.appended(7, 40, 3, ref(1));
  t.same(states.check(7, 40, 3), { kind: 'in-flight', ref: ref(1) });
  t.same(states.check(7, 43, 2), { kind: 'new' }, 'the next sequence');
  states.durable(ref(1), 100);
  t.same(states.check(7, 40, 3), { kind: 'duplicate', baseOffset: 100 });
  t.equal(states.view(7)?.sequenceNext, 43);
});

t.test('gaps, reused sequences and bad values are refused', async (t) => {
  const states = new ProducerStates();
  states.appended(7, 0, 3, ref(1));
  t.equal(codeOf(() => states.check(7, 4, 1)), 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE', 'gap');
  t.equal(codeOf(() => states.check(7, 0, 2)), 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE',
    'same sequence, other record count');
  t.equal(codeOf(() => states.check(7, -1, 1)), 'PMQ_ERR_LEASE_INVALID');
  t.equal(codeOf(() => states.check(7, 2 ** 31, 1)), 'PMQ_ERR_LEASE_INVALID');
  t.same(states.check(-1, -1, 1), { kind: 'new' }, 'not idempotent: no state');
  states.appended(-1, -1, 1, ref(2));
  t.equal(states.producers, 1);
});

t.test('batches and producers are bounded', async (t) => {
  const states = new ProducerStates({ batchesPerProducer: 3, producersMax: 2 });
  for (let i = 0; i < 4; i += 1) {
    states.appended(7, i, 1, ref(i + 1));
    states.durable(ref(i + 1), i);
  }
  t.equal(states.view(7)?.batches.length, 3);
  t.equal(codeOf(() => states.check(7, 0, 1)), 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE',
    'a batch older than the window is not taken for new');
  states.appended(8, 0, 1, ref(10));
  states.check(7, 4, 1); // touches 7: 8 is now the least recently used
  states.appended(9, 0, 1, ref(11));
  t.equal(states.producers, 2);
  t.equal(states.view(8), undefined, 'the least recently used producer was forgotten');
  t.same(states.check(8, 5, 1), { kind: 'new' }, 'a forgotten producer is unknown');
});

t.test('restore from the log: duplicates, next sequence, wrap-around', async (t) => {
  const states = new ProducerStates();
  const top = 2 ** 31 - 2;
  states.restoreBatch({ producerId: 5, baseSequence: top, records: 2, baseOffset: 0 });
  states.restoreBatch({ producerId: 5, baseSequence: 0, records: 3, baseOffset: 2 });
  states.restoreBatch({ producerId: 6, baseSequence: 10, records: 1, baseOffset: 5 });
  // A batch stored after later ones (a broker before leases): log order is not sequence order.
  states.restoreBatch({ producerId: 6, baseSequence: 8, records: 2, baseOffset: 6 });
  states.restoreBatch({ producerId: -1, baseSequence: -1, records: 1, baseOffset: 8 });
  t.same(states.check(5, top, 2), { kind: 'duplicate', baseOffset: 0 });
  t.same(states.check(5, 0, 3), { kind: 'duplicate', baseOffset: 2 });
  t.same(states.check(5, 3, 1), { kind: 'new' });
  t.same(states.check(6, 8, 2), { kind: 'duplicate', baseOffset: 6 });
  t.equal(states.view(6)?.sequenceNext, 11, 'the next sequence is the furthest ahead');
  t.equal(states.producers, 2);
});

// ---- seeded random workload ------------------------------------------------------------

interface Appended {
  ref: ReservationRef;
  uid: number;
  producerId: number;
  sequence: number;
  records: number;
}

interface Stored { uid: number; producerId: number; sequence: number; records: number;
  baseOffset: number }

/** idle: to append (again); appended: waiting for the ack of `res`; done: acknowledged. */
type Status = { kind: 'idle' } | { kind: 'appended'; res: Appended }
  | { kind: 'done'; baseOffset: number };

interface Batch { uid: number; producer: ModelProducer; producerId: number; sequence: number;
  records: number; status: Status }

interface ModelProducer { producerId: number; sequenceNext: number }

/** A partition as the broker runs it, reduced to what idempotence depends on. */
class ModelPartition {
  states = new ProducerStates();
  inFlight: Appended[] = [];
  readonly log: Stored[] = [];
  epoch = 1;
  idNext = 1;
  outOfOrder = 0;

  append(batch: Batch): SequenceCheck | { kind: 'appended'; res: Appended } {
    const check = this.states.check(batch.producerId, batch.sequence, batch.records);
    if (check.kind !== 'new') return check;
    const res: Appended = { ref: { epoch: this.epoch, id: this.idNext }, uid: batch.uid,
      producerId: batch.producerId, sequence: batch.sequence, records: batch.records };
    this.idNext += 1;
    this.inFlight.push(res);
    this.states.appended(batch.producerId, batch.sequence, batch.records, res.ref);
    return { kind: 'appended', res };
  }

  find(target: ReservationRef): Appended | undefined {
    return this.inFlight.find((res) => res.ref.epoch === target.epoch &&
      res.ref.id === target.id);
  }

  /** The durable watermark moves over a prefix of the appended batches: offsets now. */
  persist(count: number): void {
    for (const res of this.inFlight.splice(0, count)) {
      const baseOffset = this.log.reduce((end, s) => Math.max(end, s.baseOffset + s.records), 0);
      this.log.push({ uid: res.uid, producerId: res.producerId, sequence: res.sequence,
        records: res.records, baseOffset });
      this.states.durable(res.ref, baseOffset);
    }
  }

  /** A new broker: what was appended but not durable is gone; the state comes from the log. */
  restart(): void {
    this.epoch += 1;
    this.inFlight = [];
    this.states = new ProducerStates();
    for (const stored of this.log) {
      this.states.restoreBatch({ producerId: stored.producerId, baseSequence: stored.sequence,
        records: stored.records, baseOffset: stored.baseOffset });
    }
  }
}

class Workload {
  readonly partition = new ModelPartition();
  readonly batches: Batch[] = [];
  producerIdNext = 100;

  constructor(readonly t: Test, readonly prng: Prng) {}

  newBatch(producer: ModelProducer): void {
    const records = 1 + this.prng.int(4);
    const batch: Batch = { uid: this.batches.length, producer, producerId: producer.producerId,
      sequence: producer.sequenceNext, records, status: { kind: 'idle' } };
    producer.sequenceNext += records;
    this.batches.push(batch);
    this.append(batch, 0.2);
  }

  append(batch: Batch, lossChance: number): void {
    let answer: ReturnType<ModelPartition['append']>;
    try {
      answer = this.partition.append(batch);
    } catch (error) {
      this.reinit(batch, error);
      return;
    }
    const lost = this.prng.chance(lossChance);
    if (answer.kind === 'duplicate') {
      const stored = this.partition.log.find((s) => s.uid === batch.uid);
      this.check(stored?.baseOffset === answer.baseOffset, 'a duplicate names its batch', batch);
      if (!lost) batch.status = { kind: 'done', baseOffset: answer.baseOffset };
      return;
    }
    const res = answer.kind === 'appended' ? answer.res
      : answer.kind === 'in-flight' ? this.partition.find(answer.ref) : undefined;
    this.check(res?.uid === batch.uid, 'a retry waits for its own batch', batch);
    if (res === undefined || lost) return;
    batch.status = { kind: 'appended', res };
  }

  /** Out of order: allowed only for a batch not stored; the producer takes a new id. */
  reinit(batch: Batch, error: unknown): void {
    this.check(error instanceof PmqError && error.code === 'PMQ_ERR_OUT_OF_ORDER_SEQUENCE',
      `refusal ${String(error)}`, batch);
    this.check(!this.partition.log.some((s) => s.uid === batch.uid),
      'out of order only for a batch that is not stored', batch);
    this.partition.outOfOrder += 1;
    const producer = batch.producer;
    if (producer.producerId === batch.producerId) {
      producer.producerId = this.producerIdNext;
      producer.sequenceNext = 0;
      this.producerIdNext += 1;
    }
    batch.producerId = producer.producerId;
    batch.sequence = producer.sequenceNext;
    producer.sequenceNext += batch.records;
  }

  /** Acks of appended batches that became durable (some lost: those retry). */
  settle(lossChance: number): void {
    for (const batch of this.batches) {
      if (batch.status.kind !== 'appended') continue;
      const { res } = batch.status;
      const stored = this.partition.log.find((s) => s.uid === batch.uid);
      if (this.partition.find(res.ref) !== undefined) continue;
      if (stored === undefined) batch.status = { kind: 'idle' }; // the broker restarted
      else batch.status = this.prng.chance(lossChance) ? { kind: 'idle' }
        : { kind: 'done', baseOffset: stored.baseOffset };
    }
  }

  check(ok: boolean, what: string, batch: Batch): void {
    if (!ok) this.t.fail(what, { uid: batch.uid, status: batch.status.kind });
  }
}

function runWorkload(t: Test, seed: number): void {
  const prng = prngFrom(seed);
  const work = new Workload(t, prng);
  const producers: ModelProducer[] = [0, 1, 2].map(() =>
    ({ producerId: work.producerIdNext++, sequenceNext: 0 }));
  for (let step = 0; step < 3000; step += 1) {
    const roll = prng.int(100);
    const active = work.batches.filter((b) => b.status.kind !== 'done');
    const producer = producers[prng.int(producers.length)]!;
    // The client's window: a batch starts only within maxInFlightBatches (5) of its
    // partition's oldest unsettled batch, so that batch is never pushed out of the state.
    const oldest = active.find((b) => b.producer === producer)?.uid;
    const mine = work.batches.filter((b) => b.producer === producer && b.uid >= (oldest ?? 0));
    const open = oldest === undefined ? 0 : mine.length;
    const batch = active[prng.int(active.length)];
    if (roll < 30 && open < 5) work.newBatch(producer);
    else if (roll < 65 && batch?.status.kind === 'idle') work.append(batch, 0.2);
    else if (roll < 97) work.partition.persist(prng.int(work.partition.inFlight.length + 1));
    else if (roll < 98) work.partition.restart();
    work.settle(0.2);
  }
  for (let round = 0; round < 60; round += 1) {
    for (const batch of work.batches) {
      if (batch.status.kind === 'idle') work.append(batch, 0);
    }
    work.partition.persist(work.partition.inFlight.length);
    work.settle(0);
  }
  const uids = work.partition.log.map((s) => s.uid);
  t.equal(new Set(uids).size, uids.length, 'no batch stored twice');
  t.equal(uids.length, work.batches.length, 'every batch stored');
  t.ok(work.batches.every((b) => b.status.kind === 'done' &&
    work.partition.log.find((s) => s.uid === b.uid)?.baseOffset === b.status.baseOffset),
  'every batch acknowledged with the offset it is stored at');
  t.comment(`${work.batches.length} batches, ${work.partition.epoch - 1} restarts, ` +
    `${work.partition.outOfOrder} re-inits`);
}

function seeds(): number[] {
  const fixed = process.env.PMQ_SEED ?? process.env.PMQ_TEST_SEED;
  if (fixed !== undefined) return [Number(fixed)];
  return Array.from({ length: 6 }, () => Math.floor(Math.random() * 0x1_0000_0000));
}

for (const seed of seeds()) {
  t.test(`producer state random retries (seed ${seed}; replay with PMQ_SEED=${seed})`,
    async (t) => runWorkload(t, seed));
}
