/**
 * The suite's markdown report: the machine's limits, the workloads' table, and pmq's figures
 * as ratios of the limits (produce and consume MB/s over memcpy, produce MB/s over ucx_perftest
 * put bandwidth on the same transport; acked p50 latency over ucx_perftest's active-message
 * round trip), and the issue's targets, met or missed (targets.ts).
 */
import { cpus } from 'node:os';

import type { MachineLimits } from './machine.js';
import { round } from './stats.js';
import { markdownSummaries, markdownTable, type Summary } from './summary.js';
import { checkTargets, putMBpsFor, targetRows } from './targets.js';

export interface Ratios { workload: string; transport: string; ofMemcpy: number | null;
  consumeOfMemcpy: number | null; ofUcxPut: number | null; ackP50OverAmRtt: number | null }

export function ratiosOf(s: Summary, machine: MachineLimits): Ratios {
  const ucx = machine.ucx[s.transport];
  const mbps = s.produce.MBps;
  const put = putMBpsFor(machine, s.transport, s.recordBytes);
  return { workload: s.workload, transport: s.transport,
    ofMemcpy: machine.memcpyMBps > 0 ? round(mbps / machine.memcpyMBps, 4) : null,
    consumeOfMemcpy: machine.memcpyMBps > 0 ? round(s.consume.MBps / machine.memcpyMBps, 4)
      : null,
    ofUcxPut: put ? round(mbps / put, 4) : null,
    ackP50OverAmRtt: ucx?.amRoundTripUs && s.ackLatencyUs.count > 0
      ? round(s.ackLatencyUs.p50 / ucx.amRoundTripUs, 1) : null };
}

export function markdownReport(summaries: Summary[], machine: MachineLimits | null,
  quick: boolean): string {
  return [
    `# pmq benchmark report${quick ? ' (quick: counts scaled down 100x)' : ''}`, '',
    `${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `node ${process.version}. docs/benchmarks.md says what each number means.`, '',
    ...(machine === null ? ['## Machine limits', '', 'not measured (--no-machine): no targets ' +
      'or ratios to the machine', ''] : machineSections(summaries, machine)),
    '## Workloads', '',
    markdownSummaries(summaries),
    ...(machine === null ? [] : ratioSections(summaries, machine)),
  ].join('\n');
}

function machineSections(summaries: Summary[], machine: MachineLimits): string[] {
  const limits = Object.entries(machine.ucx).map(([tls, u]) => [tls,
    String(u.putMBps ?? '-'), String(u.putMBps1MiB ?? '-'), String(u.amRoundTripUs ?? '-')]);
  return ['## Machine limits', '',
    `memcpy (cold, 1 MiB copies): ${machine.memcpyMBps} MB/s`, '',
    markdownTable(['transport', 'ucp_put_bw 64 KiB MB/s', 'ucp_put_bw 1 MiB MB/s',
      'ucp_am_lat 64 B round trip µs'], limits),
    '## Targets', '',
    markdownTable(['target', 'transport', 'measured', 'goal', ''],
      targetRows(checkTargets(summaries, machine)))];
}

function ratioSections(summaries: Summary[], machine: MachineLimits): string[] {
  const ratios = summaries.map((s) => ratiosOf(s, machine)).map((r) => [r.workload,
    r.transport, String(r.ofMemcpy ?? '-'), String(r.consumeOfMemcpy ?? '-'),
    String(r.ofUcxPut ?? '-'), String(r.ackP50OverAmRtt ?? '-')]);
  return ['## Ratios to the machine', '',
    markdownTable(['workload', 'transport', 'produce MB/s ÷ memcpy', 'consume MB/s ÷ memcpy',
      'produce MB/s ÷ ucx put (64 KiB; 1 MiB for records ≥ 1 MiB)', 'ack p50 ÷ am round trip'],
    ratios)];
}
