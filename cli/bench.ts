/**
 * `pmq bench`: one workload with the given knobs, or the standard suite (`--suite`, what
 * `npm run bench` runs), against a cluster it starts for each workload (or `--brokers`).
 * Producers and consumers run as separate processes (bench/run.ts). stdout: a table, or JSON
 * lines with --json; a progress line on stderr when it is a terminal. docs/benchmarks.md.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Command, InvalidArgumentError, Option } from 'commander';

import { measureMachine, type MachineLimits } from '../bench/machine.js';
import { markdownReport, ratiosOf } from '../bench/report.js';
import { checkTargets, targetRows } from '../bench/targets.js';
import { PRODUCER_BATCH_BYTES_DEFAULT, SPIN_US_DEFAULT, SPIN_US_MAX } from '../common/limits.js';
import { runWorkload, type Workload } from '../bench/run.js';
import { runSoak, type SoakInterval, type SoakSummary } from '../bench/soak.js';
import { suiteWorkloads } from '../bench/suite.js';
import { formatSummaries, summarize, type Summary } from '../bench/summary.js';
import { PmqError } from '../common/errors.js';
import { parseSizeBytes } from '../common/units.js';
import { busyPollOption, integerArgument } from './options.js';

interface BenchCliOptions {
  brokers?: string; transports?: string; recordSize: number; count: number; duration?: number;
  partitions: number; producers: number; consumers: number; acks: 'all' | 'none';
  batchBytes: number; lingerMs: number; spinUs: number; busyPoll: boolean; rate: number;
  catchUp: boolean;
  backing: 'shm' | 'file'; regionDir?: string; segmentSize: number; json: boolean;
  suite: boolean; quick: boolean; report?: string; workloads?: string; machine: boolean;
  soak: boolean; regionSize: number; soakFactor: number; soakInterval: number;
}

/** The suite's report without --report: here in a checkout (docs/benchmarks.md links it). */
const REPOSITORY_REPORT = 'bench/report.md';
/** ... and anywhere else (an installed package, another directory): in the current one. */
const CWD_REPORT = 'pmq-bench-report.md';

/**
 * Where the report goes (issue 13, bug 7: `pmq bench --quick` outside the repository crashed
 * at the end on a missing bench/): --report as given (relative to the current directory);
 * else the repository's bench/report.md when run inside a checkout (this file's tree with
 * bench/ sources, the current directory at or below its root); else the current directory.
 */
export function reportPath(report: string | undefined, cwd: string = process.cwd()): string {
  if (report !== undefined) return resolve(cwd, report);
  // This file runs as cli/bench.ts (tsx) or as dist/cli/bench.js: the checkout is one of these.
  for (const up of ['..', '../..']) {
    const root = fileURLToPath(new URL(up, import.meta.url));
    const below = relative(root, cwd);
    const inside = below === '' || (!below.startsWith('..') && !isAbsolute(below));
    if (inside && existsSync(join(root, 'bench', 'suite.ts'))) {
      return join(root, REPOSITORY_REPORT);
    }
  }
  return join(cwd, CWD_REPORT);
}

/** Writes the report, creating missing directories; a failure says where it tried. */
function writeReport(path: string, text: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  } catch (error) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `cannot write the bench report to ${path}: ` +
      `${(error as Error).message} (choose another with --report PATH)`, { cause: error });
  }
  process.stderr.write(`pmq bench: report written to ${path}\n`);
}

