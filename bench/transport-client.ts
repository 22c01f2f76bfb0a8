/**
 * One measurement run of `npm run bench:transport` for one transport and progress mode
 * (each combination runs in its own process pair, so runs never share a core's loop).
 * argv: <transports> <busyPoll 0|1> <sizes comma list> <metrics comma list>.
 * Prints one JSON line per measurement on stdout.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { Transport, type Endpoint, type GrantRef } from
  '../native/transport.js';
import { round, summarize } from './stats.js';

const [transports = 'sm,tcp', busyText = '1', sizesText = '64', metricsText = 'rtt'] =
  process.argv.slice(2);
const busyPoll = busyText === '1';
const sizes = sizesText.split(',').map(Number);
const metrics = new Set(metricsText.split(','));
const MEASURE_MS = Number(process.env.PMQ_BENCH_MS ?? 700);
const WINDOW = 16;
const WRITE_GRANT: GrantRef = { id: 1, epoch: 1, key: 0x5eed }; // transport-peer.ts's
const MEMORY_BYTES = 64 * 1024 * 1024;

function emit(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ transport: transports, busyPoll, ...fields })}\n`);
}

async function startPeer(): Promise<{ port: number; stop: () => void }> {
  const peer = spawn(process.execPath, ['--import', 'tsx',
    new URL('./transport-peer.ts', import.meta.url).pathname, transports, busyText,
    String(MEMORY_BYTES)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = await once(peer.stdout!, 'data') as [Buffer];
  const port = Number(/listening (\d+)/.exec(String(chunk))?.[1]);
  return { port, stop: () => { if (peer.exitCode === null) peer.kill('SIGKILL'); } };
}

async function bandwidth(t: Transport, ep: Endpoint, size: number): Promise<void> {
  const src = Buffer.alloc(size, 7);
  const slots = Math.max(1, Math.floor(MEMORY_BYTES / size));
  let issued = 0;
  let done = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(MEASURE_MS) * 1_000_000n;
  const worker = async (): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      const address = (issued % slots) * size;
      issued += 1;
      await t.writeValidated(ep, WRITE_GRANT, address, src, 0, size);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  emit({ metric: 'put_bw', sizeBytes: size, bandwidthMBps: round(done * size / seconds / 1e6),
    operations: done });
}

async function timed(what: () => Promise<void>): Promise<{ us: Float64Array; count: number }> {
  const us = new Float64Array(200_000);
  let count = 0;
  const end = Date.now() + MEASURE_MS;
  for (let warm = 0; warm < 20; warm += 1) await what();
  while (Date.now() < end && count < us.length) {
    const begin = process.hrtime.bigint();
    await what();
    us[count] = Number(process.hrtime.bigint() - begin) / 1000;
    count += 1;
  }
  return { us, count };
}

async function putLatency(t: Transport, ep: Endpoint, size: number): Promise<void> {
  const src = Buffer.alloc(size, 3);
  const { us, count } = await timed(() => t.writeValidated(ep, WRITE_GRANT, 0, src, 0, size));
  emit({ metric: 'put_flush_lat', sizeBytes: size, latencyUs: summarize(us, count),
    operations: count });
}

async function roundTrip(t: Transport, ep: Endpoint, size: number): Promise<void> {
  const header = new Uint8Array(8);
  const payload = Buffer.alloc(size, 5);
  let wake: (() => void) | undefined;
  t.setMessageHandler({ deliver: () => { wake?.(); } });
  const once1 = (): Promise<void> => new Promise<void>((resolve) => {
    wake = resolve;
    t.send(ep, header, payload).catch(() => undefined);
  });
  const { us, count } = await timed(once1);
  const summary = summarize(us, count);
  emit({ metric: 'am_rtt', sizeBytes: size, latencyUs: summary, operations: count });
}

const peer = await startPeer();
const transport = Transport.open({ transports, netDevices: 'lo', busyPoll, peerTimeoutMs: 30_000 });
try {
  const ep = await transport.connect('127.0.0.1', peer.port);
  emit({ metric: 'lanes', lanes: transport.lanes(ep) });
  for (const size of sizes) {
    if (metrics.has('bw')) await bandwidth(transport, ep, size);
    if (metrics.has('lat')) await putLatency(transport, ep, size);
    if (metrics.has('rtt')) await roundTrip(transport, ep, size);
  }
  await transport.closeEndpoint(ep);
} finally {
  transport.close();
  peer.stop();
}
