/**
 * The standard suite (`npm run bench`, `pmq bench --suite`): W1..W5 on each transport, region
 * on /dev/shm, plus the machine's limits, written as a markdown report. W3-busy is W3 with
 * every process busy-polling. `--quick` scales every count (and W3's rate) down 100x (W3's
 * duration 10x) for a smoke run of a minute or two.
 */
import type { Workload } from './run.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

export type WorkloadBase = Pick<Workload, 'transports' | 'backing' | 'regionDir' | 'acks' |
  'batchBytes' | 'lingerMs' | 'spinUs' | 'busyPoll' | 'segmentSizeBytes' | 'brokers'>;

type Shape = Pick<Workload, 'name' | 'recordBytes' | 'count' | 'partitions' | 'producers' |
  'consumers' | 'rate' | 'catchUp'> & { durationMs?: number; lingerMs?: number;
  busyPoll?: boolean };

function shapes(quick: boolean): Shape[] {
  const scale = (n: number): number => Math.max(1, Math.round(quick ? n / 100 : n));
  const one = { partitions: 1, producers: 1, consumers: 1, rate: 0, catchUp: false };
  const w3 = { ...one, recordBytes: 100, rate: quick ? 1000 : 10_000,
    count: quick ? 1000 : 100_000, durationMs: quick ? 1000 : 10_000, lingerMs: 0 };
  return [
    { name: 'W1', ...one, recordBytes: 100, count: scale(1_000_000) },
    // W2 moves 1 GiB (10 MiB quick): a million large records would not fit the region.
    { name: 'W2-64KiB', ...one, recordBytes: 64 * KIB, count: scale(GIB / (64 * KIB)) },
    { name: 'W2-1MiB', ...one, recordBytes: MIB, count: scale(GIB / MIB) },
    // Latency: each record goes out when it is due (linger 0), as latency-minded Kafka
    // producers run; a linger would add itself to every record's latency.
    { name: 'W3', ...w3 },
    // The same with every process busy-polling: the latency busy polling buys, next to the
    // CPU it costs (each process's CPU seconds in the row).
    { name: 'W3-busy', ...w3, busyPoll: true },
    { name: 'W4', partitions: 8, producers: 4, consumers: 4, rate: 0, catchUp: false,
      recordBytes: KIB, count: scale(1_000_000) },
    { name: 'W5', ...one, catchUp: true, recordBytes: KIB, count: scale(GIB / KIB) },
  ];
}

export function suiteWorkloads(base: Omit<WorkloadBase, 'transports'>, transports: string[],
  quick: boolean, only: string[] | undefined): Workload[] {
  const selected = shapes(quick).filter((s) => only === undefined ||
    only.some((name) => s.name === name || s.name.startsWith(`${name}-`)));
  return transports.flatMap((tls) => selected.map((s) => ({ ...base, ...s, transports: tls,
    name: s.name })));
}
