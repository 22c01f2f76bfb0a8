// Power cuts of a real storage node (test/crash/power-cut-node.ts, docs/crash-testing.md
// "Power cut of a real node"): `pmq storage` runs with its region in the durable shadow test
// mode under acks-'all' load; SIGKILL at a random moment, build the image a power cut would
// leave from region and shadow, restart on it, and check every acknowledged record.
//
// PMQ_POWERCUT_NODE_CUTS (default 5) sets how many cuts (`npm run test:crash:powercut-node`:
// 1000); PMQ_POWERCUT_NODE_SEED the first cut's seed (cut i uses seed + i). A failing cut
// prints its seed: PMQ_POWERCUT_NODE_CUTS=1 PMQ_POWERCUT_NODE_SEED=<seed> replays its plan.
import t from 'tap';

import { describeCut, runNodeCut } from './power-cut-node.js';

const CUTS = Number(process.env.PMQ_POWERCUT_NODE_CUTS ?? 5);
const SEED = Number(process.env.PMQ_POWERCUT_NODE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const verbose = process.env.PMQ_POWERCUT_NODE_VERBOSE === '1';

const totals = { cuts: 0, failed: 0, acked: 0, read: 0, wordsPending: 0, segments: 0,
  byMode: {} as Record<string, number>, byBacking: {} as Record<string, number> };
const started = Date.now();

t.comment(`power-cut-node: ${CUTS} cuts from PMQ_POWERCUT_NODE_SEED=${SEED}`);
for (let i = 0; i < CUTS; i += 1) {
  const seed = SEED + i;
  t.test(`power cut ${i + 1}/${CUTS} of a real storage node (PMQ_POWERCUT_NODE_SEED=${seed})`,
    async (t) => {
      const result = await runNodeCut({ seed,
        log: verbose ? (line) => t.comment(line) : undefined });
      const description = describeCut(result);
      totals.cuts += 1;
      totals.acked += result.check.stats.acked;
      totals.read += result.recordsRead;
      totals.wordsPending += result.image.wordsPending;
      totals.segments += Math.max(0, result.segmentsVerified);
      totals.byMode[result.image.plan.mode] = (totals.byMode[result.image.plan.mode] ?? 0) + 1;
      totals.byBacking[result.backing] = (totals.byBacking[result.backing] ?? 0) + 1;
      const ok = result.check.valid && result.problems.length === 0;
      if (!ok) totals.failed += 1;
      if (!ok || verbose || CUTS <= 10) t.comment(description);
      t.ok(result.check.stats.acked > 0, 'records were acknowledged before the cut');
      t.ok(result.metadataAcked.offset >= 0, `group commits were acknowledged before the cut ` +
        `(last ${result.metadataAcked.offset}; ${result.metadataAcked.topics} topic creates)`);
      t.same(result.problems, [], 'image verifies, node restarts on it, offsets dense, ' +
        'acknowledged group commits and topic creates kept');
      t.ok(result.check.valid, 'every acknowledged record is read back at its offset, ' +
        'nothing unknown served');
    });
}

t.teardown(() => {
  process.stdout.write(`# power-cut-node: ${totals.cuts} cuts (first seed ${SEED}), ` +
    `${totals.failed} failed; ${totals.acked} acknowledged records checked, ` +
    `${totals.read} read back; ${totals.segments} live segments verified; ` +
    `${totals.wordsPending} words pending over all cuts; tear modes ` +
    `${JSON.stringify(totals.byMode)}; backings ${JSON.stringify(totals.byBacking)}; ` +
    `${Date.now() - started} ms\n`);
});
