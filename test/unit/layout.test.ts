// common/layout.ts: geometry, encode/decode round trips, every damaged byte detected, versions
// rejected, and the superblock copy choice. Seeded workloads print their seed (PMQ_SEED=n to
// replay).
import { isDeepStrictEqual } from 'node:util';

import t from 'tap';

import {
  LAYOUT_ALIGNMENT_BYTES, SEGMENT_ENTRY_FIELD_AT, SEGMENT_ENTRY_SIZE_BYTES,
  SUPERBLOCK_FIELD_AT, SUPERBLOCK_HEADER_SIZE_BYTES, TABLE_ADDRESS, TABLE_BYTES_PER_SEGMENT,
  computeGeometry, decodeSegmentEntry, decodeSuperblock, encodeSegmentEntry, encodeSuperblock,
  geometryProblem, rangeProblem, superblockAddress, type DataArea, type EntryContext,
  type SegmentEntry, type Superblock,
  getI64, getU64, setI64, setU64,
} from '../../common/layout.js';
import { LIMITS } from '../../common/limits.js';
import { crc32c } from '../../native/crc32c.js';
import {
  chooseSuperblock, formatSuperblocks, nextSuperblock,
} from '../../storage-node/superblock.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const SEED = Number(process.env.PMQ_SEED ?? Math.floor(Math.random() * 2 ** 31));

function prng(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => { // mulberry32: an integer in [0, n)
    state = (state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(state ^ (state >>> 15), 1 | state);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n);
  };
}

function superblock(overrides: Partial<Superblock> = {}): Superblock {
  const g = computeGeometry(16 * MIB, 4 * MIB, MIB, 4096);
  if (!g.ok) throw new Error(g.problem);
  return { ...g.value, sequence: 0, regionId: '00112233445566778899aabbccddeeff', nodeId: 7,
    epoch: 3, ownerInstance: 0x1234_5678_9abc, createdAtMs: 1_700_000_000_000, ...overrides };
}

const AREA: DataArea = { dataAddress: MIB, dataEnd: 1025 * MIB, sizeMin: 64 * KIB,
  sizeMax: 64 * MIB };
const CTX: EntryContext = { segmentIndex: 5, slot: 1, area: AREA };
function entry(overrides: Partial<SegmentEntry> = {}): SegmentEntry {
  return { segmentIndex: 5, generation: 7, epoch: 2, state: 'active', topic: 'orders.eu-1',
    partition: 12, chainPosition: 3, baseOffset: 1000, watermark: { position: 4096,
      offsetLast: 1041 }, address: 5 * MIB, sizeBytes: MIB, ...overrides };
}

t.test('geometry: maximal, aligned, bad configs named', async (t) => {
  const g = computeGeometry(16 * MIB, MIB, MIB, 4096);
  t.ok(g.ok);
  if (!g.ok) return;
  t.equal(g.value.tableAddress, TABLE_ADDRESS);
  t.equal(g.value.dataAddress % 4096, 0);
  t.equal(g.value.segmentCount, 15, 'superblocks + table take the 16th MiB');
  t.equal(geometryProblem(g.value), null);
  const more = { ...g.value, segmentCount: 16 };
  t.not(geometryProblem(more), null, 'one more segment would not fit');
  const cases: [number, number, RegExp][] = [
    [16 * MIB, 3 * MIB, /not a power of two/],
    [16 * MIB, 32 * KIB, /outside/],
    [MIB, MIB, /holds no segment/],
    [16 * MIB + 100, MIB, /not a multiple/],
  ];
  for (const [region, segment, problem] of cases) {
    const bad = computeGeometry(region, segment, segment, 4096);
    t.match(bad, { ok: false, problem }, `${region}/${segment}`);
  }
  t.match(computeGeometry(16 * MIB, MIB, 2 * MIB, 4096), { ok: false, problem: /above/ },
    'smallest above largest');
  // Sized to need: an entry per smallest segment, so 1 GiB holds thousands of first segments.
  const sized = computeGeometry(1024 * MIB, 64 * MIB, 256 * KIB, 4096);
  t.ok(sized.ok && sized.value.segmentCount >= 4000 && sized.value.segmentSizeBytes === 64 * MIB &&
    sized.value.segmentSizeBytesMin === 256 * KIB, 'a 1 GiB region: ≥ 4000 entries');
  const aligned = computeGeometry(64 * MIB, LIMITS.segmentSizeBytesMin,
    LIMITS.segmentSizeBytesMin, 65_536);
  t.ok(aligned.ok && aligned.value.dataAddress % 65_536 === 0, 'data aligned to 64 KiB pages');
});

