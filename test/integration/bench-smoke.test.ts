/**
 * `pmq bench` end to end at a tiny size: a few hundred records in open loop, sleeping and
 * busy-polling, JSON lines on stdout that parse and carry every field. Numbers are not checked
 * (no timed assertions): this proves the harness runs, not how fast pmq is.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import t from 'tap';

const PMQ = fileURLToPath(new URL('../../cli/pmq.ts', import.meta.url));

function bench(args: string[]): Record<string, unknown>[] {
  const run = spawnSync(process.execPath, ['--import', 'tsx', PMQ, 'bench', '--json',
    '--no-machine', '--transports', 'tcp', ...args], { encoding: 'utf8', timeout: 60_000,
    env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  if (run.status !== 0) throw new Error(`pmq bench exited ${run.status}: ${run.stderr}`);
  return run.stdout.split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const gcCounts = { scavenges: Number, markCompacts: Number, pauseMs: Number, allocatedMB: Number };

t.test('pmq bench prints a JSON line per workload with every field', async (t) => {
  // One run (the cluster's start-up dominates): open loop, 2 producers, 2 consumers.
  // Every process spins 20 µs before sleeping (PMQ_SPIN_US): the spin path runs end to end.
  const [line] = bench(['--count', '300', '--rate', '600', '--partitions', '2', '--producers',
    '2', '--consumers', '2', '--spin-us', '20']);
  t.ok(line, 'one line');
  t.match(line, { bench: 'pmq', mode: 'open', rate: 600, spinUs: 20, busyPoll: false,
    transport: 'tcp', failed: 0,
    produce: { records: 300, bytes: 30_000, recordsPerSecond: Number, MBps: Number },
    consume: { records: 300, bytes: 30_000 },
    ackLatencyUs: { count: 300, p50: Number, p90: Number, p99: Number, p999: Number,
      max: Number },
    e2eLatencyUs: { count: 300, p50: Number, p99: Number, max: Number },
    cpuSecondsPerGB: { storage: Number, broker: Number, producer: Number, consumer: Number },
    cpuSecondsPerProcess: { storage: Number, broker: Number, producers: [Number, Number],
      consumers: [Number, Number] },
    gc: { storage: gcCounts, broker: gcCounts },
    gcPerMillionRecords: { storage: gcCounts, broker: gcCounts },
    batches: Number, gcPerThousandBatches: { storage: gcCounts, broker: gcCounts } });
});

t.test('pmq bench --busy-poll: every process busy-polls, each one\'s CPU is reported',
  async (t) => {
    const [line] = bench(['--count', '100', '--rate', '500', '--linger-ms', '0', '--busy-poll']);
    t.match(line, { bench: 'pmq', mode: 'open', busyPoll: true, failed: 0,
      ackLatencyUs: { count: 100 }, e2eLatencyUs: { count: 100 },
      cpuSecondsPerProcess: { storage: Number, broker: Number, producers: [Number],
        consumers: [Number] } });
  });

t.test('pmq bench --soak: 3× a small region through retention, never full', async (t) => {
  const lines = bench(['--soak', '--region-size', '16MiB', '--segment-size', '256KiB',
    '--record-size', '4096', '--soak-interval', '1']);
  const summary = lines.find((line) => line.bench === 'soak');
  t.match(summary, { regionBytes: 16 << 20, full: false, lostToRetention: 0,
    rssKiB: { storage: [Number, Number], broker: [Number, Number] } });
  t.ok((summary?.writtenBytes as number) >= 3 * (16 << 20), 'wrote 3× the region');
  t.ok((summary?.regionUsePctMax as number) < 100, 'region use stayed below full');
  t.equal(summary?.consumed, summary?.records, 'the consumer kept up: every record read');
});
