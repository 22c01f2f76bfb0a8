/**
 * `npm run bench:transport`: the UCX binding measured next to `ucx_perftest` on the same
 * machine, transport and message size, in the same run.
 *  - put_bw: validated writes, 16 in flight, MB/s        vs ucp_put_bw
 *  - put_flush_lat: one validated write until landed      vs ucp_put_lat (x2: UCX reports half)
 *  - am_rtt: two-sided message and its echo               vs ucp_am_lat (x2: UCX reports half)
 * Busy polling on both sides (as ucx_perftest does); the 64 B round trip is also measured
 * sleeping in epoll, the default mode. JSON lines on stdout, then a table.
 * Env: PMQ_BENCH_TRANSPORTS (default "tcp,sm,tcp" as "tcp;sm,tcp"), PMQ_BENCH_MS per point.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { round } from './stats.js';
import { runPerftest, type PerftestName, type PerftestResult } from './ucx-perftest.js';

const SIZES = [64, 4096, 65536, 1024 * 1024];
const TRANSPORTS = (process.env.PMQ_BENCH_TRANSPORTS ?? 'tcp;sm,tcp').split(';');
type Row = Record<string, unknown> & { metric: string; sizeBytes?: number; transport: string };

async function runClient(transports: string, busy: boolean, sizes: number[],
  metrics: string[]): Promise<Row[]> {
  const child = spawn(process.execPath, ['--import', 'tsx',
    new URL('./transport-client.ts', import.meta.url).pathname, transports, busy ? '1' : '0',
    sizes.join(','), metrics.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => { text += String(chunk); });
  const [code] = await once(child, 'exit') as [number | null];
  if (code !== 0) process.stderr.write(`bench: client for ${transports} exited ${code}\n`);
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Row);
}

async function perftest(test: PerftestName, tls: string, size: number): Promise<PerftestResult
  | null> {
  const iterations = test.endsWith('_bw') ? Math.max(200, Math.min(20000, 2 ** 28 / size)) : 20000;
  return runPerftest(test, tls, size, Math.round(iterations));
}

function emit(row: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ bench: 'transport', ...row })}\n`);
}

interface TableLine { transport: string; metric: string; size: number; pmq: string; ucx: string;
  ratio: string }

async function measureTransport(tls: string, table: TableLine[]): Promise<void> {
  const rows = [...await runClient(tls, true, SIZES, ['bw', 'lat', 'rtt']),
    ...await runClient(tls, false, [64], ['rtt'])];
  for (const row of rows) {
    const size = row.sizeBytes ?? 0;
    if (row.metric === 'lanes') { emit(row); continue; }
    const test: PerftestName = row.metric === 'put_bw' ? 'ucp_put_bw'
      : row.metric === 'put_flush_lat' ? 'ucp_put_lat' : 'ucp_am_lat';
    const ucx = row.busyPoll === true ? await perftest(test, tls, size) : null;
    if (row.metric === 'put_bw') {
      const ours = row.bandwidthMBps as number;
      const ratio = ucx === null ? null : round(ours / ucx.bandwidthMBps, 3);
      emit({ ...row, perftest: ucx, ratioOfPerftest: ratio });
      table.push({ transport: tls, metric: 'put_bw MB/s', size, pmq: String(ours),
        ucx: String(ucx?.bandwidthMBps ?? '-'), ratio: String(ratio ?? '-') });
    } else {
      const ours = (row.latencyUs as { p50: number }).p50;
      const ucxRoundTrip = ucx === null ? null : 2 * ucx.latencyUsP50;
      const ratio = ucxRoundTrip === null ? null : round(ours / ucxRoundTrip, 2);
      emit({ ...row, perftest: ucx, perftestRoundTripUsP50: ucxRoundTrip, ratioOfPerftest: ratio });
      const mode = row.busyPoll === true ? '' : ' (sleep)';
      table.push({ transport: tls, metric: `${row.metric} p50 µs${mode}`,
        size, pmq: String(round(ours)),
        ucx: String(ucxRoundTrip === null ? '-' : round(ucxRoundTrip)),
        ratio: String(ratio ?? '-') });
    }
  }
}

const table: TableLine[] = [];
for (const tls of TRANSPORTS) await measureTransport(tls, table);
const header = ['transport', 'metric', 'size', 'pmq', 'ucx_perftest', 'ratio'];
const lines = table.map((l) => [l.transport, l.metric, String(l.size), l.pmq, l.ucx, l.ratio]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
const format = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
process.stdout.write(`\n${format(header)}\n${format(widths.map((w) => '-'.repeat(w)))}\n`);
for (const line of lines) process.stdout.write(`${format(line)}\n`);
