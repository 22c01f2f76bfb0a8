// The sequencer's rules one at a time: placement, errors, group commit, acknowledgement,
// expiry and fills, segment rolls and seals, fetch views, restore. The seeded random workload
// is in sequencer-vopr.test.ts.
import t from 'tap';

import { recordBatchSizeBytesMin } from '../../broker-node/batch-size.js';
import { setFatalSink } from '../../common/invariant.js';
import { recordBatchSizeBytes } from '../../common/record-batch/index.js';
import {
  type CommitResult, type PersistRequest, type Reservation, type ReserveResult, Sequencer,
  type SequencerConfig, SequencerError,
} from '../../broker-node/sequencer.js';

const SEGMENT = 64 * 1024;
const CONFIG: SequencerConfig = { epoch: 1, segmentSizeBytes: SEGMENT, reservationTimeoutMs: 100 };

function started(config: Partial<SequencerConfig> = {}): Sequencer {
  const sequencer = Sequencer.create({ ...CONFIG, ...config });
  const result = sequencer.reserve({ bytes: 100, records: 1, producer: 'p', now: 0 });
  if (result.kind !== 'need-segment') throw new Error('expected need-segment');
  sequencer.segmentAdded({ segmentId: 's0', chainPosition: 0, baseOffset: 0, sizeBytes: SEGMENT });
  return sequencer;
}

function reserved(result: ReserveResult): Reservation {
  if (result.kind !== 'reserved') throw new Error(`expected reserved, got ${result.kind}`);
  return result.reservation;
}

function reserve(sequencer: Sequencer, bytes: number, records = 1, producer = 'p', now = 0):
  Reservation {
  return reserved(sequencer.reserve({ bytes, records, producer, now }));
}

function persistOf(result: CommitResult): PersistRequest | null {
  if (result.kind !== 'committed') throw new Error(`expected committed, got ${result.kind}`);
  return result.persist;
}

function must<T>(value: T | null | undefined): T {
  if (value === null || value === undefined) throw new Error('expected a value');
  return value;
}

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

t.test('a new partition asks for its first segment, then places batches back to back', (t) => {
  const sequencer = Sequencer.create(CONFIG);
  t.same(sequencer.reserve({ bytes: 100, records: 2, producer: 'p', now: 0 }),
    { kind: 'need-segment', chainPosition: 0, baseOffset: 0, persist: null });
  t.equal(sequencer.highWatermark(), 0);
  t.equal(sequencer.fetchView(0), null, 'nothing to read yet');
  sequencer.segmentAdded({ segmentId: 's0', chainPosition: 0, baseOffset: 0, sizeBytes: SEGMENT });
  const a = reserve(sequencer, 100, 2);
  const b = reserve(sequencer, 300, 5);
  const c = reserve(sequencer, 80, 1);
  t.same([a.position, b.position, c.position], [0, 100, 400], 'positions contiguous');
  t.same([a.baseOffset, b.baseOffset, c.baseOffset], [0, 2, 7], 'offsets dense');
  t.same([a.epoch, a.id, b.id, c.id], [1, 1, 2, 3]);
  t.equal(sequencer.offsetNext(), 8);
  t.equal(sequencer.highWatermark(), 0, 'nothing durable yet');
  t.end();
});

t.test('invalid reservations are refused and change nothing', (t) => {
  const sequencer = started();
  const cases: [number, number][] = [[100, 0], [60, 1], [61 + 7 * 10 - 1, 10], [100.5, 1],
    [Number.NaN, 1], [100, 1.5], [100, 2 ** 31]];
  for (const [bytes, records] of cases) {
    t.throws(() => sequencer.reserve({ bytes, records, producer: 'p', now: 0 }),
      { code: 'PMQ_ERR_RESERVATION_INVALID', retriable: false }, `${bytes} bytes ${records}`);
  }
  t.equal(reserve(sequencer, 61 + 7 * 10, 10).position, 0, 'the smallest valid batch fits');
  t.end();
});

