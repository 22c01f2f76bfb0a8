/**
 * Bytes the sequencer allocates per batch in the broker's steady state (issue 11): drives one
 * Sequencer as a partition does (a lease, batches appended back to back, each persist answered
 * before the next append) and reads the heap's growth over a window with no collection in it.
 * Run with a young generation large enough for the window:
 *
 *   node --max-semi-space-size=128 --min-semi-space-size=128 --import tsx \
 *     tools/sequencer-alloc.ts [batches]
 *
 * Prints JSON: { batches, bytesPerBatch, collections } (collections must be 0 for the number to
 * mean anything).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { Sequencer, type PersistRequest, type ReservationRef } from '../broker-node/sequencer.js';

const BATCH_BYTES = 512;
const LEASE_BYTES = 64 * 1024;
const SEGMENT_BYTES = 1 << 30;

const sequencer = Sequencer.create({ epoch: 1, segmentSizeBytes: SEGMENT_BYTES });
let now = 0;
let chain = 0;
let lease: { ref: ReservationRef; position: number; end: number } | null = null;
let inFlight: PersistRequest | null = null;
const appendRequest = { lease: { epoch: 1, id: 0 }, position: 0, bytes: BATCH_BYTES, records: 4,
  now: 0 };

function takeLease(): void {
  for (;;) {
    const result = sequencer.lease({ bytes: LEASE_BYTES, bytesMin: BATCH_BYTES, producer: 'p',
      now });
    if (result.kind === 'leased') {
      lease = { ref: { epoch: result.lease.epoch, id: result.lease.id },
        position: result.lease.position, end: result.lease.position + result.lease.bytes };
      return;
    }
    if (result.persist !== null) inFlight = result.persist;
    while (inFlight !== null) answer();
    if (result.kind === 'need-segment') {
      sequencer.segmentAdded({ segmentId: `s${chain}`, chainPosition: result.chainPosition,
        baseOffset: result.baseOffset, sizeBytes: SEGMENT_BYTES });
      chain += 1;
    }
  }
}

function answer(): void {
  const request = inFlight;
  if (request === null) return;
  inFlight = null;
  const result = sequencer.persisted(request);
  inFlight = result.persist;
}

function step(): void {
  if (lease === null || lease.position + BATCH_BYTES > lease.end) {
    if (lease !== null) {
      const released = sequencer.release(lease.ref, now);
      if (released.persist !== null) inFlight = released.persist;
    }
    takeLease();
  }
  const current = lease!;
  appendRequest.lease.id = current.ref.id;
  appendRequest.position = current.position;
  appendRequest.now = now;
  const result = sequencer.append(appendRequest);
  if (result.kind !== 'appended') throw new Error(`append: ${result.kind}`);
  current.position += BATCH_BYTES;
  if (result.persist !== null) {
    if (inFlight !== null) throw new Error('two persists in flight');
    inFlight = result.persist;
  }
  answer();
  now += 0.01;
}

const batches = Number(process.argv[2] ?? 50_000);
for (let index = 0; index < 200_000; index += 1) step(); // warm up: optimized code, grown tables
let collections = 0;
const observer = new PerformanceObserver((list) => { collections += list.getEntries().length; });
observer.observe({ entryTypes: ['gc'] });
globalThis.gc?.();
await new Promise((resolve) => setImmediate(resolve));
collections = 0;
const before = process.memoryUsage().heapUsed;
for (let index = 0; index < batches; index += 1) step();
const after = process.memoryUsage().heapUsed;
await new Promise((resolve) => setImmediate(resolve));
observer.disconnect();
console.log(JSON.stringify({ batches, bytesPerBatch: Math.round((after - before) / batches),
  collections }));
