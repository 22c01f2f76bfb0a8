// The native grant table's session, key and readable-prefix checks (docs/native-transport.md,
// "Sessions, keys, readable bytes"). The storage side is a peer process; this process connects
// twice, and the peer binds the two endpoints to different sessions. A refusal for another
// session or a wrong key reads exactly like an unknown grant, and changes no byte.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t, { type Test } from 'tap';

import { ArgumentError } from '../../common/errors.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer, type Peer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const MEMORY_BYTES = 4 << 20;
const UNKNOWN = { code: 'PMQ_ERR_GRANT_UNKNOWN' };

interface Setup { peer: Peer; transport: Transport; a: Endpoint; b: Endpoint;
  peerA: number; peerB: number }

async function setUp(t: Test, tls: string): Promise<Setup> {
  const peer = await spawnPeer(testOptions(tls, { direct: true }), t);
  const transport = Transport.open(testOptions(tls));
  t.teardown(async () => { transport.close(); await peer.stop(); });
  const a = await connectRetrying(transport, peer.host, peer.port);
  const peerA = Number((await peer.nextEvent('accepted')).ep);
  const b = await connectRetrying(transport, peer.host, peer.port);
  const peerB = Number((await peer.nextEvent('accepted')).ep);
  await peer.call('memory', { bytes: MEMORY_BYTES, seed: 3 });
  // write grant 1 and read grant 2 of session 5; read grant 3 (page aligned) for direct export
  await peer.call('grant', { grantId: 1, epoch: 1, address: 0, length: 2 << 20,
    direction: 'write', session: 5, key: 77 });
  await peer.call('grant', { grantId: 2, epoch: 1, address: 0, length: 2 << 20,
    direction: 'read', session: 5, key: 99, readableBytes: 4096 });
  await peer.call('grant', { grantId: 3, epoch: 1, address: 2 << 20, length: 1 << 20,
    direction: 'read', session: 5, key: 11 });
  return { peer, transport, a, b, peerA, peerB };
}

async function unchanged(t: Test, peer: Peer, attempt: () => Promise<void>, what: string,
  expected: { code: string } = UNKNOWN): Promise<void> {
  const before = await peer.call('hash', { address: 0, length: MEMORY_BYTES });
  await t.rejects(attempt(), expected, what);
  t.equal(await peer.call('hash', { address: 0, length: MEMORY_BYTES }), before,
    `${what}: storage memory unchanged`);
}

