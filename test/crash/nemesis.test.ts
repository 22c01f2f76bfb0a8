// The nemesis (test/crash/nemesis.ts, docs/crash-testing.md "Nemesis"): SIGKILL and SIGSTOP
// storage node, broker, producers and consumers at random under load, then check the history:
// no acknowledged record lost, duplicated or reordered, nothing failed served. Short form in
// `npm test` (PMQ_CRASH_KILLS, default 24); `npm run test:crash` runs 200. PMQ_SEED replays
// a schedule; a failure prints the seed and keeps the histories.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { runNemesis, summaryLine } from './nemesis.js';

const seed = Number(process.env.PMQ_SEED ?? Math.floor(Math.random() * 0x1_0000_0000));
const kills = Number(process.env.PMQ_CRASH_KILLS ?? 24);

t.test(`nemesis: ${kills} kills under load (PMQ_SEED=${seed})`, async (t) => {
  const historyDir = mkdtempSync(join(tmpdir(), 'pmq-nemesis-'));
  const verbose = process.env.PMQ_NEMESIS_VERBOSE === '1';
  const result = await runNemesis({ seed, kills, historyDir,
    log: verbose ? (line) => t.comment(line) : undefined }).catch((error: unknown) => {
    t.comment(`FAILED: replay with PMQ_SEED=${seed}; histories kept in ${historyDir}`);
    throw error;
  });
  const summary = summaryLine(result);
  t.comment(summary);
  t.ok(result.check.stats.acked > 0, 'records were acknowledged');
  t.ok(kills === 0 || Object.values(result.kills).reduce((a, b) => a + b, 0) >= kills,
    `at least ${kills} kills`);
  if (kills >= 8) {
    for (const [role, count] of Object.entries(result.kills)) {
      t.ok(count > 0, `the ${role} was killed (${count} times)`);
    }
    t.ok(result.storageKillsInFlight > 0, `${result.storageKillsInFlight} storage kills came ` +
      'with sends (so writes, persists or replies) in flight');
  }
  t.same(result.problems, [], 'every client finished or gave up by itself');
  t.ok(result.check.valid, 'the history checks clean');
  const failed = !result.check.valid || result.problems.length > 0;
  if (failed) {
    t.comment(result.report);
    t.comment(`FAILED: replay with PMQ_SEED=${seed}; histories kept in ${historyDir}`);
  } else {
    rmSync(historyDir, { recursive: true, force: true });
  }
  process.stdout.write(`# ${summary}\n`);
});
