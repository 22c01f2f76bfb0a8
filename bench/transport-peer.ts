/**
 * The far side of `npm run bench:transport`: a process that exposes memory with one write and
 * one read grant over all of it, and echoes every two-sided message back to its sender.
 * argv: <transports> <busyPoll 0|1> <memoryBytes>. Prints "listening <port>" when ready.
 */
import { Transport } from '../native/transport.js';

/** The one session every bench client's endpoint is bound to, and the grants' key. */
const BENCH_SESSION = 7;
const BENCH_KEY = 0x5eed;

const [transports = 'sm,tcp', busy = '0', memoryText = String(64 * 1024 * 1024)] =
  process.argv.slice(2);
const transport = Transport.open({ transports, netDevices: 'lo', busyPoll: busy === '1',
  peerTimeoutMs: 30_000 });
const memory = Buffer.alloc(Number(memoryText));
transport.attachMemory(memory);
transport.createGrant({ id: 1, epoch: 1, address: 0, length: memory.byteLength,
  direction: 'write', session: BENCH_SESSION, key: BENCH_KEY });
transport.createGrant({ id: 2, epoch: 1, address: 0, length: memory.byteLength,
  direction: 'read', session: BENCH_SESSION, key: BENCH_KEY });
transport.on('accepted', (ep) => transport.bindSession(ep, BENCH_SESSION));
transport.setMessageHandler({
  deliver(ep, header, payload) {
    transport.send(ep, header, payload).catch(() => undefined);
  },
});
transport.on('closed', () => {
  if (transport.openEndpoints().length === 0) {
    transport.close();
    process.exit(0);
  }
});
const { port } = transport.listen('127.0.0.1', 0);
process.stdout.write(`listening ${port}\n`);
