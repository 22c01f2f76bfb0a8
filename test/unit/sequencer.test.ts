// The sequencer's rules one at a time: leases and their refusals, appends in any order (offsets
// follow positions), the gap rule, exact repeats, releases, expiry and fills, group commit
// with offset patches, persist matching and failures, segment seals and rolls, fetch views,
// restore, monotonic time. The seeded random workload is in sequencer-vopr.test.ts.
import t from 'tap';

import {
  recordBatchSizeBytesMin, recordBatchSizeReachable,
} from '../../common/record-batch/batch-size.js';
import { setFatalSink } from '../../common/invariant.js';
import { LIMITS, SEQUENCER_LIMITS } from '../../common/limits.js';
import { recordBatchSizeBytes } from '../../common/record-batch/index.js';
import {
  type Ack, type AppendResult, copyPersistRequest, FILL_BYTES_MIN, fillRecords, type Lease,
  type LeaseResult,
  type PersistRequest, type ReservationRef, Sequencer, type SequencerConfig, SequencerError,
} from '../../broker-node/sequencer.js';

const SEGMENT = 64 * 1024;
// leaseFraction 1: leases up to a whole segment, so the rules below show on small numbers.
const CONFIG: SequencerConfig = { epoch: 1, segmentSizeBytes: SEGMENT, reservationTimeoutMs: 100,
  leaseFraction: 1 };
const NOTHING = { acks: [], filled: [], persist: null, sealed: null };

function started(config: Partial<SequencerConfig> = {}): Sequencer {
  const sequencer = Sequencer.create({ ...CONFIG, ...config });
  const result = sequencer.lease({ bytes: 100, bytesMin: 100, producer: 'p', now: 0 });
  if (result.kind !== 'need-segment') throw new Error('expected need-segment');
  sequencer.segmentAdded({ segmentId: 's0', chainPosition: 0, baseOffset: config.offsetFirst ?? 0,
    sizeBytes: config.segmentSizeBytes ?? SEGMENT });
  return sequencer;
}

function leased(result: LeaseResult): Lease {
  if (result.kind !== 'leased') throw new Error(`expected leased, got ${result.kind}`);
  return result.lease;
}

/** bytesMin defaults to the whole lease (or the smallest batch, for larger ones). */
function lease(sequencer: Sequencer, bytes: number,
  { bytesMin = bytes > 0 && bytes < 4096 ? Math.max(bytes, FILL_BYTES_MIN) : FILL_BYTES_MIN,
    producer = 'p', now = 0 } = {}): Lease {
  return leased(sequencer.lease({ bytes, bytesMin, producer, now }));
}

function appendAt(sequencer: Sequencer, ref: ReservationRef, position: number, bytes: number,
  records = 1, now = 0): AppendResult {
  const result = sequencer.append({ lease: { epoch: ref.epoch, id: ref.id }, position, bytes,
    records, now });
  // A copy (the sequencer refills its own), with a plain ref (a batch's ref is its piece).
  return result.kind === 'refused' ? result : { ...result, ref: plainRef(result.ref) };
}

function plainRef(ref: ReservationRef): ReservationRef;
function plainRef(ref: ReservationRef | null): ReservationRef | null;
function plainRef(ref: ReservationRef | null): ReservationRef | null {
  return ref === null ? null : { epoch: ref.epoch, id: ref.id };
}

/** An append that must be taken: its batch's ref and the persist it made due. */
function put(sequencer: Sequencer, ref: ReservationRef, position: number, bytes: number,
  records = 1, now = 0): { ref: ReservationRef; persist: PersistRequest | null } {
  const result = appendAt(sequencer, ref, position, bytes, records, now);
  if (result.kind !== 'appended') {
    throw new Error(`expected appended, got ${JSON.stringify(result)}`);
  }
  return { ref: result.ref, persist: result.persist };
}

