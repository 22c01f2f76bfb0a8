// A hostile peer cannot stop a node (DESIGN.md, "Nothing a peer sends can stop a node"). The
// attacker is a child process that speaks raw active messages (Transport.sendRaw); the
// receiver is another child that, like rpc/control-channel.ts, closes an endpoint that sent it
// garbage. After every attack the receiver must be alive and serve a fresh connection.
//
// What each case caught before its fix (docs/native-transport.md, "Peer input"):
// - the 600 KB + 1 MiB rendezvous pairs: `ops_.erase(op) == 1` aborted when a rendezvous
//   receive completed inside ucp_am_recv_data_nbx (endpoint closing);
// - bursts of 1-byte messages on sm: UCX's `(*ep_p)->worker == worker` assertion for messages
//   to an endpoint we had destroyed (fixed by UCX_PROTO_INDIRECT_ID=on);
// - the oversized message: handed to JS (allocated) whatever its size.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t, { type Test } from 'tap';

import { Transport } from '../../native/transport.js';
import { pattern, sha256 } from '../helpers/pattern.js';
import { spawnPeer, type Peer } from '../helpers/transport-peer.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const WIRE_VERSION = 3;
const KIND_MESSAGE = 5;

/** The 8-byte prefix of a pmq message (native/transport.h PrefixHeader), base64. */
function prefix(userHeaderBytes: number, kind = KIND_MESSAGE): string {
  const bytes = Buffer.alloc(8);
  bytes[0] = WIRE_VERSION;
  bytes[1] = kind;
  bytes.writeUInt32LE(userHeaderBytes, 4);
  return bytes.toString('base64');
}

function exitOf(peer: Peer): Promise<string> {
  return new Promise<string>((resolve) => {
    if (peer.child.exitCode !== null || peer.child.signalCode !== null) resolve('exited');
    peer.child.once('exit', (code, signal) => resolve(`exited ${code ?? signal}`));
  });
}

/** The attacker's burst, or the receiver's death (then nothing more is awaited). */
async function attack(receiver: Peer, attacker: Peer, args: Record<string, unknown>):
  Promise<unknown> {
  return Promise.race([attacker.call('burst', { host: receiver.host, port: receiver.port,
    ...args }), exitOf(receiver)]);
}

async function alive(t: Test, peer: Peer, what: string): Promise<boolean> {
  const answered = peer.call('stats').then(() => 'alive');
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('no answer'), 10_000));
  return t.equal(await Promise.race([answered, exitOf(peer), timeout]), 'alive',
    `${what}: receiver alive`);
}

/** A fresh connection from this process: a message reaches the receiver intact. */
async function serves(t: Test, tls: string, receiver: Peer, what: string): Promise<void> {
  await receiver.call('closeOnMessage', { on: false });
  const transport = Transport.open(testOptions(tls));
  try {
    const ep = await connectRetrying(transport, receiver.host, receiver.port);
    const payload = pattern(4096, 7);
    await transport.send(ep, Buffer.from('fresh'), payload);
    let got = await receiver.nextEvent('message');
    while (got.header !== 'fresh') got = await receiver.nextEvent('message');
    t.equal(got.sha, sha256(payload), `${what}: a fresh connection is served`);
  } finally {
    transport.close();
  }
}

async function setUp(t: Test, tls: string): Promise<{ receiver: Peer; attacker: Peer }> {
  const receiver = await spawnPeer(testOptions(tls), t);
  const attacker = await spawnPeer(testOptions(tls), t);
  t.teardown(async () => { await attacker.stop(); await receiver.stop(); });
  await receiver.call('closeOnMessage', { on: true });
  return { receiver, attacker };
}

for (const tls of TRANSPORTS) {
  t.test(`${tls}: malformed ~600 KB rendezvous, then 1 MiB, on one connection`, async (t) => {
    const { receiver, attacker } = await setUp(t, tls);
    const outcome = await attack(receiver, attacker, {
      connections: 6, sequential: true, messages: [
        { header: prefix(0), size: 600 * 1024, mode: 'rndv' },  // garbage to the receiver
        { header: prefix(0), size: 1 << 20, mode: 'rndv' },
        { header: prefix(77), size: 600 * 1024, mode: 'rndv' },  // a lying prefix
        { header: prefix(0), size: 1 << 20, mode: 'rndv' },
      ] });
    t.comment(JSON.stringify(outcome));
    t.comment(JSON.stringify(await attack(receiver, attacker, { connections: 4, messages: [
      { header: prefix(0), size: 600 * 1024, mode: 'rndv' },  // back to back this time
      { header: prefix(0), size: 1 << 20, mode: 'rndv' },
    ] })));
    if (!await alive(t, receiver, 'after 10 connections of 600 KB + 1 MiB')) return;
    await serves(t, tls, receiver, '600 KB + 1 MiB');
  });

  t.test(`${tls}: bursts of 4 one-byte garbage messages over 50 connections`, async (t) => {
    const { receiver, attacker } = await setUp(t, tls);
    const tiny = { header: prefix(0), size: 1, mode: 'eager' };
    const outcome = await attack(receiver, attacker, {
      connections: 50, settleMs: 500, messages: [tiny, tiny, tiny, tiny] });
    t.comment(JSON.stringify(outcome));
    const junk = { header: Buffer.from([0xff]).toString('base64'), size: 1, mode: 'eager' };
    t.comment(JSON.stringify(await attack(receiver, attacker, { connections: 10, settleMs: 500,
      messages: [junk, tiny, junk, tiny] })));
    if (!await alive(t, receiver, 'after 60 bursts')) return;
    await serves(t, tls, receiver, 'bursts');
  });

  t.test(`${tls}: an oversized message never reaches JS`, async (t) => {
    const { receiver, attacker } = await setUp(t, tls);
    await receiver.call('closeOnMessage', { on: false });
    const big = 10 << 20;  // above the default messageBytesMax, 9 MiB
    const outcome = await attack(receiver, attacker, {
      connections: 1, messages: [
        { header: prefix(0), size: big, mode: 'rndv' },
        { header: prefix(0), size: big, mode: 'eager' },
        { header: prefix(0), size: big, mode: 'auto' },
        { header: prefix(0), size: 3, mode: 'eager' },  // the only one JS may see
      ] }) as { sent: number; failed: number };
    t.ok(outcome.failed >= 1, `the rendezvous ones were rejected: ${JSON.stringify(outcome)}`);
    const first = await receiver.nextEvent('message');
    t.equal(first.size, 3, 'the receiver saw only the small message');
    if (!await alive(t, receiver, 'after oversized messages')) return;
    await serves(t, tls, receiver, 'oversized');
  });
}
