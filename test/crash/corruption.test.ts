// Damaged regions (docs/crash-testing.md, "Corruption"): a real region in /dev/shm written by
// RegionStore with real record batches, closed, then damaged on disk — bits flipped in committed
// segment data, in entry slots, in superblock copies; the file truncated — and opened again.
// Headers are checked at open (every slot, both copies: a typed error naming the place, or a
// reported fallback); committed data is checked by verifySegmentData, which open does not run
// (recovery time stays proportional to the number of segments).
import { copyFileSync, openSync, readSync, truncateSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { entryAddress, superblockAddress } from '../../common/layout.js';
import {
  PARTITION_LEADER_EPOCH_POSITION, encodeRecordBatch,
} from '../../common/record-batch/index.js';
import { Region } from '../../native/region.js';
import { RegionMediaError, RegionStore } from '../../storage-node/region-store.js';
import { prngFrom, randomRecords, testSeed } from '../fixtures/record-batch-random.js';
import { tempDir, type Teardown } from '../fixtures/region-helpers.js';

const KIB = 1024;
const REGION_BYTES = 1024 * KIB;
const SEGMENT_BYTES = 64 * KIB;
const SEED = testSeed();

interface Written {
  readonly path: string;
  /** Per written segment: index, region address, committed bytes, batch start positions. */
  readonly segments: { index: number; address: number; position: number; batches: number[] }[];
  readonly segmentCount: number;
}

/** Formats a region, fills three segments with batches (one sealed), raises the epoch, closes. */
async function writeRegion(t: Teardown, dir: string): Promise<Written> {
  const path = join(dir, 'base.region');
  const region = Region.open({ path, sizeBytes: REGION_BYTES, mode: 'create-new' });
  const store = await RegionStore.format(region, { nodeId: 1, segmentSizeBytes: SEGMENT_BYTES });
  await store.raiseEpoch(1);
  const prng = prngFrom(SEED);
  const segments: Written['segments'] = [];
  for (let chainPosition = 0; chainPosition < 3; chainPosition += 1) {
    const baseOffset = chainPosition * 1000;
    const info = await store.allocateSegment({ topic: 'orders', partition: 0, chainPosition,
      baseOffset, epoch: 1 });
    let position = 0;
    let offset = baseOffset;
    const batches: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      const records = randomRecords(prng, 1 + prng.int(5), 500);
      const bytes = encodeRecordBatch(records, { baseOffset: offset, timestampDefault: 1 });
      region.view(info.address + position, bytes.byteLength).set(bytes);
      batches.push(position);
      position += bytes.byteLength;
      offset += records.length;
      await store.persistWatermark(info.segmentIndex, { position, offsetLast: offset - 1 }, 1);
    }
    region.view(info.address + position, 300).fill(0x5a); // garbage
    if (chainPosition === 0) {
      await store.sealSegment(info.segmentIndex, { position, offsetLast: offset - 1 }, 1);
    }
    segments.push({ index: info.segmentIndex, address: info.address, position, batches });
  }
  const segmentCount = store.segments().length;
  region.close();
  return { path, segments, segmentCount };
}

let copies = 0;
function copyOf(written: Written, dir: string): string {
  copies += 1;
  const path = join(dir, `copy-${copies}.region`);
  copyFileSync(written.path, path);
  return path;
}

/** Flips bits of the byte at `address` of a closed region file. */
function flip(path: string, address: number, bits: number): void {
  const fd = openSync(path, 'r+');
  try {
    const byte = new Uint8Array(1);
    readSync(fd, byte, 0, 1, address);
    byte[0] = (byte[0] ?? 0) ^ bits;
    writeSync(fd, byte, 0, 1, address);
  } finally {
    closeSync(fd);
  }
}

function openStore(t: Teardown, path: string): RegionStore {
  const region = Region.open({ path, mode: 'open' });
  try {
    const store = RegionStore.open(region);
    t.teardown(() => { if (!region.closed) region.close(); });
    return store;
  } catch (error) {
    region.close();
    throw error;
  }
}

t.test(`damaged committed data: open succeeds, verifySegmentData names the batch (seed ${SEED})`,
  async (t) => {
    const dir = tempDir(t, '/dev/shm');
    const written = await writeRegion(t, dir);
    const prng = prngFrom(SEED ^ 0x51ed);
    for (let trial = 0; trial < 12; trial += 1) {
      const segment = written.segments[trial % written.segments.length];
      if (segment === undefined) throw new Error('no segment');
      const position = prng.int(segment.position);
      const batch = [...segment.batches].reverse().find((start) => start <= position) ?? 0;
      if (position - batch >= PARTITION_LEADER_EPOCH_POSITION &&
          position - batch < PARTITION_LEADER_EPOCH_POSITION + 4) continue; // not covered: below
      const path = copyOf(written, dir);
      flip(path, segment.address + position, 1 << prng.int(8));
      const store = openStore(t, path);
      t.same(store.report, { superblockFallback: null, entryFallbacks: [] },
        'open reads headers only: the damage is not seen there');
      const error = t.throws(() => store.verifySegmentData(segment.index), {
        code: 'PMQ_ERR_REGION_CORRUPT', constructor: RegionMediaError,
        message: new RegExp(`segment ${segment.index} data at position ${batch} `),
      }, `bit flipped at position ${position} of segment ${segment.index}`);
      t.match((error as RegionMediaError | undefined)?.sites, [{ what: 'segment data',
        segmentIndex: segment.index, position: batch, address: segment.address + batch }]);
      for (const other of written.segments) {
        if (other !== segment) t.ok(store.verifySegmentData(other.index), 'others verify');
      }
    }
  });

