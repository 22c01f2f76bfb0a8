// Region views at the edges (issue 12): a sparse region just over 8 GiB (above V8's 4 GiB
// ArrayBuffer cap, on an ordinary file in a temp dir, removed in teardown). The last byte, a
// range across the 4 GiB boundary (the same bytes through two windows and in the file), the
// longest view, ranges refused, views empty after close; and a transport attached by the
// handle writing above 4 GiB through UCX, with close refused while it is attached.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { REGION_LIMITS } from '../../common/limits.js';
import { REGION_PAGE_SIZE_BYTES, Region } from '../../native/region.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { connectRetrying, testOptions } from '../helpers/transport-config.js';
import { regionPattern } from '../fixtures/region-pattern.js';

const GIB = 1024 ** 3;
const SIZE_BYTES = 8 * GIB + 4 * REGION_PAGE_SIZE_BYTES;
const VIEW_MAX = REGION_LIMITS.viewBytesMax;
const argument = { code: 'PMQ_ERR_ARGUMENT' };

function openRegion(t: Test): Region {
  const dir = mkdtempSync(join(tmpdir(), 'pmq-region-views-'));
  const region = Region.open({ path: join(dir, 'r.region'), sizeBytes: SIZE_BYTES,
    mode: 'create-new', sparse: true });
  t.teardown(() => {
    if (!region.closed) region.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return region;
}

/** The file's bytes at `address`, read with pread (not through the mapping). */
function fileBytes(path: string, address: number, sizeBytes: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const bytes = new Uint8Array(sizeBytes);
    readSync(fd, bytes, 0, sizeBytes, address);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

t.test('views reach every byte, across 4 GiB, and nothing beyond the region', async (t) => {
  const region = openRegion(t);
  t.equal(region.sizeBytes, SIZE_BYTES);
  const last = region.view(SIZE_BYTES - 1, 1);
  t.equal(last.byteLength, 1);
  last[0] = 0xab;
  await region.persistAsync(SIZE_BYTES - 1, 1);
  t.same(fileBytes(region.path, SIZE_BYTES - 1, 1), Uint8Array.of(0xab), 'the last byte');
  t.equal(region.view(SIZE_BYTES, 0).byteLength, 0, 'an empty view at the end');
  t.throws(() => region.view(SIZE_BYTES - 1, 2), argument, 'one byte past the end');
  t.throws(() => region.view(SIZE_BYTES, 1), argument, 'at the end');
  t.throws(() => region.view(0, VIEW_MAX + 1), argument, 'longer than the longest view');
  t.throws(() => region.view(-1, 1), argument);
  t.throws(() => region.view(1.5, 1), argument);

  const boundary = 4 * GIB;
  const pattern = regionPattern(4096, 21);
  region.view(boundary - 2048, 4096).set(pattern);
  await region.persistAsync(boundary - 2048, 4096);
  t.same(fileBytes(region.path, boundary - 2048, 4096), pattern, 'across 4 GiB, in the file');
  const below = region.view(boundary - 2048, 2048);
  const above = region.view(boundary, 2048);
  t.not(below.buffer, above.buffer, 'two windows');
  t.same([...below, ...above], [...pattern], 'the same bytes through either window');
  region.fill(0x5c, boundary - 1, 2);
  t.same([...region.view(boundary - 2, 4)], [pattern[2046], 0x5c, 0x5c, pattern[2049]],
    'fill across 4 GiB');

  const longest = region.view(6 * GIB - 1, VIEW_MAX);
  t.equal(longest.byteLength, VIEW_MAX, 'the longest view, from anywhere');
  t.equal(region.view(SIZE_BYTES - VIEW_MAX, VIEW_MAX).byteLength, VIEW_MAX, 'up to the end');

  region.close();
  for (const view of [last, below, above, longest]) {
    t.equal(view.byteLength, 0, 'detached by close, not dangling');
  }
  t.throws(() => region.view(0, 1), { code: 'PMQ_ERR_REGION_CLOSED' });
});

t.test('a transport attached by the handle writes above 4 GiB; close waits for it',
  async (t) => {
    const region = openRegion(t);
    const storage = Transport.open(testOptions('tcp'));
    const client = Transport.open(testOptions('tcp'));
    t.teardown(() => { client.close(); storage.close(); });
    storage.attachRegion(region);
    t.throws(() => storage.attachRegion(region), argument, 'attached once');
    const address = SIZE_BYTES - 8192;  // the region's last pages, far above 4 GiB
    const grant = { id: 1, epoch: 1, key: 77 };
    storage.createGrant({ ...grant, address, length: 8192, direction: 'write', session: 5 });
    const accepted = new Promise<Endpoint>((resolve) => storage.on('accepted', resolve));
    const listening = storage.listen();
    const ep = await connectRetrying(client, listening.host, listening.port);
    storage.bindSession(await accepted, 5);
    const pattern = regionPattern(8192, 22);
    await client.writeValidated(ep, grant, address, pattern, 0, 8192);
    t.same(region.view(address, 8192), pattern, 'the write landed in the mapping');
    t.throws(() => region.close(), { code: 'PMQ_ERR_REGION_BUSY' },
      'no close under an attached transport');
    client.close();
    storage.close();
    region.close();
    t.ok(region.closed, 'closed once the transport is');
  });
