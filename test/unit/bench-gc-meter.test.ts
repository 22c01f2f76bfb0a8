/**
 * bench/gc-meter.ts: counts V8's --trace-gc lines of Node 20 (young and full collections, the
 * pause including incremental marking steps, the allocation estimate), ignores every other
 * line, restarts on reset(), and scales to a million records. The last test runs a real node
 * with --trace-gc, so a change of V8's line format fails here, not silently in the bench.
 */
import { spawnSync } from 'node:child_process';

import t from 'tap';

import { GcMeter, perMillionRecords, perThousandBatches } from '../../bench/gc-meter.js';

const SCAVENGE = '[5189:0x2b3da490]       26 ms: Scavenge 3.8 (4.0) -> 3.4 (5.0) MB, 1.28 / ' +
  '0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ';
const SCAVENGE2 = '[5189:0x2b3da490]       28 ms: Scavenge 4.4 (5.2) -> 3.7 (5.9) MB, 0.50 / ' +
  '0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ';
const MARK_COMPACT = '[5313:0x227ceec0]      179 ms: Mark-Compact 70.9 (94.2) -> 56.4 (91.1) ' +
  'MB, 8.35 / 0.01 ms  (+ 24.6 ms in 90 steps since start of marking, biggest step 5.1 ms, ' +
  'walltime since start of marking 64 ms) (average mu = 1.000, current mu = 1.000) finalize ' +
  'incremental marking via stack guard; GC in old space requested';

t.test('counts scavenges, full collections and their pauses', async (t) => {
  const meter = new GcMeter();
  for (const line of [SCAVENGE, '{"event":"ready"}', 'listening on 127.0.0.1:1', SCAVENGE2,
    MARK_COMPACT]) meter.feed(line);
  const c = meter.counts;
  t.equal(c.scavenges, 2);
  t.equal(c.markCompacts, 1);
  t.equal(Math.round(c.pauseMs * 100), 128 + 50 + 835 + 2460);
  // (4.4 - 3.4) + (70.9 - 3.7) MB between collections, in 10^6 bytes.
  t.equal(Math.round(c.allocatedMB * 100), Math.round(68.2 * 104.8576));
  meter.reset();
  t.same(meter.counts, { scavenges: 0, markCompacts: 0, pauseMs: 0, allocatedMB: 0 });
  t.same(perMillionRecords({ scavenges: 3, markCompacts: 1, pauseMs: 2, allocatedMB: 5 },
    500_000), { scavenges: 6, markCompacts: 2, pauseMs: 4, allocatedMB: 10 });
  t.equal(perMillionRecords(c, 0), null);
  t.same(perThousandBatches({ scavenges: 3, markCompacts: 0, pauseMs: 1, allocatedMB: 2 },
    6000), { scavenges: 0.5, markCompacts: 0, pauseMs: 0.2, allocatedMB: 0.3 });
});

t.test('the format of this node\'s --trace-gc lines', async (t) => {
  const run = spawnSync(process.execPath, ['--trace-gc', '--expose-gc', '-e',
    'let a = []; for (let i = 0; i < 2e5; i++) a.push({ i }); a = null; gc();'],
  { encoding: 'utf8' });
  const meter = new GcMeter();
  for (const line of run.stdout.split('\n')) meter.feed(line);
  t.ok(meter.counts.scavenges >= 1, 'young collections counted');
  t.ok(meter.counts.markCompacts >= 1, 'the full collection of gc() counted');
});
