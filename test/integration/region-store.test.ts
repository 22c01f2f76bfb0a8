// RegionStore on real regions (/dev/shm, and an ordinary file for the msync path): format, reopen,
// the request checks, torn entry and superblock updates, damage reported loudly, and a SIGKILLed
// writer whose acknowledged watermarks and data survive.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import {
  SEGMENT_ENTRY_FIELD_AT, SUPERBLOCK_FIELD_AT, entryAddress, superblockAddress,
} from '../../common/layout.js';
import { encodeRecordBatch } from '../../common/record-batch/encode.js';
import { Region } from '../../native/region.js';
import { RegionStore, type AllocateRequest } from '../../storage-node/region-store.js';
import {
  allocateRequest, BASES, type Opened, REPO_ROOT, reopen, tempDir, type Teardown,
} from '../fixtures/region-helpers.js';
import { regionPattern } from '../fixtures/region-pattern.js';
import { CRASH_PATTERN_SEED, crashRoundWatermark } from '../fixtures/region-store-child.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const SEGMENT_BYTES = 64 * KIB;
const REGION_BYTES = MIB; // 15 segments of 64 KiB after superblocks and table
const SEED = Number(process.env.PMQ_SEED ?? Math.floor(Math.random() * 2 ** 31));

async function formatted(t: Teardown, base = '/dev/shm'): Promise<Opened> {
  const path = join(tempDir(t, base), 'node.region');
  const region = Region.open({ path, sizeBytes: REGION_BYTES, mode: 'create-new' });
  const store = await RegionStore.format(region, { nodeId: 3, segmentSizeBytes: SEGMENT_BYTES });
  t.teardown(() => { if (!region.closed) region.close(); });
  return { region, store, path };
}

/** Flips bits of one byte of the mapping (a torn or damaged write). */
function damage(region: Region, address: number, bits: number): void {
  const bytes = region.view(address, 1);
  bytes[0] = (bytes[0] ?? 0) ^ bits;
}

const request = allocateRequest;

for (const base of BASES) {
  t.test(`format, allocate, write, persist, reopen: same table and data (${base.name})`,
    async (t) => {
      let { region, store, path } = await formatted(t, base.dir());
      t.equal(store.segments().length, 15);
      t.same(store.report, { superblockFallback: null, entryFallbacks: [] });
      const a = await store.allocateSegment(request({ baseOffset: 100 }));
      const b = await store.allocateSegment(
        request({ topic: 'x', partition: 4, chainPosition: 2 }));
      t.same([a.segmentIndex, b.segmentIndex], [0, 1], 'lowest free segments first');
      t.equal(a.address, store.superblock.dataAddress);
      t.equal(store.segmentAddress(1), a.address + SEGMENT_BYTES);
      const data = regionPattern(5000, 1);
      region.view(a.address, data.byteLength).set(data);
      await store.persistWatermark(0, { position: 5000, offsetLast: 109 }, 0);
      await store.sealSegment(1, { position: 0, offsetLast: -1 }, 0);
      const before = store.segments();
      ({ region, store } = reopen(t, { region, store, path }));
      t.same(store.segments(), before, 'the table survives close and reopen');
      t.match(store.segment(0), { state: 'active', topic: 'orders', baseOffset: 100,
        watermark: { position: 5000, offsetLast: 109 } });
      t.match(store.segment(1), { state: 'sealed', topic: 'x', partition: 4, chainPosition: 2 });
      t.same(region.view(a.address, 5000), data);
      region.close();
    });
}

