// common/metrics.ts and the broker's families: the text format prom-client renders from our
// cells (cumulative buckets, +Inf equal to the count, sums), label sets bound once, and the
// hot path allocating nothing: a million appends answered, persists timed and records counted
// cause no young-generation collection (issue 11's per-batch promise, kept with metrics on).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { HistogramCell, Metrics } from '../../common/metrics.js';

t.test('counters and histograms in the text format', async (t) => {
  const metrics = new Metrics();
  const requests = metrics.counter('x_requests_total', 'Requests.', ['kind']);
  const latency = metrics.histogram('x_seconds', 'Latency.', ['kind'], [0.001, 0.01]);
  metrics.gauge('x_depth', 'Depth.', ['queue'], (set) => set({ queue: 'a' }, 7));
  requests.cell({ kind: 'append' }).value += 3;
  t.equal(requests.cell({ kind: 'append' }), requests.cell({ kind: 'append' }), 'bound once');
  const cell = latency.cell({ kind: 'append' });
  for (const seconds of [0.0005, 0.005, 0.005, 3]) cell.observe(seconds);
  const text = await metrics.text();
  t.match(text, /^# TYPE x_requests_total counter$/m);
  t.match(text, /^x_requests_total\{kind="append"\} 3$/m);
  t.match(text, /^# TYPE x_seconds histogram$/m);
  t.match(text, /^x_seconds_bucket\{kind="append",le="0.001"\} 1$/m);
  t.match(text, /^x_seconds_bucket\{kind="append",le="0.01"\} 3$/m);
  t.match(text, /^x_seconds_bucket\{kind="append",le="\+Inf"\} 4$/m);
  t.match(text, /^x_seconds_count\{kind="append"\} 4$/m);
  t.match(text, /^x_seconds_sum\{kind="append"\} 3.0105$/m);
  t.match(text, /^x_depth\{queue="a"\} 7$/m);
});

t.test('a value above every bound lands in +Inf only', async (t) => {
  const cell = new HistogramCell([1, 2]);
  cell.observe(2);
  cell.observe(2.5);
  t.same([...cell.counts], [0, 1, 1]);
});

t.test('the hot path allocates nothing (no scavenge in 1 M beyond the clock\'s)',
  async (t) => {
    const run = spawnSync(process.execPath, ['--import', 'tsx',
      fileURLToPath(new URL('../fixtures/metrics-alloc.ts', import.meta.url))],
    { encoding: 'utf8', timeout: 120_000 });
    t.equal(run.status, 0, run.stderr);
    const counts = JSON.parse(run.stdout) as { cells: number; served: number; clock: number };
    t.comment(`scavenges per 1 M: ${JSON.stringify(counts)}`);
    t.ok(counts.cells <= 1, `appends, persists, errors, produce counts: ${counts.cells}`);
    t.ok(counts.served <= counts.clock + 1, `requests served: ${counts.served}, the same ` +
      `clock reads alone: ${counts.clock}`);
  });