/** An ack's fields only (acks from persisted() are the sequencer's pieces, with more). */
function ackFields(ack: Ack): Ack {
  return { epoch: ack.epoch, id: ack.id, producer: ack.producer, segmentId: ack.segmentId,
    position: ack.position, bytes: ack.bytes, baseOffset: ack.baseOffset, records: ack.records };
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

const persistOf = (s0: { positionEnd: number; offsetLast: number; seal?: boolean;
  patches: [number, number][]; segmentId?: string; chainPosition?: number }): PersistRequest => ({
  segmentId: s0.segmentId ?? 's0', chainPosition: s0.chainPosition ?? 0,
  positionEnd: s0.positionEnd, offsetLast: s0.offsetLast, seal: s0.seal ?? false,
  // Patches tile [durable, positionEnd) with dense offsets: each piece's size and record count
  // follow from the next patch (or the persist's end).
  patches: s0.patches.map(([position, baseOffset], i) => {
    const [nextPosition, nextOffset] = s0.patches[i + 1] ?? [s0.positionEnd, s0.offsetLast + 1];
    return { position, baseOffset, bytes: nextPosition - position,
      records: nextOffset - baseOffset };
  }),
});

t.test('a new partition asks for its first segment; leases go back to back, without offsets',
  (t) => {
    const sequencer = Sequencer.create(CONFIG);
    const need = { kind: 'need-segment', chainPosition: 0, baseOffset: 0, sizeBytesMin: 100,
      persist: null };
    t.same(sequencer.lease({ bytes: 1000, bytesMin: 100, producer: 'p', now: 0 }), need);
    t.same(sequencer.lease({ bytes: 50, bytesMin: 70, producer: 'q', now: 0 }),
      { ...need, sizeBytesMin: 70 }, 'every lease asks for the same segment until it is added ' +
      '(each says what it needs to fit)');
    t.equal(sequencer.highWatermark(), 0);
    t.equal(sequencer.fetchView(0), null, 'nothing to read yet');
    sequencer.segmentAdded({ segmentId: 's0', chainPosition: 0, baseOffset: 0,
      sizeBytes: SEGMENT });
    const a = lease(sequencer, 1000, { producer: 'pa' });
    const b = lease(sequencer, 10, { bytesMin: 200, producer: 'pb' });
    const c = lease(sequencer, -5, { producer: 'pc' });
    t.same(a, { epoch: 1, id: 1, segmentId: 's0', position: 0, bytes: 1000 });
    t.same(b, { epoch: 1, id: 2, segmentId: 's0', position: 1000, bytes: 200 },
      'never smaller than bytesMin');
    t.same(c, { epoch: 1, id: 3, segmentId: 's0', position: 1200, bytes: FILL_BYTES_MIN });
    t.equal(sequencer.offsetNext(), 0, 'a lease hands out no offsets');
    t.match(sequencer.segments(), [{ state: 'active', positionNext: 1268,
      written: { position: 0, offsetLast: -1 }, durable: { position: 0, offsetLast: -1 },
      persistInFlight: null }]);
    t.equal(sequencer.reservationsInFlight(), 3, 'open leases count');
    t.same([sequencer.leaseProducer(a), sequencer.leaseProducer(c)], ['pa', 'pc']);
    t.equal(sequencer.leaseProducer({ epoch: 1, id: 99 }), null);
    t.equal(sequencer.leaseProducer({ epoch: 2, id: 1 }), null, 'another epoch');
    t.equal(sequencer.batchState(a), 'unknown', 'a lease is not a batch');
    t.end();
  });

t.test('a lease is cut to the segment and to its room, never below bytesMin', (t) => {
  const sequencer = started();
  t.same(lease(sequencer, SEGMENT * 3), { epoch: 1, id: 1, segmentId: 's0', position: 0,
    bytes: SEGMENT }, 'a whole empty segment at most');
  const other = started();
  lease(other, 60_000);
  t.match(lease(other, 10_000, { bytesMin: 5000 }), { position: 60_000, bytes: 5536 },
    'the room left when it is at least bytesMin');
  t.end();
});

t.test('invalid lease requests are refused and change nothing', (t) => {
  const sequencer = started();
  const cases: [number, number][] = [[100, 67], [100, 0], [100, -68], [100, 68.5],
    [100, Number.NaN], [100.5, 100], [Number.NaN, 100], [Number.POSITIVE_INFINITY, 100],
    [100, Number.POSITIVE_INFINITY]];
  for (const [bytes, bytesMin] of cases) {
    t.throws(() => sequencer.lease({ bytes, bytesMin, producer: 'p', now: 0 }),
      { code: 'PMQ_ERR_LEASE_INVALID', retriable: false }, `bytes ${bytes} bytesMin ${bytesMin}`);
  }
  t.throws(() => sequencer.lease({ bytes: 100, bytesMin: SEGMENT + 1, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_RECORD_TOO_LARGE', message: /65536-byte limit.*split it/ });
  t.throws(() => Sequencer.create(CONFIG).lease({ bytes: 0, bytesMin: SEGMENT + 1,
    producer: 'p', now: 0 }), { code: 'PMQ_ERR_RECORD_TOO_LARGE' }, 'also with no segment yet');
  t.same(lease(sequencer, 0, { bytesMin: FILL_BYTES_MIN }),
    { epoch: 1, id: 1, segmentId: 's0', position: 0, bytes: FILL_BYTES_MIN },
    'the smallest lease; refusals used no id and no room');
  t.same(lease(started(), 0, { bytesMin: SEGMENT }).bytes, SEGMENT, 'exactly a segment fits');
  t.end();
});

t.test('the smallest batch and the fill sizes, in closed form, match the encoder', (t) => {
  for (const n of [1, 2, 63, 64, 65, 100, 8191, 8192, 8193, 20_000]) {
    const records = Array.from({ length: n }, () => ({ key: null, value: null }));
    t.equal(recordBatchSizeBytesMin(n), recordBatchSizeBytes(records, { timestampDefault: 0 }),
      `${n} records`);
  }
  t.equal(FILL_BYTES_MIN, recordBatchSizeBytesMin(1), 'a fill is at least a one-record batch');
  t.same([fillRecords(68), fillRecords(125), fillRecords(126), fillRecords(127),
    fillRecords(61 + 8194), fillRecords(61 + 8195)], [1, 1, 2, 1, 2, 1]);
  let unfillable = 0;
  for (let bytes = FILL_BYTES_MIN; bytes < 20_000; bytes += 1) {
    if (!recordBatchSizeReachable(bytes, fillRecords(bytes))) unfillable += 1;
  }
  t.equal(unfillable, 0, 'every gap of at least FILL_BYTES_MIN has a control batch');
  const sequencer = started();
  const l = lease(sequencer, 1000);
  t.match(appendAt(sequencer, l, 0, 61 + 7 * 100, 100), { kind: 'refused', error: {
    code: 'PMQ_ERR_LEASE_INVALID', message: /at least 797 bytes/ } },
  'past 64 records the offset deltas take two bytes');
  t.end();
});

t.test('back-pressure: PMQ_ERR_BUSY once leases and pieces in flight reach reservationsMax',
  (t) => {
    const sequencer = started({ reservationsMax: 3 });
    const a = lease(sequencer, 1000);
    const b = lease(sequencer, 1000);
    const first = must(put(sequencer, a, 0, 500).persist);
    t.equal(sequencer.reservationsInFlight(), 3, 'two leases and a batch');
    t.throws(() => sequencer.lease({ bytes: 100, bytesMin: 100, producer: 'p', now: 0 }),
      { code: 'PMQ_ERR_BUSY', retriable: true });
    t.equal(sequencer.release(b, 0).fills.length, 1);
    t.equal(sequencer.reservationsInFlight(), 3, 'a fill counts until durable');
    t.throws(() => sequencer.lease({ bytes: 100, bytesMin: 100, producer: 'p', now: 0 }),
      { code: 'PMQ_ERR_BUSY' });
    t.equal(sequencer.persisted(first).acks.length, 1);
    t.equal(sequencer.reservationsInFlight(), 2);
    t.equal(lease(sequencer, 100).position, 2000, 'room again once a batch is durable');
    t.end();
  });

t.test('appends at the limit: busy, except the one batch that unblocks the durable prefix',
  (t) => {
    const sequencer = started({ reservationsMax: 3 });
    const a = lease(sequencer, 300, { producer: 'pa' });
    const b = lease(sequencer, 1000, { producer: 'pb' });
    const b1 = put(sequencer, b, 300, 100);
    t.equal(sequencer.reservationsInFlight(), 3);
    const busy = { kind: 'refused', error: { code: 'PMQ_ERR_BUSY', retriable: true,
      message: /append again after some are durable/ } };
    t.match(appendAt(sequencer, b, 400, 100), busy, 'behind a hole: busy');
    t.match(appendAt(sequencer, a, 100, 100), busy, 'not at the written prefix either');
    t.same(appendAt(sequencer, b, 300, 100), { kind: 'again', ref: b1.ref, ack: null },
      'a repeat is answered');
    t.match(appendAt(sequencer, b, 410, 100), { kind: 'refused',
      error: { code: 'PMQ_ERR_LEASE_INVALID' } }, 'an invalid append is invalid first');
    const a1 = put(sequencer, a, 0, 100);
    t.same(a1.persist, persistOf({ positionEnd: 100, offsetLast: 0, patches: [[0, 0]] }),
      'the batch at the durable prefix is taken: without it nothing could become durable');
    t.equal(sequencer.reservationsInFlight(), 4, 'one past the limit');
    t.match(appendAt(sequencer, a, 100, 100), busy,
      'the next one waits: a persist is due, durable pieces will bring the count down');
    const one = sequencer.persisted(must(a1.persist));
    t.same([one.acks.length, one.persist], [1, null]);
    t.equal(sequencer.reservationsInFlight(), 3, 'at the limit again, durable up to 100');
    t.equal(put(sequencer, a, 100, 200).persist?.positionEnd, 400, 'unblocks again: a and b');
    t.match(appendAt(sequencer, b, 500, 100), busy, 'the rest waits for that persist');
    const two = sequencer.persisted(persistOf({ positionEnd: 400, offsetLast: 2,
      patches: [[100, 1], [300, 2]] }));
    t.same(two.acks.map((ack) => ack.baseOffset), [1, 2]);
    t.equal(sequencer.reservationsInFlight(), 2, 'the two leases');
    t.equal(put(sequencer, b, 500, 100).persist, null, 'room again: behind a hole is fine');
    t.end();
  });

t.test('offsets follow positions, whatever order the batches are appended in', (t) => {
  const sequencer = started();
  const a = lease(sequencer, 1000, { producer: 'pa' });
  const b = lease(sequencer, 1000, { producer: 'pb' });
  const b2 = put(sequencer, b, 1600, 400, 4);
  const b1 = put(sequencer, b, 1000, 600, 2);
  t.same([b2.persist, b1.persist], [null, null], 'b is written, but not the range before it');
  const a2 = put(sequencer, a, 300, 700, 3);
  t.equal(a2.persist, null, 'a hole at the front of a');
  t.match(sequencer.segments()[0], { written: { position: 0, offsetLast: -1 } });
  t.equal(sequencer.offsetNext(), 0, 'no offsets before the written prefix reaches a batch');
  const a1 = put(sequencer, a, 0, 300, 1);
  t.same(a1.persist, persistOf({ positionEnd: 2000, offsetLast: 9,
    patches: [[0, 0], [300, 1], [1000, 4], [1600, 6]] }), 'one persist, offsets by position');
  t.equal(sequencer.offsetNext(), 10);
  t.same([a.id, b.id, b2.ref.id, b1.ref.id, a2.ref.id, a1.ref.id], [1, 2, 3, 4, 5, 6]);
  t.same([sequencer.batchState(a1.ref), sequencer.ackOf(a1.ref)], ['written', null]);
  const done = sequencer.persisted(must(a1.persist));
  t.same(done.acks.map((ack) => [ack.id, ack.producer, ack.segmentId, ack.position, ack.bytes,
    ack.baseOffset, ack.records]), [
    [a1.ref.id, 'pa', 's0', 0, 300, 0, 1], [a2.ref.id, 'pa', 's0', 300, 700, 1, 3],
    [b1.ref.id, 'pb', 's0', 1000, 600, 4, 2], [b2.ref.id, 'pb', 's0', 1600, 400, 6, 4],
  ], 'acks in offset order, each with the offsets its patch gave');
  t.same(done.filled, []);
  t.equal(sequencer.highWatermark(), 10);
  t.same([sequencer.batchState(b2.ref), sequencer.ackOf(b2.ref)?.baseOffset], ['acked', 6]);
  t.end();
});

t.test('appends outside the lease, overlapping, or leaving an unfillable gap are refused',
  (t) => {
    const sequencer = started();
    const l = lease(sequencer, 1000);
    const refused = (position: number, bytes: number, records: number, message: RegExp,
      what: string): void => {
      t.match(appendAt(sequencer, l, position, bytes, records), { kind: 'refused', error: {
        code: 'PMQ_ERR_LEASE_INVALID', retriable: false, message } }, what);
    };
    const counts = /records must be 1\.\./;
    refused(0, 100, 0, counts, 'no records');
    refused(0, 100, 1.5, counts, 'fractional records');
    refused(0, 100, 2 ** 31, counts, 'records past an int32');
    refused(0, 61 + 7 * 10 - 1, 10, counts, 'smaller than 10 records can be');
    refused(0, 126, 1, counts, 'a size no one-record batch has');
    refused(0, Number.NaN, 1, counts, 'bytes not a number');
    refused(0, 67, 1, counts, 'below one record');
    const outside = /outside the unwritten part/;
    refused(-100, 200, 1, outside, 'before the lease');
    refused(950, 100, 1, outside, 'past the end');
    refused(1000, 68, 1, outside, 'at the end');
    refused(0.5, 100, 1, outside, 'fractional position');
    refused(Number.NaN, 100, 1, outside, 'position not a number');
    const gap = /gap of 1\.\.67 bytes/;
    refused(10, 100, 1, gap, '10 bytes after the lease front');
    refused(0, 950, 1, gap, '50 bytes before the lease end');
    refused(1000 - 67 - 100, 100, 1, gap, '67 bytes before the lease end');
    t.match(sequencer.segments()[0], { positionNext: 1000, written: { position: 0 } });
    t.equal(sequencer.reservationsInFlight(), 1, 'refusals changed nothing');
    t.equal(put(sequencer, l, 400, 200).persist, null, 'gaps of 400 on either side: taken');
    const overlaps = /overlaps a batch appended before/;
    refused(500, 100, 1, overlaps, 'inside it');
    refused(300, 150, 1, overlaps, 'over its start');
    refused(550, 150, 1, overlaps, 'over its end');
    refused(200, 600, 1, overlaps, 'around it');
    refused(400, 100, 1, overlaps, 'at its position, another size');
    refused(250, 100, 1, gap, '50 bytes before it');
    refused(630, 100, 1, gap, '30 bytes after it');
    refused(0, 380, 1, gap, '20 bytes before it, from the front');
    refused(600, 350, 1, gap, 'right after it, 50 bytes before the end');
    const front = put(sequencer, l, 0, 332);
    t.same(front.persist, persistOf({ positionEnd: 332, offsetLast: 0, patches: [[0, 0]] }),
      'a gap of exactly FILL_BYTES_MIN is allowed');
    refused(100, 100, 1, outside, 'below the lease front');
    t.equal(put(sequencer, l, 600, 400).persist, null, 'back to back with its neighbour');
    t.same(sequencer.release(l, 0).fills, [{ ref: { epoch: 1, id: 5 }, revoke: 'p',
      segmentId: 's0', position: 332, bytes: 68, records: 1 }], 'the one gap left is a fill');
    t.end();
  });

t.test('appends to unknown, closed or earlier-epoch leases are refused as expired', (t) => {
  const sequencer = started();
  const l = lease(sequencer, 1000);
  t.match(appendAt(sequencer, { ...l, epoch: 0 }, 0, 100),
    { kind: 'refused', error: { code: 'PMQ_ERR_LEASE_EXPIRED', retriable: true,
      message: /earlier broker.*lease again/ } });
  t.match(appendAt(sequencer, { epoch: 1, id: 99 }, 0, 100),
    { kind: 'refused', error: { code: 'PMQ_ERR_LEASE_EXPIRED', message: /closed/ } });
  t.match(sequencer.release(l, 0), { fills: [{ position: 0, bytes: 1000 }], persist: null });
  t.match(appendAt(sequencer, l, 0, 100),
    { kind: 'refused', error: { code: 'PMQ_ERR_LEASE_EXPIRED' } }, 'released');
  t.same(sequencer.release(l, 0), { fills: [], persist: null }, 'a lease closes once');
  t.same(sequencer.release({ epoch: 1, id: 99 }, 0), { fills: [], persist: null });
  t.same(sequencer.release({ ...lease(sequencer, 100), epoch: 2 }, 0),
    { fills: [], persist: null }, 'another epoch');
  t.equal(sequencer.leaseProducer(l), null);
  t.end();
});

t.test('an exact repeat answers again, with the ack once durable; no second batch', (t) => {
  const sequencer = started();
  const l = lease(sequencer, 1000);
  const first = put(sequencer, l, 0, 100);
  const persist = must(first.persist);
  t.same(appendAt(sequencer, l, 0, 100), { kind: 'again', ref: first.ref, ack: null },
    'before durable: wait for the ack');
  t.same(sequencer.segments()[0]?.persistInFlight, persist, 'no new persist');
  t.equal(sequencer.reservationsInFlight(), 2, 'no second batch');
  t.match(appendAt(sequencer, l, 0, 100, 2), { kind: 'refused',
    error: { code: 'PMQ_ERR_LEASE_INVALID' } }, 'same position, other records');
  t.match(appendAt(sequencer, l, 0, 200), { kind: 'refused',
    error: { code: 'PMQ_ERR_LEASE_INVALID' } }, 'same position, other bytes');
  const ack = ackFields(must(sequencer.persisted(persist).acks[0]));
  t.same(appendAt(sequencer, l, 0, 100), { kind: 'again', ref: first.ref, ack },
    'after durable: the same ack');
  t.same(sequencer.persisted(persist), NOTHING);
  t.same(plainRef(sequencer.appendedAt(l, 0)), first.ref, 'the batch appended at a position');
  t.same([sequencer.appendedAt(l, 100), sequencer.appendedAt({ ...l, epoch: 2 }, 0)],
    [null, null]);
  sequencer.release(l, 0);
  t.equal(sequencer.appendedAt(l, 0), null, 'only in open leases');
  t.end();
});

t.test('a repeat gets its ack even after the outcome is forgotten', (t) => {
  const sequencer = started({ segmentSizeBytes: 1024 * 1024 });
  const long = lease(sequencer, 100, { producer: 'long' });
  const first = put(sequencer, long, 0, 100);
  const ack = ackFields(must(sequencer.persisted(must(first.persist)).acks[0]));
  for (let i = 0; i < SEQUENCER_LIMITS.outcomesRememberedMax; i += 1) {
    const l = lease(sequencer, FILL_BYTES_MIN, { producer: 'q' });
    sequencer.persisted(must(put(sequencer, l, l.position, FILL_BYTES_MIN).persist));
    sequencer.release(l, 0);
  }
  t.same([sequencer.ackOf(first.ref), sequencer.batchState(first.ref)], [null, 'unknown'],
    'no longer remembered by ref');
  t.same(appendAt(sequencer, long, 0, 100), { kind: 'again', ref: first.ref, ack },
    'the lease is open: its batch answers with the ack, not "wait"');
  t.end();
});

t.test('release: the gaps of a lease become fills; holes hold the watermark back, never acked',
  (t) => {
    const sequencer = started();
    const l = lease(sequencer, 1000, { producer: 'p' });
    const x = put(sequencer, l, 0, 100);
    const p1 = must(x.persist);
    const y = put(sequencer, l, 300, 100, 2);
    const { fills, persist } = sequencer.release(l, 5);
    t.same(fills, [
      { ref: { epoch: 1, id: 4 }, revoke: 'p', segmentId: 's0', position: 100, bytes: 200,
        records: 1 },
      { ref: { epoch: 1, id: 5 }, revoke: 'p', segmentId: 's0', position: 400, bytes: 600,
        records: 1 },
    ]);
    t.equal(persist, null);
    const [f1, f2] = [must(fills[0]), must(fills[1])];
    t.same([sequencer.batchState(f1.ref), sequencer.ackOf(f1.ref)], ['unknown', null],
      'a fill is not a batch');
    t.equal(sequencer.reservationsInFlight(), 4, 'two batches and two fills');
    t.same(sequencer.fillWritten(f2.ref), { persist: null }, 'f1 is still a hole');
    const one = sequencer.persisted(p1);
    t.same([one.acks.map((ack) => ack.id), one.filled, one.persist], [[x.ref.id], [], null]);
    const p2 = must(sequencer.fillWritten(f1.ref).persist);
    t.same(p2, persistOf({ positionEnd: 1000, offsetLast: 4,
      patches: [[100, 1], [300, 2], [400, 4]] }), 'fills get offsets like batches');
    const two = sequencer.persisted(p2);
    t.same(two.acks.map((ack) => [ack.id, ack.baseOffset]), [[y.ref.id, 2]]);
    t.same(two.filled, [f1.ref, f2.ref], 'filled, in offset order, never acked');
    t.equal(sequencer.highWatermark(), 5);
    t.equal(sequencer.reservationsInFlight(), 0);
    t.match(abortMessage(() => sequencer.fillWritten(f1.ref)), /fillWritten names a fill/,
      'a fill is written once');
    t.match(abortMessage(() => sequencer.fillWritten(y.ref)), /fillWritten names a fill/);
    t.end();
  });

t.test('a fill is two records where no one-record batch has its size; whole unused leases',
  (t) => {
    const sequencer = started();
    const odd = lease(sequencer, 126, { producer: 'odd' });
    const full = lease(sequencer, 200, { producer: 'full' });
    put(sequencer, full, 126, 200);
    t.same(sequencer.release(full, 0), { fills: [], persist: null }, 'nothing left to fill');
    const [fill] = sequencer.release(odd, 0).fills;
    t.same(fill, { ref: { epoch: 1, id: 4 }, revoke: 'odd', segmentId: 's0', position: 0,
      bytes: 126, records: 2 });
    t.same(sequencer.fillWritten(must(fill).ref).persist, persistOf({ positionEnd: 326,
      offsetLast: 2, patches: [[0, 0], [126, 2]] }));
    t.end();
  });

t.test('huge segments: a lease is at most the largest batch, so a fill always fits in one',
  (t) => {
    const sequencer = started({ segmentSizeBytes: LIMITS.segmentSizeBytesMax });
    const l = lease(sequencer, 3 * 2 ** 30);
    t.equal(l.bytes, 0x7fff_ffff);
    t.throws(() => sequencer.lease({ bytes: 0, bytesMin: 0x8000_0000, producer: 'p', now: 0 }),
      { code: 'PMQ_ERR_RECORD_TOO_LARGE' });
    t.match(sequencer.release(l, 0).fills, [{ position: 0, bytes: 0x7fff_ffff, records: 1 }]);
    t.end();
  });

t.test('leases with no append for the timeout expire; an append restarts the clock', (t) => {
  // The idle lease holds back busy's batch: no blocking cut here (see the next tests).
  const sequencer = started({ leaseBlockingIdleMs: 1000 });
  const idle = lease(sequencer, 500, { producer: 'idle', now: 0 });
  const busy = lease(sequencer, 500, { producer: 'busy', now: 10 });
  put(sequencer, busy, 500, 100, 1, 60);
  t.same(sequencer.expire(99).fills, [], 'not yet');
  t.same(sequencer.expire(100).fills, [{ ref: { epoch: 1, id: 4 }, revoke: 'idle',
    segmentId: 's0', position: 0, bytes: 500, records: 1 }]);
  t.same([sequencer.leaseProducer(idle), sequencer.leaseProducer(busy)], [null, 'busy']);
  t.match(appendAt(sequencer, idle, 0, 100, 1, 100), { kind: 'refused',
    error: { code: 'PMQ_ERR_LEASE_EXPIRED' } }, 'too late');
  t.match(appendAt(sequencer, busy, 500, 100, 1, 150), { kind: 'again' },
    'a repeat is not activity');
  t.same(sequencer.expire(159).fills, [], 'the append at 60 keeps it until 160');
  t.same(sequencer.expire(160).fills, [{ ref: { epoch: 1, id: 5 }, revoke: 'busy',
    segmentId: 's0', position: 600, bytes: 400, records: 1 }]);
  t.same(sequencer.expire(1000).fills, [], 'a fill is returned once');
  t.equal(sequencer.reservationsInFlight(), 3, 'a batch and two fills');
  t.end();
});

t.test('contended leases: small while another producer holds one, at least the batch', (t) => {
  const sequencer = started({ leaseContendedBytes: 2048 });
  const a = lease(sequencer, 10_000, { producer: 'a', bytesMin: 100 });
  t.equal(a.bytes, 10_000, 'alone: what was asked for');
  t.equal(lease(sequencer, 10_000, { producer: 'a', bytesMin: 100 }).bytes, 10_000,
    "a producer's own leases are no contention");
  const b = lease(sequencer, 10_000, { producer: 'b', bytesMin: 100 });
  t.equal(b.bytes, 2048, 'another producer holds one: the contended size');
  t.equal(lease(sequencer, 10_000, { producer: 'c', bytesMin: 3000 }).bytes, 3000,
    'never below the batch');
  t.equal(lease(sequencer, 1000, { producer: 'd', bytesMin: 100 }).bytes, 1000,
    'less when asked for less');
  t.end();
});

t.test('leaseEnding: a large lease with another placed after it ends; a small rest runs on',
  (t) => {
    const sequencer = started({ leaseContendedBytes: 2048 });
    const a = lease(sequencer, 10_000, { producer: 'a', bytesMin: 100 });
    t.notOk(sequencer.leaseEnding(a), 'nobody behind it');
    const b = lease(sequencer, 1000, { producer: 'b' });
    t.ok(sequencer.leaseEnding(a), '10 000 bytes unwritten hold b back');
    t.notOk(sequencer.leaseEnding(b), 'the last lease holds nobody back');
    put(sequencer, a, 0, 4000);
    put(sequencer, a, 4000, 4000);
    t.notOk(sequencer.leaseEnding(a), 'a rest of 2000 bytes (the contended size) runs on');
    t.end();
  });

t.test('leaseUsedUp: all of an open lease appended, nothing ahead of a gap', (t) => {
  const sequencer = started();
  const a = lease(sequencer, 300, { producer: 'a', bytesMin: 100 });
  t.notOk(sequencer.leaseUsedUp(a), 'nothing appended');
  put(sequencer, a, 200, 100);
  t.notOk(sequencer.leaseUsedUp(a), 'a batch ahead of a gap');
  put(sequencer, a, 0, 200);
  t.ok(sequencer.leaseUsedUp(a), 'all appended');
  t.same(sequencer.release(a, 0).fills, [], 'its release fills nothing');
  t.notOk(sequencer.leaseUsedUp(a), 'closed');
  t.end();
});

t.test('a lease idle for leaseBlockingIdleMs is cut only while it holds something back', (t) => {
  const sequencer = started({ leaseBlockingIdleMs: 5 });
  const a = lease(sequencer, 1000, { producer: 'a', now: 0 });
  put(sequencer, a, 0, 200, 1, 1);
  t.equal(sequencer.blockingCutDueAt(), null, 'alone: it holds nothing back');
  t.same(sequencer.expire(50).fills, [], 'not cut, however idle');
  const b = lease(sequencer, 500, { producer: 'b', now: 50 });
  t.equal(sequencer.blockingCutDueAt(), null, "b's lease has no batch yet: nothing waits");
  const zb = put(sequencer, b, 1000, 500, 2, 51);
  t.equal(zb.persist, null, "b's batch waits for a's rest");
  t.equal(sequencer.blockingCutDueAt(), 6, "due at a's last append + 5 ms");
  put(sequencer, a, 200, 100, 1, 52);
  t.equal(sequencer.blockingCutDueAt(), 57, 'an append restarts the clock');
  t.same(sequencer.expire(56).fills, [], 'not yet');
  t.same(sequencer.expire(57).fills, [{ ref: { epoch: 1, id: 6 }, revoke: 'a',
    segmentId: 's0', position: 300, bytes: 700, records: 1 }], "a's rest is cut and filled");
  t.equal(sequencer.leaseProducer(a), null, 'a is closed');
  t.match(appendAt(sequencer, a, 300, 100, 1, 58), { kind: 'refused',
    error: { code: 'PMQ_ERR_LEASE_EXPIRED' } }, 'its next batch starts over');
  t.notOk(sequencer.leaseEnding(b), 'b runs on');
  t.equal(sequencer.blockingCutDueAt(), null, 'b holds nothing back');
  t.end();
});

t.test('in a full segment every idle lease holds the seal back and is cut', (t) => {
  const sequencer = started({ leaseBlockingIdleMs: 5 });
  const a = lease(sequencer, 60_000, { producer: 'a', bytesMin: 100, now: 0 });
  t.equal(a.bytes, 60_000);
  t.match(sequencer.lease({ bytes: 8000, bytesMin: 8000, producer: 'b', now: 1 }),
    { kind: 'wait' }, 'no room: the segment seals once a is done');
  t.equal(sequencer.blockingCutDueAt(), 5, 'a holds the seal back: due at its lease + 5');
  t.same(sequencer.expire(5).fills.map((fill) => [fill.position, fill.bytes]), [[0, 60_000]],
    'cut');
  t.end();
});

t.test('group commit: the watermark moves over the written prefix, one persist at a time',
  (t) => {
    const sequencer = started();
    const [a, b, c] = [lease(sequencer, 100, { producer: 'pa' }),
      lease(sequencer, 200, { producer: 'pb' }), lease(sequencer, 100, { producer: 'pc' })];
    const zc = put(sequencer, c, 300, 100);
    t.equal(zc.persist, null, 'c alone is not a prefix');
    const za = put(sequencer, a, 0, 100);
    const first = must(za.persist);
    t.same(first, persistOf({ positionEnd: 100, offsetLast: 0, patches: [[0, 0]] }));
    const zb = put(sequencer, b, 100, 200, 3);
    t.equal(zb.persist, null, 'a persist is in flight: coalesce');
    t.match(sequencer.segments()[0], { written: { position: 400, offsetLast: 4 },
      durable: { position: 0 }, persistInFlight: first });
    const one = sequencer.persisted(first);
    t.same(one.acks.map((ack) => [ack.id, ack.producer]), [[za.ref.id, 'pa']]);
    t.same(one.persist, persistOf({ positionEnd: 400, offsetLast: 4,
      patches: [[100, 1], [300, 4]] }), 'b and c coalesced, patched from the durable watermark');
    t.equal(sequencer.highWatermark(), 1);
    const two = sequencer.persisted(must(one.persist));
    t.same(two.acks.map((ack) => ack.id), [zb.ref.id, zc.ref.id], 'acks in offset order');
    t.equal(two.persist, null);
    t.equal(sequencer.highWatermark(), 5);
    t.equal(sequencer.reservationsInFlight(), 3, 'the leases are still open');
    for (const l of [a, b, c]) t.same(sequencer.release(l, 0), { fills: [], persist: null });
    t.equal(sequencer.reservationsInFlight(), 0);
    t.end();
  });

t.test('persisted() must name the request in flight; repeats and foreign replies are ignored',
  (t) => {
    const sequencer = started();
    const l = lease(sequencer, 1000);
    const first = must(put(sequencer, l, 0, 100).persist);
    t.equal(sequencer.persisted(first).acks.length, 1);
    t.same(sequencer.persisted(first), NOTHING, 'a repeat');
    t.same(sequencer.persisted({ ...first, segmentId: 'other' }), NOTHING, 'unknown segment');
    const second = must(put(sequencer, l, 100, 100).persist);
    t.same(second.patches, [{ position: 100, baseOffset: 1, bytes: 100, records: 1 }],
      'only above the durable mark');
    t.same(sequencer.persisted(first), NOTHING, 'a stale reply while another is in flight');
    t.match(abortMessage(() => sequencer.persisted({ ...second, positionEnd: 150 })),
      /answers the request in flight/, 'a watermark never asked for');
    t.match(abortMessage(() => sequencer.persisted({ ...second, offsetLast: 5 })),
      /answers the request in flight/, 'another offsetLast');
    t.match(abortMessage(() => sequencer.persisted({ ...second, seal: true })),
      /answers the request in flight/, 'a seal never asked for');
    t.same(sequencer.persisted(second).acks.map((ack) => ack.baseOffset), [1]);
    t.end();
  });

t.test('a failed persist is issued again, patching again and coalescing what came since', (t) => {
  const sequencer = started();
  const l = lease(sequencer, 1000);
  const first = must(put(sequencer, l, 0, 100).persist);
  t.equal(put(sequencer, l, 100, 100).persist, null);
  t.same(sequencer.persistFailed({ ...first, positionEnd: 1 }), { persist: null }, 'not ours');
  t.same(sequencer.persistFailed({ ...first, segmentId: 'x' }), { persist: null });
  t.same(sequencer.persistFailed({ ...first, seal: true }), { persist: null });
  const retry = must(sequencer.persistFailed(first).persist);
  t.same(retry, persistOf({ positionEnd: 200, offsetLast: 1, patches: [[0, 0], [100, 1]] }));
  t.same(sequencer.segments()[0]?.persistInFlight, retry);
  t.equal(sequencer.persisted(retry).acks.length, 2);
  t.same(sequencer.persistFailed(retry), { persist: null }, 'nothing in flight');
  t.end();
});

t.test('a segment without room seals: its leases end on their own, then it rolls', (t) => {
  const sequencer = started({ leaseContendedBytes: SEGMENT }); // leases as asked
  const a = lease(sequencer, 40_000, { producer: 'pa' });
  const b = lease(sequencer, 20_000, { producer: 'pb' });
  const p1 = must(put(sequencer, a, 0, 40_000, 10).persist);
  t.equal(put(sequencer, b, 40_000, 10_000, 5).persist, null);
  const request = { bytes: 10_000, bytesMin: 6000, producer: 'pc', now: 0 };
  t.same(sequencer.lease(request), { kind: 'wait', persist: null },
    'room 5536 < 6000: sealing; b still has unwritten room');
  t.match(sequencer.segments()[0], { state: 'sealing', positionNext: 60_000 });
  t.same([sequencer.leaseProducer(a), sequencer.leaseProducer(b)], ['pa', 'pb'],
    'its leases stay open: batches in flight in them are not refused');
  t.same([sequencer.leaseEnding(a), sequencer.leaseEnding(b)], [true, true],
    'and their producers are told to end them (acked.leaseEnd)');
  t.equal(put(sequencer, b, 50_000, 4000, 2).persist, null, 'a sealing segment takes appends');
  const { fills } = sequencer.release(b, 0);
  t.same(fills.map((f) => [f.position, f.bytes, f.records]), [[54_000, 6000, 1]],
    'released without its grant revoked: the rest is filled');
  t.same(sequencer.lease({ ...request, producer: 'pd' }), { kind: 'wait', persist: null },
    'until the fill is written');
  t.match(abortMessage(() => sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1,
    baseOffset: 18, sizeBytes: SEGMENT })), /fully written/,
  'no next segment before the last offset of this one is known');
  t.same(sequencer.fillWritten(must(fills[0]).ref), { persist: null }, 'p1 is in flight');
  const need = sequencer.lease(request);
  t.same(need, { kind: 'need-segment', chainPosition: 1, baseOffset: 18, sizeBytesMin: 6000,
    persist: null });
  t.same(sequencer.lease({ ...request, producer: 'pd' }), need, 'asked again until added');
  t.match(abortMessage(() => sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1,
    baseOffset: 19, sizeBytes: SEGMENT })), /continues the chain/);
  t.match(abortMessage(() => sequencer.segmentAdded({ segmentId: 's1', chainPosition: 2,
    baseOffset: 18, sizeBytes: SEGMENT })), /continues the chain/);
  sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1, baseOffset: 18, sizeBytes: SEGMENT });
  t.match(abortMessage(() => sequencer.segmentAdded({ segmentId: 's2', chainPosition: 2,
    baseOffset: 18, sizeBytes: SEGMENT })), /after a seal/);
  const c = leased(sequencer.lease(request));
  t.match(c, { segmentId: 's1', position: 0, bytes: 10_000 });
  t.equal(put(sequencer, c, 0, 10_000, 2).persist, null, 's1 waits for s0 to be sealed');
  const one = sequencer.persisted(p1);
  t.same([one.acks.length, one.sealed], [1, null]);
  t.same(one.persist, persistOf({ positionEnd: 60_000, offsetLast: 17, seal: true,
    patches: [[40_000, 10], [50_000, 15], [54_000, 17]] }),
  'the seal ends at positionNext, not the size');
  const seal = copyPersistRequest(must(one.persist)); // persisted() refills `one`
  const two = sequencer.persisted(must(one.persist));
  t.same([two.acks.map((ack) => ack.baseOffset), two.filled, two.sealed],
    [[10, 15], [must(fills[0]).ref], 's0']);
  t.same(two.persist, persistOf({ segmentId: 's1', chainPosition: 1, positionEnd: 10_000,
    offsetLast: 19, patches: [[0, 18]] }));
  t.same(sequencer.persisted(seal), NOTHING, 'a sealed segment ignores replies');
  t.same(sequencer.persisted(must(two.persist)).acks.map((ack) => ack.baseOffset), [18]);
  t.equal(sequencer.highWatermark(), 20);
  t.same(sequencer.segments().map((view) => view.state), ['sealed', 'active']);
  t.end();
});

