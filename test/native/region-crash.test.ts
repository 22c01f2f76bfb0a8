// Region across processes: bytes a child persisted survive its SIGKILL, and a live child's
// lock keeps everyone else out until it dies.
import { join } from 'node:path';
import t from 'tap';

import { NativeError } from '../../common/errors.js';
import { REGION_PAGE_SIZE_BYTES, Region } from '../../native/region.js';
import { BASES, spawnWriter, tempDir } from '../fixtures/region-helpers.js';
import { regionPattern } from '../fixtures/region-pattern.js';

const SIZE_BYTES = 64 * REGION_PAGE_SIZE_BYTES;

for (const base of BASES) {
  for (const action of ['write', 'copy'] as const) {
    t.test(`persisted bytes survive SIGKILL (${action}, ${base.name})`, async (t) => {
      const path = join(tempDir(t, base.dir()), 'r.region');
      const address = 3 * REGION_PAGE_SIZE_BYTES + 123;
      const sizeBytes = 10_000;
      const seed = action === 'write' ? 11 : 12;
      const child = spawnWriter(t, [path, SIZE_BYTES, action, address, sizeBytes, seed]);
      t.match(await child.line, /^persisted (shm|file|dax) /);
      await child.kill();
      t.equal(child.process.signalCode, 'SIGKILL', 'the writer died without closing');
      const region = Region.open({ path, mode: 'open' });
      t.same(region.view(address, sizeBytes),
        regionPattern(sizeBytes, seed));
      t.ok(region.view(0, address).every((b) => b === 0), 'nothing else written');
      region.close();
    });
  }
}

// libpmem2 honours PMEM2_FORCE_GRANULARITY: this runs the byte and cache-line code paths
// (persist_fn, memmove with flags) and the 'dax' classification on a machine without PMEM.
for (const granularity of ['byte', 'cache_line'] as const) {
  t.test(`forced ${granularity} granularity: reported as dax, data survives`, async (t) => {
    const path = join(tempDir(t, BASES[1]?.dir() ?? '/tmp'), 'r.region');
    const env = { PMEM2_FORCE_GRANULARITY: granularity.toUpperCase() };
    const action = granularity === 'byte' ? 'write' : 'copy'; // persist_fn, then memmove_fn
    const child = spawnWriter(t, [path, SIZE_BYTES, action, 100, 5000, 13], env);
    t.equal(await child.line, `persisted dax ${granularity.replace('_', '-')}`);
    await child.kill();
    const region = Region.open({ path, mode: 'open' });
    t.same(region.view(100, 5000), regionPattern(5000, 13));
    region.close();
  });
}

t.test('a handle collected while open is reported and its mapping stays usable', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const child = spawnWriter(t, [path, SIZE_BYTES, 'leak']);
  t.equal(await child.line, 'leaked 42 null', 'the kept view works after the handle is gone');
  await child.closed;
  t.match(child.stderr(), /garbage-collected without regionClose/, 'the leak is reported');
  t.equal(child.process.exitCode, 0);
});

t.test('a live process holds the lock; its death releases it', async (t) => {
  const path = join(tempDir(t, '/dev/shm'), 'r.region');
  const child = spawnWriter(t, [path, SIZE_BYTES, 'hold']);
  t.equal(await child.line, 'ready shm');
  let refused: unknown = null;
  try {
    Region.open({ path, mode: 'open' }).close();
  } catch (error) {
    refused = error;
  }
  t.type(refused, NativeError);
  t.match(refused, { code: 'PMQ_ERR_REGION_LOCKED', message: /another live process/ });
  await child.kill();
  const region = Region.open({ path, mode: 'open' });
  t.equal(region.sizeBytes, SIZE_BYTES);
  region.close();
});
