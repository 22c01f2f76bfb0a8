// storage-node/grant-registry.ts over the real native grant table: revoked grants beyond the
// remembered limit are forgotten in both tables (bounded memory with a grant per batch), a
// forgotten id can never be created again, and live grants are never forgotten.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t from 'tap';

import { Transport } from '../../native/transport.js';
import { GrantRegistry } from '../../storage-node/grant-registry.js';
import { testOptions } from '../helpers/transport-config.js';

t.test('revoked grants beyond the limit are forgotten; their ids stay used', async (t) => {
  const transport = Transport.open(testOptions('tcp'));
  t.teardown(() => transport.close());
  transport.attachMemory(new Uint8Array(1 << 20));
  const registry = new GrantRegistry(transport, 3);
  const grant = (grantId: number) => ({ grantId, epoch: 0, segmentIndex: 0,
    address: grantId * 100, sizeBytes: 100, direction: 'write' as const, session: 1, key: 1,
    readableBytes: 100 });
  for (let id = 1; id <= 10; id += 1) registry.create(grant(id));
  registry.create({ ...grant(11), direction: 'read' });
  for (let id = 1; id <= 8; id += 1) await registry.revoke(id);
  t.equal(registry.liveCount, 3, 'grants 9, 10 and 11 live');
  t.equal(registry.rememberedCount, 6, 'three live + the three newest revoked');
  t.equal(registry.find(5), undefined, 'grant 5 forgotten');
  t.match(registry.find(6), { revoked: true }, 'grant 6 remembered as revoked');
  t.match(registry.find(9), { revoked: false });
  t.throws(() => registry.create(grant(2)), { code: 'PMQ_ERR_GRANT_EXISTS' },
    'a forgotten id is never created again');
  t.throws(() => transport.createGrant({ id: 4, epoch: 0, address: 0, length: 1,
    direction: 'write', session: 1, key: 1 }), /never reused/, 'nor in the native table');
  await registry.revokeSegment(0);
  t.equal(registry.liveCount, 0);
  t.equal(registry.rememberedCount, 3, 'still only the newest three revoked');
  registry.create(grant(12));
  t.equal(registry.liveCount, 1, 'a new id is fine');
});
