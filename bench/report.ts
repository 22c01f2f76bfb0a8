/**
 * The suite's markdown report: the machine's limits, the workloads' table, and pmq's figures
 * as ratios of the limits (produce MB/s over memcpy and over ucx_perftest put bandwidth on the
 * same transport; acked p50 latency over ucx_perftest's active-message round trip).
 */
import { cpus } from 'node:os';

import type { MachineLimits } from './machine.js';
import { round } from './stats.js';
import { markdownSummaries, markdownTable, type Summary } from './summary.js';

export interface Ratios { workload: string; transport: string; ofMemcpy: number | null;
  ofUcxPut: number | null; ackP50OverAmRtt: number | null }

export function ratiosOf(s: Summary, machine: MachineLimits): Ratios {
  const ucx = machine.ucx[s.transport];
  const mbps = s.produce.MBps;
  return { workload: s.workload, transport: s.transport,
    ofMemcpy: machine.memcpyMBps > 0 ? round(mbps / machine.memcpyMBps, 4) : null,
    ofUcxPut: ucx?.putMBps ? round(mbps / ucx.putMBps, 4) : null,
    ackP50OverAmRtt: ucx?.amRoundTripUs && s.ackLatencyUs.count > 0
      ? round(s.ackLatencyUs.p50 / ucx.amRoundTripUs, 1) : null };
}

export function markdownReport(summaries: Summary[], machine: MachineLimits, quick: boolean):
  string {
  const limits = Object.entries(machine.ucx).map(([tls, u]) => [tls,
    String(u.putMBps ?? '-'), String(u.amRoundTripUs ?? '-')]);
  const ratios = summaries.map((s) => ratiosOf(s, machine)).map((r) => [r.workload,
    r.transport, String(r.ofMemcpy ?? '-'), String(r.ofUcxPut ?? '-'),
    String(r.ackP50OverAmRtt ?? '-')]);
  return [
    `# pmq benchmark report${quick ? ' (quick: counts scaled down 100x)' : ''}`, '',
    `${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `node ${process.version}. docs/benchmarks.md says what each number means.`, '',
    '## Machine limits', '',
    `memcpy (cold, 1 MiB copies): ${machine.memcpyMBps} MB/s`, '',
    markdownTable(['transport', 'ucp_put_bw 64 KiB MB/s', 'ucp_am_lat 64 B round trip µs'],
      limits),
    '## Workloads', '',
    markdownSummaries(summaries),
    '## Ratios to the machine', '',
    markdownTable(['workload', 'transport', 'produce MB/s ÷ memcpy', 'produce MB/s ÷ ucx put',
      'ack p50 ÷ am round trip'], ratios),
  ].join('\n');
}
