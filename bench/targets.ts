/**
 * The suite's targets (issue 5) checked against a run: which were met, by how much, next to
 * the machine limit each is stated against. Pure: the report and the JSON lines print it.
 *
 * Targets are stated for the shared-memory transport (`sm,tcp`, region on /dev/shm) except
 * the tcp bandwidth one. A workload that did not run gives no row; a limit that could not be
 * measured (no ucx_perftest) gives a row with `met: null`.
 */
import type { MachineLimits } from './machine.js';
import { round } from './stats.js';
import type { Summary } from './summary.js';

export interface TargetResult {
  target: string;
  workload: string;
  transport: string;
  /** What was measured, in the unit of `goal`. */
  measured: number | null;
  goal: number;
  unit: string;
  /** The goal is an upper bound (latency), else a lower bound. */
  atMost: boolean;
  /** null when the limit it is stated against was not measured. */
  met: boolean | null;
}

interface Rule {
  target: string;
  workload: string;
  transport: (tls: string) => boolean;
  unit: string;
  goal: number;
  atMost?: boolean;
  measure(s: Summary, machine: MachineLimits): number | null;
}

const SM = (tls: string): boolean => tls.split(',').includes('sm');
const TCP = (tls: string): boolean => tls === 'tcp';

function ofMemcpy(MBps: number, machine: MachineLimits): number | null {
  return machine.memcpyMBps > 0 ? round(MBps / machine.memcpyMBps, 3) : null;
}

const RULES: Rule[] = [
  { target: 'W1 acknowledged records/s (acks all)', workload: 'W1', transport: SM,
    unit: 'records/s', goal: 1_000_000, measure: (s) => s.produce.recordsPerSecond },
  { target: 'W2 1 MiB produce MB/s ÷ memcpy', workload: 'W2-1MiB', transport: SM,
    unit: '× memcpy', goal: 0.5, measure: (s, m) => ofMemcpy(s.produce.MBps, m) },
  { target: 'W5 catch-up read MB/s ÷ memcpy', workload: 'W5', transport: SM,
    unit: '× memcpy', goal: 0.5, measure: (s, m) => ofMemcpy(s.consume.MBps, m) },
  // W3-busy: the same goals with every process busy-polling, the configuration they need.
  ...['W3', 'W3-busy'].flatMap((workload): Rule[] => [
    { target: `${workload} acknowledged latency p99`, workload, transport: SM, unit: 'µs',
      goal: 20, atMost: true, measure: (s) => s.ackLatencyUs.count > 0 ? s.ackLatencyUs.p99
        : null },
    { target: `${workload} end-to-end latency p99`, workload, transport: SM, unit: 'µs',
      goal: 50, atMost: true, measure: (s) => s.e2eLatencyUs?.p99 ?? null }]),
  ...['W2-64KiB', 'W2-1MiB'].map((workload): Rule => ({
    target: `${workload} produce MB/s ÷ ucx_perftest put (tcp)`, workload, transport: TCP,
    unit: '× put bw', goal: 0.8, measure: (s, m) => {
      const put = putMBpsFor(m, s.transport, s.recordBytes);
      return put === null ? null : round(s.produce.MBps / put, 3);
    } })),
];

/** ucx_perftest put bandwidth at the measured size closest to (not above) the record size. */
export function putMBpsFor(machine: MachineLimits, tls: string, recordBytes: number):
  number | null {
  const ucx = machine.ucx[tls];
  if (ucx === undefined) return null;
  return recordBytes >= 1024 * 1024 && ucx.putMBps1MiB !== null ? ucx.putMBps1MiB
    : ucx.putMBps;
}

export function checkTargets(summaries: readonly Summary[], machine: MachineLimits):
  TargetResult[] {
  return RULES.flatMap((rule) => summaries
    .filter((s) => s.workload === rule.workload && rule.transport(s.transport))
    .map((s) => {
      const measured = rule.measure(s, machine);
      const met = measured === null ? null
        : rule.atMost === true ? measured <= rule.goal : measured >= rule.goal;
      return { target: rule.target, workload: s.workload, transport: s.transport, measured,
        goal: rule.goal, unit: rule.unit, atMost: rule.atMost === true, met };
    }));
}

export function targetRows(results: readonly TargetResult[]): string[][] {
  return results.map((r) => [r.target, r.transport,
    `${r.measured ?? '-'}`, `${r.atMost ? '≤' : '≥'} ${r.goal} ${r.unit}`,
    r.met === null ? 'not measured' : r.met ? 'met' : 'MISSED']);
}