t.test('bad configurations and blank or formatted regions are refused clearly', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const region = Region.open({ path: join(dir, 'r'), sizeBytes: REGION_BYTES });
  t.teardown(() => region.close());
  t.throws(() => RegionStore.open(region), { code: 'PMQ_ERR_REGION_NOT_FORMATTED' });
  // The largest segment may exceed the region (a region's data is allocated in its sizes),
  // the smallest may not.
  const cases: [number, RegExp][] = [[3 * SEGMENT_BYTES, /not a power of two/],
    [32 * KIB, /outside/], [MIB, /holds no segment/]];
  for (const [segmentSizeBytes, message] of cases) {
    await t.rejects(RegionStore.format(region, { nodeId: 1, segmentSizeBytes,
      segmentSizeBytesMin: segmentSizeBytes }),
      { code: 'PMQ_ERR_REGION_GEOMETRY', message }, String(segmentSizeBytes));
  }
  await t.rejects(RegionStore.format(region, { nodeId: 1, segmentSizeBytes: 128 * KIB,
    segmentSizeBytesMin: 256 * KIB }), { code: 'PMQ_ERR_REGION_GEOMETRY', message: /above/ });
  await t.rejects(RegionStore.format(region, { nodeId: -1 }), { code: 'PMQ_ERR_ARGUMENT' });
  const store = await RegionStore.format(region, { nodeId: 1, segmentSizeBytes: SEGMENT_BYTES });
  await t.rejects(RegionStore.format(region, { nodeId: 2, segmentSizeBytes: SEGMENT_BYTES }),
    { code: 'PMQ_ERR_REGION_FORMATTED' });
  const again = await RegionStore.format(region,
    { nodeId: 2, segmentSizeBytes: 128 * KIB, overwrite: true });
  t.not(again.superblock.regionId, store.superblock.regionId, 'a new region id');
  t.equal(again.segments().length, 7);
});

t.test('region full, free and reuse; duplicate chain places refused', async (t) => {
  const { store } = await formatted(t);
  for (let chainPosition = 0; chainPosition < 15; chainPosition += 1) {
    await store.allocateSegment(request({ chainPosition, baseOffset: chainPosition * 10 }));
  }
  await t.rejects(store.allocateSegment(request({ chainPosition: 15 })),
    { code: 'PMQ_ERR_REGION_FULL', retriable: false, message: /region full/ });
  await t.rejects(store.allocateSegment(request({ chainPosition: 3 })),
    { code: 'PMQ_ERR_SEGMENT_EXISTS', message: /: 3$/ });
  await store.freeSegment(7, 0);
  await store.freeSegment(7, 0); // a retry
  const reused = await store.allocateSegment(request({ chainPosition: 15 }));
  t.equal(reused.segmentIndex, 7);
  t.equal(reused.generation, 4, 'format 1, allocate 2, free 3, allocate 4');
  await t.rejects(store.allocateSegment(request({ topic: '..' })), { code: 'PMQ_ERR_ARGUMENT' });
  await t.rejects(store.allocateSegment(request({ partition: -1 })), { code: 'PMQ_ERR_ARGUMENT' });
});

t.test('a freed segment is zeroed before it is free: its next owner sees none of it', async (t) => {
  const { region, store } = await formatted(t);
  const { segmentIndex: i, address } = await store.allocateSegment(request({ baseOffset: 0 }));
  region.view(address, SEGMENT_BYTES).fill(0xa5); // durable and unacknowledged bytes
  await store.persistWatermark(i, { position: 4096, offsetLast: 9 }, 0);
  await store.freeSegment(i, 0);
  const reused = await store.allocateSegment(request({ chainPosition: 1, baseOffset: 10 }));
  t.equal(reused.segmentIndex, i, 'the same segment is reused');
  const bytes = region.view(address, SEGMENT_BYTES);
  t.equal(bytes.findIndex((byte) => byte !== 0), -1, 'every byte of the old owner is gone');
});

t.test('a free segment with old bytes (a crash before its clearing) is zeroed on allocation',
  async (t) => {
    const opened = await formatted(t);
    const { address } = await opened.store.allocateSegment(request());
    await opened.store.freeSegment(0, 0);
    const { region, store } = reopen(t, opened); // this process has cleared nothing
    region.view(address, SEGMENT_BYTES).fill(0x5a); // as if the clearing never ran
    const reused = await store.allocateSegment(request({ chainPosition: 1, baseOffset: 7 }));
    t.equal(reused.address, address, 'the same segment');
    const bytes = region.view(address, SEGMENT_BYTES);
    t.equal(bytes.findIndex((byte) => byte !== 0), -1, 'zeroed before its new owner has it');
  });