t.test('geometry: random regions fit exactly (seed ' + SEED + ')', async (t) => {
  const random = prng(SEED);
  for (let round = 0; round < 200; round += 1) {
    const segment = LIMITS.segmentSizeBytesMin * 2 ** random(6);
    const region = LAYOUT_ALIGNMENT_BYTES * (2 + random(8192));
    const g = computeGeometry(region, segment, segment, 4096);
    if (!g.ok) {
      t.ok(region < TABLE_ADDRESS + TABLE_BYTES_PER_SEGMENT + segment + 4096, `${region}`);
      continue;
    }
    const { segmentCount, dataAddress } = g.value;
    t.equal(geometryProblem(g.value), null);
    t.ok(dataAddress + segmentCount * segment <= region);
    t.ok(TABLE_ADDRESS + (segmentCount + 1) * (TABLE_BYTES_PER_SEGMENT + segment) > region,
      'no room for one more');
  }
});

t.test('superblock: round trip, every byte covered', async (t) => {
  const bytes = new Uint8Array(SUPERBLOCK_HEADER_SIZE_BYTES + 64);
  const sb = superblock({ sequence: 41, epoch: 2 ** 40 });
  encodeSuperblock(bytes, 64, sb);
  t.same(decodeSuperblock(bytes, 64), { ok: true, value: sb });
  for (let at = 64; at < bytes.byteLength; at += 1) {
    for (const bit of [0x01, 0x80]) {
      bytes[at] = (bytes[at] ?? 0) ^ bit;
      const decoded = decodeSuperblock(bytes, 64);
      bytes[at] = (bytes[at] ?? 0) ^ bit;
      if (decoded.ok) t.fail(`flip at byte ${at - 64} went unnoticed`);
    }
  }
  t.same(decodeSuperblock(bytes, 64), { ok: true, value: sb }, 'unchanged after the flips');
  t.match(decodeSuperblock(new Uint8Array(256), 0), { ok: false, kind: 'blank' });
});

t.test('superblock: versions and valid-crc nonsense are rejected', async (t) => {
  const bytes = new Uint8Array(SUPERBLOCK_HEADER_SIZE_BYTES);
  const view = new DataView(bytes.buffer);
  const recrc = (): void => view.setUint32(SUPERBLOCK_FIELD_AT.crc,
    crc32c(bytes, 0, SUPERBLOCK_FIELD_AT.crc), true);
  const tamper = (change: () => void): ReturnType<typeof decodeSuperblock> => {
    encodeSuperblock(bytes, 0, superblock());
    change();
    recrc();
    return decodeSuperblock(bytes, 0);
  };
  t.match(tamper(() => view.setUint16(SUPERBLOCK_FIELD_AT.version, 4, true)),
    { ok: false, kind: 'version', problem: /version 4/ });
  // Versions 1 and 2 (layout 1, equal segments at fixed addresses) are refused, saying so.
  for (const version of [1, 2]) {
    t.match(tamper(() => view.setUint16(SUPERBLOCK_FIELD_AT.version, version, true)),
      { ok: false, kind: 'version', problem: /layout 1 .*move this file away/ });
  }
  t.match(tamper(() => view.setBigUint64(SUPERBLOCK_FIELD_AT.segmentSizeBytesMin,
    BigInt(8 * MIB), true)), { ok: false, kind: 'corrupt', problem: /smallest segment/ });
  // A torn first write (magic stored, the version word not yet): corrupt, not another version.
  t.match(tamper(() => view.setUint16(SUPERBLOCK_FIELD_AT.version, 0, true)),
    { ok: false, kind: 'corrupt', problem: /version 0 is never written/ });
  t.match(tamper(() => { bytes[SUPERBLOCK_FIELD_AT.reserved1] = 1; }),
    { ok: false, kind: 'corrupt', problem: /reserved/ });
  t.match(tamper(() => view.setUint32(SUPERBLOCK_FIELD_AT.segmentSizeBytes, 3 * MIB, true)),
    { ok: false, kind: 'corrupt', problem: /power of two/ });
  t.match(tamper(() => view.setBigUint64(SUPERBLOCK_FIELD_AT.epoch, 2n ** 60n, true)),
    { ok: false, problem: /2\^53/ });
  t.match(tamper(() => view.setUint32(SUPERBLOCK_FIELD_AT.segmentCount, 99, true)),
    { ok: false, problem: /data address \d+ does not follow the table/ });
  t.match(tamper(() => view.setUint32(SUPERBLOCK_FIELD_AT.regionSizeBytes, 8 * MIB, true)),
    { ok: false, problem: /overrun/ });
  t.match(tamper(() => { bytes[0] = 0x51; }), { ok: false, problem: /magic/ });
});

