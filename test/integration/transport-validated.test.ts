// The validated data path between two real processes: the peer (storage side) exposes memory
// and a grant table; this process writes and reads through grants. Every rejected request
// leaves the storage memory unchanged (checked by hashing it in the peer).
import '../helpers/ucx-env.js';  // first: before the addon loads
import t, { type Test } from 'tap';

import { Transport, type Endpoint } from '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer, type Peer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const MEMORY_BYTES = 40 << 20;
const SIZES = [1, 100, 4096, 65536, 1 << 20, 16 << 20];

async function setUp(t: Test, tls: string):
  Promise<{ peer: Peer; transport: Transport; ep: Endpoint }> {
  const peer = await spawnPeer(testOptions(tls), t);
  const transport = Transport.open(testOptions(tls));
  const ep = await connectRetrying(transport, peer.host, peer.port);
  await peer.call('memory', { bytes: MEMORY_BYTES, seed: 99 });
  const grants: [number, number, number, number, string][] = [
    [1, 1, 1 << 20, 18 << 20, 'write'], [2, 1, 1 << 20, 18 << 20, 'read'],
    [3, 1, 20 << 20, 1 << 20, 'write'], [4, 1, 22 << 20, 1 << 20, 'write'],
    [5, 1, 24 << 20, 1 << 20, 'write'],
  ];
  for (const [grantId, epoch, address, length, direction] of grants) {
    await peer.call('grant', { grantId, epoch, address, length, direction });
  }
  return { peer, transport, ep };
}

async function rejected(t: Test, peer: Peer, attempt: () => Promise<void>, code: string,
  what: string): Promise<void> {
  const before = await peer.call('hash', { address: 0, length: MEMORY_BYTES });
  await t.rejects(attempt(), { code }, what);
  t.equal(await peer.call('hash', { address: 0, length: MEMORY_BYTES }), before,
    `${what}: storage memory unchanged`);
}

for (const tls of TRANSPORTS) {
  t.test(`validated access over ${tls}`, async (t) => {
    const { peer, transport, ep } = await setUp(t, tls);
    t.teardown(async () => { transport.close(); await peer.stop(); });
    const write = { id: 1, epoch: 1, key: 1 };
    const read = { id: 2, epoch: 1, key: 1 };

    for (const size of SIZES) {
      const address = (1 << 20) + 777;
      const src = pattern(size + 3, size);
      await transport.writeValidated(ep, write, address, src, 3, size);
      t.equal(await peer.call('hash', { address, length: size }), sha256(src, 3, size),
        `write ${size} B landed`);
      const dst = Buffer.alloc(size + 5);
      await transport.readValidated(ep, read, address, dst, 5, size);
      t.equal(sha256(dst, 5, size), sha256(src, 3, size), `read ${size} B back`);
      t.equal(sha256(dst, 0, 5), sha256(Buffer.alloc(5)), 'read wrote only its range');
    }

    const small = pattern(4096, 1);
    const big = pattern(1 << 20, 2);
    await rejected(t, peer, () => transport.writeValidated(ep, write, (19 << 20) - 100, small,
      0, 4096),
      'PMQ_ERR_GRANT_OUT_OF_RANGE', 'eager write crossing the grant end');
    await rejected(t, peer, () => transport.writeValidated(ep, write, 0, big, 0, 1 << 20),
      'PMQ_ERR_GRANT_OUT_OF_RANGE', 'rendezvous write before the grant');
    await rejected(t, peer, () => transport.writeValidated(ep, read, 1 << 20, big, 0, 1 << 20),
      'PMQ_ERR_GRANT_DIRECTION', 'write through a read grant');
    await rejected(t, peer, () => transport.writeValidated(ep, { id: 99, epoch: 1, key: 1 },
      1 << 20, small,
      0, 4096), 'PMQ_ERR_GRANT_UNKNOWN', 'write through an unknown grant');
    await rejected(t, peer, () => transport.writeValidated(ep, { id: 3, epoch: 2, key: 1 },
      20 << 20, small,
      0, 4096), 'PMQ_ERR_GRANT_STALE_EPOCH', 'write with another epoch');

    await transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 }, 20 << 20, big, 0, 1 << 20);
    await peer.call('revoke', { grantId: 3 });
    await rejected(t, peer, () => transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 },
      20 << 20,
      big, 0, 1 << 20), 'PMQ_ERR_GRANT_REVOKED', 'rendezvous write after revocation');
    await rejected(t, peer, () => transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 },
      20 << 20, small,
      0, 4096), 'PMQ_ERR_GRANT_REVOKED', 'eager write after revocation');

    const dst = Buffer.alloc(1 << 20);
    await t.rejects(transport.readValidated(ep, read, 19 << 20, dst, 0, 4096),
      { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' }, 'read outside the grant');
    await t.rejects(transport.readValidated(ep, { id: 4, epoch: 1, key: 1 }, 22 << 20, dst, 0,
      4096),
      { code: 'PMQ_ERR_GRANT_DIRECTION' }, 'read through a write grant');
    t.equal(sha256(dst), sha256(Buffer.alloc(1 << 20)), 'rejected reads wrote nothing');

    await peer.call('epoch', { epoch: 2 });
    await rejected(t, peer, () => transport.writeValidated(ep, { id: 4, epoch: 1, key: 1 },
      22 << 20, small,
      0, 4096), 'PMQ_ERR_GRANT_STALE_EPOCH', 'write after the table epoch rose');
  });
}

