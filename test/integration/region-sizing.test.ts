// RegionStore with segments sized to need (docs/region-format.md, "Segments sized to need"), on
// real /dev/shm regions: first segments small and growing by chain position, a batch's size
// honoured, a region full in bytes answered at once, free space rebuilt at open (nothing
// allocated over a live segment after a restart), two entries over the same bytes refused.
import { join } from 'node:path';

import t from 'tap';

import {
  dataAreaOf, encodeSegmentEntry, entryAddress, SEGMENT_ENTRY_SIZE_BYTES,
} from '../../common/layout.js';
import { Region } from '../../native/region.js';
import {
  RegionStore, segmentSizeFor, type AllocateRequest,
} from '../../storage-node/region-store.js';
import {
  allocateRequest, type Opened, reopen, tempDir, type Teardown,
} from '../fixtures/region-helpers.js';

const KIB = 1024;
const MIB = 1024 * KIB;

async function formatted(t: Teardown, sizeBytes: number, max: number, min: number):
  Promise<Opened> {
  const path = join(tempDir(t, '/dev/shm'), 'node.region');
  const region = Region.open({ path, sizeBytes, mode: 'create-new' });
  t.teardown(() => { if (!region.closed) region.close(); });
  const store = await RegionStore.format(region, { nodeId: 1, segmentSizeBytes: max,
    segmentSizeBytesMin: min });
  return { region, store, path };
}

const request = allocateRequest;

function overlapping(store: RegionStore): string | null {
  const live = store.segments().filter((s) => s.state !== 'free')
    .sort((a, b) => a.address - b.address);
  for (let i = 1; i < live.length; i += 1) {
    const [a, b] = [live[i - 1]!, live[i]!];
    if (b.address < a.address + a.sizeBytes) return `${a.segmentIndex} and ${b.segmentIndex}`;
  }
  return null;
}

t.test('sizes: first segments small, doubling by chain position, at least a batch', async (t) => {
  const area = { sizeMin: 256 * KIB, sizeMax: 64 * MIB };
  t.same([0, 1, 2, 8, 9, 40].map((c) => segmentSizeFor(area, c, 0) / KIB),
    [256, 512, 1024, 64 * 1024, 64 * 1024, 64 * 1024]);
  t.equal(segmentSizeFor(area, 0, MIB + 1), 2 * MIB, 'a 1 MiB batch gets a segment it fits');
  t.equal(segmentSizeFor(area, 30, 0, 'fit'), 256 * KIB, 'fit: not grown by chain position');
  t.equal(segmentSizeFor(area, 0, 100 * MIB), 64 * MIB, 'never above the largest');
});

t.test('1 000 partitions of a 1 GiB region each get a first segment', async (t) => {
  const { store } = await formatted(t, 1024 * MIB, 64 * MIB, 256 * KIB);
  t.ok(store.superblock.segmentCount >= 4000, `${store.superblock.segmentCount} entries`);
  for (let partition = 0; partition < 1000; partition += 1) {
    const segment = await store.allocateSegment(request({ partition }));
    if (segment.sizeBytes !== 256 * KIB) t.fail(`partition ${partition}: ${segment.sizeBytes}`);
  }
  t.equal(overlapping(store), null, 'no two segments share a byte');
  const big = await store.allocateSegment(request({ topic: 'big', chainPosition: 8,
    sizeBytesMin: MIB }));
  t.equal(big.sizeBytes, 64 * MIB, 'a busy partition still gets large segments');
  t.ok(store.space().firstSegmentsFree > 2500, 'room for thousands more');
});

t.test('region full in bytes: PMQ_ERR_REGION_FULL at once (final), saying what is free',
  async (t) => {
    const opened = await formatted(t, 8 * MIB, 4 * MIB, 256 * KIB);
    const { store } = opened;
    const a = await store.allocateSegment(request({ chainPosition: 4 })); // 4 MiB
    t.equal(a.sizeBytes, 4 * MIB);
    await t.rejects(store.allocateSegment(request({ topic: 'b', chainPosition: 4 })),
      { code: 'PMQ_ERR_REGION_FULL', retriable: false, message: /no free range of 4194304/ });
    // Smaller segments still fit: full is per size, not all or nothing.
    const small: number[] = [];
    for (let partition = 1; ; partition += 1) {
      try {
        small.push((await store.allocateSegment(request({ partition }))).segmentIndex);
      } catch (error) {
        t.match(error, { code: 'PMQ_ERR_REGION_FULL', message: /0 bytes free/ });
        break;
      }
    }
    t.ok(small.length >= 10, `${small.length} first segments in the rest`);
    t.equal(overlapping(store), null);
    // Fragmented: every other small one freed, no 512 KiB range anywhere.
    for (let i = 0; i < small.length; i += 2) await store.freeSegment(small[i]!, 0);
    await t.rejects(store.allocateSegment(request({ topic: 'c', chainPosition: 1 })),
      { code: 'PMQ_ERR_REGION_FULL', message: /largest free range 262144/ });
    t.equal((await store.allocateSegment(request({ topic: 'c' }))).sizeBytes, 256 * KIB);
  });

t.test('open rebuilds the free space: nothing is allocated over a live segment', async (t) => {
  let opened = await formatted(t, 32 * MIB, 4 * MIB, 256 * KIB);
  for (let chainPosition = 0; chainPosition < 4; chainPosition += 1) {
    await opened.store.allocateSegment(request({ chainPosition }));
  }
  await opened.store.freeSegment(1, 0);
  const before = opened.store.space();
  opened = reopen(t, opened);
  t.same(opened.store.space(), before, 'the same free space after the restart');
  for (let partition = 1; ; partition += 1) {
    try {
      await opened.store.allocateSegment(request({ partition, chainPosition: partition % 5 }));
    } catch (error) {
      t.match(error, { code: 'PMQ_ERR_REGION_FULL' });
      break;
    }
  }
  t.equal(overlapping(opened.store), null, 'every live range its own');
  t.equal(opened.store.space().freeBytes < 4 * MIB, true);
});

t.test('two entries over the same bytes are damage: open refuses, naming both', async (t) => {
  let opened = await formatted(t, 8 * MIB, 4 * MIB, 256 * KIB);
  const a = await opened.store.allocateSegment(request());
  const b = await opened.store.allocateSegment(request({ partition: 1 }));
  // b's entry, rewritten (valid CRC, next generation) to claim a's range: a bug or a bad write.
  const sb = opened.store.superblock;
  const slot = (b.generation + 1) % 2;
  encodeSegmentEntry(opened.region.view(0, sb.dataAddress), entryAddress(b.segmentIndex, slot),
    { ...b, generation: b.generation + 1, address: a.address },
    { segmentIndex: b.segmentIndex, slot, area: dataAreaOf(sb) });
  opened.region.persist(entryAddress(b.segmentIndex, slot), SEGMENT_ENTRY_SIZE_BYTES);
  opened.region.close();
  const region = Region.open({ path: opened.path, mode: 'open' });
  t.teardown(() => region.close());
  t.throws(() => RegionStore.open(region), { code: 'PMQ_ERR_REGION_CORRUPT',
    message: new RegExp(`segment ${b.segmentIndex} entry slot ${slot} .*overlaps segment ` +
      `${a.segmentIndex}`) });
  opened = { ...opened, region };
});