t.test('sealing a fully durable segment asks for the seal at once; an old reply is no seal',
  (t) => {
    const sequencer = started();
    const a = lease(sequencer, 60_000);
    const p = must(put(sequencer, a, 0, 60_000).persist);
    sequencer.persisted(p);
    const need = sequencer.lease({ bytes: 10_000, bytesMin: 10_000, producer: 'p', now: 0 });
    const seal = persistOf({ positionEnd: 60_000, offsetLast: 0, seal: true, patches: [] });
    t.same(need, { kind: 'need-segment', chainPosition: 1, baseOffset: 1, sizeBytesMin: 10_000,
      persist: seal });
    t.same([sequencer.leaseProducer(a), sequencer.leaseEnding(a)], ['p', true],
      'the full lease stays open until released or expired, and ends');
    t.same(sequencer.persisted(p), NOTHING, 'the non-seal reply at the same position');
    t.equal(sequencer.segments()[0]?.state, 'sealing');
    t.same(sequencer.persistFailed(p), { persist: null }, 'a non-seal failure is not the seal');
    t.same(sequencer.persisted(seal), { acks: [], filled: [], persist: null, sealed: 's0' });
    t.same(sequencer.lease({ bytes: 10_000, bytesMin: 10_000, producer: 'p', now: 0 }),
      { kind: 'need-segment', chainPosition: 1, baseOffset: 1, sizeBytesMin: 10_000,
        persist: null });
    t.end();
  });

