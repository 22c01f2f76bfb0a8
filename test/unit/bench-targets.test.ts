/**
 * bench/targets.ts: each target reads the right figure of the right workload and transport,
 * compares it the right way round, and says "not measured" when its limit is missing.
 */
import t from 'tap';

import type { MachineLimits } from '../../bench/machine.js';
import type { LatencyUs, Summary } from '../../bench/summary.js';
import { checkTargets, targetRows } from '../../bench/targets.js';

const latency = (p99: number): LatencyUs =>
  ({ count: 10, p50: p99 / 2, p90: p99, p99, p999: p99, max: p99, mean: p99 / 2 });

function summary(workload: string, transport: string, fields: Partial<Summary>): Summary {
  const none = { storage: null, broker: null, producer: null, consumer: null };
  return { bench: 'pmq', workload, transport, backing: 'shm', recordBytes: 100, partitions: 1,
    producers: 1, consumers: 1, acks: 'all', batchBytes: 65536, lingerMs: 5, spinUs: 0,
    busyPoll: false, rate: 0,
    mode: 'closed', failed: 0, ackLatencyUs: latency(1000), e2eLatencyUs: latency(2000),
    produce: { records: 1, bytes: 1, seconds: 1, recordsPerSecond: 1, MBps: 1 },
    consume: { records: 1, bytes: 1, seconds: 1, recordsPerSecond: 1, MBps: 1 },
    cpuSeconds: none, cpuSecondsPerGB: none,
    cpuSecondsPerProcess: { storage: null, broker: null, producers: [], consumers: [] },
    gc: null, gcPerMillionRecords: null, batches: 0, gcPerThousandBatches: null, ...fields };
}

const machine: MachineLimits = { memcpyMBps: 10_000, ucx: {
  tcp: { putMBps: 2000, putMBps1MiB: 1000, amRoundTripUs: 10 },
  'sm,tcp': { putMBps: 40_000, putMBps1MiB: 30_000, amRoundTripUs: 0.6 } } };

const throughput = (recordsPerSecond: number, MBps: number) =>
  ({ records: 1, bytes: 1, seconds: 1, recordsPerSecond, MBps });

t.test('each target against its workload, transport and limit', async (t) => {
  const results = checkTargets([
    summary('W1', 'sm,tcp', { produce: throughput(1_200_000, 120) }),
    summary('W1', 'tcp', { produce: throughput(10, 1) }),                // no target on tcp
    summary('W2-1MiB', 'sm,tcp', { recordBytes: 1 << 20, produce: throughput(1, 4000) }),
    summary('W2-1MiB', 'tcp', { recordBytes: 1 << 20, produce: throughput(1, 900) }),
    summary('W2-64KiB', 'tcp', { recordBytes: 1 << 16, produce: throughput(1, 900) }),
    summary('W3', 'sm,tcp', { ackLatencyUs: latency(15), e2eLatencyUs: latency(60) }),
    summary('W3-busy', 'sm,tcp', { busyPoll: true, ackLatencyUs: latency(12),
      e2eLatencyUs: latency(30) }),
    summary('W5', 'sm,tcp', { mode: 'catch-up', consume: throughput(1, 6000) }),
  ], machine);
  const byTarget = Object.fromEntries(results.map((r) => [`${r.target} ${r.transport}`, r]));
  t.equal(results.length, 9);
  t.match(byTarget['W1 acknowledged records/s (acks all) sm,tcp'],
    { measured: 1_200_000, met: true });
  t.match(byTarget['W2 1 MiB produce MB/s ÷ memcpy sm,tcp'], { measured: 0.4, met: false });
  t.match(byTarget['W2-1MiB produce MB/s ÷ ucx_perftest put (tcp) tcp'],
    { measured: 0.9, met: true }, '1 MiB records against the 1 MiB put');
  t.match(byTarget['W2-64KiB produce MB/s ÷ ucx_perftest put (tcp) tcp'],
    { measured: 0.45, met: false }, '64 KiB records against the 64 KiB put');
  t.match(byTarget['W3 acknowledged latency p99 sm,tcp'], { measured: 15, met: true });
  t.match(byTarget['W3 end-to-end latency p99 sm,tcp'], { measured: 60, met: false });
  t.match(byTarget['W3-busy acknowledged latency p99 sm,tcp'], { measured: 12, met: true },
    'W3-busy is held to the same goals');
  t.match(byTarget['W3-busy end-to-end latency p99 sm,tcp'], { measured: 30, met: true });
  t.match(byTarget['W5 catch-up read MB/s ÷ memcpy sm,tcp'], { measured: 0.6, met: true });
  t.same(targetRows(results).map((row) => row[4]),
    ['met', 'MISSED', 'met', 'met', 'MISSED', 'met', 'met', 'MISSED', 'met'],
    'in the order of the issue');
});

t.test('a limit that was not measured is said so', async (t) => {
  const results = checkTargets([summary('W2-1MiB', 'tcp', { recordBytes: 1 << 20 })],
    { memcpyMBps: 0, ucx: {} });
  t.match(results, [{ measured: null, met: null }]);
  t.equal(targetRows(results)[0]![4], 'not measured');
});
