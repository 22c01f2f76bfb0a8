// Where `pmq bench` writes its markdown report (issue 13, bug 7): run outside the repository,
// `--quick` used to crash at the end on a missing bench/ (ENOENT, a stack, exit 1, the report
// lost), and `--report PATH --no-machine` wrote nothing. Now: --report as given (directories
// created), else bench/report.md inside a checkout, else the current directory.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';

import { reportPath } from '../../cli/bench.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PMQ = join(ROOT, 'cli/pmq.ts');
// The child runs in a directory with no node_modules: name tsx's loader by its file.
const TSX = import.meta.resolve('tsx');

/** A directory outside the repository (t.testdir is inside it, under .tap/). */
function outsideDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pmq-bench-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function bench(cwd: string, args: string[]): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, ['--import', TSX, PMQ, 'bench', '--no-machine',
    '--transports', 'tcp', ...args], { cwd, encoding: 'utf8', timeout: 120_000,
    env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  return { status: run.status, stderr: run.stderr };
}

t.test('the default report path: the checkout\'s bench/ inside it, else the current directory',
  async (t) => {
    t.equal(reportPath(undefined, ROOT), join(ROOT, 'bench/report.md'));
    t.equal(reportPath(undefined, join(ROOT, 'docs')), join(ROOT, 'bench/report.md'));
    const elsewhere = outsideDir(t);
    t.equal(reportPath(undefined, elsewhere), join(elsewhere, 'pmq-bench-report.md'));
    t.equal(reportPath('a/r.md', elsewhere), join(elsewhere, 'a/r.md'));
  });

t.test('pmq bench --quick outside the repository writes its report here, exit 0', async (t) => {
  const dir = outsideDir(t);
  const run = bench(dir, ['--quick', '--workloads', 'W1']);
  t.equal(run.status, 0, run.stderr);
  t.notMatch(run.stderr, /ENOENT|unexpected failure/);
  const report = readFileSync(join(dir, 'pmq-bench-report.md'), 'utf8');
  t.match(report, /# pmq benchmark report \(quick/);
  t.match(report, /\| W1 \| tcp \|/);
});

t.test('--report PATH --no-machine writes the report, creating its directories', async (t) => {
  const dir = outsideDir(t);
  const run = bench(dir, ['--count', '200', '--report', 'reports/today/bench.md']);
  t.equal(run.status, 0, run.stderr);
  const path = join(dir, 'reports/today/bench.md');
  t.ok(existsSync(path), 'the report exists');
  t.match(readFileSync(path, 'utf8'), /not measured \(--no-machine\)[\s\S]*\| custom \| tcp \|/);
});
