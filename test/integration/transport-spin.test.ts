// The sleeping mode's adaptive spin (native/spin_policy.h), seen through stats(): it starts at
// spinUs, its spins catch the answers of a ping-pong partner, spins that find nothing in an idle
// process shrink it to 0, and busy traffic brings it back. spinUs 0 and busy polling never
// spin. Counts only, no timings.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t, { type Test } from 'tap';

import { Transport, type Endpoint } from '../../native/transport.js';
import { pattern } from '../helpers/pattern.js';
import { spawnPeer, type Peer } from '../helpers/transport-peer.js';
import { connectRetrying, testOptions } from '../helpers/transport-config.js';

/** 1 ms: an echo from the partner process comes back well within it, even on a busy VM. */
const SPIN_MAX_US = 1000;
/**
 * One-way sends, IDLE_MS apart (idle: more than the policy's 1 ms busy gap), enough for the
 * window to reach 0 when no spin pays: halving starts once fewer than 1 in 8 recent spins paid
 * (the average over ~16 falls from ≤ 1 below 1/8 within 16 ln 8 ≈ 34 idle misses), then 9 more
 * halve ≤ 1000 µs to 0.
 */
const ONE_WAY = 60;
const IDLE_MS = 4;
/** No keepalives during a test: one arriving just after a send would pay a spin. */
const QUIET = { keepaliveMs: 10_000, peerTimeoutMs: 30_000 };

/** `rounds` messages to the echoing peer, each waiting for its echo. */
async function pingPong(transport: Transport, ep: Endpoint, rounds: number): Promise<void> {
  let echoed: (() => void) | undefined;
  transport.setMessageHandler({ deliver: () => echoed?.() });
  for (let i = 0; i < rounds; i += 1) {
    const back = new Promise<void>((resolve) => { echoed = resolve; });
    await transport.send(ep, Buffer.from('ping'), pattern(64, i));
    await back;
  }
}

async function echoPeer(t: Test): Promise<Peer> {
  const peer = await spawnPeer(testOptions('sm,tcp', QUIET), t);
  await peer.call('echo', { on: true });
  return peer;
}

t.test('spins catch a ping-pong partner; idle shrinks the window, busy brings it back',
  async (t) => {
  const peer = await echoPeer(t);
  const transport = Transport.open(testOptions('sm,tcp', { ...QUIET, spinUs: SPIN_MAX_US }));
  t.teardown(async () => { transport.close(); await peer.stop(); });
  t.match(transport.stats(), { spinMaxUs: SPIN_MAX_US, spinBudgetUs: SPIN_MAX_US,
    spinsRewarded: 0, spinsWasted: 0 }, 'starts at spinUs, the bound');
  const ep = await connectRetrying(transport, peer.host, peer.port);
  await pingPong(transport, ep, 50);
  const played = transport.stats();
  t.ok(played.spinsRewarded > 0, `${played.spinsRewarded} spins caught an echo`);
  t.ok(played.spinBudgetUs <= SPIN_MAX_US, `window ${played.spinBudgetUs} µs within the bound`);
  await peer.call('echo', { on: false });
  for (let i = 0; i < ONE_WAY; i += 1) {  // one-way: nothing answers a spin any more
    await transport.send(ep, Buffer.from('one-way'), pattern(64, i));
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  }
  const idle = transport.stats();
  t.ok(idle.spinsWasted > played.spinsWasted, `${idle.spinsWasted - played.spinsWasted} ` +
    'spins ran out');
  // Nothing arrives to raise it again.
  t.equal(idle.spinBudgetUs, 0, `window shrank to 0: ${JSON.stringify(idle)}`);
  await peer.call('echo', { on: true });
  await pingPong(transport, ep, 30);  // busy again: activity within 1 ms of the last
  const busy = transport.stats();
  t.ok(busy.spinBudgetUs > 0, `busy again: the window is back, ${busy.spinBudgetUs} µs`);
});

t.test('spinUs 0 and busy polling never spin', async (t) => {
  const peer = await echoPeer(t);
  t.teardown(() => peer.stop());
  for (const extra of [{ spinUs: 0 }, { busyPoll: true, spinUs: SPIN_MAX_US }]) {
    const transport = Transport.open(testOptions('sm,tcp', { ...QUIET, ...extra }));
    const ep = await connectRetrying(transport, peer.host, peer.port);
    await pingPong(transport, ep, 20);
    t.match(transport.stats(), { busyPoll: extra.busyPoll === true, spinMaxUs: 0,
      spinBudgetUs: 0, spinsRewarded: 0,
      spinsWasted: 0 }, JSON.stringify(extra));
    await transport.closeEndpoint(ep);
    transport.close();
  }
});
