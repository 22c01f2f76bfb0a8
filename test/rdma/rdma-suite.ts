/**
 * The RDMA suite: grants over a real verbs stack (UCX rc_verbs on soft-RoCE), run inside the
 * VM of ../shared/tools/rxe-vm by test/rdma/run-in-vm.sh (`npm run test:rdma`).
 *
 * No tap inside the VM (its startup alone takes minutes under an emulated CPU): checks.ts prints
 * `ok N - ...` / `not ok N - ...` lines and a last line `rdma: P passed, F failed`; exits 1 on
 * any failure. Every check is bounded in time.
 * A storage peer (test/fixtures/transport-peer.ts) runs in its own process, listens on the rxe
 * address and exposes a region file; this process is the client. Memory checks hash the
 * peer's memory before and after each refused access.
 *   PMQ_RDMA_HOST (198.18.0.1)  PMQ_RDMA_TLS (rc_verbs)  PMQ_RDMA_NET_DEVICES (UCX default)
 *   PMQ_RDMA_PEER_ENV  JSON object of extra environment for the storage peer (experiments,
 *                      e.g. UCX's memory hooks back on: docs/native-transport.md, "Direct mode")
 */
import { rmSync } from 'node:fs';

import { Transport, type DirectKey, type Endpoint, type TransportOptions } from
  '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer, type Peer } from '../helpers/transport-peer.js';
import { check, expect, runSuite, say, within } from './checks.js';

const HOST = process.env.PMQ_RDMA_HOST ?? '198.18.0.1';
const OPTIONS: TransportOptions = {
  transports: process.env.PMQ_RDMA_TLS ?? 'rc_verbs',
  netDevices: process.env.PMQ_RDMA_NET_DEVICES ?? '',
  direct: true,
  keepaliveMs: 2000,       // an emulated CPU: generous, so slowness is not taken for death
  peerTimeoutMs: 60_000,
};
const RDMA_LANES = ['rc_verbs', 'rc_mlx5', 'dc_mlx5', 'rc', 'dc'];
const REGION_PATH = `/dev/shm/pmq-rdma-suite-${process.pid}`;
const MEMORY_BYTES = 4 << 20;
const KiB = 1024;
const MiB = 1024 * KiB;

// Grants: [id, address, length, direction]; all epoch 1, page aligned unless said otherwise.
const GRANTS: [number, number, number, 'read' | 'write'][] = [
  [1, 64 * KiB, 1 * MiB, 'write'], [2, 64 * KiB, 1 * MiB, 'read'],
  [3, 2 * MiB, 64 * KiB, 'write'],                   // revoked in validated mode
  [5, 2 * MiB + 512 * KiB, 64 * KiB, 'write'],       // direct: inside / outside
  [6, 3 * MiB, 64 * KiB, 'write'],                   // direct: revoked
  [7, 3 * MiB + 512 * KiB + 100, 4 * KiB, 'write'],  // not page aligned
];

async function refusedWith(attempt: Promise<unknown>, code: string): Promise<void> {
  const outcome = await attempt.then(() => 'resolved', (error: { code?: string }) =>
    String(error.code));
  expect(outcome === code, `expected ${code}, got ${outcome}`);
}

/** The client side of one connection, with its endpoint's failure observed. */
interface Client { ep: Endpoint; failed: Promise<string> }

async function connect(transport: Transport, peer: Peer): Promise<Client> {
  const ep = await within(60_000, 'connect', transport.connect(peer.host, peer.port));
  const failed = new Promise<string>((resolve) => {
    const onError = (failing: Endpoint, error: { code: string; message: string }): void => {
      if (failing !== ep) return;
      transport.off('error', onError);
      resolve(`${error.code}: ${error.message}`);
    };
    transport.on('error', onError);
  });
  return { ep, failed };
}

async function memoryHash(peer: Peer): Promise<unknown> {
  return within(30_000, 'hash', peer.call('hash', { address: 0, length: MEMORY_BYTES }));
}

