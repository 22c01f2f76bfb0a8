/**
 * The nemesis: a real cluster (`pmq storage` + `pmq broker` on 127.0.0.1, tcp, a /dev/shm
 * region of small segments so rolls happen) under load from producer and consumer processes
 * (nemesis-producer.ts, nemesis-consumer.ts) that record their histories (history.ts), while a
 * seeded schedule SIGKILLs a random process at random moments — the storage node, the broker
 * (both restarted on the same port and data), a producer or a consumer (restarted as a new
 * incarnation: "producer-1#2"), sometimes the storage node and the broker together — and
 * SIGSTOPs one for a short pause (below every timeout) or a long one (past the reservation
 * timeout and the clients' request timeout), then SIGCONTs it. Afterwards everything settles
 * (producers finish their sends or give up; clients reconnect by themselves), the test process
 * reads every partition from offset 0 (final-read events), consumers catch up to the end, and
 * history-checker.ts judges the merged history.
 *
 * Replay: the schedule (which process, when, how long) comes from PMQ_SEED; timing on a
 * loaded machine is not reproducible to the microsecond, so a replay re-runs the same
 * schedule, not the same interleaving. The histories stay in `historyDir` when a run fails.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Client } from '../../clients/index.js';
import { E2eCluster, runFixture, type FixtureRun } from '../helpers/e2e-cluster.js';
import { prngFrom, type Prng } from '../fixtures/record-batch-random.js';
import { checkHistory, formatReport, type CheckResult } from './history-checker.js';
import { parseHistory, sortHistory, type HistoryEvent, type SeenRecord } from './history.js';
import {
  connectRetrying, fileRecorder, retrying, sharedMonotonicMs, sleep, type ProducerArgs,
} from './nemesis-common.js';

export type Target = 'storage' | 'broker' | 'producer' | 'consumer';
export const TARGETS: Target[] = ['storage', 'broker', 'producer', 'consumer'];

export interface NemesisOptions {
  seed: number;
  /** SIGKILLs to deliver before the nemesis stops. */
  kills: number;
  historyDir: string;
  producers?: number;
  consumers?: number;
  partitions?: number;
  regionSize?: string;
  segmentSize?: string;
  reservationTimeoutMs?: number;
  /** The clients' requestTimeoutMs. */
  requestTimeoutMs?: number;
  /**
   * Retention running (default: PMQ_CRASH_RETENTION, on unless "0"): 64 KiB segments, values
   * of 1 KiB and retention.bytes of RETENTION_BYTES per partition, so segments seal and the
   * broker frees them every second while processes die. The checker excuses acknowledged
   * records below the final read's log start, and only those. Off: 256 KiB segments, 48-byte
   * values, no retention (what the nemesis ran before retention existed).
   */
  retention?: boolean;
  log?: (line: string) => void;
}

export interface NemesisResult {
  seed: number;
  historyDir: string;
  kills: Record<Target, number>;
  stops: Record<Target, number>;
  longStops: number;
  recoveryKills: number;
  /** Things that went wrong outside the history: a client that did not finish, an error. */
  problems: string[];
  check: CheckResult;
  /**
   * Offsets the final read does not hold below each partition's last one: hole fillers the
   * broker wrote after a producer died or stalled between reserve and commit (consumers skip
   * them). Evidence that the nemesis hit that window.
   */
  holes: number;
  /**
   * Storage-node kills that came while sends were in flight (invoked, not yet completed): the
   * node died with their writes, persists or replies under way. Evidence that the nemesis hit
   * persists in flight, not only an idle node.
   */
  storageKillsInFlight: number;
  report: string;
  nemesisMs: number;
  totalMs: number;
}

const TOPIC = 'nemesis';
/** With retention: about one segment besides the active one is kept per partition (Kafka's
 *  rule: the oldest goes while the partition holds at least this much without it). */
const RETENTION_BYTES = 64 * 1024;
const retentionOn = (options: NemesisOptions): boolean =>
  options.retention ?? process.env.PMQ_CRASH_RETENTION !== '0';
const zero = (): Record<Target, number> => ({ storage: 0, broker: 0, producer: 0, consumer: 0 });

interface Worker { role: 'producer' | 'consumer'; index: number; incarnation: number;
  name: string; run: FixtureRun<{ event: string }> }

