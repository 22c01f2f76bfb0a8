// storage-node/segment-space.ts: the buddy allocator over a region's data area. Allocation,
// release and merging, fragmentation, a full area, and the rebuild open() does from the live
// entries (the complement, refusing overlaps and ranges outside). The seeded model run checks
// after every step that no two live ranges overlap, that live + free bytes cover the area,
// and that a rebuild from the live ranges gives the same free blocks (PMQ_SEED=n replays).
import t from 'tap';

import type { DataArea } from '../../common/layout.js';
import { SegmentSpace, type LiveRange } from '../../storage-node/segment-space.js';
import { prngFrom } from '../fixtures/record-batch-random.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const SEED = Number(process.env.PMQ_SEED ?? Math.floor(Math.random() * 2 ** 31));


/** 1 GiB − 16 MiB of data from 16 MiB: `pmq dev`'s region after its table. */
const DEV: DataArea = { dataAddress: 16 * MIB, dataEnd: 1024 * MIB, sizeMin: 256 * KIB,
  sizeMax: 64 * MIB };

function overlaps(ranges: readonly { address: number; sizeBytes: number }[]): boolean {
  const sorted = [...ranges].sort((a, b) => a.address - b.address);
  return sorted.some((r, i) => i > 0 && r.address < sorted[i - 1]!.address +
    sorted[i - 1]!.sizeBytes);
}

t.test('an empty area: largest blocks first, the tail in smaller ones', async (t) => {
  const space = SegmentSpace.empty(DEV);
  t.equal(space.freeBytes, 1008 * MIB);
  t.equal(space.largestFree(), 64 * MIB);
  // Aligned from dataAddress: fifteen 64 MiB blocks, then the 48 MiB tail as 32 + 16.
  const blocks = space.blocks();
  t.same(blocks.map((x) => x.sizeBytes / MIB), [...Array(15).fill(64), 32, 16]);
  t.ok(blocks.every((b) => (b.address - DEV.dataAddress) % b.sizeBytes === 0), 'aligned');
  t.equal(blocks.reduce((n, b) => n + b.sizeBytes, 0), 1008 * MIB);
  t.notOk(overlaps(blocks));
  t.ok(blocks.every((b) => !b.cleared), 'format does not zero data: nothing is cleared');
  t.equal(space.countFree(256 * KIB), 4032, 'room for 4032 first segments');
});

t.test('allocate splits, release merges back to the largest blocks', async (t) => {
  const space = SegmentSpace.empty(DEV);
  const a = space.allocate(256 * KIB);
  const b = space.allocate(256 * KIB);
  const c = space.allocate(MIB);
  if (a === null || b === null || c === null) throw new Error('room');
  const tail = DEV.dataAddress + 992 * MIB; // the smallest block (16 MiB) is split first
  t.equal(a.address, tail, 'from the smallest block that fits, its lowest address');
  t.equal(b.address, tail + 256 * KIB, 'a\'s buddy');
  t.equal(c.address, tail + MIB, 'the next free 1 MiB');
  t.notOk(overlaps([a, b, c]));
  t.equal(space.freeBytes, 1008 * MIB - 1.5 * MIB);
  space.release(b.address, b.sizeBytes, true);
  space.release(a.address, a.sizeBytes, true);
  space.release(c.address, c.sizeBytes, false);
  t.equal(space.freeBytes, 1008 * MIB);
  t.same(space.blocks().map((x) => [x.address, x.sizeBytes]),
    SegmentSpace.empty(DEV).blocks().map((x) => [x.address, x.sizeBytes]),
    'merged back into the same blocks as a fresh area');
  const again = space.allocate(256 * KIB);
  t.equal(again?.cleared, false, 'merged with an uncleared buddy: not cleared');
});

t.test('cleared survives splitting; a merge keeps it only when both halves had it',
  async (t) => {
    const area: DataArea = { dataAddress: 0, dataEnd: 2 * MIB, sizeMin: 512 * KIB,
      sizeMax: 2 * MIB };
    const space = SegmentSpace.empty(area);
    const a = space.allocate(2 * MIB)!;
    space.release(a.address, a.sizeBytes, true);
    const b = space.allocate(512 * KIB)!;
    t.equal(b.cleared, true, 'a piece of a cleared block is cleared');
    t.ok(space.blocks().every((x) => x.cleared));
    space.release(b.address, b.sizeBytes, false);
    t.equal(space.allocate(2 * MIB)?.cleared, false);
  });