t.test('segment entry: round trip, every byte covered, free entries strict', async (t) => {
  const bytes = new Uint8Array(SEGMENT_ENTRY_SIZE_BYTES);
  const e = entry({ topic: 'x'.repeat(LIMITS.topicNameBytesMax) });
  encodeSegmentEntry(bytes, 0, e, CTX);
  t.same(decodeSegmentEntry(bytes, 0, CTX), { ok: true, value: e });
  let unnoticed = 0;
  for (let at = 0; at < bytes.byteLength; at += 1) {
    bytes[at] = (bytes[at] ?? 0) ^ 0x10;
    if (decodeSegmentEntry(bytes, 0, CTX).ok) unnoticed += 1;
    bytes[at] = (bytes[at] ?? 0) ^ 0x10;
  }
  t.equal(unnoticed, 0, 'a flip anywhere in the 512 bytes is noticed');
  t.match(decodeSegmentEntry(bytes, 0, { ...CTX, slot: 0 }),
    { ok: false, problem: /slot 0/ }, 'generation 7 belongs in slot 1');
  t.match(decodeSegmentEntry(bytes, 0, { ...CTX, segmentIndex: 6 }),
    { ok: false, problem: /names segment 5/ }, 'a misdirected entry is noticed');
  const free: SegmentEntry = { ...entry(), state: 'free', topic: '', partition: 0,
    chainPosition: 0, baseOffset: 0, watermark: { position: 0, offsetLast: 0 }, address: 0,
    sizeBytes: 0 };
  encodeSegmentEntry(bytes, 0, free, CTX);
  t.same(decodeSegmentEntry(bytes, 0, CTX), { ok: true, value: free });
  t.match(decodeSegmentEntry(new Uint8Array(512), 0, CTX), { ok: false, kind: 'blank' });
});

t.test('segment entry: versions, states and watermarks checked after the crc', async (t) => {
  const bytes = new Uint8Array(SEGMENT_ENTRY_SIZE_BYTES);
  const view = new DataView(bytes.buffer);
  const F = SEGMENT_ENTRY_FIELD_AT;
  const tamper = (change: () => void): ReturnType<typeof decodeSegmentEntry> => {
    encodeSegmentEntry(bytes, 0, entry(), CTX);
    change();
    view.setUint32(F.crc, crc32c(bytes, 0, F.crc), true);
    return decodeSegmentEntry(bytes, 0, CTX);
  };
  t.match(tamper(() => view.setUint16(F.version, 9, true)), { ok: false, kind: 'version' });
  t.match(tamper(() => view.setUint16(F.version, 1, true)),
    { ok: false, kind: 'version', problem: /layout 1/ });
  // The segment's own range: inside the data area, a size class, aligned to its size.
  t.match(tamper(() => view.setBigUint64(F.address, BigInt(1025 * MIB), true)),
    { ok: false, problem: /outside the data area/ });
  t.match(tamper(() => view.setBigUint64(F.address, BigInt(5 * MIB + 64 * KIB), true)),
    { ok: false, problem: /not aligned/ });
  t.match(tamper(() => view.setBigUint64(F.sizeBytes, BigInt(3 * MIB), true)),
    { ok: false, problem: /power of two/ });
  t.match(tamper(() => view.setBigUint64(F.sizeBytes, BigInt(128 * MIB), true)),
    { ok: false, problem: /power of two in/ });
  t.match(tamper(() => view.setUint16(F.version, 0, true)),
    { ok: false, kind: 'corrupt', problem: /version 0 is never written/ });
  t.match(tamper(() => view.setUint8(F.state, 3)), { ok: false, problem: /state 3/ });
  t.match(tamper(() => view.setBigUint64(F.watermarkPosition, BigInt(MIB + 1), true)),
    { ok: false, problem: /position/ });
  t.match(tamper(() => view.setBigInt64(F.watermarkOffsetLast, 999n, true)),
    { ok: false, problem: /below baseOffset/ });
  t.match(tamper(() => view.setUint16(F.topicSizeBytes, 250, true)), { ok: false });
  t.match(tamper(() => { bytes[F.topic] = 0x2f; }), { ok: false, problem: /topic/ });
  t.match(tamper(() => { bytes[F.reserved1 + 2] = 1; }), { ok: false, problem: /reserved/ });
  t.match(tamper(() => { bytes[F.reserved2 + 9] = 1; }), { ok: false, problem: /reserved/ });
  t.match(tamper(() => view.setUint32(F.partition, 2 ** 31, true)), { ok: false });
});