function sizeArgument(name: string) {
  return (text: string): number => {
    try {
      return parseSizeBytes(text, name);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function workloadOf(opts: BenchCliOptions): Workload {
  return { name: 'custom', transports: 'sm,tcp', ...baseOf(opts),
    recordBytes: opts.recordSize, count: opts.count,
    durationMs: opts.duration === undefined ? undefined : opts.duration * 1000,
    partitions: opts.partitions, producers: opts.producers, consumers: opts.consumers,
    rate: opts.rate, catchUp: opts.catchUp };
}

function baseOf(opts: BenchCliOptions): Omit<Workload, 'name' | 'transports' | 'recordBytes' |
  'count' | 'partitions' | 'producers' | 'consumers' | 'rate' | 'catchUp'> {
  const regionDir = opts.regionDir ?? (opts.backing === 'shm' ? '/dev/shm' : tmpdir());
  return { backing: opts.backing, regionDir, acks: opts.acks, batchBytes: opts.batchBytes,
    lingerMs: opts.lingerMs, spinUs: opts.spinUs, busyPoll: opts.busyPoll,
    segmentSizeBytes: opts.segmentSize,
    brokers: opts.brokers };
}

function progressLine(name: string, transports: string): (p: number, c: number) => void {
  if (process.stderr.isTTY !== true) return () => undefined;
  let produced = 0;
  let consumed = 0;
  let lastMs = 0;
  return (p, c) => {
    if (p >= 0) produced = p;
    if (c >= 0) consumed = c;
    if (performance.now() - lastMs < 200) return;
    lastMs = performance.now();
    process.stderr.write(`\r\x1b[K${name} ${transports}: ${produced} acknowledged, ` +
      `${consumed} consumed`);
  };
}

async function runAll(workloads: Workload[], opts: BenchCliOptions): Promise<Summary[]> {
  const summaries: Summary[] = [];
  for (const w of workloads) {
    const onProgress = progressLine(w.name, w.transports);
    const summary = summarize(w, await runWorkload({ ...w, onProgress }));
    if (process.stderr.isTTY === true) process.stderr.write('\r\x1b[K');
    summaries.push(summary);
    if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stderr.write(`${w.name} ${w.transports}: done\n`);
  }
  return summaries;
}

/** `--soak`: retention keeping a broker running (bench/soak.ts); a line per interval. */
async function runSoakBench(opts: BenchCliOptions): Promise<void> {
  const regionDir = opts.regionDir ?? (opts.backing === 'shm' ? '/dev/shm' : tmpdir());
  const summary = await runSoak({ regionSizeBytes: opts.regionSize,
    segmentSizeBytes: opts.segmentSize, recordBytes: opts.recordSize,
    partitions: opts.partitions, factor: opts.soakFactor, rate: opts.rate,
    intervalMs: opts.soakInterval * 1000, transports: opts.transports ?? 'sm,tcp', regionDir,
    onLine: (line) => process.stdout.write(opts.json ? `${JSON.stringify(line)}\n`
      : `${formatSoakLine(line)}\n`) });
  if (summary.full || summary.regionUsePctMax >= 100) process.exitCode = 1;
}

function formatSoakLine(line: SoakInterval | SoakSummary): string {
  if (line.bench === 'soak-interval') {
    return `${line.atS.toFixed(1).padStart(7)} s  ${String(line.records).padStart(9)} records  ` +
      `${String(line.recordsPerS).padStart(7)} rec/s  region ${line.regionUsePct}% ` +
      `(${line.segmentsInUse} segments)  ack p50 ${line.ackUs.p50} µs p99 ${line.ackUs.p99} µs ` +
      `max ${line.ackUs.max} µs  consumer lag ${line.consumerLag}`;
  }
  const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`;
  return `soak: wrote ${mib(line.writtenBytes)} (${(line.writtenBytes / line.regionBytes)
    .toFixed(1)}× the ${mib(line.regionBytes)} region) in ${line.records} records, ` +
    `${line.tookS} s; consumed ${line.consumed}, lost to retention ${line.lostToRetention}; ` +
    `region use max ${line.regionUsePctMax}%${line.full ? ' — REGION FULL' : ''}; RSS storage ` +
    `${line.rssKiB.storage[0]} → ${line.rssKiB.storage[1]} KiB, broker ${line.rssKiB.broker[0]}` +
    ` → ${line.rssKiB.broker[1]} KiB`;
}

async function runBench(opts: BenchCliOptions): Promise<void> {
  if (opts.soak) {
    await runSoakBench(opts);
    return;
  }
  const suite = opts.suite || opts.quick;
  const transports = (opts.transports ?? (suite ? 'tcp;sm,tcp' : 'sm,tcp')).split(';');
  const workloads = suite
    ? suiteWorkloads(baseOf(opts), transports, opts.quick, opts.workloads?.split(','))
    : transports.map((tls) => ({ ...workloadOf(opts), transports: tls }));
  const summaries = await runAll(workloads, opts);
  let machine: MachineLimits | null = null;
  if (opts.machine) {
    machine = await measureMachine(transports, opts.quick);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ bench: 'machine', ...machine })}\n`);
      for (const s of summaries) {
        process.stdout.write(`${JSON.stringify({ bench: 'ratios', ...ratiosOf(s, machine) })}\n`);
      }
      for (const target of checkTargets(summaries, machine)) {
        process.stdout.write(`${JSON.stringify({ bench: 'target', ...target })}\n`);
      }
    }
  }
  if (!opts.json) process.stdout.write(formatSummaries(summaries));
  if (!opts.json && machine !== null) process.stdout.write(formatTargets(summaries, machine));
  if (suite || opts.report !== undefined) {
    writeReport(reportPath(opts.report), markdownReport(summaries, machine, opts.quick));
  }
  if (summaries.some((s) => s.failed > 0)) process.exitCode = 1;
}