t.test('watermarks only grow, stay in the segment and obey the state', async (t) => {
  const { store } = await formatted(t);
  const { segmentIndex: i } = await store.allocateSegment(request({ baseOffset: 50 }));
  await store.persistWatermark(i, { position: 1000, offsetLast: 59 }, 0);
  const checks: [number, number, string][] = [
    [999, 59, 'PMQ_ERR_WATERMARK_BACKWARD'], [2000, 58, 'PMQ_ERR_WATERMARK_BACKWARD'],
    [SEGMENT_BYTES + 1, 70, 'PMQ_ERR_WATERMARK_BEYOND_SEGMENT'],
    [1000, 60, 'PMQ_ERR_WATERMARK_INVALID']];
  for (const [position, offsetLast, code] of checks) {
    await t.rejects(store.persistWatermark(i, { position, offsetLast }, 0), { code },
      `${position}/${offsetLast}`);
  }
  t.match(store.segment(i).watermark, { position: 1000, offsetLast: 59 }, 'unchanged');
  const generation = store.segment(i).generation;
  await store.persistWatermark(i, { position: 1000, offsetLast: 59 }, 0);
  t.equal(store.segment(i).generation, generation, 'a retry writes nothing');
  const first = store.persistWatermark(i, { position: 1500, offsetLast: 61 }, 0);
  await t.rejects(store.persistWatermark(i, { position: 1600, offsetLast: 62 }, 0),
    { code: 'PMQ_ERR_SEGMENT_BUSY', retriable: true });
  await first;
  await store.sealSegment(i, { position: SEGMENT_BYTES, offsetLast: 99 }, 0);
  await store.sealSegment(i, { position: SEGMENT_BYTES, offsetLast: 99 }, 0);
  await t.rejects(store.persistWatermark(i, { position: SEGMENT_BYTES, offsetLast: 100 }, 0),
    { code: 'PMQ_ERR_SEGMENT_STATE' });
  await t.rejects(store.persistWatermark(2, { position: 1, offsetLast: 0 }, 0),
    { code: 'PMQ_ERR_SEGMENT_STATE', message: /free/ });
  await t.rejects(store.persistWatermark(15, { position: 1, offsetLast: 0 }, 0),
    { code: 'PMQ_ERR_SEGMENT_UNKNOWN' });
  t.throws(() => store.segmentAddress(-1), { code: 'PMQ_ERR_SEGMENT_UNKNOWN' });
});

t.test('the epoch only rises, survives reopen and fences older requests', async (t) => {
  let opened = await formatted(t);
  const { segmentIndex: i } = await opened.store.allocateSegment(request());
  await t.rejects(opened.store.persistWatermark(i, { position: 10, offsetLast: 0 }, 1),
    { code: 'PMQ_ERR_EPOCH_FUTURE' });
  await opened.store.raiseEpoch(4);
  await opened.store.raiseEpoch(4);
  await t.rejects(opened.store.raiseEpoch(3), { code: 'PMQ_ERR_EPOCH_STALE' });
  opened = reopen(t, opened);
  t.equal(opened.store.epoch, 4);
  t.equal(opened.store.superblock.sequence, 2, 'format wrote 0 and 1, the raise 2');
  await t.rejects(opened.store.persistWatermark(i, { position: 10, offsetLast: 0 }, 0),
    { code: 'PMQ_ERR_EPOCH_STALE' });
  await t.rejects(opened.store.allocateSegment(request({ chainPosition: 1 })),
    { code: 'PMQ_ERR_EPOCH_STALE' });
  const info = await opened.store.persistWatermark(i, { position: 10, offsetLast: 0 }, 4);
  t.equal(info.epoch, 4, 'the entry records the epoch that wrote it');
});