/**
 * A nemesis-producer.ts process: single-record sends, two outstanding, idempotent, acks 'all',
 * maxInFlightBatches 1 (order must hold), recording its history in `historyPath`.
 */
export function spawnProducer(args: Omit<ProducerArgs, 'window' | 'pauseMsMax' | 'valueBytes' |
  'options'> & Partial<Pick<ProducerArgs, 'pauseMsMax' | 'valueBytes'>>):
  FixtureRun<{ event: string }> {
  return runFixture<{ event: string }>('../crash/nemesis-producer.ts', { window: 2,
    pauseMsMax: 15, valueBytes: 48, ...args,
    options: { maxInFlightBatches: 1, lingerMs: 2, retries: 8, retryBackoffMs: 50 } });
}

/** Holds the cluster, the client processes and what the nemesis did to them. */
class Run {
  readonly kills = zero();
  readonly stops = zero();
  longStops = 0;
  /** Kills of a storage node or broker during its own start-up or recovery. */
  recoveryKills = 0;
  /** When each storage kill happened, on the histories' clock. */
  readonly storageKillTimes: number[] = [];
  readonly problems: string[] = [];
  readonly workers: Worker[] = [];
  private readonly retired: Worker[] = [];
  readonly producers: number;
  readonly consumers: number;
  readonly partitions: number;
  readonly reservationTimeoutMs: number;
  readonly requestTimeoutMs: number;

  constructor(readonly cluster: E2eCluster, readonly options: NemesisOptions,
    readonly prng: Prng) {
    this.producers = options.producers ?? 3;
    this.consumers = options.consumers ?? 2;
    this.partitions = options.partitions ?? 3;
    this.reservationTimeoutMs = options.reservationTimeoutMs ?? 1000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 2500;
  }

  log(line: string): void {
    this.options.log?.(line);
  }

  spawn(role: 'producer' | 'consumer', index: number, incarnation: number): Worker {
    const base = `${role}-${index}`;
    const name = incarnation === 1 ? base : `${base}#${incarnation}`;
    const common = { broker: this.cluster.brokerAddress, topic: TOPIC,
      partitions: this.partitions, process: name, requestTimeoutMs: this.requestTimeoutMs,
      historyPath: join(this.options.historyDir, `${name}.jsonl`) };
    const run = role === 'producer'
      ? spawnProducer({ ...common, seed: this.prng.int(0x1_0000_0000),
        ...(retentionOn(this.options) ? { valueBytes: 4096 } : {}) })
      : runFixture<{ event: string }>('../crash/nemesis-consumer.ts', { ...common,
        groupId: `group-${base}`, commitEveryMs: 300 });
    const worker = { role, index, incarnation, name, run };
    this.workers.push(worker);
    return worker;
  }

  /** SIGKILLs a client process and starts its next incarnation. */
  async replace(worker: Worker): Promise<void> {
    await worker.run.kill();
    this.workers.splice(this.workers.indexOf(worker), 1);
    this.retired.push(worker);
    this.spawn(worker.role, worker.index, worker.incarnation + 1);
  }

  /** Client processes that exited on their own, other than by "done": a finding. */
  checkWorkers(): void {
    for (const worker of this.workers) {
      const { exitCode } = worker.run.child;
      if (exitCode === null || exitCode === 0) continue;
      this.problems.push(`${worker.name} exited with ${exitCode}: ` +
        JSON.stringify(worker.run.lines.slice(-3)));
      this.workers.splice(this.workers.indexOf(worker), 1);
      this.retired.push(worker);
      this.spawn(worker.role, worker.index, worker.incarnation + 1);
      return;
    }
  }
}

async function killNode(run: Run, target: 'storage' | 'broker' | 'both'): Promise<void> {
  const { cluster, prng } = run;
  if (target !== 'storage') { await cluster.killBroker(); run.kills.broker += 1; }
  if (target !== 'broker') {
    run.storageKillTimes.push(sharedMonotonicMs());
    await cluster.killStorage();
    run.kills.storage += 1;
  }
  await sleep(prng.int(500));
  // Sometimes the restarted node is killed again during its start-up or recovery (its
  // dependency, if also down, comes back first so the broker's recovery really runs).
  if (target !== 'broker') await restartNode(run, 'storage');
  if (target !== 'storage') await restartNode(run, 'broker');
}

