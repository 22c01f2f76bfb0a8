// Request timeouts of the control channel (rpc/control-channel.ts): no timer per request, one
// sweep while requests are pending. A storage node stopped with SIGSTOP answers nothing: each
// request fails with PMQ_ERR_TIMEOUT after its own timeout (not before, and at most a sweep
// late), requests of different timeouts in one batch each at theirs; once the node resumes,
// its late replies are ignored and new requests are answered.
import pino from 'pino';
import t from 'tap';

import { nonce } from '../../common/auth/keys.js';
import { PmqError } from '../../common/errors.js';
import { Transport } from '../../native/transport.js';
import { ControlChannel, TIMEOUT_SWEEP_MS } from '../../rpc/control-channel.js';
import { startStorage, stopProc, tempDir } from '../helpers/broker-cluster.js';

const { dir, remove } = tempDir('pmq-channel-timeout-');
const storage = await startStorage(`${dir}/region`, 1);
const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
const channel = new ControlChannel(transport, pino({ level: 'silent' }));
t.teardown(async () => {
  storage.child.kill('SIGCONT');
  await stopProc(storage);
  transport.close();
  remove();
});

/** Resolves with the error code and how long the request took. */
async function timed(promise: Promise<unknown>): Promise<{ code: string; ms: number }> {
  const started = performance.now();
  try {
    await promise;
    return { code: 'answered', ms: performance.now() - started };
  } catch (error) {
    return { code: error instanceof PmqError ? error.code : String(error),
      ms: performance.now() - started };
  }
}

t.test('each request times out at its own timeout; late replies are ignored', async (t) => {
  const ep = await transport.connect(storage.host, storage.port);
  t.equal((await channel.request(ep, 'brokerAuth', { nonce: nonce() }, 5000)).kind,
    'brokerChallenge', 'answered while the node runs');
  storage.child.kill('SIGSTOP');
  const timeouts = [300, 100, 600, 100, 300];
  const results = await Promise.all(timeouts.map((timeoutMs) =>
    timed(channel.request(ep, 'brokerAuth', { nonce: nonce() }, timeoutMs))));
  for (const [i, { code, ms }] of results.entries()) {
    const timeoutMs = timeouts[i]!;
    t.equal(code, 'PMQ_ERR_TIMEOUT', `timeout ${timeoutMs} ms: ${code}`);
    t.ok(ms >= timeoutMs - 1 && ms < timeoutMs + TIMEOUT_SWEEP_MS + 150,
      `timeout ${timeoutMs} ms fired after ${Math.round(ms)} ms`);
  }
  storage.child.kill('SIGCONT');
  t.equal((await channel.request(ep, 'brokerAuth', { nonce: nonce() }, 5000)).kind,
    'brokerChallenge', 'the late replies went nowhere; a new request is answered');
  await transport.closeEndpoint(ep);
});