t.test('a torn entry update falls back to the previous durable watermark', async (t) => {
  let opened = await formatted(t);
  const { segmentIndex: i } = await opened.store.allocateSegment(request());
  await opened.store.persistWatermark(i, { position: 100, offsetLast: 4 }, 0);
  await opened.store.persistWatermark(i, { position: 300, offsetLast: 9 }, 0);
  const newest = opened.store.segment(i);
  const slot = newest.generation % 2;
  const address = entryAddress(i, slot);
  const from = address + SEGMENT_ENTRY_FIELD_AT.watermarkPosition;
  opened.region.view(from, address + 96 - from).fill(0x5a);
  opened = reopen(t, opened);
  t.match(opened.store.segment(i).watermark, { position: 100, offsetLast: 4 });
  t.equal(opened.store.segment(i).generation, newest.generation - 1);
  t.match(opened.store.report.entryFallbacks,
    [{ segmentIndex: i, slot, address, problem: /crc32c/ }], 'the fallback is reported');
  await opened.store.persistWatermark(i, { position: 300, offsetLast: 9 }, 0);
  opened = reopen(t, opened);
  t.same(opened.store.report.entryFallbacks, [], 'the torn slot was overwritten');
  t.match(opened.store.segment(i).watermark, { position: 300, offsetLast: 9 });
});

t.test('an entry with no valid slot, or an unknown version, is a loud error', async (t) => {
  const opened = await formatted(t);
  damage(opened.region, entryAddress(6, 0) + 40, 1);
  damage(opened.region, entryAddress(6, 1) + 200, 1);
  opened.region.close();
  const region = Region.open({ path: opened.path, mode: 'open' });
  t.teardown(() => region.close());
  const error = ((): unknown => { try { RegionStore.open(region); } catch (e) { return e; } })();
  t.match(error, { code: 'PMQ_ERR_REGION_CORRUPT', message: new RegExp(
    `segment 6 entry slot 0 at address ${entryAddress(6, 0)}: crc32c.*slot 1`) });
  t.match(error, { sites: [{ what: 'segment entry', segmentIndex: 6, slot: 0 }, { slot: 1 }] });
  const entry = region.view(entryAddress(6, 0), entryAddress(7, 0) - entryAddress(6, 0));
  entry.fill(0);
  entry[SEGMENT_ENTRY_FIELD_AT.version] = 3;
  t.throws(() => RegionStore.open(region), { code: 'PMQ_ERR_REGION_VERSION' });
});

t.test('a damaged superblock copy falls back to the other; both damaged is an error', async (t) => {
  let opened = await formatted(t);
  await opened.store.raiseEpoch(2);
  const winner = opened.store.superblock.sequence % 2;
  damage(opened.region, superblockAddress(winner) + SUPERBLOCK_FIELD_AT.nodeId, 0x40);
  opened = reopen(t, opened);
  t.equal(opened.store.epoch, 0, 'the older copy wins: the raise is lost, never half-applied');
  t.match(opened.store.report.superblockFallback, { copy: winner, problem: /crc32c/ });
  await opened.store.raiseEpoch(3);
  opened = reopen(t, opened);
  t.equal(opened.store.report.superblockFallback, null, 'the damaged copy was rewritten');
  t.equal(opened.store.epoch, 3);
  damage(opened.region, superblockAddress(0) + 1, 1);
  damage(opened.region, superblockAddress(1) + 100, 1);
  opened.region.close();
  const region = Region.open({ path: opened.path, mode: 'open' });
  t.teardown(() => region.close());
  t.throws(() => RegionStore.open(region), { code: 'PMQ_ERR_REGION_CORRUPT',
    message: /superblock copy 0 at address 0: magic.*copy 1 at address 4096: crc32c/ });
});

function spawnChild(t: Teardown, args: readonly (string | number)[]):
{ lines: AsyncIterable<string>; kill: () => Promise<string | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx',
    fileURLToPath(new URL('../fixtures/region-store-child.ts', import.meta.url)),
    ...args.map(String)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<string | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)));
  const kill = async (): Promise<string | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  };
  t.teardown(async () => { await kill(); });
  async function* lines(): AsyncIterable<string> {
    let buffered = '';
    for await (const chunk of child.stdout) {
      buffered += String(chunk);
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        yield buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
      }
    }
  }
  return { lines: lines(), kill };
}

