// Peer death: a SIGKILLed peer (the kernel resets its sockets) and a stopped peer (SIGSTOP:
// silent, only the keepalive timeout can tell) are both detected within the configured peer
// timeout, pending requests fail with a typed error, and this process keeps working.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t from 'tap';

import { PmqError } from '../../common/errors.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { pattern } from '../helpers/pattern.js';
import { spawnPeer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const PEER_TIMEOUT_MS = 1000;

function nextClose(transport: Transport): Promise<{ ep: Endpoint; code: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const listener = (ep: Endpoint, code: string): void => {
      transport.off('closed', listener);
      resolve({ ep, code, ms: Date.now() - started });
    };
    transport.on('closed', listener);
  });
}

for (const tls of TRANSPORTS) {
  t.test(`peer death over ${tls}`, async (t) => {
    const transport = Transport.open(testOptions(tls, { peerTimeoutMs: PEER_TIMEOUT_MS }));
    t.teardown(() => transport.close());
    const errors: PmqError[] = [];
    transport.on('error', (_ep, error) => errors.push(error));

    const first = await spawnPeer(testOptions(tls), t);
    const ep = await connectRetrying(transport, first.host, first.port);
    await first.call('memory', { bytes: 1 << 20, seed: 1 });
    await first.call('grant', { grantId: 1, epoch: 1, address: 0, length: 1 << 20,
      direction: 'write' });
    const closed = nextClose(transport);
    await first.kill();
    const death = await closed;
    t.equal(death.ep, ep, 'the dead peer\'s endpoint closed');
    t.equal(death.code, 'PMQ_ERR_PEER_FAILED', 'as a peer failure');
    t.ok(death.ms < PEER_TIMEOUT_MS * 2, `noticed in ${death.ms} ms`);
    t.equal(errors[0]?.code, 'PMQ_ERR_PEER_FAILED', 'error event first');
    await t.rejects(async () => transport.writeValidated(ep, { id: 1, epoch: 1, key: 1 }, 0,
      pattern(64, 1), 0, 64),
      { code: 'PMQ_ERR_ENDPOINT_CLOSED' }, 'requests on the dead endpoint fail typed');

    const stopped = await spawnPeer(testOptions(tls), t);
    const ep2 = await connectRetrying(transport, stopped.host, stopped.port);
    const pendingWrite = transport.send(ep2, Buffer.from('x'), pattern(1 << 20, 2));
    await pendingWrite;
    const silent = nextClose(transport);
    stopped.child.kill('SIGSTOP');
    const hung = await silent;
    t.equal(hung.code, 'PMQ_ERR_PEER_TIMEOUT', 'a silent peer times out');
    t.ok(hung.ms >= PEER_TIMEOUT_MS * 0.8 && hung.ms < PEER_TIMEOUT_MS * 2.5,
      `timed out after ${hung.ms} ms`);
    await stopped.kill();

    const second = await spawnPeer(testOptions(tls), t);
    const ep3 = await connectRetrying(transport, second.host, second.port);
    await transport.send(ep3, Buffer.from('alive'), pattern(4096, 3));
    t.equal((await second.nextEvent('message')).header, 'alive', 'a new peer works');
    await transport.closeEndpoint(ep3);
    const peerSide = await second.nextEvent('closed');
    t.equal(peerSide.code, '', 'a local close is a graceful close on the peer');
    await second.stop();
    t.equal(transport.stats().endpoints, 0, 'no endpoint left');
  });
}

t.test('connecting to nothing fails typed', async (t) => {
  const transport = Transport.open(testOptions('tcp'));
  t.teardown(() => transport.close());
  const free = await spawnPeer(testOptions('tcp'), t);
  const port = free.port;
  await free.kill();
  await t.rejects(transport.connect('127.0.0.1', port), PmqError, 'connect rejects');
  t.equal(transport.stats().endpoints, 0);
});
