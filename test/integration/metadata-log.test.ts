// The metadata log in a storage region (storage-node/metadata-log.ts; docs/region-format.md,
// "The metadata log"), on a real region in /dev/shm: snapshot first, changes after it, a full
// segment answered PMQ_ERR_METADATA_FULL, a snapshot rotating into a new segment and freeing
// the old, a segment a crash left allocated but empty reused, and every value read back
// (in bounded reads) after the region is closed and opened again.
import { join } from 'node:path';

import t, { type Test as Tap } from 'tap';

import { frameValues, METADATA_TOPIC, unframeValues } from '../../common/metadata-log.js';
import { Region } from '../../native/region.js';
import { MetadataLog } from '../../storage-node/metadata-log.js';
import { RegionStore } from '../../storage-node/region-store.js';
import { tempDir } from '../fixtures/region-helpers.js';

const KIB = 1024;
const SEGMENT_BYTES = 64 * KIB;
const text = new TextEncoder();

function values(read: ReturnType<MetadataLog['read']>): string[] {
  const decoder = new TextDecoder();
  return (unframeValues(read.framed) ?? []).map((value) => decoder.decode(value));
}

const metaSegments = (store: RegionStore): number =>
  store.segments().filter((s) => s.state !== 'free' && s.topic === METADATA_TOPIC).length;

/** A new 1 MiB region in /dev/shm at epoch 1 (closed at teardown) and a log over it. */
async function freshLog(t: Tap): Promise<{ path: string; region: Region; store: RegionStore;
  log: MetadataLog }> {
  const path = join(tempDir(t, '/dev/shm'), 'node.region');
  const region = Region.open({ path, sizeBytes: 1024 * KIB, mode: 'create-new' });
  t.teardown(() => { if (!region.closed) region.close(); });
  const store = await RegionStore.format(region, { nodeId: 1, segmentSizeBytes: SEGMENT_BYTES });
  await store.raiseEpoch(1, 9);
  return { path, region, store, log: new MetadataLog(store) };
}

t.test('snapshot first, changes, rotation, reuse, reopen', async (t) => {
  const fresh = await freshLog(t);
  const { path } = fresh;
  let { region, store, log } = fresh;

  t.same(values(log.read(0)), [], 'an empty log reads empty');
  await t.rejects(log.append(1, text.encode('c0'), false), { code: 'PMQ_ERR_METADATA_SNAPSHOT' },
    'a change into an empty log is refused');
  await log.append(1, text.encode('snap-1'), true);
  const changes: string[] = [];
  for (let i = 0; ; i += 1) {
    const value = `change-${i}-${'x'.repeat(900)}`;
    try {
      await log.append(1, text.encode(value), false);
    } catch (error) {
      t.match(error, { code: 'PMQ_ERR_METADATA_FULL', retriable: true }, 'a full segment says so');
      break;
    }
    changes.push(value);
  }
  t.ok(changes.length > 50, `${changes.length} changes fit a 64 KiB segment`);
  t.same(values(log.read(0)), ['snap-1', ...changes], 'snapshot, then every change in order');
  t.same(values(log.read(10)), changes.slice(9), 'read from a record index');

  await log.append(1, text.encode('snap-2'), true);
  t.equal(metaSegments(store), 1, 'the snapshot rotated: the old segment is freed');
  t.same(values(log.read(0)), ['snap-2']);

  // A crash after allocating the next segment, before its snapshot was durable: the log still
  // reads from the old one, and the next snapshot reuses the empty segment.
  const current = store.segments().find((s) => s.state !== 'free' && s.topic === METADATA_TOPIC)!;
  await store.allocateSegment({ topic: METADATA_TOPIC, partition: 0,
    chainPosition: current.chainPosition + 1, baseOffset: current.watermark.offsetLast + 1,
    epoch: 1 });
  t.same(values(log.read(0)), ['snap-2'], 'an empty newer segment is not the log');
  await log.append(1, text.encode('c-after'), false);
  await log.append(1, text.encode('snap-3'), true);
  t.equal(metaSegments(store), 1, 'the empty segment was reused, the old one freed');
  await log.append(1, text.encode('c-last'), false);

  region.close();
  region = Region.open({ path, mode: 'open' });
  const reopened = region;
  t.teardown(() => { if (!reopened.closed) reopened.close(); });
  store = RegionStore.open(region);
  log = new MetadataLog(store);
  t.same(values(log.read(0)), ['snap-3', 'c-last'], 'durable across close and open');
  for (const segment of store.segments()) {
    if (segment.state !== 'free') store.verifySegmentData(segment.segmentIndex);
  }
  t.pass('the metadata segments are valid RecordBatch v2 data');
});

t.test('framing: values round-trip; a length past the end is refused', async (t) => {
  const framed = frameValues([text.encode('a'), new Uint8Array(0), text.encode('snapshot')]);
  t.same((unframeValues(framed) ?? []).map((v) => new TextDecoder().decode(v)),
    ['a', '', 'snapshot']);
  t.equal(unframeValues(framed.subarray(0, framed.byteLength - 1)), null, 'value cut short');
  t.equal(unframeValues(framed.subarray(0, 3)), null, 'length cut short');
  t.same(unframeValues(new Uint8Array(0)), [], 'nothing framed');
});

t.test('a value too large for a segment is refused with what to do', async (t) => {
  const { store, log } = await freshLog(t);
  await t.rejects(log.append(1, new Uint8Array(SEGMENT_BYTES), true),
    { code: 'PMQ_ERR_LIMIT', message: /--segment-size/ });
  t.equal(metaSegments(store), 0, 'nothing allocated for it');
});