t.test('fetch views stop at the durable watermark', (t) => {
  const sequencer = started();
  const a = lease(sequencer, 40_000);
  const pa = must(put(sequencer, a, 0, 40_000, 10).persist);
  t.same(sequencer.lease({ bytes: 30_000, bytesMin: 30_000, producer: 'p', now: 0 }),
    { kind: 'need-segment', chainPosition: 1, baseOffset: 10, sizeBytesMin: 30_000,
      persist: null });
  sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1, baseOffset: 10, sizeBytes: SEGMENT });
  const b = lease(sequencer, 1000);
  const c = lease(sequencer, 1000);
  put(sequencer, b, 0, 1000, 4);
  t.match(sequencer.fetchView(0), { segmentId: 's0', watermark: { position: 0 } });
  t.throws(() => sequencer.fetchView(1), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
  const seal = must(sequencer.persisted(pa).persist);
  t.same(sequencer.fetchView(9), { segmentId: 's0', chainPosition: 0, baseOffset: 0,
    watermark: { position: 40_000, offsetLast: 9 }, sealed: false });
  t.match(sequencer.fetchView(10), { segmentId: 's0' }, 's1 is not visible before the seal');
  const next = must(sequencer.persisted(seal).persist);
  t.same(sequencer.fetchView(9), { segmentId: 's0', chainPosition: 0, baseOffset: 0,
    watermark: { position: 40_000, offsetLast: 9 }, sealed: true });
  t.match(sequencer.fetchView(10), { segmentId: 's1', watermark: { position: 0 } });
  sequencer.persisted(next);
  sequencer.persisted(must(put(sequencer, c, 1000, 1000, 4).persist));
  t.same(sequencer.fetchView(17), { segmentId: 's1', chainPosition: 1, baseOffset: 10,
    watermark: { position: 2000, offsetLast: 17 }, sealed: false });
  t.equal(sequencer.highWatermark(), 18);
  t.match(sequencer.fetchView(18), { segmentId: 's1' }, 'the high watermark: wait there');
  for (const offset of [19, -1, 1.5]) {
    t.throws(() => sequencer.fetchView(offset), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
  }
  t.throws(() => sequencer.fetchView(Number.NaN), SequencerError);
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
  t.match(sequencer.segments(), [{ segmentId: 'a', state: 'sealed' },
    { segmentId: 'b', state: 'active', positionNext: 5000, written: wm(5000, 39) }]);
  const l = lease(sequencer, 100);
  t.same(l, { epoch: 2, id: 1, segmentId: 'b', position: 5000, bytes: 100 });
  t.match(appendAt(sequencer, { epoch: 1, id: 1 }, 5000, 100), { kind: 'refused',
    error: { code: 'PMQ_ERR_LEASE_EXPIRED', message: /earlier broker/ } }, 'old epoch');
  t.equal(sequencer.batchState({ epoch: 1, id: 1 }), 'unknown');
  const p = must(put(sequencer, l, 5000, 100, 3).persist);
  t.same(p, persistOf({ segmentId: 'b', chainPosition: 6, positionEnd: 5100, offsetLast: 42,
    patches: [[5000, 40]] }));
  t.match(sequencer.fetchView(20), { segmentId: 'a', sealed: true });
  t.throws(() => sequencer.fetchView(19), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
  sequencer.persisted(p);
  const big = sequencer.lease({ bytes: 62_000, bytesMin: 62_000, producer: 'p', now: 0 });
  t.same(big, { kind: 'need-segment', chainPosition: 7, baseOffset: 43, sizeBytesMin: 62_000,
    persist: persistOf({ segmentId: 'b', chainPosition: 6, positionEnd: 5100, offsetLast: 42,
      seal: true, patches: [] }) });
  sequencer.segmentAdded({ segmentId: 'c2', chainPosition: 7, baseOffset: 43,
    sizeBytes: SEGMENT });
  t.end();
});

t.test('restore of a fully sealed chain asks for the next segment', (t) => {
  const { sequencer } = Sequencer.restore(CONFIG, [{ segmentId: 'a', chainPosition: 0,
    baseOffset: 0, sizeBytes: SEGMENT, watermark: wm(100, 0), sealed: true }]);
  t.equal(sequencer.highWatermark(), 1);
  t.same(sequencer.lease({ bytes: 100, bytesMin: 100, producer: 'p', now: 0 }),
    { kind: 'need-segment', chainPosition: 1, baseOffset: 1, sizeBytesMin: 100, persist: null });
  t.equal(Sequencer.restore(CONFIG, []).sequencer.highWatermark(), 0);
  t.end();
});

t.test('a restored segment with too little room is sealed at the first lease', (t) => {
  const { sequencer } = Sequencer.restore(CONFIG, [{ segmentId: 'a', chainPosition: 0,
    baseOffset: 0, sizeBytes: SEGMENT, watermark: wm(SEGMENT - 100, 9), sealed: false }]);
  t.equal(lease(sequencer, 100).position, SEGMENT - 100, 'room enough: the last 100 bytes');
  const { sequencer: full } = Sequencer.restore(CONFIG, [{ segmentId: 'a', chainPosition: 0,
    baseOffset: 0, sizeBytes: SEGMENT, watermark: wm(SEGMENT - 100, 9), sealed: false }]);
  t.same(full.lease({ bytes: 101, bytesMin: 101, producer: 'p', now: 0 }), {
    kind: 'need-segment', chainPosition: 1, baseOffset: 10, sizeBytesMin: 101,
    persist: persistOf({ segmentId: 'a', positionEnd: SEGMENT - 100, offsetLast: 9, seal: true,
      patches: [] }) });
  t.end();
});

t.test('restore refuses segment tables that are not one chain', (t) => {
  const base = { sizeBytes: SEGMENT, sealed: true };
  const s0 = { ...base, segmentId: 'a', chainPosition: 0, baseOffset: 0, watermark: wm(100, 9) };
  const s1 = { ...s0, segmentId: 'b', chainPosition: 1, baseOffset: 10, watermark: wm(100, 19) };
  const cases: [string, object[], RegExp][] = [
    ['gap', [s0, { ...s1, chainPosition: 2 }], /gap or duplicate/],
    ['offsets skip', [s0, { ...s1, baseOffset: 11 }], /does not follow/],
    ['offsets overlap', [s0, { ...s1, baseOffset: 9, sealed: false }], /does not follow/],
    ['twice', [s0, { ...s1, segmentId: 'a' }], /listed twice/],
    ['data after unsealed', [{ ...s0, sealed: false }, { ...s1, sealed: false }],
      /data or a seal after an unsealed/],
    ['seal after unsealed', [{ ...s0, sealed: false }, { ...s1, watermark: wm(0, 9) }],
      /data or a seal after an unsealed/],
    ['empty watermark', [{ ...s0, watermark: wm(0, 3) }], /does not fit/],
    ['offsetLast below base', [{ ...s0, baseOffset: 5, watermark: wm(10, 4) }], /does not fit/],
    ['beyond segment', [{ ...s0, watermark: wm(SEGMENT + 1, 9) }], /outside 0\.\./],
    ['size', [{ ...s0, sizeBytes: 4096 }], /sizeBytes 4096 outside/],
    ['chainPosition', [{ ...s0, chainPosition: -1 }], /not a valid integer/],
  ];
  for (const [what, segments, message] of cases) {
    t.throws(() => Sequencer.restore(CONFIG, segments as never),
      { code: 'PMQ_ERR_CHAIN_INVALID', message }, what);
  }
  t.equal(Sequencer.restore(CONFIG, [s1, s0]).sequencer.highWatermark(), 20, 'any order');
  t.end();
});

t.test('time never goes back: every call that takes it checks', (t) => {
  const sequencer = started();
  const l = lease(sequencer, 1000, { now: 10 });
  const monotonic = /time is monotonic/;
  t.match(abortMessage(() => sequencer.lease({ bytes: 100, bytesMin: 100, producer: 'p',
    now: 9 })), monotonic, 'lease');
  t.match(abortMessage(() => appendAt(sequencer, l, 0, 100, 1, 5)), monotonic, 'append');
  t.match(abortMessage(() => sequencer.release(l, 5)), monotonic, 'release');
  t.match(abortMessage(() => sequencer.expire(5)), monotonic, 'expire');
  t.match(abortMessage(() => sequencer.expire(Number.NaN)), monotonic, 'not a number');
  t.equal(sequencer.leaseProducer(l), 'p', 'the lease is still open');
  t.same(sequencer.expire(10), { fills: [] }, 'the same time again is fine');
  t.end();
});

t.test('by default a lease is at most 1/8 of its segment, never below bytesMin', (t) => {
  const sequencer = started({ leaseFraction: undefined });
  t.equal(lease(sequencer, SEGMENT, { bytesMin: 100 }).bytes, SEGMENT / 8);
  t.equal(lease(sequencer, SEGMENT, { bytesMin: SEGMENT / 2 }).bytes, SEGMENT / 2,
    'a batch larger than the cap gets a lease of its size');
  t.end();
});

t.test('a lease never leaves 1..67 bytes after its first batch', (t) => {
  const sequencer = started();
  t.equal(lease(sequencer, 200, { bytesMin: 150 }).bytes, 150, 'a rest of 50: cut to bytesMin');
  t.equal(lease(sequencer, 218, { bytesMin: 150 }).bytes, 218, 'a rest of 68 stays');
  const tail = started();
  lease(tail, SEGMENT - 170, { bytesMin: FILL_BYTES_MIN });
  t.equal(lease(tail, 4096, { bytesMin: 150 }).bytes, 150,
    'nor by the segment\'s room: 20 bytes stay unused at its end');
  t.end();
});

t.test('a released lease whose grant is revoked gives its rest back to the segment', (t) => {
  const sequencer = started();
  const a = lease(sequencer, 4096, { bytesMin: 100 });
  put(sequencer, a, 0, 100);
  const released = sequencer.release(a, 0, { revoked: true });
  t.same(released.fills, [], 'nothing to fill');
  const next = lease(sequencer, 4096, { bytesMin: 100 });
  t.equal(next.position, 100, 'the next lease starts where the last batch ended');
  const b = lease(sequencer, 4096, { bytesMin: 100 });
  put(sequencer, next, 100, 100);
  t.same(sequencer.release(next, 0, { revoked: true }).fills.map((f) => [f.position, f.bytes]),
    [[200, 3996]], 'not at the segment\'s end (a lease follows): filled');
  t.same(sequencer.release(b, 0).fills.map((f) => [f.position, f.bytes]), [[4196, 4096]],
    'grant not revoked: filled even at the end');
  t.end();
});

t.test('retention: only the oldest sealed segment, never the last, goes; log start follows',
  (t) => {
    const { sequencer } = Sequencer.restore(CONFIG, [
      { segmentId: 'a', chainPosition: 3, baseOffset: 20, sizeBytes: SEGMENT,
        watermark: wm(60_000, 29), sealed: true },
      { segmentId: 'b', chainPosition: 4, baseOffset: 30, sizeBytes: SEGMENT,
        watermark: wm(60_000, 39), sealed: true },
      { segmentId: 'c', chainPosition: 5, baseOffset: 40, sizeBytes: SEGMENT,
        watermark: wm(5000, 44), sealed: false },
    ]);
    t.equal(sequencer.logStartOffset(), 20, 'restored: the oldest segment\'s baseOffset');
    t.match(sequencer.oldestRetirable(), { segmentId: 'a' });
    sequencer.dropOldest('a');
    t.equal(sequencer.logStartOffset(), 30);
    t.throws(() => sequencer.fetchView(29), { code: 'PMQ_ERR_OFFSET_OUT_OF_RANGE' });
    t.match(sequencer.fetchView(30), { segmentId: 'b' });
    t.match(abortMessage(() => sequencer.dropOldest('c')), /never the last/,
      'dropping anything but the oldest aborts');
    sequencer.dropOldest('b');
    t.equal(sequencer.oldestRetirable(), null, 'the active segment (the last) never goes');
    t.equal(sequencer.highWatermark(), 45, 'the high watermark stays');
    const l = lease(sequencer, 100);
    t.match(l, { segmentId: 'c', position: 5000 }, 'the partition still takes leases');

    const { sequencer: sealedOnly } = Sequencer.restore(CONFIG, [{ segmentId: 'x',
      chainPosition: 0, baseOffset: 0, sizeBytes: SEGMENT, watermark: wm(100, 0),
      sealed: true }]);
    t.equal(sealedOnly.oldestRetirable(), null,
      'a sealed last segment stays too: it carries the next baseOffset across restarts');
    t.end();
  });

t.test('retention: a sealed segment with a used-up lease still open is kept until it closes',
  (t) => {
    const sequencer = started();
    const a = lease(sequencer, 60_000);
    sequencer.persisted(must(put(sequencer, a, 0, 60_000).persist));
    const need = sequencer.lease({ bytes: 10_000, bytesMin: 10_000, producer: 'q', now: 0 });
    if (need.kind !== 'need-segment') throw new Error('expected need-segment');
    sequencer.persisted(must(need.persist));
    sequencer.segmentAdded({ segmentId: 's1', chainPosition: 1, baseOffset: 1,
      sizeBytes: SEGMENT });
    t.equal(sequencer.segments()[0]?.state, 'sealed');
    t.equal(sequencer.oldestRetirable(), null, 'lease a (used up, not released) is open in s0');
    sequencer.release(a, 0);
    t.match(sequencer.oldestRetirable(), { segmentId: 's0' }, 'released: s0 may go');
    t.end();
  });