t.test('a full area answers null; fragmentation: bytes free but no block large enough',
  async (t) => {
    const area: DataArea = { dataAddress: 0, dataEnd: 4 * MIB, sizeMin: 256 * KIB,
      sizeMax: 4 * MIB };
    const space = SegmentSpace.empty(area);
    const small = Array.from({ length: 16 }, () => space.allocate(256 * KIB)!);
    t.ok(small.every((x) => x !== null));
    t.equal(space.allocate(256 * KIB), null, 'full');
    t.equal(space.freeBytes, 0);
    // Free every other one: half the bytes free, in 256 KiB pieces none of which are buddies.
    for (let i = 0; i < 16; i += 2) space.release(small[i]!.address, small[i]!.sizeBytes, true);
    t.equal(space.freeBytes, 2 * MIB);
    t.equal(space.largestFree(), 256 * KIB);
    t.equal(space.allocate(512 * KIB), null, 'no 512 KiB block while fragmented');
    t.equal(space.countFree(256 * KIB), 8);
    // Free a buddy: now one 512 KiB block exists.
    space.release(small[1]!.address, small[1]!.sizeBytes, true);
    t.equal(space.largestFree(), 512 * KIB);
    t.equal(space.allocate(512 * KIB)?.address, 0);
  });

t.test('rebuild: the complement of the live ranges; overlap and outside refused', async (t) => {
  const live: LiveRange[] = [
    { segmentIndex: 3, address: DEV.dataAddress + 64 * MIB, sizeBytes: 64 * MIB },
    { segmentIndex: 0, address: DEV.dataAddress, sizeBytes: 256 * KIB },
    { segmentIndex: 7, address: DEV.dataAddress + 2 * MIB, sizeBytes: 2 * MIB },
  ];
  const rebuilt = SegmentSpace.rebuild(DEV, live);
  if (!rebuilt.ok) throw new Error(rebuilt.problem);
  t.equal(rebuilt.space.freeBytes, 1008 * MIB - 64 * MIB - 256 * KIB - 2 * MIB);
  t.notOk(overlaps([...live, ...rebuilt.space.blocks()]), 'free space is outside every segment');
  t.match(SegmentSpace.rebuild(DEV, [...live,
    { segmentIndex: 9, address: DEV.dataAddress + 3 * MIB, sizeBytes: MIB }]),
  { ok: false, segmentIndex: 9, problem: /overlaps segment 7/ }, 'nested in another');
  t.match(SegmentSpace.rebuild(DEV, [...live,
    { segmentIndex: 9, address: DEV.dataAddress, sizeBytes: 256 * KIB }]),
  { ok: false, problem: /overlaps segment 0/ }, 'the same range twice');
  t.match(SegmentSpace.rebuild(DEV, [{ segmentIndex: 1, address: DEV.dataEnd,
    sizeBytes: 256 * KIB }]), { ok: false, segmentIndex: 1, problem: /outside the data area/ });
  t.match(SegmentSpace.rebuild(DEV, [{ segmentIndex: 2, address: DEV.dataAddress + 256 * KIB,
    sizeBytes: MIB }]), { ok: false, segmentIndex: 2, problem: /not aligned/ });
});

t.test(`seeded model: allocate and free at random (seed ${SEED})`, async (t) => {
  const { int: random } = prngFrom(SEED);
  const area: DataArea = { dataAddress: 12 * MIB, dataEnd: 12 * MIB + 100 * MIB,
    sizeMin: 64 * KIB, sizeMax: 8 * MIB };
  const space = SegmentSpace.empty(area);
  const live: LiveRange[] = [];
  let full = 0;
  for (let step = 0; step < 3000; step += 1) {
    if (live.length > 0 && random(5) < 2) {
      const [gone] = live.splice(random(live.length), 1);
      space.release(gone!.address, gone!.sizeBytes, random(2) === 0);
    } else {
      const sizeBytes = area.sizeMin * 2 ** random(8);
      const block = space.allocate(sizeBytes);
      if (block === null) {
        full += 1;
        t.ok(space.largestFree() < sizeBytes, `step ${step}: null only when no block fits`);
      } else {
        live.push({ segmentIndex: step, address: block.address, sizeBytes });
      }
    }
    const used = live.reduce((n, r) => n + r.sizeBytes, 0);
    if (used + space.freeBytes !== area.dataEnd - area.dataAddress) {
      t.fail(`step ${step}: ${used} used + ${space.freeBytes} free`);
      break;
    }
    if (overlaps([...live, ...space.blocks()])) {
      t.fail(`step ${step}: ranges overlap`);
      break;
    }
    if (step % 100 === 0) {
      const rebuilt = SegmentSpace.rebuild(area, live);
      t.ok(rebuilt.ok && JSON.stringify(rebuilt.space.blocks().map((b) => [b.address,
        b.sizeBytes])) === JSON.stringify(space.blocks().map((b) => [b.address, b.sizeBytes])),
      `step ${step}: a rebuild gives the same free blocks`);
    }
  }
  t.ok(full > 0, 'the area filled up at times');
});