function formatTargets(summaries: Summary[], machine: MachineLimits): string {
  const rows = targetRows(checkTargets(summaries, machine));
  if (rows.length === 0) return '';
  return `\ntargets (docs/benchmarks.md):\n${rows.map((r) => `  ${r[4]!.padEnd(12)} ` +
    `${r[0]} [${r[1]}]: ${r[2]} (goal ${r[3]})`).join('\n')}\n`;
}

export function registerBenchCommand(program: Command): void {
  const int = (name: string, min: number, max: number): ((t: string) => number) =>
    integerArgument(name, min, max);
  program.command('bench')
    .description('measure pmq: throughput, acked and end-to-end latency, CPU per GB, GC counts')
    .option('--brokers <host:port>', 'use this broker instead of starting a cluster')
    .option('--transports <list>', 'UCX_TLS of every process; several runs separated by ; ' +
      '(default sm,tcp; the suite: tcp;sm,tcp)')
    .option('--record-size <bytes>', 'value bytes per record (>= 8)', sizeArgument('--record-size'),
      100)
    .option('--count <n>', 'records in all', int('--count', 1, 2 ** 40), 100_000)
    .option('--duration <s>', 'stop producing after this many seconds (with --count: first wins)',
      int('--duration', 1, 86_400))
    .option('--partitions <n>', 'partitions of the topic', int('--partitions', 1, 4096), 1)
    .option('--producers <n>', 'producer processes', int('--producers', 1, 256), 1)
    .option('--consumers <n>', 'consumer processes (at most one per partition)',
      int('--consumers', 1, 256), 1)
    .addOption(new Option('--acks <acks>', 'all: acked when durable; none: when written')
      .choices(['all', 'none']).default('all'))
    .option('--batch-bytes <bytes>', 'producer maxBatchBytes (default: the producer\'s, ' +
      '256KiB)', sizeArgument('--batch-bytes'), PRODUCER_BATCH_BYTES_DEFAULT)
    .option('--linger-ms <ms>', 'producer lingerMs', int('--linger-ms', 0, 60_000), 5)
    .option('--spin-us <µs>', 'every process polls at most this long before sleeping (the ' +
      'bound of the adaptive spin, PMQ_SPIN_US; ' +
      '0: sleep at once)', int('--spin-us', 0, SPIN_US_MAX), SPIN_US_DEFAULT)
    .addOption(busyPollOption('one each: every process the bench starts, storage node, ' +
      'broker, producers, consumers; the suite\'s W3-busy always busy-polls'))
    .option('--rate <records/s>', 'open loop at this rate over all producers (0: closed loop)',
      int('--rate', 0, 100_000_000), 0)
    .option('--catch-up', 'consume only after everything is produced', false)
    .addOption(new Option('--backing <kind>', 'region on /dev/shm or an ordinary file')
      .choices(['shm', 'file']).default('shm'))
    .option('--region-dir <dir>', 'directory of the region file (default by --backing: ' +
      '/dev/shm, or the temp dir)')
    .option('--segment-size <bytes>', 'segment size of the region',
      sizeArgument('--segment-size'), 64 * 1024 * 1024)
    .option('--json', 'JSON lines on stdout instead of a table', false)
    .option('--suite', 'run the standard workloads W1..W5 and write a markdown report', false)
    .option('--quick', 'the suite with every count scaled down ~100x (implies --suite)', false)
    .option('--workloads <list>', 'with --suite: only these, e.g. W1,W3')
    .option('--report <path>', `markdown report (suite default: ${REPOSITORY_REPORT} in a ` +
      `checkout of pmq, else ./${CWD_REPORT}; directories are created)`)
    .option('--no-machine', 'skip measuring memcpy and ucx_perftest')
    .option('--soak', 'soak run: a steady producer writes --soak-factor × the region through ' +
      'a topic whose retention keeps it below the region, a consumer keeps up; a line per ' +
      '--soak-interval (docs/benchmarks.md, "Soak")', false)
    .option('--region-size <bytes>', 'with --soak: the region\'s size',
      sizeArgument('--region-size'), 256 * 1024 * 1024)
    .option('--soak-factor <n>', 'with --soak: values written, in region sizes',
      int('--soak-factor', 1, 1000), 3)
    .option('--soak-interval <s>', 'with --soak: seconds per report line',
      int('--soak-interval', 1, 3600), 60)
    .action(async (opts: BenchCliOptions) => { await runBench(opts); });
}
