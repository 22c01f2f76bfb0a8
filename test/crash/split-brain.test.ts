// Split-brain rounds (test/crash/split-brain.ts; docs/crash-testing.md, "Split brain"): two
// brokers over one storage node — A paused while B runs on a copied, empty or shared data
// directory, or A restarted on its stale directory after B ran — each with its own producer,
// committing group consumer and topic creator, then the history checker. Records must show no
// anomaly, and neither may group commits and topic creates (lost-commit, lost-topic) now that
// metadata lives on the storage nodes under the epoch check; PMQ_SPLITBRAIN_METADATA=0 turns
// that assertion into a todo (for a tree where metadata still lives in the broker's data
// directory: the anomalies are then reported, not failed). `npm test`: 4 rounds (one per
// scenario); `npm run test:crash`:
// 20 (PMQ_SPLITBRAIN_ROUNDS). PMQ_SEED replays: round r uses seed + r, scenario r mod 4
// (PMQ_SPLITBRAIN_SCENARIO picks one for every round).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { roundLine, runRound, SCENARIOS, type RoundResult, type Scenario } from
  './split-brain.js';

const seed = Number(process.env.PMQ_SEED ?? Math.floor(Math.random() * 0x1_0000_0000));
const rounds = Number(process.env.PMQ_SPLITBRAIN_ROUNDS ?? 4);
const only = (process.env.PMQ_SPLITBRAIN_SCENARIO || undefined) as Scenario | undefined;
if (only !== undefined && !SCENARIOS.includes(only)) {
  throw new Error(`PMQ_SPLITBRAIN_SCENARIO must be one of ${SCENARIOS.join(', ')}`);
}
const metadataStrict = process.env.PMQ_SPLITBRAIN_METADATA !== '0';
const METADATA_TODO = 'PMQ_SPLITBRAIN_METADATA=0: metadata in the broker\'s data directory ' +
  'loses commits and creates to a stale, empty or copied one (issue 10)';
const results: RoundResult[] = [];

for (let round = 0; round < rounds; round += 1) {
  const scenario = only ?? SCENARIOS[round % SCENARIOS.length]!;
  const roundSeed = (seed + round) >>> 0;
  t.test(`split brain round ${round}: ${scenario} (PMQ_SEED=${seed})`, async (t) => {
    const historyDir = mkdtempSync(join(tmpdir(), 'pmq-splitbrain-history-'));
    // The round's log (a fenced broker's stderr among it) is printed when the round fails.
    const verbose = process.env.PMQ_SPLITBRAIN_VERBOSE === '1';
    const lines: string[] = [];
    const result = await runRound({ round, seed: roundSeed, scenario, historyDir,
      log: (line) => {
        lines.push(line);
        if (verbose) t.comment(line);
      } });
    results.push(result);
    t.comment(roundLine(result));
    for (const claim of result.claims) t.ok(claim.ok, claim.what);
    t.ok(result.check.stats.acked > 0, 'records were acknowledged');
    t.ok(result.check.stats.commitsAcked > 0, 'group commits were acknowledged');
    t.ok(result.check.stats.createsAcked > 0, 'topic creates were acknowledged');
    t.ok(result.check.stats.commitReadsFound > 0, 'a moved worker continued its group from ' +
      `the offsets the current broker had committed (${result.check.stats.commitReadsFound} ` +
      'partitions)');
    t.same(result.problems, [], 'every worker finished by itself');
    t.equal(result.dataAnomalies, 0, 'no anomaly in the records (lost, duplicated, moved, ' +
      'reordered, skipped, failed-but-read, unknown) and a well-formed history');
    const metadata = result.lostCommits + result.lostTopics;
    t.equal(metadata, 0, `no lost group commit or topic create (lost-commit ` +
      `${result.lostCommits}, lost-topic ${result.lostTopics})`,
    metadataStrict ? {} : { todo: METADATA_TODO });
    const failed = result.dataAnomalies > 0 || result.problems.length > 0 ||
      result.claims.some((c) => !c.ok) || (metadataStrict && metadata > 0);
    if (failed || metadata > 0) {
      if (failed && !verbose) for (const line of lines) t.comment(line);
      t.comment(result.report);
      t.comment(`${failed ? 'FAILED' : 'REPORTED'}: replay with PMQ_SEED=${seed} ` +
        `PMQ_SPLITBRAIN_ROUNDS=${round + 1}; histories kept in ${historyDir}`);
    } else {
      rmSync(historyDir, { recursive: true, force: true });
    }
  });
}

t.teardown(() => {
  const by = new Map<string, { rounds: number; faults: number; acked: number; commits: number;
    creates: number; data: number; lostCommits: number; lostTopics: number; ms: number }>();
  for (const r of results) {
    const s = by.get(r.scenario) ?? { rounds: 0, faults: 0, acked: 0, commits: 0, creates: 0,
      data: 0, lostCommits: 0, lostTopics: 0, ms: 0 };
    s.rounds += 1;
    s.faults += Object.values(r.faults).reduce((a, b) => a + b, 0);
    s.acked += r.check.stats.acked;
    s.commits += r.check.stats.commitsAcked;
    s.creates += r.check.stats.createsAcked;
    s.data += r.dataAnomalies;
    s.lostCommits += r.lostCommits;
    s.lostTopics += r.lostTopics;
    s.ms += r.ms;
    by.set(r.scenario, s);
  }
  for (const [scenario, s] of by) {
    process.stdout.write(`# split brain ${scenario}: ${JSON.stringify(s)}\n`);
  }
  const total = [...by.values()].reduce((sum, s) => Object.fromEntries(Object.entries(s)
    .map(([k, v]) => [k, v + (sum[k] ?? 0)])), {} as Record<string, number>);
  process.stdout.write(`# split brain total (PMQ_SEED=${seed}): ${JSON.stringify(total)}\n`);
});
