/**
 * Runs OpenUCX's own `ucx_perftest` (Debian package ucx-utils) as a server/client pair on
 * 127.0.0.1, so pmq's figures can be printed next to what UCX itself reaches on the same
 * machine, transport and message size, in the same run.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export type PerftestName = 'ucp_put_bw' | 'ucp_put_lat' | 'ucp_am_lat' | 'ucp_am_bw';

export interface PerftestResult {
  test: PerftestName;
  tls: string;
  sizeBytes: number;
  iterations: number;
  /** For *_lat tests UCX reports half a round trip (one-way latency). */
  latencyUsP50: number;
  latencyUsAvg: number;
  bandwidthMBps: number;
  messagesPerSecond: number;
}

function env(tls: string): NodeJS.ProcessEnv {
  return { ...process.env, UCX_TLS: tls, UCX_NET_DEVICES: process.env.UCX_NET_DEVICES ?? 'lo' };
}

function parseFinal(output: string): number[] | null {
  const line = output.split('\n').find((l) => l.startsWith('Final:'));
  if (line === undefined) return null;
  return line.slice('Final:'.length).trim().split(/\s+/).map(Number);
}

async function freePortGuess(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function runPerftest(
  test: PerftestName, tls: string, sizeBytes: number, iterations: number,
): Promise<PerftestResult | null> {
  const port = await freePortGuess();
  const args = ['-t', test, '-s', String(sizeBytes), '-n', String(iterations), '-p', String(port)];
  const server = spawn('ucx_perftest', args, { env: env(tls), stdio: 'ignore' });
  try {
    await new Promise((resolve) => setTimeout(resolve, 400));
    const client = spawn('ucx_perftest', ['127.0.0.1', ...args], { env: env(tls) });
    let output = '';
    client.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    client.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const timer = setTimeout(() => client.kill('SIGKILL'), 120_000);
    await once(client, 'exit');
    clearTimeout(timer);
    const values = parseFinal(output);
    if (values === null || values.length < 8) return null;
    const [count, p50, avg, , bwAvg, , rateAvg] = values as [number, number, number, number,
      number, number, number, number];
    return { test, tls, sizeBytes, iterations: count, latencyUsP50: p50, latencyUsAvg: avg,
      bandwidthMBps: bwAvg, messagesPerSecond: rateAvg };
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
  }
}
