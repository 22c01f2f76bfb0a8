/**
 * Writing a hole filler (broker-node/filler.ts) into the storage node: a broker-owned write
 * grant over exactly the hole, validated writes of the control batch (in chunks the transport
 * accepts), then the grant's revocation. The caller has revoked the late producer's grant
 * first, so nothing else can land in the hole afterwards.
 */
import { BROKER_SESSION, randomGrantKey } from '../common/auth/keys.js';
import type { Fill } from './sequencer.js';
import { encodeFiller } from '../common/record-batch/filler.js';
import type { PartitionDeps, SegmentPlace } from './partition.js';
import { revokeGrant } from './partition.js';

/** Below the transport's default request limit (16 MiB). */
const FILL_CHUNK_BYTES_MAX = 8 * 1024 * 1024;

export async function fillPartitionHole(deps: PartitionDeps, place: SegmentPlace, fill: Fill):
  Promise<void> {
  const { pool, transport } = deps;
  const grantId = deps.grantId();
  const key = randomGrantKey();
  await pool.request(place.nodeId, 'grantCreate', { grantId, session: BROKER_SESSION, key,
    segmentIndex: place.segmentIndex, position: fill.position, sizeBytes: fill.bytes,
    direction: 'write' });
  try {
    // baseOffset 0: the storage node patches the real one in before it persists the fill.
    const filler = encodeFiller(fill.bytes, fill.records, 0);
    const grant = { id: grantId, epoch: pool.epoch, key };
    for (let done = 0; done < filler.byteLength; done += FILL_CHUNK_BYTES_MAX) {
      const length = Math.min(FILL_CHUNK_BYTES_MAX, filler.byteLength - done);
      await transport.writeValidated(pool.endpoint(place.nodeId), grant,
        place.address + fill.position + done, filler, done, length);
    }
  } finally {
    await revokeGrant(pool, place.nodeId, grantId).catch(() => undefined);
  }
}