function randomEntry(random: (n: number) => number, ctx: EntryContext): SegmentEntry {
  const state = (['free', 'active', 'sealed'] as const)[random(3)] ?? 'free';
  const generation = 2 * random(2 ** 20) + ctx.slot;
  if (state === 'free') return { ...formatFree(ctx.segmentIndex), generation, epoch: random(99) };
  const baseOffset = random(2 ** 30) * 2 ** random(20);
  const { area } = ctx;
  const sizeBytes = area.sizeMin * 2 ** random(Math.log2(area.sizeMax / area.sizeMin) + 1);
  const address = area.dataAddress +
    sizeBytes * random((area.dataEnd - area.dataAddress) / sizeBytes);
  const position = random(2) === 0 ? 0 : 1 + random(sizeBytes);
  const offsetLast = position === 0 ? baseOffset - 1 : baseOffset + random(position);
  const alphabet = 'abcXYZ019._-';
  const topic = Array.from({ length: 1 + random(249) }, () => alphabet[random(12)]).join('');
  return { segmentIndex: ctx.segmentIndex, generation, epoch: random(2 ** 31), state,
    topic: topic === '.' || topic === '..' ? 't' : topic, partition: random(2 ** 31),
    chainPosition: random(2 ** 32), baseOffset, watermark: { position, offsetLast }, address,
    sizeBytes };
}

function formatFree(segmentIndex: number): Omit<SegmentEntry, 'generation' | 'epoch'> {
  return { segmentIndex, state: 'free', topic: '', partition: 0, chainPosition: 0,
    baseOffset: 0, watermark: { position: 0, offsetLast: 0 }, address: 0, sizeBytes: 0 };
}

t.test(`segment entry: seeded random round trips and damage (seed ${SEED})`, async (t) => {
  const random = prng(SEED);
  const bytes = new Uint8Array(2 * SEGMENT_ENTRY_SIZE_BYTES);
  let checked = 0;
  for (let round = 0; round < 500; round += 1) {
    const sizeMin = LIMITS.segmentSizeBytesMin * 2 ** random(4);
    const dataAddress = 4096 * (1 + random(1000));
    const sizeMax = sizeMin * 2 ** random(8);
    const ctx = { segmentIndex: random(LIMITS.segmentCountMax), slot: random(2),
      area: { dataAddress, dataEnd: dataAddress + sizeMax * (1 + random(9)), sizeMin, sizeMax } };
    const e = randomEntry(random, ctx);
    const at = random(SEGMENT_ENTRY_SIZE_BYTES);
    encodeSegmentEntry(bytes, at, e, ctx);
    const decoded = decodeSegmentEntry(bytes, at, ctx);
    if (!decoded.ok) t.fail(`round ${round}: ${decoded.problem}`);
    else if (!isDeepStrictEqual(decoded.value, e)) t.fail(`round ${round}: differs`);
    const damaged = at + random(SEGMENT_ENTRY_SIZE_BYTES);
    bytes[damaged] = (bytes[damaged] ?? 0) ^ (1 + random(255));
    if (decodeSegmentEntry(bytes, at, ctx).ok) t.fail(`round ${round}: damage unnoticed`);
    checked += 1;
  }
  t.equal(checked, 500);
});

