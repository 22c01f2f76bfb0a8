// Transport.post (a send nobody awaits, from a pool of records: issue 11) between two real
// processes: many messages of mixed sizes (eager and rendezvous) arrive intact while the
// pool's records are reused (UCX may deliver a rendezvous message after later eager ones);
// a peer killed with posts in flight makes each unfinished one's `failed` run once, their
// records go back to the pool only once UCX is done with them (an invariant aborts this
// process otherwise), and the pool keeps serving the live peer.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t from 'tap';

import { Transport } from '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const LARGE = { messageBytesMax: 8 << 20 };
/** Sizes cycled through: eager ones complete at once, 1 MiB goes by rendezvous. */
const SIZES = [0, 17, 4096, 65536, 1 << 20];
const COUNT = 200;

for (const tls of TRANSPORTS) {
  t.test(`posts over ${tls}`, async (t) => {
    const peer = await spawnPeer(testOptions(tls, LARGE), t);
    const transport = Transport.open(testOptions(tls, LARGE));
    t.teardown(async () => { transport.close(); await peer.stop(); });
    const failures: Error[] = [];
    const failed = (error: Error): void => { failures.push(error); };

    const ep = await connectRetrying(transport, peer.host, peer.port);
    const sent: string[] = [];
    for (let i = 0; i < COUNT; i += 1) {
      // A fresh buffer each: were a pooled record's bytes reused early, the hash would differ.
      const payload = pattern(SIZES[i % SIZES.length]!, i);
      sent.push(sha256(payload));
      transport.post(ep, Buffer.from(`post ${i}`), payload, failed);
    }
    const arrived = new Map<string, unknown>();
    for (let i = 0; i < COUNT; i += 1) {
      const got = await peer.nextEvent('message');
      arrived.set(String(got.header), got.sha);
    }
    t.same(sent.map((_, i) => arrived.get(`post ${i}`)), sent, `all ${COUNT} arrived intact`);
    t.same(failures, [], 'none failed');
    // The peer has every message, but this side learns a send is done only when its worker
    // progresses next (over shared memory that can come after the peer's report).
    for (let i = 0; i < 200 && transport.stats().pendingOps > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    t.equal(transport.stats().pendingOps, 0, 'nothing in flight');

    // A peer killed with large posts in flight (rendezvous it never answers): each fails
    // once, and only once UCX is done with its bytes does its record go back to the pool.
    const doomed = await spawnPeer(testOptions(tls, LARGE), t);
    const doomedEp = await connectRetrying(transport, doomed.host, doomed.port);
    await doomed.nextEvent('accepted');
    const closed = new Promise<void>((resolve) => transport.on('closed', (at) => {
      if (at === doomedEp) resolve();
    }));
    const inFlight = 8;
    for (let i = 0; i < inFlight; i += 1) {
      transport.post(doomedEp, Buffer.from(`late ${i}`), pattern(4 << 20, i), failed);
    }
    await doomed.kill();
    await closed;
    for (let i = 0; i < 200 && transport.stats().pendingOps > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // On tcp none of them can finish; on shared memory some may before the kill lands.
    t.ok(failures.length >= (tls === 'tcp' ? 1 : 0) && failures.length <= inFlight,
      `${failures.length} of ${inFlight} posts in flight failed, none twice`);
    for (const failure of failures) {
      t.match(failure, { code: /PMQ_ERR_/ }, 'a PmqError with a code');
    }
    t.throws(() => transport.post(doomedEp, Buffer.from('x'), pattern(1, 1), failed),
      { code: 'PMQ_ERR_ENDPOINT_CLOSED' }, 'a closed endpoint throws at once');

    const failedBefore = failures.length;
    const again = ep;
    for (let i = 0; i < 20; i += 1) transport.post(again, Buffer.from(`again ${i}`),
      pattern(64, 1000 + i), failed);
    let seen = 0;
    while (seen < 20) {
      const got = await peer.nextEvent('message');
      const header = String(got.header);
      if (!header.startsWith('again ')) continue;
      const i = Number(header.slice('again '.length));
      t.equal(got.sha, sha256(pattern(64, 1000 + i)), `again ${i} intact`);
      seen += 1;
    }
    t.equal(failures.length, failedBefore, 'reused records carry nothing of their last send');
    t.equal(transport.stats().pendingOps, 0, 'nothing left in flight');
  });
}
