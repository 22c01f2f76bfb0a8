// Two-sided messages between two real processes, 0 B to 16 MiB, both directions, on every
// transport configuration this machine has; lanes are reported per endpoint.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t from 'tap';

import { Transport, type Endpoint } from '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const SIZES = [0, 1, 4096, 65536, 1 << 20, 16 << 20];
const LARGE = { messageBytesMax: 16 << 20 };
const EXPECTED_LANES: Record<string, string[]> = { 'tcp': ['tcp'], 'sm,tcp': ['sysv', 'cma'] };

interface Received { ep: Endpoint; header: string; payload: Uint8Array }

function receiver(transport: Transport, placed: Uint8Array[]): () => Promise<Received> {
  const queue: Received[] = [];
  let wake: (() => void) | undefined;
  transport.setMessageHandler({
    place(_ep, _header, payloadBytes) {
      const destination = new Uint8Array(payloadBytes);  // the receiver picks where it lands
      placed.push(destination);
      return destination;
    },
    deliver(ep, header, payload) {
      queue.push({ ep, header: Buffer.from(header).toString(), payload });
      wake?.();
    },
  });
  return async () => {
    while (queue.length === 0) await new Promise<void>((resolve) => { wake = resolve; });
    return queue.shift()!;
  };
}

for (const tls of TRANSPORTS) {
  t.test(`messages over ${tls}`, async (t) => {
    // 16 MiB messages: above the default messageBytesMax (9 MiB), so both sides raise it.
    const peer = await spawnPeer(testOptions(tls, LARGE), t);
    const transport = Transport.open(testOptions(tls, LARGE));
    t.teardown(async () => { transport.close(); await peer.stop(); });
    const placed: Uint8Array[] = [];
    const next = receiver(transport, placed);
    const ep = await connectRetrying(transport, peer.host, peer.port);
    const accepted = await peer.nextEvent('accepted');
    for (const lane of EXPECTED_LANES[tls]!) t.ok(transport.lanes(ep).includes(lane), lane);
    t.same(await peer.call('lanes', { ep: accepted.ep }), transport.lanes(ep), 'same lanes');

    for (const size of SIZES) {
      const payload = pattern(size, size + 11);
      await transport.send(ep, Buffer.from(`to-peer ${size}`), payload);
      const got = await peer.nextEvent('message');
      t.same([got.header, got.size, got.sha], [`to-peer ${size}`, size, sha256(payload)],
        `${size} B to the peer intact`);
    }
    for (const size of SIZES) {
      const sent = await peer.call('send', { ep: accepted.ep, size, seed: size + 5,
        header: `from-peer ${size}` });
      const got = await next();
      t.equal(got.ep, ep, 'arrives on the connecting endpoint');
      t.same([got.header, got.payload.byteLength, sha256(got.payload)],
        [`from-peer ${size}`, size, sent], `${size} B from the peer intact`);
    }
    const big = placed.find((array) => array.byteLength === 16 << 20);
    t.ok(big !== undefined, 'the 16 MiB message landed in the array place() chose');
    t.same(transport.stats().pendingOps, 0, 'nothing left in flight');
  });
}

t.test('busy-poll mode carries messages too', async (t) => {
  const peer = await spawnPeer(testOptions('sm,tcp'), t);
  const transport = Transport.open(testOptions('sm,tcp', { busyPoll: true }));
  t.teardown(async () => { transport.close(); await peer.stop(); });
  const ep = await connectRetrying(transport, peer.host, peer.port);
  for (let i = 0; i < 50; i += 1) {
    await transport.send(ep, Buffer.from('ping'), pattern(64, i));
    const got = await peer.nextEvent('message');
    t.equal(got.sha, sha256(pattern(64, i)));
  }
});

// sharedHeaders (issue 11): each eager header is a view of one buffer, the same view for the
// same length, overwritten by the next message; what deliver() reads is always its own header.
t.test('shared headers: right bytes per message, one view per length, reused', async (t) => {
  const peer = await spawnPeer(testOptions('sm,tcp'), t);
  const transport = Transport.open(testOptions('sm,tcp', { sharedHeaders: true }));
  t.teardown(async () => { transport.close(); await peer.stop(); });
  const seen: { text: string; view: Uint8Array }[] = [];
  let wake: (() => void) | undefined;
  transport.setMessageHandler({
    deliver(_ep, header) {
      seen.push({ text: Buffer.from(header).toString(), view: header });
      wake?.();
    },
  });
  const ep = await connectRetrying(transport, peer.host, peer.port);
  const accepted = await peer.nextEvent('accepted');
  const headers = ['a', 'bb', 'a', 'ccc', 'bb', 'x'.repeat(4096), 'a'];
  for (const header of headers) {
    await peer.call('send', { ep: accepted.ep, size: 16, seed: 1, header });
  }
  while (seen.length < headers.length) await new Promise<void>((resolve) => { wake = resolve; });
  t.same(seen.map((s) => s.text), headers, 'each message read its own header bytes');
  t.equal(seen[0]!.view, seen[2]!.view, 'one view per length, reused');
  t.equal(seen[1]!.view, seen[4]!.view);
  t.equal(seen[0]!.view.buffer, seen[3]!.view.buffer, 'every view over one buffer');
  // The last message ('a') overwrote byte 0 of the 4096 x's before it.
  t.equal(Buffer.from(seen[1]!.view).toString(), 'ax', 'a kept view shows later messages');
});

t.test('shared payloads: small ones are views of one buffer, each read right, larger ones own',
  async (t) => {
    const peer = await spawnPeer(testOptions('sm,tcp'), t);
    const transport = Transport.open(testOptions('sm,tcp',
      { sharedHeaders: true, sharedPayloadBytesMax: 64 }));
    t.teardown(async () => { transport.close(); await peer.stop(); });
    const seen: { digest: string; view: Uint8Array }[] = [];
    let wake: (() => void) | undefined;
    transport.setMessageHandler({
      deliver(_ep, _header, payload) {
        seen.push({ digest: sha256(payload), view: payload });
        wake?.();
      },
    });
    const ep = await connectRetrying(transport, peer.host, peer.port);
    t.ok(ep > 0);
    const accepted = await peer.nextEvent('accepted');
    const sizes = [32, 64, 1, 32, 65, 0, 4000, 64];
    const want: string[] = [];
    for (const [index, size] of sizes.entries()) {
      const digest = await peer.call('send', { ep: accepted.ep, size, seed: 7 + index,
        header: 'h' });
      want.push(digest as string);
    }
    while (seen.length < sizes.length) {
      await new Promise<void>((resolve) => { wake = resolve; });
    }
    t.same(seen.map((s) => s.digest), want, 'each message read its own payload bytes');
    t.equal(seen[0]!.view, seen[3]!.view, 'one view per length, reused');
    t.equal(seen[1]!.view, seen[7]!.view);
    t.equal(seen[0]!.view.buffer, seen[2]!.view.buffer, 'every small view over one buffer');
    t.not(seen[4]!.view.buffer, seen[0]!.view.buffer, 'past the limit: its own buffer');
    t.not(seen[6]!.view.buffer, seen[0]!.view.buffer);
    t.equal(sha256(seen[4]!.view), want[4], 'and it keeps its bytes');
    t.throws(() => Transport.open(testOptions('sm,tcp', { sharedPayloadBytesMax: 4097 })),
      /sharedPayloadBytesMax must be an integer in \[0, 4096\]/);
  });