for (const tls of TRANSPORTS) {
  t.test(`${tls}: grants are bound to a session and a key`, async (t) => {
    const { peer, transport, a, b, peerA, peerB } = await setUp(t, tls);
    const write = { id: 1, epoch: 1, key: 77 };
    const small = pattern(4096, 1);
    const big = pattern(1 << 20, 2);

    await unchanged(t, peer, () => transport.writeValidated(a, write, 0, small, 0, 4096),
      'eager write on an unbound endpoint');
    await peer.call('bindSession', { ep: peerA, session: 5 });
    await peer.call('bindSession', { ep: peerB, session: 6 });
    await transport.writeValidated(a, write, 0, small, 0, 4096);
    await transport.writeValidated(a, write, 8192, big, 0, 1 << 20);
    t.equal(await peer.call('hash', { address: 8192, length: 1 << 20 }), sha256(big),
      'the bound session writes');

    await unchanged(t, peer, () => transport.writeValidated(b, write, 0, small, 0, 4096),
      'eager write from another session');
    await unchanged(t, peer, () => transport.writeValidated(b, write, 0, big, 0, 1 << 20),
      'rendezvous write from another session');
    await unchanged(t, peer, () => transport.writeValidated(a, { ...write, key: 78 }, 0, small,
      0, 4096), 'eager write with a wrong key');
    await unchanged(t, peer, () => transport.writeValidated(a, { ...write, key: 76 }, 0, big,
      0, 1 << 20), 'rendezvous write with a wrong key');
    await unchanged(t, peer, () => transport.writeValidated(a, { ...write, id: 1234 }, 0, small,
      0, 4096), 'an unknown grant (the same answer)');
    const dst = Buffer.alloc(4096);
    await t.rejects(transport.readValidated(b, { id: 2, epoch: 1, key: 99 }, 0, dst, 0, 4096),
      UNKNOWN, 'read from another session');
    await t.rejects(transport.readValidated(a, { id: 2, epoch: 1, key: 98 }, 0, dst, 0, 4096),
      UNKNOWN, 'read with a wrong key');
    t.equal(sha256(dst), sha256(Buffer.alloc(4096)), 'refused reads wrote nothing');
    await peer.call('revoke', { grantId: 1 });
    await unchanged(t, peer, () => transport.writeValidated(b, write, 0, small, 0, 4096),
      'a revoked grant of another session still looks unknown');
  });

  t.test(`${tls}: reads stay below the readable prefix`, async (t) => {
    const { peer, transport, a, peerA } = await setUp(t, tls);
    await peer.call('bindSession', { ep: peerA, session: 5 });
    const read = { id: 2, epoch: 1, key: 99 };
    const dst = Buffer.alloc(8192);
    await transport.readValidated(a, read, 0, dst, 0, 4096);
    t.equal(sha256(dst, 0, 4096), await peer.call('hash', { address: 0, length: 4096 }),
      'a read inside the readable prefix');
    await t.rejects(transport.readValidated(a, read, 4000, dst, 0, 200),
      { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' }, 'a read crossing the readable prefix');
    await t.rejects(transport.readValidated(a, read, 4096, dst, 0, 4096),
      { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' }, 'a read past the readable prefix');
    await peer.call('readable', { grantId: 2, readableBytes: 1 << 20 });
    await transport.readValidated(a, read, 4096, dst, 0, 8192);
    t.equal(sha256(dst), await peer.call('hash', { address: 4096, length: 8192 }),
      'allowed once setGrantReadable raised the prefix');
    const big = Buffer.alloc(2 << 20);
    await t.rejects(transport.readValidated(a, read, 0, big, 0, (1 << 20) + 1),
      { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' }, 'still bounded by the new prefix (rendezvous)');
    await t.rejects(peer.call('readable', { grantId: 2, readableBytes: 4096 }),
      { message: /readableBytes/ },
      'the readable prefix never shrinks');
  });

  t.test(`${tls}: a direct key is exported to the grant's session only`, async (t) => {
    const { peer, peerA, peerB } = await setUp(t, tls);
    await peer.call('bindSession', { ep: peerA, session: 5 });
    await peer.call('bindSession', { ep: peerB, session: 6 });
    await t.rejects(peer.call('directExport', { ep: peerB, grantId: 3, key: 11 }), UNKNOWN,
      'refused for another session, as an unknown grant');
    await t.rejects(peer.call('directExport', { ep: peerA, grantId: 3, key: 12 }), UNKNOWN,
      'refused with a wrong key');
    await t.rejects(peer.call('directExport', { ep: peerA, grantId: 3, key: 11 }),
      { code: 'PMQ_ERR_DIRECT_UNSUPPORTED' },
      'the right session and key get as far as the lane check (software lanes here)');
  });
}

t.test('session, key and readable arguments are checked in TS', async (t) => {
  const transport = Transport.open(testOptions('tcp'));
  t.teardown(() => transport.close());
  transport.attachMemory(new Uint8Array(8192));
  const grant = { id: 1, epoch: 1, address: 0, length: 4096, direction: 'read' as const,
    session: 1, key: 5 };
  t.throws(() => transport.createGrant({ ...grant, key: 0 }), ArgumentError, 'key ≥ 1');
  t.throws(() => transport.createGrant({ ...grant, session: -1 }), ArgumentError);
  t.throws(() => transport.createGrant({ ...grant, readableBytes: 4097 }), ArgumentError,
    'readable ≤ length');
  t.throws(() => transport.createGrant({ ...grant, direction: 'write', readableBytes: 100 }),
    ArgumentError, 'a write grant is readable over its whole length');
  transport.createGrant({ ...grant, readableBytes: 100 });
  transport.setGrantReadable(1, 200);
  t.throws(() => transport.setGrantReadable(1, 100), ArgumentError, 'only grows');
  t.throws(() => transport.setGrantReadable(1, 4097), ArgumentError, 'at most the length');
  transport.createGrant({ ...grant, id: 2, direction: 'write' });
  t.throws(() => transport.setGrantReadable(2, 4096), ArgumentError, 'read grants only');
  t.throws(() => transport.bindSession(9 as Endpoint, 1), { code: 'PMQ_ERR_ENDPOINT_CLOSED' });
  t.throws(() => transport.sendRaw(9 as Endpoint, new Uint8Array(1), new Uint8Array(1)),
    { code: 'PMQ_ERR_ENDPOINT_CLOSED' });
  t.throws(() => Transport.open({ messageBytesMax: -1 }), ArgumentError);
});