t.test('revocation waits for a landing in flight', async (t) => {
  const { peer, transport, ep } = await setUp(t, 'sm,tcp');
  t.teardown(async () => { transport.close(); await peer.stop(); });
  const src = pattern(1 << 20, 5);
  const writes = [1, 2, 3, 4].map(() =>
    transport.writeValidated(ep, { id: 5, epoch: 1, key: 1 }, 24 << 20, src, 0, 1 << 20)
      .then(() => 'ok', (error: { code: string }) => error.code));
  await peer.call('revoke', { grantId: 5 });
  const after = await peer.call('hash', { address: 24 << 20, length: 1 << 20 });
  const outcomes = await Promise.all(writes);
  for (const outcome of outcomes) t.ok(['ok', 'PMQ_ERR_GRANT_REVOKED'].includes(outcome), outcome);
  t.equal(await peer.call('hash', { address: 24 << 20, length: 1 << 20 }), after,
    'nothing lands after revoke() resolved');
});

t.test('direct mode is refused on software lanes', async (t) => {
  for (const tls of TRANSPORTS) {
    const peer = await spawnPeer(testOptions(tls, { direct: true }), t);
    const transport = Transport.open(testOptions(tls));
    await connectRetrying(transport, peer.host, peer.port);
    const accepted = await peer.nextEvent('accepted');
    await peer.call('memory', { bytes: 1 << 20, seed: 1 });
    await peer.call('grant', { grantId: 1, epoch: 1, address: 0, length: 4096,
      direction: 'write' });
    await t.rejects(peer.call('directExport', { ep: accepted.ep, grantId: 1 }),
      { code: 'PMQ_ERR_DIRECT_UNSUPPORTED', message: /RDMA lanes/ },
      `${tls}: no key leaves the storage side`);
    transport.close();
    await peer.stop();
  }
});

t.test('the direct API refuses without direct: true', async (t) => {
  const peer = await spawnPeer(testOptions('tcp'), t);
  const transport = Transport.open(testOptions('tcp'));
  t.teardown(async () => { transport.close(); await peer.stop(); });
  const ep = await connectRetrying(transport, peer.host, peer.port);
  const accepted = await peer.nextEvent('accepted');
  await peer.call('memory', { bytes: 1 << 20, seed: 1 });
  await peer.call('grant', { grantId: 1, epoch: 1, address: 0, length: 4096,
    direction: 'write' });
  const refused = { code: 'PMQ_ERR_DIRECT_UNSUPPORTED', message: /direct: true/ };
  await t.rejects(peer.call('directExport', { ep: accepted.ep, grantId: 1 }), refused,
    'export refused by a storage side without direct: true');
  t.throws(() => transport.importDirectKey(ep, new Uint8Array(64), { address: 0, length: 4096 }),
    refused, 'import refused');
  t.throws(() => transport.flushDirect(ep), refused, 'flush refused');
  t.same(transport.stats().pendingOps, 0, 'nothing started');
});