async function validatedChecks(transport: Transport, peer: Peer, ep: Endpoint): Promise<void> {
  for (const size of [1, 4 * KiB, 256 * KiB]) {
    await check(`validated write + read of ${size} B inside a grant`, async () => {
      const address = 64 * KiB + 4 * KiB + 3;
      const src = pattern(size, size + 11);
      await transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, address, src, 0, size);
      expect(await peer.call('hash', { address, length: size }) === sha256(src),
        'storage bytes differ from the written ones');
      const dst = Buffer.alloc(size);
      await transport.readValidated(ep, { id: 2, epoch: 1, key: 1 }, address, dst, 0, size);
      expect(sha256(dst) === sha256(src), 'read back differs');
    });
  }
  const refusals: [string, () => Promise<void>, string][] = [
    ['validated write outside its grant', () => transport.writeValidated(ep, { id: 1, epoch: 1,
      key: 1 },
      64 * KiB + 1 * MiB - 100, pattern(4 * KiB, 1), 0, 4 * KiB), 'PMQ_ERR_GRANT_OUT_OF_RANGE'],
    ['validated write through a read grant', () => transport.writeValidated(ep,
      { id: 2, epoch: 1, key: 1 }, 64 * KiB, pattern(256 * KiB, 2), 0, 256 * KiB),
    'PMQ_ERR_GRANT_DIRECTION'],
    ['validated write after revocation', async () => {
      await peer.call('revoke', { grantId: 3 });
      await transport.writeValidated(ep, { id: 3, epoch: 1, key: 1 }, 2 * MiB, pattern(4 * KiB,
        3), 0,
        4 * KiB);
    }, 'PMQ_ERR_GRANT_REVOKED'],
    ['validated write with a stale epoch', () => transport.writeValidated(ep,
      { id: 1, epoch: 2, key: 1 }, 64 * KiB, pattern(4 * KiB, 4), 0, 4 * KiB),
    'PMQ_ERR_GRANT_STALE_EPOCH'],
  ];
  for (const [what, attempt, code] of refusals) {
    await check(`${what}: ${code}, storage memory unchanged`, async () => {
      const before = await memoryHash(peer);
      await refusedWith(attempt(), code);
      expect(await memoryHash(peer) === before, 'storage memory changed');
    });
  }
}

async function importKey(transport: Transport, peer: Peer, client: Client, acceptedEp: unknown,
  grantId: number, range: { address: number; length: number }): Promise<DirectKey> {
  const key = await peer.call('directExport', { ep: acceptedEp, grantId });
  return transport.importDirectKey(client.ep, Buffer.from(String(key), 'base64'), range);
}

/** Waits until the client's endpoint has failed (the NIC refused) and is closed. */
async function endpointFails(transport: Transport, client: Client,
  attempt: Promise<unknown>): Promise<string> {
  const outcome = await attempt.then(() => 'resolved', (error: { code?: string }) =>
    String(error.code));
  const failure = await within(60_000, 'endpoint error event', client.failed);
  expect(outcome !== 'resolved', 'the put and flush completed');
  expect(!transport.openEndpoints().includes(client.ep), 'endpoint still open');
  return `${outcome}; ${failure}`;
}

