// Region boundary contracts: open modes and backings, the reported granularity, zero-copy
// access, persist variants, argument checks, error codes, and use after close.
import { existsSync, mkdirSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

import { native } from '../../native/index.js';
import { REGION_PAGE_SIZE_BYTES, Region } from '../../native/region.js';
import { BASES, tempDir } from '../fixtures/region-helpers.js';
import { regionPattern } from '../fixtures/region-pattern.js';

const SIZE_BYTES = 16 * REGION_PAGE_SIZE_BYTES;

for (const base of BASES) {
  t.test(`create, report, write, reopen on ${base.name}`, async (t) => {
    const path = join(tempDir(t, base.dir()), 'r.region');
    const region = Region.open({ path, sizeBytes: SIZE_BYTES, mode: 'create-new' });
    t.equal(region.sizeBytes, SIZE_BYTES);
    t.equal(region.path, path);
    if (base.name === '/dev/shm') {
      t.same([region.backing, region.granularity, region.durability],
        ['shm', 'page', 'process-crash']);
    } else if (region.granularity === 'page') {
      t.same([region.backing, region.durability], ['file', 'msync']);
    } else {
      t.same([region.backing, region.durability], ['dax', 'power-fail']);
    }
    const bytes = region.view(0, SIZE_BYTES);
    t.equal(bytes.byteLength, SIZE_BYTES);
    t.ok(bytes.every((b) => b === 0), 'a new region reads as zeros');
    const pattern = regionPattern(3000, 1);
    region.view(5000, pattern.byteLength).set(pattern);
    region.persist(5000, pattern.byteLength);
    await region.persistAsync(5000, pattern.byteLength);
    region.close();
    const again = Region.open({ path, mode: 'open' });
    t.equal(again.sizeBytes, SIZE_BYTES, 'open without a size takes it from the file');
    t.same(again.view(5000, 3000), pattern);
    again.close();
    const created = Region.open({ path, sizeBytes: SIZE_BYTES });
    t.same(created.view(5000, 3000), pattern, "'create' opens an existing region");
    created.close();
  });
}

t.test('views are the mapping itself (zero copy)', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const region = Region.open({ path, sizeBytes: SIZE_BYTES });
  t.equal(region.view(0, 10).buffer, region.view(5000, 10).buffer, 'one window, many views');
  const pattern = regionPattern(1000, 2);
  region.view(100, 1000).set(pattern);
  t.same(region.view(0, SIZE_BYTES).subarray(100, 1100), pattern, 'views share the bytes');
  // Native reads the source through the same mapping: the copy sees what JS stored.
  region.copyPersist(40_000, region.view(0, SIZE_BYTES), 100, 1000);
  t.same(region.view(40_000, 1000), pattern, 'native copy read JS stores');
  region.copyPersist(60_000, pattern, 10, 20, { drain: false });
  region.drain();
  t.same(region.view(60_000, 20), pattern.subarray(10, 30));
  region.flush(0, SIZE_BYTES);
  region.drain();
  region.copyPersist(150, region.view(0, SIZE_BYTES), 100, 1000);
  t.same(region.view(150, 1000), pattern, 'overlapping copy is a memmove');
  region.fill(0x77, 3, 5);
  t.same([...region.view(2, 7)], [0, 0x77, 0x77, 0x77, 0x77, 0x77, 0], 'fill: that range only');
  region.close();
});

t.test('use after close is a clean error', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const region = Region.open({ path, sizeBytes: SIZE_BYTES });
  const bytes = region.view(0, SIZE_BYTES);
  const buffer = bytes.buffer;
  region.close();
  t.ok(region.closed);
  t.equal(buffer.byteLength, 0, 'the ArrayBuffer is detached by close');
  t.equal(bytes.byteLength, 0, 'old views are empty, not dangling');
  t.equal(bytes[0], undefined);
  const closed = { code: 'PMQ_ERR_REGION_CLOSED' };
  t.throws(() => region.persist(0, 1), closed);
  await t.rejects(region.persistAsync(0, 1), closed);
  t.throws(() => region.flush(0, 1), closed);
  t.throws(() => region.drain(), closed);
  t.throws(() => region.copyPersist(0, new Uint8Array(1)), closed);
  t.throws(() => region.view(0, 1), closed);
  t.throws(() => region.fill(0, 0, 1), closed);
  t.throws(() => region.close(), closed, 'closing twice');
});

t.test('raw binding: a closed handle throws NativeError, never crashes', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const handle = native.regionOpen(path, SIZE_BYTES, 'create', false);
  native.regionView(handle, 0, SIZE_BYTES);
  native.regionClose(handle);
  for (const call of [
    () => native.regionPersist(handle, 0, 1),
    () => native.regionFlush(handle, 0, 1),
    () => native.regionDrain(handle),
    () => native.regionView(handle, 0, 1),
    () => native.regionInfo(handle),
    () => native.regionCopyPersist(handle, 0, new Uint8Array(1), 0, 1, true),
    () => native.regionPersistAsync(handle, 0, 1),
    () => native.regionClose(handle),
  ]) {
    t.throws(call, { name: 'NativeError', code: 'PMQ_ERR_REGION_CLOSED', reason: /.+/ });
  }
});

for (const base of BASES) {
  t.test(`prefault maps pages without changing a byte on ${base.name}`, async (t) => {
    const path = join(tempDir(t, base.dir()), 'r.region');
    const region = Region.open({ path, sizeBytes: SIZE_BYTES, mode: 'create-new' });
    const pattern = regionPattern(SIZE_BYTES, 7);
    region.view(0, SIZE_BYTES).set(pattern);
    const result = await region.prefault();
    t.same(result, { supported: region.backing !== 'file', cancelled: false },
      'supported on shm and DAX only');
    t.same(region.view(0, SIZE_BYTES), pattern, 'every byte as written');
    region.close();
  });
}