t.test('the smallest batch of n records, in closed form, matches the encoder', (t) => {
  for (const n of [1, 2, 63, 64, 65, 100, 8191, 8192, 8193, 20_000]) {
    const records = Array.from({ length: n }, () => ({ key: null, value: null }));
    t.equal(recordBatchSizeBytesMin(n), recordBatchSizeBytes(records, { timestampDefault: 0 }),
      `${n} records`);
  }
  const sequencer = started();
  t.throws(() => sequencer.reserve({ bytes: 61 + 7 * 100, records: 100, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_RESERVATION_INVALID', message: /needs at least 797 bytes/ },
    'past 64 records the offset deltas take two bytes');
  t.end();
});

t.test('a batch larger than a segment is refused with what to do', (t) => {
  const empty = Sequencer.create(CONFIG);
  t.throws(() => empty.reserve({ bytes: SEGMENT + 1, records: 1, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_RECORD_TOO_LARGE', message: /65536-byte limit.*split it/ });
  const sequencer = started();
  t.throws(() => sequencer.reserve({ bytes: SEGMENT + 1, records: 1, producer: 'p', now: 0 }),
    SequencerError);
  t.equal(reserve(sequencer, SEGMENT).position, 0, 'exactly a segment fits');
  t.end();
});

t.test('back-pressure: PMQ_ERR_BUSY once reservationsMax are in flight', (t) => {
  const sequencer = started({ reservationsMax: 2 });
  const a = reserve(sequencer, 100);
  reserve(sequencer, 100);
  t.throws(() => sequencer.reserve({ bytes: 100, records: 1, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_BUSY', retriable: true });
  const persist = must(persistOf(sequencer.commit(a, 0)));
  t.throws(() => sequencer.reserve({ bytes: 100, records: 1, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_BUSY' }, 'committed still counts until durable');
  sequencer.persisted(persist);
  t.equal(reserve(sequencer, 100).position, 200, 'room again once durable');
  t.end();
});

t.test('group commit: the watermark moves over the written prefix, one persist at a time',
  (t) => {
    const sequencer = started();
    const [a, b, c] = [reserve(sequencer, 100, 1, 'pa'), reserve(sequencer, 200, 3, 'pb'),
      reserve(sequencer, 80, 1, 'pc')];
    t.equal(persistOf(sequencer.commit(c, 1)), null, 'c alone is not a prefix');
    const first = must(persistOf(sequencer.commit(a, 2)));
    t.same(first, { segmentId: 's0', chainPosition: 0, positionEnd: 100, offsetLast: 0,
      seal: false });
    t.equal(persistOf(sequencer.commit(b, 3)), null, 'a persist is in flight: coalesce');
    t.equal(sequencer.segments()[0]?.written.position, 380);
    const one = sequencer.persisted(first);
    t.same(one.acks.map((ack) => [ack.id, ack.producer]), [[a.id, 'pa']]);
    t.same(one.persist, { segmentId: 's0', chainPosition: 0, positionEnd: 380, offsetLast: 4,
      seal: false }, 'b and c coalesced into one persist');
    t.equal(sequencer.highWatermark(), 1);
    const two = sequencer.persisted(must(one.persist));
    t.same(two.acks.map((ack) => ack.id), [b.id, c.id], 'acks in offset order');
    t.equal(two.persist, null);
    t.equal(sequencer.highWatermark(), 5);
    t.equal(sequencer.reservationsInFlight(), 0);
    t.end();
  });

t.test('stale, duplicate and foreign persisted() are ignored; retried commits answered', (t) => {
  const sequencer = started();
  const a = reserve(sequencer, 100);
  const first = must(persistOf(sequencer.commit(a, 0)));
  t.same(sequencer.commit(a, 0), { kind: 'committed', persist: null }, 'retry before durable');
  t.equal(sequencer.persisted(first).acks.length, 1);
  t.same(sequencer.persisted(first), { acks: [], filled: [], persist: null, sealed: null });
  t.same(sequencer.persisted({ ...first, segmentId: 'other' }).acks, []);
  const again = sequencer.commit(a, 0);
  t.equal(again.kind, 'durable', 'retry after the ack: send the ack again');
  t.equal(again.kind === 'durable' ? again.ack.baseOffset : -1, 0);
  const b = reserve(sequencer, 100);
  const second = must(persistOf(sequencer.commit(b, 0)));
  t.match(abortMessage(() => sequencer.persisted({ ...second, positionEnd: 150 })),
    /answers the request in flight/, 'a watermark never asked for aborts');
  t.end();
});

t.test('expired reservations become fills; the hole is skipped, never acknowledged', (t) => {
  const sequencer = started();
  const dead = reserve(sequencer, 100, 2, 'dead', 0);
  const live = reserve(sequencer, 100, 1, 'live', 50);
  t.equal(persistOf(sequencer.commit(live, 60)), null, 'the hole holds the watermark back');
  t.same(sequencer.expire(99).fills, [], 'not yet');
  const fills = sequencer.expire(100).fills;
  t.same(fills, [{ ref: { epoch: 1, id: dead.id }, revoke: 'dead', segmentId: 's0',
    position: 0, bytes: 100, baseOffset: 0, records: 2 }]);
  t.same(sequencer.expire(100).fills, [], 'a fill is returned once');
  const late = sequencer.commit(dead, 101);
  t.equal(late.kind, 'refused');
  t.match(late, { revoke: 'dead', error: { code: 'PMQ_ERR_RESERVATION_EXPIRED' } });
  const persist = must(sequencer.fillWritten(must(fills[0]).ref).persist);
  t.same([persist.positionEnd, persist.offsetLast], [200, 2]);
  const done = sequencer.persisted(persist);
  t.same(done.acks.map((ack) => ack.producer), ['live'], 'only the live batch is acknowledged');
  t.same(done.filled, [{ epoch: 1, id: dead.id }]);
  t.match(sequencer.commit(dead, 200), { kind: 'refused', revoke: 'dead' }, 'remembered');
  t.match(abortMessage(() => sequencer.fillWritten(live)), /fillWritten names a fill/);
  t.end();
});

t.test('commits of unknown or earlier-epoch reservations are refused', (t) => {
  const sequencer = started();
  const a = reserve(sequencer, 100);
  t.match(sequencer.commit({ epoch: 1, id: 99 }, 0),
    { kind: 'refused', revoke: null, error: { code: 'PMQ_ERR_RESERVATION_EXPIRED',
      message: /never issued.*reserve again/ } });
  t.match(sequencer.commit({ ...a, epoch: 0 }, 0),
    { kind: 'refused', revoke: null, error: { message: /earlier broker/ } });
  t.match(abortMessage(() => sequencer.commit(a, -1)), /time is monotonic/);
  t.end();
});

t.test('a full segment seals; the next persists only after the seal is durable', (t) => {
  const sequencer = started();
  const a = reserve(sequencer, 40_000, 10);
  const need = sequencer.reserve({ bytes: 30_000, records: 5, producer: 'p', now: 0 });
  t.same(need, { kind: 'need-segment', chainPosition: 1, baseOffset: 10, persist: null });
  t.equal(sequencer.segments()[0]?.state, 'sealing');
  t.same(sequencer.reserve({ bytes: 100, records: 1, producer: 'q', now: 0 }), need,
    'every reserve asks for the same segment until it is added');
  t.match(abortMessage(() => sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1,
    baseOffset: 11, sizeBytes: SEGMENT })), /continues the chain/);
  sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1, baseOffset: 10, sizeBytes: SEGMENT });
  const b = reserve(sequencer, 30_000, 5);
  t.same([b.segmentId, b.position, b.baseOffset], ['s1', 0, 10]);
  t.equal(persistOf(sequencer.commit(b, 0)), null, 's1 waits for s0');
  const seal = must(persistOf(sequencer.commit(a, 0)));
  t.same(seal, { segmentId: 's0', chainPosition: 0, positionEnd: 40_000, offsetLast: 9,
    seal: true });
  const sealed = sequencer.persisted(seal);
  t.same([sealed.acks.map((ack) => ack.id), sealed.sealed], [[a.id], 's0']);
  t.same(sealed.persist, { segmentId: 's1', chainPosition: 1, positionEnd: 30_000,
    offsetLast: 14, seal: false });
  t.same(sequencer.persisted(must(sealed.persist)).acks.map((ack) => ack.id), [b.id]);
  t.equal(sequencer.highWatermark(), 15);
  t.end();
});

t.test('sealing a fully durable segment asks for the seal at once', (t) => {
  const sequencer = started();
  const a = reserve(sequencer, 60_000);
  sequencer.persisted(must(persistOf(sequencer.commit(a, 0))));
  const need = sequencer.reserve({ bytes: 10_000, records: 1, producer: 'p', now: 0 });
  t.same(need, { kind: 'need-segment', chainPosition: 1, baseOffset: 1, persist: {
    segmentId: 's0', chainPosition: 0, positionEnd: 60_000, offsetLast: 0, seal: true } });
  const stale = { segmentId: 's0', chainPosition: 0, positionEnd: 60_000, offsetLast: 0,
    seal: false };
  t.equal(sequencer.persisted(stale).sealed, null, 'an old non-seal reply does not seal');
  if (need.kind !== 'need-segment') throw new Error('unreachable');
  t.equal(sequencer.persisted(must(need.persist)).sealed, 's0');
  t.end();
});

t.test('a failed persist is issued again, coalescing what was written meanwhile', (t) => {
  const sequencer = started();
  const [a, b] = [reserve(sequencer, 100), reserve(sequencer, 100)];
  const first = must(persistOf(sequencer.commit(a, 0)));
  sequencer.commit(b, 0);
  t.same(sequencer.persistFailed({ ...first, positionEnd: 1 }), { persist: null }, 'not ours');
  const retry = must(sequencer.persistFailed(first).persist);
  t.equal(retry.positionEnd, 200);
  t.equal(sequencer.persisted(retry).acks.length, 2);
  t.end();
});

t.test('fetch views stop at the durable watermark', (t) => {
  const sequencer = started();
  const a = reserve(sequencer, 40_000, 10);
  sequencer.reserve({ bytes: 30_000, records: 1, producer: 'p', now: 0 });
  sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1, baseOffset: 10, sizeBytes: SEGMENT });
  const b = reserve(sequencer, 1000, 4);
  const c = reserve(sequencer, 1000, 4);
  sequencer.commit(b, 0);
  const seal = must(persistOf(sequencer.commit(a, 0)));
  t.match(sequencer.fetchView(0), { segmentId: 's0', watermark: { position: 0 } });
  t.throws(() => sequencer.fetchView(1), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
  const next = must(sequencer.persisted(seal).persist);
  t.same(sequencer.fetchView(9), { segmentId: 's0', chainPosition: 0, baseOffset: 0,
    watermark: { position: 40_000, offsetLast: 9 }, sealed: true });
  t.match(sequencer.fetchView(10), { segmentId: 's1', watermark: { position: 0 } });
  sequencer.persisted(next);
  sequencer.commit(c, 0);
  t.match(sequencer.fetchView(13), { segmentId: 's1', watermark: { position: 1000,
    offsetLast: 13 }, sealed: false });
  t.equal(sequencer.highWatermark(), 14);
  t.throws(() => sequencer.fetchView(15), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' },
    'committed but not durable is not visible');
  t.throws(() => sequencer.fetchView(-1), SequencerError);
  t.end();
});

const wm = (position: number, offsetLast: number): { position: number; offsetLast: number } =>
  ({ position, offsetLast });

t.test('restore continues at the durable prefix and names orphan segments', (t) => {
  const { sequencer, orphans } = Sequencer.restore({ ...CONFIG, epoch: 2 }, [
    { segmentId: 'c', chainPosition: 7, baseOffset: 50, sizeBytes: SEGMENT, watermark: wm(0, 49),
      sealed: false },
    { segmentId: 'a', chainPosition: 5, baseOffset: 20, sizeBytes: SEGMENT,
      watermark: wm(60_000, 29), sealed: true },
    { segmentId: 'b', chainPosition: 6, baseOffset: 30, sizeBytes: SEGMENT,
      watermark: wm(5000, 39), sealed: false },
  ]);
  t.same(orphans, ['c'], 'empty segment past the active one');
  t.equal(sequencer.highWatermark(), 40);
  t.equal(sequencer.offsetNext(), 40, 'never-durable offsets 40..49 are handed out again');
  const r = reserve(sequencer, 100, 3);
  t.same([r.segmentId, r.position, r.baseOffset, r.epoch, r.id], ['b', 5000, 40, 2, 1]);
  t.match(sequencer.commit({ epoch: 1, id: 1 }, 0), { kind: 'refused' }, 'old epoch refused');
  t.match(sequencer.fetchView(20), { segmentId: 'a', sealed: true });
  t.throws(() => sequencer.fetchView(19), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
  const big = sequencer.reserve({ bytes: 62_000, records: 1, producer: 'p', now: 0 });
  t.match(big, { kind: 'need-segment', chainPosition: 7, baseOffset: 43 });
  t.end();
});

t.test('restore of a fully sealed chain asks for the next segment', (t) => {
  const { sequencer } = Sequencer.restore(CONFIG, [{ segmentId: 'a', chainPosition: 0,
    baseOffset: 0, sizeBytes: SEGMENT, watermark: wm(100, 0), sealed: true }]);
  t.equal(sequencer.highWatermark(), 1);
  t.same(sequencer.reserve({ bytes: 100, records: 1, producer: 'p', now: 0 }),
    { kind: 'need-segment', chainPosition: 1, baseOffset: 1, persist: null });
  t.equal(Sequencer.restore(CONFIG, []).sequencer.highWatermark(), 0);
  t.end();
});

t.test('restore refuses segment tables that are not one chain', (t) => {
  const base = { sizeBytes: SEGMENT, sealed: true };
  const s0 = { ...base, segmentId: 'a', chainPosition: 0, baseOffset: 0, watermark: wm(100, 9) };
  const cases: [string, object[]][] = [
    ['gap', [s0, { ...s0, segmentId: 'b', chainPosition: 2, baseOffset: 10 }]],
    ['offsets', [s0, { ...s0, segmentId: 'b', chainPosition: 1, baseOffset: 11 }]],
    ['twice', [s0, { ...s0, chainPosition: 1, baseOffset: 10 }]],
    ['data after unsealed', [{ ...s0, sealed: false },
      { ...s0, segmentId: 'b', chainPosition: 1, baseOffset: 10, sealed: false }]],
    ['empty watermark', [{ ...s0, watermark: wm(0, 3) }]],
    ['offsetLast below base', [{ ...s0, baseOffset: 5, watermark: wm(10, 4) }]],
    ['beyond segment', [{ ...s0, watermark: wm(SEGMENT + 1, 9) }]],
    ['size', [{ ...s0, sizeBytes: 4096 }]],
  ];
  for (const [what, segments] of cases) {
    t.throws(() => Sequencer.restore(CONFIG, segments as never),
      { code: 'PMQ_ERR_CHAIN_INVALID', message: /segment chain: / }, what);
  }
  t.end();
});