t.test(`SIGKILL after acknowledged watermarks: they and their data survive (seed ${SEED})`,
  async (t) => {
    const path = join(tempDir(t, '/dev/shm'), 'crash.region');
    const killAfter = 1 + (SEED % 200);
    const child = spawnChild(t, [path, 4 * MIB, MIB]);
    let acked = 0;
    let last = { position: 0, offsetLast: -1 };
    for await (const line of child.lines) {
      const match = /^acked (\d+) (-?\d+)$/.exec(line);
      if (match === null) break;
      acked += 1;
      last = { position: Number(match[1]), offsetLast: Number(match[2]) };
      t.same(last, crashRoundWatermark(acked));
      if (acked === killAfter) break;
    }
    t.equal(await child.kill(), 'SIGKILL');
    const region = Region.open({ path, mode: 'open' });
    t.teardown(() => region.close());
    const store = RegionStore.open(region);
    const segment = store.segment(0);
    const { position, offsetLast } = segment.watermark;
    t.ok(position >= last.position, `durable ${position} covers acknowledged ${last.position}`);
    t.same(crashRoundWatermark(offsetLast + 1), segment.watermark, 'a watermark it wrote');
    const pattern = regionPattern(MIB, CRASH_PATTERN_SEED).subarray(0, position);
    t.same(region.view(segment.address, position), pattern,
      'every byte under the watermark is the acknowledged data');
  });

t.test('settleBatches writes each baseOffset whole (beyond 2^32) and replaces a false batch',
  async (t) => {
    const { region, store } = await formatted(t);
    const baseOffset = 2 ** 40 + 2 ** 32 + 0x01020304;
    const segment = await store.allocateSegment(request({ baseOffset }));
    const batch = encodeRecordBatch([{ value: Uint8Array.of(1, 2, 3) }, { value: null }]);
    const bytes = region.view(segment.address, segment.sizeBytes);
    bytes.set(batch, 0);
    bytes.set(batch, batch.byteLength);
    const replaced = store.settleBatches(segment.segmentIndex, [
      { position: 0, baseOffset, bytes: batch.byteLength, records: 2 },
      // Claims 1 record: not what lies there, so a control batch of that shape replaces it.
      { position: batch.byteLength, baseOffset: baseOffset + 2, bytes: batch.byteLength,
        records: 1 },
    ], { position: 2 * batch.byteLength, offsetLast: baseOffset + 2 });
    t.same(replaced, [batch.byteLength], 'only the false batch is replaced');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    t.equal(view.getBigInt64(0), BigInt(baseOffset), 'big endian, all 64 bits');
    t.equal(view.getBigInt64(batch.byteLength), BigInt(baseOffset + 2));
    view.setBigInt64(0, 0n); // as its producer wrote it
    t.same(store.settleBatches(segment.segmentIndex, [
      { position: 0, baseOffset, bytes: batch.byteLength, records: 2 }],
    { position: batch.byteLength, offsetLast: baseOffset + 1 }), [],
    'nothing replaced: an empty list');
    t.equal(view.getBigInt64(0), BigInt(baseOffset));
    t.throws(() => store.settleBatches(segment.segmentIndex, [
      { position: 0, baseOffset: baseOffset + 1, bytes: batch.byteLength, records: 2 }],
    { position: batch.byteLength, offsetLast: baseOffset + 2 }), { code: 'PMQ_ERR_ARGUMENT' },
    'offsets that do not follow the durable watermark are refused');
    t.throws(() => store.settleBatches(segment.segmentIndex, [],
      { position: batch.byteLength, offsetLast: baseOffset + 1 }), { code: 'PMQ_ERR_ARGUMENT' },
    'bytes no piece covers are refused');
  });
