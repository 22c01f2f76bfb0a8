// The durable shadow test mode (native/region_shadow.h, docs/native-region.md "Durable
// shadow"): with PMQ_REGION_DURABLE_SHADOW set at open, every persist path copies whole
// 64-byte lines into the shadow file and nothing else reaches it; unset, no file appears.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

import { REGION_PAGE_SIZE_BYTES, Region } from '../../native/region.js';
import { BASES, tempDir } from '../fixtures/region-helpers.js';

const SIZE_BYTES = 4 * REGION_PAGE_SIZE_BYTES;
const ENV = 'PMQ_REGION_DURABLE_SHADOW';

function withShadow<T>(path: string | undefined, open: () => T): T {
  const before = process.env[ENV];
  if (path === undefined) delete process.env[ENV];
  else process.env[ENV] = path;
  try {
    return open();
  } finally {
    if (before === undefined) delete process.env[ENV];
    else process.env[ENV] = before;
  }
}

const fill = (region: Region, address: number, sizeBytes: number, value: number): void => {
  region.fill(value, address, sizeBytes);
};

for (const base of BASES) {
  t.test(`persist paths reach the shadow, plain stores do not (${base.name})`, async (t) => {
    const dir = tempDir(t, base.dir());
    const shadowPath = join(dir, 'r.shadow');
    const path = join(dir, 'r.region');
    const seed = Region.open({ path, sizeBytes: SIZE_BYTES, mode: 'create-new' });
    fill(seed, 0, 64, 7); // stored before the shadow mode: counts as durable at the next open
    seed.close();
    const region = withShadow(shadowPath, () => Region.open({ path, mode: 'open' }));
    const shadow = (): Uint8Array => new Uint8Array(readFileSync(shadowPath));
    t.equal(region.durableShadow, shadowPath, 'the region names its shadow');
    t.equal(shadow().byteLength, SIZE_BYTES, 'the shadow has the region size');
    t.equal(shadow()[0], 7, 'initialised from the region at open');
    fill(region, 1000, 10, 1);                      // stored only
    fill(region, 2000, 10, 2);
    region.persist(2005, 1);                        // one byte persisted: its whole line
    fill(region, 3000, 200, 3);
    await region.persistAsync(3000, 200);
    fill(region, 5000, 64, 4);
    region.flush(5000, 64);                         // staged until drain
    const beforeDrain = shadow();
    fill(region, 6000, 64, 5);
    region.copyPersist(6000, new Uint8Array(64).fill(6));
    const image = shadow();
    t.equal(image[1000], 0, 'a store without persist is not in the shadow');
    t.same([image[2000], image[2009]], [2, 2], 'the persisted line is');
    t.equal(image[1984], region.view(1984, 1)[0], 'line start (1984) copied');
    t.ok(image.subarray(3000, 3200).every((b) => b === 3), 'persistAsync range');
    t.equal(beforeDrain[5000], 0, 'flush alone does not reach the shadow');
    t.equal(image[5000], 0, 'still staged');
    region.drain();
    t.equal(shadow()[5000], 4, 'drain copies the flushed lines');
    t.ok(image.subarray(6000, 6064).every((b) => b === 6), 'copyPersist');
    region.close();
  });
}

t.test('unset: no shadow, and the region refuses itself as shadow', async (t) => {
  const dir = tempDir(t, '/dev/shm');
  const path = join(dir, 'r.region');
  const region = withShadow(undefined, () => Region.open({ path, sizeBytes: SIZE_BYTES }));
  t.equal(region.durableShadow, null);
  region.persist(0, 64);
  region.close();
  t.same(readFileSync(path).byteLength, SIZE_BYTES);
  t.notOk(existsSync(join(dir, 'r.shadow')));
  t.throws(() => withShadow(path, () => Region.open({ path, mode: 'open' })),
    { code: 'PMQ_ERR_REGION_OPEN' });
  const again = Region.open({ path, mode: 'open' }); // nothing stayed open or locked
  again.close();
});