t.test('close during a prefault stops it and never waits for it', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'big.region');
  const region = Region.open({ path, sizeBytes: 256 * 1024 * 1024, mode: 'create-new' });
  const prefault = region.prefault();
  region.close();
  t.ok(region.closed, 'closed at once');
  t.match(await prefault, { supported: true, cancelled: true });
  await t.rejects(region.prefault(), { code: 'PMQ_ERR_REGION_CLOSED' });
});

t.test('close refuses while a persistAsync is in flight', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const region = Region.open({ path, sizeBytes: SIZE_BYTES });
  const pending = region.persistAsync(0, SIZE_BYTES);
  t.throws(() => region.close(), { code: 'PMQ_ERR_REGION_BUSY' });
  await pending;
  region.close();
  t.ok(region.closed);
});

t.test('open errors carry stable codes and say what to do', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const path = join(dir, 'r.region');
  const held = Region.open({ path, sizeBytes: SIZE_BYTES });
  t.throws(() => Region.open({ path, sizeBytes: SIZE_BYTES }), { code: 'PMQ_ERR_REGION_LOCKED' },
    'a second handle in the same process is refused too');
  held.close();
  const native = (code: string) => ({ name: 'NativeError', code, reason: /.+/ });
  t.throws(() => Region.open({ path, sizeBytes: 2 * SIZE_BYTES }),
    native('PMQ_ERR_REGION_SIZE_MISMATCH'));
  t.throws(() => Region.open({ path, sizeBytes: 2 * SIZE_BYTES, mode: 'open' }),
    native('PMQ_ERR_REGION_SIZE_MISMATCH'));
  t.throws(() => Region.open({ path, sizeBytes: SIZE_BYTES, mode: 'create-new' }),
    native('PMQ_ERR_REGION_EXISTS'));
  t.throws(() => Region.open({ path: join(dir, 'missing'), mode: 'open' }),
    native('PMQ_ERR_REGION_NOT_FOUND'));
  t.throws(() => Region.open({ path: join(dir, 'no', 'such', 'r.region'), sizeBytes: SIZE_BYTES }),
    native('PMQ_ERR_REGION_NO_DIR'));
  mkdirSync(join(dir, 'sub'));
  t.throws(() => Region.open({ path: join(dir, 'sub'), sizeBytes: SIZE_BYTES }),
    native('PMQ_ERR_REGION_IS_DIR'));
  t.throws(() => Region.open({ path: join(dir, 'sub'), mode: 'open' }),
    native('PMQ_ERR_REGION_IS_DIR'));
  writeFileSync(join(dir, 'odd'), new Uint8Array(100));
  t.throws(() => Region.open({ path: join(dir, 'odd'), mode: 'open' }),
    native('PMQ_ERR_REGION_SIZE_MISMATCH'), 'a file whose size is no region size');
  t.ok(existsSync(path), 'failed opens leave the existing region alone');
});

const shmStats = statfsSync('/dev/shm');
const noLimit = shmStats.blocks === 0 ? '/dev/shm has no size limit' : false;
t.test(
  'no space surfaces at open (posix_fallocate) and leaves nothing behind',
  { skip: noLimit },
  async (t) => {
    const stats = shmStats;
    const GiB = 1024 ** 3;
    // More than the whole file system: tmpfs refuses this at once, without filling memory.
    const wanted = stats.blocks * stats.bsize + GiB;
    const sizeBytes = Math.ceil(wanted / REGION_PAGE_SIZE_BYTES) * REGION_PAGE_SIZE_BYTES;
    const path = join(tempDir(t, '/dev/shm'), 'huge.region');
    t.throws(() => Region.open({ path, sizeBytes }), { code: 'PMQ_ERR_REGION_NO_SPACE' });
    t.notOk(existsSync(path), 'the half-created file is removed');
  },
);

t.test('arguments are validated in TS first (ArgumentError)', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const argument = { code: 'PMQ_ERR_ARGUMENT' };
  const bad: unknown[] = [
    { path, sizeBytes: 0 }, { path, sizeBytes: 100 }, { path, sizeBytes: -SIZE_BYTES },
    { path, sizeBytes: 1.5 * REGION_PAGE_SIZE_BYTES }, { path: '', sizeBytes: SIZE_BYTES },
    { path: 'a\0b', sizeBytes: SIZE_BYTES }, { path, sizeBytes: SIZE_BYTES, mode: 'append' },
    { path, sizeBytes: 2 ** 60 }, null,
  ];
  for (const opts of bad) {
    t.throws(() => Region.open(opts as Parameters<typeof Region.open>[0]), argument);
  }
  t.notOk(existsSync(path), 'nothing was created');
  const region = Region.open({ path, sizeBytes: SIZE_BYTES });
  for (const [address, sizeBytes] of [[-1, 1], [0, SIZE_BYTES + 1], [SIZE_BYTES, 1],
    [1.5, 1], [0, -1], [Number.NaN, 1], [2 ** 53, 0]] as const) {
    t.throws(() => region.persist(address, sizeBytes), argument);
    t.throws(() => region.flush(address, sizeBytes), argument);
    await t.rejects(region.persistAsync(address, sizeBytes), argument);
  }
  region.persist(SIZE_BYTES, 0);
  t.throws(() => region.copyPersist(0, [1, 2] as unknown as Uint8Array), argument);
  t.throws(() => region.copyPersist(0, new Uint8Array(4), 5), argument);
  t.throws(() => region.copyPersist(0, new Uint8Array(4), 1, 4), argument);
  t.throws(() => region.copyPersist(SIZE_BYTES - 2, new Uint8Array(4)), argument);
  region.close();
});
