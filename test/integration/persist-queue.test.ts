// PersistQueue on a real region store: one update per segment at a time, requests that arrive
// together coalesce into one update (the entry's generation counts updates), covered requests
// answer at once, a failing target does not take the others down, seal revokes write grants.
import { join } from 'node:path';

import t from 'tap';

import { Region } from '../../native/region.js';
import type { GrantRegistry } from '../../storage-node/grant-registry.js';
import { PersistQueue, type PersistRequest } from '../../storage-node/persist-queue.js';
import { RegionStore } from '../../storage-node/region-store.js';
import { tempDir, type Teardown } from '../fixtures/region-helpers.js';

const KIB = 1024;

async function setup(t: Teardown) {
  const region = Region.open({ path: join(tempDir(t, '/dev/shm'), 'queue.region'),
    sizeBytes: 1024 * KIB, mode: 'create-new' });
  t.teardown(() => { if (!region.closed) region.close(); });
  const store = await RegionStore.format(region, { nodeId: 1, segmentSizeBytes: 64 * KIB });
  await store.allocateSegment({ topic: 't', partition: 0, chainPosition: 0, baseOffset: 10,
    epoch: 0 });
  const revoked: [number, string | undefined][] = [];
  const grants = { revokeSegment: async (index: number, direction?: string) => {
    revoked.push([index, direction]);
  }, revokeWritesEndingBy: async (index: number) => {
    revoked.push([index, 'ending']);
  }, raiseWriteFloor: () => undefined, raiseReadable: () => undefined,
  } as unknown as GrantRegistry;
  return { store, queue: new PersistQueue(store, grants), revoked };
}

/** Up to n × 100 bytes: n pieces of one record each (nothing written: control batches). */
const at = (n: number, seal = false): PersistRequest =>
  ({ segmentIndex: 0, position: n * 100, offsetLast: 9 + n, seal, epoch: 0,
    patches: Array.from({ length: n }, (_, i) => ({ position: i * 100, baseOffset: 10 + i,
      bytes: 100, records: 1 })) });

t.test('requests of one turn coalesce into one update', async (t) => {
  const { store, queue } = await setup(t);
  const generation = store.segment(0).generation;
  const results = await Promise.all([3, 1, 5, 2, 4].map((n) => queue.persist(at(n))));
  t.same(results.map((r) => r.position), [300, 100, 500, 200, 400], 'each answer echoes');
  t.equal(store.segment(0).generation, generation + 1, 'one entry update for five requests');
  t.match(store.segment(0).watermark, { position: 500, offsetLast: 14 });
  t.equal(queue.busy(0), false);
});

t.test('a request arriving mid-update waits and runs next', async (t) => {
  const { store, queue } = await setup(t);
  const generation = store.segment(0).generation;
  const first = queue.persist(at(1));
  await Promise.resolve();
  await Promise.resolve(); // the first round has started
  const second = queue.persist(at(2));
  t.equal(queue.busy(0), true);
  await Promise.all([first, second]);
  t.equal(store.segment(0).generation, generation + 2, 'two updates, one after the other');
  t.match(await queue.persist(at(1)), { position: 100 }, 'covered: answered without an update');
  t.equal(store.segment(0).generation, generation + 2);
});

t.test('a bad target fails alone; the others still persist', async (t) => {
  const { store, queue } = await setup(t);
  const bad = { ...at(9), offsetLast: 9 }; // bytes without records: invalid
  const [badResult, good] = await Promise.allSettled([queue.persist(bad), queue.persist(at(2))]);
  t.match(badResult, { status: 'rejected', reason: { code: 'PMQ_ERR_WATERMARK_INVALID' } });
  t.match(good, { status: 'fulfilled', value: { position: 200 } });
  t.match(store.segment(0).watermark, { position: 200 });
});

t.test('seal revokes the write grants, then seals', async (t) => {
  const { store, queue, revoked } = await setup(t);
  t.match(await queue.persist(at(3, true)), { sealed: true, position: 300 });
  t.same(revoked, [[0, 'write']]);
  t.equal(store.segment(0).state, 'sealed');
  await t.rejects(queue.persist(at(4)), { code: 'PMQ_ERR_SEGMENT_STATE' });
});