async function directChecks(transport: Transport, peer: Peer): Promise<void> {
  let client = await connect(transport, peer);
  let accepted = (await peer.nextEvent('accepted', 60_000)).ep;
  const grant5 = { address: 2 * MiB + 512 * KiB, length: 64 * KiB };
  await check('direct: put + flush + get inside a write grant (bytes checked on storage)',
    async () => {
      const key = await importKey(transport, peer, client, accepted, 5, grant5);
      for (const size of [1, 4 * KiB, 64 * KiB]) {
        const src = pattern(size, size + 7);
        await transport.putDirect(key, grant5.address, src, 0, size);
        await transport.flushDirect(client.ep);
        expect(await peer.call('hash', { address: grant5.address, length: size }) ===
          sha256(src), `${size} B: storage bytes differ`);
        const dst = Buffer.alloc(size);
        await transport.getDirect(key, grant5.address, dst, 0, size);
        expect(sha256(dst) === sha256(src), `${size} B: get differs`);
      }
    });
  await check('direct: export of a grant not page aligned is refused', async () => {
    await refusedWith(peer.call('directExport', { ep: accepted, grantId: 7 }),
      'PMQ_ERR_DIRECT_UNALIGNED');
  });
  await check('direct: put outside the registration fails the endpoint, memory unchanged',
    async () => {
      // The client lies about its range: only the storage side's NIC stands in the way.
      const key = await importKey(transport, peer, client, accepted, 5,
        { address: grant5.address, length: grant5.length + 64 * KiB });
      const before = await memoryHash(peer);
      const put = transport.putDirect(key, grant5.address + grant5.length,
        pattern(4 * KiB, 8), 0, 4 * KiB);
      const flush = transport.flushDirect(client.ep);
      say(`# refused: ${await endpointFails(transport, client, Promise.all([put, flush]))}`);
      expect(await memoryHash(peer) === before, 'storage memory changed');
    });
  client = await connect(transport, peer);
  accepted = (await peer.nextEvent('accepted', 60_000)).ep;
  await check('direct: put after revocation (deregistered) fails, memory unchanged', async () => {
    const grant6 = { address: 3 * MiB, length: 64 * KiB };
    const key = await importKey(transport, peer, client, accepted, 6, grant6);
    const first = pattern(4 * KiB, 9);
    await transport.putDirect(key, grant6.address, first, 0, 4 * KiB);
    await transport.flushDirect(client.ep);
    expect(await peer.call('hash', { address: grant6.address, length: 4 * KiB }) ===
      sha256(first), 'the put before revocation did not land');
    await peer.call('revoke', { grantId: 6 });
    const before = await memoryHash(peer);
    const put = transport.putDirect(key, grant6.address, pattern(4 * KiB, 10), 0, 4 * KiB);
    const flush = transport.flushDirect(client.ep);
    say(`# refused: ${await endpointFails(transport, client, Promise.all([put, flush]))}`);
    expect(await memoryHash(peer) === before, 'storage memory changed');
  });
}

async function setUp(transport: Transport): Promise<Peer> {
  const env = JSON.parse(process.env.PMQ_RDMA_PEER_ENV ?? '{}') as Record<string, string>;
  const peer = await spawnPeer(OPTIONS, undefined, { host: HOST, env, startMs: 180_000 });
  await within(60_000, 'memory', peer.call('memory',
    { bytes: MEMORY_BYTES, seed: 42, path: REGION_PATH }));
  for (const [grantId, address, length, direction] of GRANTS) {
    await peer.call('grant', { grantId, epoch: 1, address, length, direction });
  }
  void transport;
  return peer;
}

async function main(): Promise<void> {
  const started = Date.now();
  const transport = Transport.open(OPTIONS);
  const peer = await setUp(transport);
  say(`# storage peer up after ${Date.now() - started} ms`);
  const client = await connect(transport, peer);
  const accepted = (await peer.nextEvent('accepted', 60_000)).ep;
  await check('lanes are RDMA on both sides', async () => {
    const lanes = transport.lanes(client.ep);
    const peerLanes = await peer.call('lanes', { ep: accepted }) as string[];
    say(`# lanes: client ${lanes.join(',')}; storage ${peerLanes.join(',')}`);
    expect(lanes.length > 0 && lanes.every((lane) => RDMA_LANES.includes(lane)),
      `client lanes ${lanes.join(',')}`);
    expect(peerLanes.length > 0 && peerLanes.every((lane) => RDMA_LANES.includes(lane)),
      `storage lanes ${peerLanes.join(',')}`);
  });
  await validatedChecks(transport, peer, client.ep);
  await directChecks(transport, peer);
  await check('storage node survived: a new connection writes through validated mode',
    async () => {
      const again = await connect(transport, peer);
      const src = pattern(4 * KiB, 12);
      await transport.writeValidated(again.ep, { id: 1, epoch: 1, key: 1 }, 64 * KiB, src, 0,
        4 * KiB);
      expect(await peer.call('hash', { address: 64 * KiB, length: 4 * KiB }) === sha256(src),
        'bytes differ');
    });
  transport.close();
  await peer.stop();
  say(`# run time ${((Date.now() - started) / 1000).toFixed(1)} s (suite process, after start)`);
}

runSuite('rdma', main, () => rmSync(REGION_PATH, { force: true }));