t.test('every byte of committed data is covered, but partitionLeaderEpoch', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const written = await writeRegion(t, dir);
  const store = openStore(t, copyOf(written, dir));
  const segment = written.segments[1];
  if (segment === undefined) throw new Error('no segment');
  const bytes = store.region.view(0, store.region.sizeBytes); // a small test region
  const summary = store.verifySegmentData(segment.index);
  t.match(summary, { batchCount: 6, positionEnd: segment.position });
  const unnoticed: number[] = [];
  for (let position = 0; position < segment.position; position += 1) {
    const address = segment.address + position;
    bytes[address] = (bytes[address] ?? 0) ^ 0x04;
    try {
      store.verifySegmentData(segment.index);
      unnoticed.push(position);
    } catch (error) {
      if (!(error instanceof RegionMediaError)) throw error;
    }
    bytes[address] = (bytes[address] ?? 0) ^ 0x04;
  }
  const expected = segment.batches.flatMap((start) =>
    [0, 1, 2, 3].map((i) => start + PARTITION_LEADER_EPOCH_POSITION + i));
  t.same(unnoticed, expected, 'only the partitionLeaderEpoch bytes (outside Kafka\'s CRC)');
  bytes.fill(0, segment.address + segment.position, segment.address + SEGMENT_BYTES);
  t.same(store.verifySegmentData(segment.index), summary, 'bytes past the watermark are not read');
});

t.test('damaged entry slots: one falls back (reported), both are a loud error', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const written = await writeRegion(t, dir);
  const segment = written.segments[2];
  if (segment === undefined) throw new Error('no segment');
  const before = openStore(t, copyOf(written, dir)).segment(segment.index);
  const winning = before.generation % 2;
  for (const slot of [0, 1]) {
    const path = copyOf(written, dir);
    flip(path, entryAddress(segment.index, slot) + 45, 0x10); // inside the watermark position
    const store = openStore(t, path);
    t.match(store.report.entryFallbacks, [{ segmentIndex: segment.index, slot,
      address: entryAddress(segment.index, slot), problem: /crc32c/ }], `slot ${slot} reported`);
    const after = store.segment(segment.index);
    t.equal(after.generation, slot === winning ? before.generation - 1 : before.generation,
      slot === winning ? 'the previous entry wins' : 'the winning entry stays');
    t.ok(store.verifySegmentData(segment.index), 'the data under that entry verifies');
  }
  const path = copyOf(written, dir);
  flip(path, entryAddress(segment.index, 0) + 100, 0x01);
  flip(path, entryAddress(segment.index, 1) + 200, 0x80);
  t.throws(() => openStore(t, path), { code: 'PMQ_ERR_REGION_CORRUPT', constructor:
    RegionMediaError, message: new RegExp(`segment ${segment.index} entry slot 0 at address ` +
      `${entryAddress(segment.index, 0)}: .*segment ${segment.index} entry slot 1 at address ` +
      `${entryAddress(segment.index, 1)}`) });
});

t.test('damaged superblock copies: one falls back (reported), both are a loud error',
  async (t) => {
    const dir = tempDir(t, '/dev/shm');
    const written = await writeRegion(t, dir);
    for (const copy of [0, 1]) {
      const path = copyOf(written, dir);
      flip(path, superblockAddress(copy) + 90, 0x02); // inside the epoch
      const store = openStore(t, path);
      t.match(store.report.superblockFallback, { copy, address: superblockAddress(copy),
        problem: /crc32c/ }, `copy ${copy} reported`);
      // Sequence 2 (epoch 1) is in copy 0; copy 1 holds sequence 1 (epoch 0).
      t.equal(store.epoch, copy === 0 ? 0 : 1, 'the other copy wins');
    }
    const path = copyOf(written, dir);
    flip(path, superblockAddress(0) + 20, 0x01);
    flip(path, superblockAddress(1) + 60, 0x01);
    t.throws(() => openStore(t, path), { code: 'PMQ_ERR_REGION_CORRUPT',
      message: /superblock copy 0 at address 0: .*superblock copy 1 at address 4096: / });
  });

t.test('a truncated or grown region file is refused clearly, never mapped short', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const written = await writeRegion(t, dir);
  const cases: [number, string, RegExp][] = [
    [REGION_BYTES / 2, 'PMQ_ERR_REGION_CORRUPT', /says 1048576 bytes, the region has 524288/],
    [REGION_BYTES + 4096, 'PMQ_ERR_REGION_CORRUPT', /says 1048576 bytes, the region has/],
    [REGION_BYTES - 100, 'PMQ_ERR_REGION_SIZE_MISMATCH', /not a positive multiple of the page/],
    [0, 'PMQ_ERR_REGION_SIZE_MISMATCH', /has 0 bytes/],
    [4096, 'PMQ_ERR_REGION_NOT_FORMATTED', /4096 bytes cannot hold the superblocks/],
  ];
  for (const [sizeBytes, code, message] of cases) {
    const path = copyOf(written, dir);
    truncateSync(path, sizeBytes);
    t.throws(() => openStore(t, path), { code, message }, `file of ${sizeBytes} bytes`);
    t.throws(() => Region.open({ path, mode: 'open', sizeBytes: REGION_BYTES }),
      { code: 'PMQ_ERR_REGION_SIZE_MISMATCH' }, 'asked with its size: refused at open');
  }
  t.equal(written.segmentCount, 15);
});