async function restartNode(run: Run, which: 'storage' | 'broker'): Promise<void> {
  if (run.prng.chance(0.25)) {
    const delayMs = 50 + run.prng.int(1500);
    run.log(`SIGKILL ${which} ${delayMs} ms into its restart`);
    await run.cluster.startAndKill(which, delayMs);
    run.kills[which] += 1;
    run.recoveryKills += 1;
  }
  if (which === 'storage') await run.cluster.startStorage();
  else await run.cluster.startBroker();
}

function childOf(run: Run, target: Target): { pid: number | undefined; name: string } {
  if (target === 'storage') return { pid: run.cluster.storage!.child.pid, name: 'storage' };
  if (target === 'broker') return { pid: run.cluster.broker!.child.pid, name: 'broker' };
  const workers = run.workers.filter((w) => w.role === target);
  const worker = workers[run.prng.int(workers.length)]!;
  return { pid: worker.run.child.pid, name: worker.name };
}

async function pause(run: Run, target: Target): Promise<void> {
  const { prng } = run;
  const long = prng.chance(0.35);
  const ms = long ? run.reservationTimeoutMs + prng.int(run.requestTimeoutMs + 1000)
    : 20 + prng.int(400);
  const { pid, name } = childOf(run, target);
  if (pid === undefined) return;
  run.log(`SIGSTOP ${name} for ${ms} ms`);
  process.kill(pid, 'SIGSTOP');
  run.stops[target] += 1;
  if (long) run.longStops += 1;
  await sleep(ms);
  process.kill(pid, 'SIGCONT');
}

/** One step of the schedule: mostly a SIGKILL, sometimes a pause. */
async function step(run: Run): Promise<void> {
  const { prng } = run;
  const roll = prng.next();
  // Every role is hit before any is hit twice, so a short run cannot miss one (the test
  // asserts each role was killed).
  const fresh = TARGETS.filter((role) => run.kills[role] === 0);
  const pool = fresh.length > 0 ? fresh : TARGETS;
  const target = pool[prng.int(pool.length)]!;
  if (roll < 0.25) return pause(run, target);
  if (roll < 0.28) {
    run.log('SIGKILL storage and broker');
    return killNode(run, 'both');
  }
  if (target === 'storage' || target === 'broker') {
    run.log(`SIGKILL ${target}`);
    return killNode(run, target);
  }
  const workers = run.workers.filter((w) => w.role === target);
  const worker = workers[prng.int(workers.length)]!;
  run.log(`SIGKILL ${worker.name}`);
  run.kills[target] += 1;
  await run.replace(worker);
}

const killCount = (run: Run): number => Object.values(run.kills).reduce((a, b) => a + b, 0);

async function nemesis(run: Run): Promise<void> {
  while (killCount(run) < run.options.kills) {
    await sleep(100 + run.prng.int(600));
    run.checkWorkers();
    await step(run);
  }
}

/** Resolves with the worker's lines once it exits 0; records a problem (and kills it) if it
 *  does not within `ms`. */