t.test('superblock copies: newest wins, torn falls back, nonsense refused', async (t) => {
  const bytes = new Uint8Array(TABLE_ADDRESS);
  const [a, b] = formatSuperblocks(superblock());
  if (a === undefined || b === undefined) throw new Error('two copies');
  encodeSuperblock(bytes, superblockAddress(0), a);
  encodeSuperblock(bytes, superblockAddress(1), b);
  t.match(chooseSuperblock(bytes), { ok: true, copy: 1, fallback: null });
  const next = nextSuperblock(b, { epoch: 9, ownerInstance: 5 });
  t.equal(next.copy, 0, 'the update goes into the losing copy');
  encodeSuperblock(bytes, superblockAddress(next.copy), next.superblock);
  t.match(chooseSuperblock(bytes), { ok: true, copy: 0, superblock: { epoch: 9, sequence: 2 } });
  bytes[SUPERBLOCK_FIELD_AT.epoch] = 0x55; // tear the new copy
  t.match(chooseSuperblock(bytes), { ok: true, copy: 1, superblock: { epoch: 3 },
    fallback: { copy: 0, address: 0, problem: /crc32c/ } });
  bytes.fill(0xee, superblockAddress(1), superblockAddress(1) + 16);
  t.match(chooseSuperblock(bytes), { ok: false, kind: 'corrupt' }, 'both copies bad');
  t.match(chooseSuperblock(new Uint8Array(TABLE_ADDRESS)), { ok: false, kind: 'blank' });
  encodeSuperblock(bytes, superblockAddress(0), { ...a, sequence: 4 });
  encodeSuperblock(bytes, superblockAddress(1), b);
  t.match(chooseSuperblock(bytes), { ok: false, problems: [{ problem: /not consecutive/ }] });
  encodeSuperblock(bytes, superblockAddress(0), { ...a, sequence: 2, nodeId: 8 });
  t.match(chooseSuperblock(bytes), { ok: false, problems: [{ problem: /disagree/ }] });
  encodeSuperblock(bytes, superblockAddress(0), { ...a, sequence: 1 });
  t.match(chooseSuperblock(bytes), { ok: true, copy: 1,
    fallback: { copy: 0, problem: /does not belong in copy 0/ } }, 'a misplaced copy is noticed');
});

t.test('64-bit fields: every safe integer round trips, nothing past ±(2^53 - 1) is read',
  async (t) => {
    const view = new DataView(new ArrayBuffer(8));
    const unsigned = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 0x01020304_05060708 % 2 ** 53,
      Number.MAX_SAFE_INTEGER];
    for (const value of unsigned) {
      setU64(view, 0, value);
      t.equal(view.getBigUint64(0, true), BigInt(value), `u64 ${value} little endian`);
      t.equal(getU64(view, 0), value);
    }
    for (const value of [...unsigned, ...unsigned.map((v) => -v), -1, -(2 ** 32) - 1]) {
      setI64(view, 0, value);
      t.equal(view.getBigInt64(0, true), BigInt(value), `i64 ${value} two's complement`);
      t.equal(getI64(view, 0), value);
    }
    view.setBigUint64(0, 2n ** 53n, true);
    t.equal(getU64(view, 0), null, 'u64 2^53 refused');
    view.setBigUint64(0, 2n ** 64n - 1n, true);
    t.equal(getU64(view, 0), null, 'u64 2^64 - 1 refused');
    view.setBigInt64(0, 2n ** 53n, true);
    t.equal(getI64(view, 0), null, 'i64 2^53 refused');
    view.setBigInt64(0, -(2n ** 53n), true);
    t.equal(getI64(view, 0), null, 'i64 -2^53 refused');
    view.setBigInt64(0, -(2n ** 63n), true);
    t.equal(getI64(view, 0), null, 'i64 -2^63 refused');
  });

t.test('segment ranges: rangeProblem names what is wrong', async (t) => {
  t.equal(rangeProblem(MIB, 64 * KIB, AREA), null);
  t.equal(rangeProblem(MIB + 64 * MIB, 64 * MIB, AREA), null);
  t.match(rangeProblem(MIB + 32 * MIB, 64 * MIB, AREA), /not aligned/);
  t.match(rangeProblem(MIB - 64 * KIB, 64 * KIB, AREA), /outside/);
  t.match(rangeProblem(1024 * MIB, 2 * MIB, AREA), /outside/);
  t.match(rangeProblem(MIB, 32 * KIB, AREA), /power of two in/);
});
