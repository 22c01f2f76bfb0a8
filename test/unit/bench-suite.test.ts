/**
 * bench/suite.ts and bench/summary.ts: W3-busy is W3 with every process busy-polling (selected
 * with W3, like W2's sizes), and a table row shows each process's CPU seconds.
 */
import t from 'tap';

import { suiteWorkloads } from '../../bench/suite.js';
import { tableRow, type Summary } from '../../bench/summary.js';

const base = { backing: 'shm' as const, regionDir: '/dev/shm', acks: 'all' as const,
  batchBytes: 262144, lingerMs: 5, spinUs: 50, busyPoll: false, segmentSizeBytes: 1 << 26,
  brokers: undefined };

t.test('W3-busy: W3 with busy polling, selected by W3', async (t) => {
  const all = suiteWorkloads(base, ['sm,tcp'], false, undefined);
  t.same(all.map((w) => w.name), ['W1', 'W2-64KiB', 'W2-1MiB', 'W3', 'W3-busy', 'W4', 'W5']);
  const [w3, busy] = suiteWorkloads(base, ['sm,tcp'], true, ['W3']);
  t.equal(w3?.busyPoll, false);
  t.same({ ...busy, name: 'W3', busyPoll: false }, w3, 'the same shape otherwise');
  t.equal(busy?.busyPoll, true);
  t.same(suiteWorkloads(base, ['tcp'], true, ['W3-busy']).map((w) => w.name), ['W3-busy']);
});

t.test('a row shows the poll mode and every process\'s CPU seconds', async (t) => {
  const latency = { count: 1, p50: 10, p90: 20, p99: 30, p999: 40, max: 50, mean: 12 };
  const flow = { records: 1, bytes: 1, seconds: 1, recordsPerSecond: 1, MBps: 1 };
  const none = { storage: null, broker: null, producer: null, consumer: null };
  const summary: Summary = { bench: 'pmq', workload: 'W3-busy', transport: 'sm,tcp',
    backing: 'shm', recordBytes: 100, partitions: 1, producers: 2, consumers: 1, acks: 'all',
    batchBytes: 1, lingerMs: 0, spinUs: 50, busyPoll: true, rate: 1000, mode: 'open',
    produce: flow, consume: flow, failed: 0, ackLatencyUs: latency, e2eLatencyUs: latency,
    cpuSeconds: none, cpuSecondsPerGB: none,
    cpuSecondsPerProcess: { storage: 3.1, broker: 3.2, producers: [2.5, 2.6], consumers: [3] },
    gc: null, gcPerMillionRecords: null, batches: 0, gcPerThousandBatches: null };
  const row = tableRow(summary);
  t.equal(row[4], 'busy');
  t.equal(row.at(-4), '3.1/3.2/2.5+2.6/3', 'before the batches and GC columns');
  t.equal(tableRow({ ...summary, busyPoll: false })[4], 'spin≤50µs');
});