async function finish(run: Run, worker: Worker, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), ms); });
  try {
    if (await Promise.race([worker.run.done, late]) === 'late') {
      run.problems.push(`${worker.name} did not finish within ${ms} ms: ` +
        JSON.stringify(worker.run.lines.slice(-2)));
      await worker.run.kill();
    }
  } catch (error) {
    run.problems.push(`${worker.name}: ${String(error).slice(0, 2000)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Every partition from its log start to its high watermark; a trailing hole (control batch)
 *  yields nothing, so reading also ends after `idleMs` without a batch. `starts`: the log
 *  starts asked after the read (retention may move them meanwhile: what it deleted during the
 *  read is below them). */
export async function readAll(client: Client, topic: string, partitions: number, idleMs: number,
  withinMs: number): Promise<{ records: SeenRecord[][]; ends: number[]; positions: number[];
    starts: number[] }> {
  const described = await retrying(() => client.admin().describeTopic(topic), withinMs);
  const ends = described.partitions.map((p) => p.highWatermark);
  const consumer = client.consumer({ start: 'earliest', maxWaitMs: 200 });
  const all = Array.from({ length: partitions }, (_, partition) => partition);
  await retrying(() => consumer.assign(all.map((partition) => ({ topic, partition }))),
    withinMs);
  const records: SeenRecord[][] = all.map(() => []);
  const text = new TextDecoder();
  const batches = consumer.batches()[Symbol.asyncIterator]();
  while (!consumer.positions().every(({ partition, offset }) => offset >= ends[partition]!)) {
    const next = await Promise.race([batches.next(), sleep(idleMs).then(() => 'idle' as const)]);
    if (next === 'idle' || next.done === true) break;
    for (const record of next.value.records) {
      records[record.partition]!.push({ offset: record.offset,
        value: record.value === null ? '' : text.decode(record.value) });
    }
  }
  const positions = consumer.positions().map(({ offset }) => offset);
  await consumer.close();
  const after = await retrying(() => client.admin().describeTopic(topic), withinMs);
  return { records, ends, positions, starts: after.partitions.map((p) => p.logStart) };
}

async function settle(run: Run): Promise<void> {
  const producers = run.workers.filter((w) => w.role === 'producer');
  for (const worker of producers) worker.run.tell('stop');
  await Promise.all(producers.map((worker) => finish(run, worker, 30_000)));
  // Reservations of killed producers expire and are filled within the reservation timeout.
  await sleep(2 * run.reservationTimeoutMs);
  const read = await finalRead({ broker: run.cluster.brokerAddress, topic: TOPIC,
    partitions: run.partitions, historyDir: run.options.historyDir,
    requestTimeoutMs: run.requestTimeoutMs, log: (line) => run.log(line) });
  run.problems.push(...read.problems);
  const stored = read.stored;
  const until = Object.fromEntries(stored.map((records, partition) =>
    [String(partition), (records.at(-1)?.offset ?? -1) + 1]));
  const consumers = run.workers.filter((w) => w.role === 'consumer');
  for (const worker of consumers) worker.run.tell({ until });
  await Promise.all(consumers.map((worker) => finish(run, worker, 30_000)));
}

/**
 * Reads every partition of `topic` from offset 0 to its high watermark and records the result
 * as `final-read` events in `historyDir`/final-read.jsonl. A partition with a high watermark
 * above 0 and no record read means the read got stuck (no batch for the idle time), not a
 * hole: it is read again, and reported as a problem if it stays that way.
 */
export async function finalRead(opts: { broker: string; topic: string; partitions: number;
  historyDir: string; requestTimeoutMs: number; log: (line: string) => void;
  /** How long retriable failures (broker restarting) are retried, per step. Default 60 s. */
  withinMs?: number }): Promise<{ stored: SeenRecord[][]; ends: number[]; problems: string[] }> {
  const withinMs = opts.withinMs ?? 60_000;
  const client = await connectRetrying(opts.broker, 'nemesis-final-read', opts.requestTimeoutMs,
    withinMs);
  let read: Awaited<ReturnType<typeof readAll>> = { records: [], ends: [], positions: [],
    starts: [] };
  const problems: string[] = [];
  try {
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      read = await readAll(client, opts.topic, opts.partitions, 8000, withinMs);
      const stuck = read.ends.filter((end, p) => end > (read.starts[p] ?? 0) &&
        read.records[p]!.length === 0);
      if (stuck.length === 0) break;
      const what = `final read attempt ${attempt} got nothing from ${stuck.length} ` +
        `partition(s) (high watermarks ${read.ends.join(', ')}; positions ` +
        `${read.positions.join(', ')})`;
      opts.log(what);
      if (attempt === 3) problems.push(what);
    }
  } finally {
    await client.close();
  }
  const final = fileRecorder(join(opts.historyDir, 'final-read.jsonl'));
  read.records.forEach((records, partition) => final.record('final-read', { kind: 'final-read',
    topic: opts.topic, partition, records, logStart: read.starts[partition] ?? 0 }));
  final.close();
  return { stored: read.records, ends: read.ends, problems };
}

/** The merged history of every `*.jsonl` file in `dir` (a torn last line is dropped). */
export function readHistory(dir: string): HistoryEvent[] {
  const events = readdirSync(dir).filter((name) => name.endsWith('.jsonl')).flatMap((name) =>
    parseHistory(readFileSync(join(dir, name), 'utf8'), { tornTailAllowed: true }));
  return sortHistory(events);
}

/** Runs the whole test; never throws for a finding (the caller asserts on the result). */
export async function runNemesis(options: NemesisOptions): Promise<NemesisResult> {
  const started = Date.now();
  const prng = prngFrom(options.seed);
  const cluster = await E2eCluster.start({ regionSize: options.regionSize ?? '256MiB',
    segmentSize: options.segmentSize ?? (retentionOn(options) ? '64KiB' : '256KiB'),
    reservationTimeoutMs: options.reservationTimeoutMs ?? 1000 });
  const run = new Run(cluster, options, prng);
  let nemesisMs = 0;
  try {
    const admin = await connectRetrying(cluster.brokerAddress, 'nemesis-admin',
      run.requestTimeoutMs);
    await admin.admin().createTopic(TOPIC, { partitions: run.partitions,
      configs: retentionOn(options) ? { 'retention.bytes': RETENTION_BYTES } : {} });
    await admin.close();
    for (let i = 1; i <= run.producers; i += 1) run.spawn('producer', i, 1);
    for (let i = 1; i <= run.consumers; i += 1) run.spawn('consumer', i, 1);
    await sleep(1000);
    const nemesisStarted = Date.now();
    await nemesis(run);
    nemesisMs = Date.now() - nemesisStarted;
    run.checkWorkers();
    await settle(run);
  } finally {
    await Promise.all(run.workers.map((worker) => worker.run.kill()));
    await cluster.stop();
  }
  const history = readHistory(options.historyDir);
  const check = checkHistory(history);
  return { seed: options.seed, historyDir: options.historyDir, kills: run.kills,
    stops: run.stops, longStops: run.longStops, recoveryKills: run.recoveryKills,
    problems: run.problems, check,
    holes: countHoles(history),
    storageKillsInFlight: killsInFlight(history, run.storageKillTimes),
    report: formatReport(check), nemesisMs, totalMs: Date.now() - started };
}

/** How many of `times` fell while at least one send was invoked and not yet completed. */
function killsInFlight(history: HistoryEvent[], times: readonly number[]): number {
  const spans: [number, number][] = [];
  const open = new Map<string, number>();
  for (const event of history) {
    if (event.kind === 'send-invoke') open.set(event.value, event.timeMs);
    if (event.kind === 'send-ok' || event.kind === 'send-fail' || event.kind === 'send-info') {
      const start = open.get(event.value);
      if (start !== undefined) spans.push([start, event.timeMs]);
      open.delete(event.value);
    }
  }
  for (const start of open.values()) spans.push([start, Number.POSITIVE_INFINITY]);
  return times.filter((time) => spans.some(([from, to]) => from < time && time < to)).length;
}

function countHoles(history: HistoryEvent[]): number {
  let holes = 0;
  for (const event of history) {
    if (event.kind !== 'final-read' || event.records.length === 0) continue;
    const offsetLast = Math.max(...event.records.map((record) => record.offset));
    // From the log start: offsets below it were deleted by retention, not filled.
    holes += offsetLast + 1 - (event.logStart ?? 0) -
      new Set(event.records.map((record) => record.offset)).size;
  }
  return holes;
}

/** One line for logs and the test's comment. */
export function summaryLine(result: NemesisResult): string {
  const { stats, counts } = result.check;
  const anomalies = Object.values(counts).reduce((a, b) => a + b, 0);
  const by = (counts: Record<Target, number>): string =>
    TARGETS.map((target) => `${target} ${counts[target]}`).join(', ');
  const sum = (counts: Record<Target, number>): number =>
    Object.values(counts).reduce((a, b) => a + b, 0);
  return `nemesis seed ${result.seed}: kills ${sum(result.kills)} (${by(result.kills)}; ` +
    `${result.recoveryKills} during recovery); stops ${sum(result.stops)} ` +
    `(${by(result.stops)}; ${result.longStops} long); sends ${stats.sends}: ` +
    `acked ${stats.acked}, failed ${stats.failed}, indeterminate ${stats.indeterminate} ` +
    `(${stats.uncompleted} uncompleted, ${stats.indeterminateRead} read); polled ` +
    `${stats.polled} in ${stats.polls} polls; final read ${stats.finalRecords} (${result.holes} ` +
    `hole offsets filled); deleted by retention ${stats.retentionDeleted}; ` +
    `storage kills with sends in flight ${result.storageKillsInFlight}; ` +
    `anomalies ` +
    `${anomalies}; problems ${result.problems.length}; nemesis ${result.nemesisMs} ms, total ` +
    `${result.totalMs} ms`;
}
