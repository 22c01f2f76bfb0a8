/**
 * Split-brain rounds (issue 10; docs/crash-testing.md, "Split brain"): two brokers over one
 * storage node, each with its own clients, and the history checker as judge.
 *
 * A round: a fresh storage node (a /dev/shm region of 256 KiB segments) and broker A on data
 * directory `a`; the test process creates topic `sb` (3 partitions) on A; a worker process
 * (split-brain-worker.ts: producer, group consumer that commits, topic creator) runs against A.
 * Then one scenario, in rotation:
 *
 * - `copy`: SIGSTOP A; copy `a` to `b`; start B on `b`; a second worker runs against B; SIGCONT
 *   A, which must learn it is fenced and exit with code 2. B is the current broker.
 * - `empty`: the same with B on an empty directory (the test creates `sb-b` on B for B's
 *   worker). B is the current broker.
 * - `shared`: SIGSTOP A; a broker on `a` itself must be refused (PMQ_ERR_DATA_DIR_LOCKED, exit
 *   1) while A's process lives; SIGKILL A; B starts on `a`. B is the current broker.
 * - `stale-restart`: SIGKILL A (its worker keeps retrying A's address); copy `a` to `b`; start
 *   B on `b` with its worker; restart A on its stale `a`, on its old port: B must exit 2, A's
 *   worker reconnects to it. A is the current broker.
 *
 * The worker of the broker that died or was fenced moves to the current broker (SIGKILLed, and
 * replaced by one in the same group: it continues from the offsets committed there). After more
 * load the live workers stop (sends settle), and the test process reads from the current
 * broker: the topic list (`final-topics`), every partition of every data topic it lists
 * (`final-read`) and the committed offset of every key that was committed (`final-offsets`).
 * Every history is merged and checked. Each round also reports the facts that show it did what
 * it claims (A stopped, B's epoch above A's, the exit codes).
 *
 * Clients: sends that end in PMQ_ERR_FENCED are indeterminate (the producer retries; an earlier
 * attempt may be durable); commits and creates are one request each, and a fenced broker
 * answers PMQ_ERR_FENCED only for what it has not done (docs/clients.md), so those are failures.
 */
import { cpSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Client } from '../../clients/index.js';
import { runFixture, type FixtureRun } from '../helpers/e2e-cluster.js';
import {
  exitOf, runPmq, startBroker, startStorage, stopProc, tempDir, type Proc,
} from '../helpers/broker-cluster.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { prngFrom, type Prng } from '../fixtures/record-batch-random.js';
import { checkHistory, COUNT_KEYS, formatReport, type AnomalyKind, type CheckResult } from
  './history-checker.js';
import type { HistoryRecorder, OffsetKey } from './history.js';
import { readAll, readHistory } from './nemesis.js';
import { connectRetrying, fileRecorder, retrying, sleep } from './nemesis-common.js';

export type Scenario = 'copy' | 'empty' | 'shared' | 'stale-restart';
export const SCENARIOS: Scenario[] = ['copy', 'empty', 'shared', 'stale-restart'];
export const METADATA_KINDS: AnomalyKind[] = ['lost-commit', 'lost-topic'];

const TOPIC = 'sb';
const PARTITIONS = 3;
const REQUEST_TIMEOUT_MS = 2500;
const FENCED_EXIT_WITHIN_MS = 15_000;

export interface RoundOptions {
  round: number;
  seed: number;
  scenario: Scenario;
  historyDir: string;
  log?: (line: string) => void;
}

/** A fact the round claims, and whether it held. */
export interface Claim { what: string; ok: boolean }

export interface RoundResult {
  round: number;
  seed: number;
  scenario: Scenario;
  historyDir: string;
  claims: Claim[];
  problems: string[];
  check: CheckResult;
  report: string;
  /** Anomalies of the records (every kind but lost-commit and lost-topic). */
  dataAnomalies: number;
  lostCommits: number;
  lostTopics: number;
  /** Faults delivered: sigstop, sigcont, sigkill (brokers), fenced-exit, refused-start,
   *  client-kill (a worker SIGKILLed with its broker gone). */
  faults: Record<string, number>;
  /** Epochs from the brokers' banners; `aRestarted` in stale-restart. */
  epochs: { a: number; b: number; aRestarted: number | null };
  ms: number;
}

/** One side's worker process; `side` names its processes ("a", "a2" for its replacement). */
interface Worker { side: string; group: string; topic: string; alive: boolean;
  run: FixtureRun<{ event: string }> }

/** Processes and facts of one round. */
class Round {
  readonly claims: Claim[] = [];
  readonly problems: string[] = [];
  readonly procs: Proc[] = [];
  readonly workers: Worker[] = [];
  readonly recorder: HistoryRecorder;
  readonly dataTopics = [TOPIC];
  readonly epochs = { a: 0, b: 0, aRestarted: null as number | null };
  readonly faults: Record<string, number> = {};
  storage!: Proc;
  brokerA!: Proc;

  constructor(readonly dir: string, readonly options: RoundOptions, readonly prng: Prng) {
    this.recorder = fileRecorder(join(options.historyDir, 'test.jsonl'));
  }

  log(line: string): void {
    this.options.log?.(`round ${this.options.round} (${this.options.scenario}): ${line}`);
  }

  fault(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  claim(what: string, ok: boolean): void {
    this.claims.push({ what, ok });
    this.log(`${ok ? 'ok' : 'NOT OK'}: ${what}`);
  }

  async broker(dataDir: string, port = 0): Promise<Proc> {
    const proc = await startBroker(join(this.dir, dataDir), [this.storage],
      ['--listen', `127.0.0.1:${port}`, '--reservation-timeout-ms', '1000']);
    this.procs.push(proc);
    return proc;
  }

  spawnWorker(side: string, broker: Proc, topic: string, group = `g-${side}`): Worker {
    const run = runFixture<{ event: string }>('../crash/split-brain-worker.ts', {
      broker: `${broker.host}:${broker.port}`, side, topic, partitions: PARTITIONS,
      groupId: group, historyPath: join(this.options.historyDir, `worker-${side}.jsonl`),
      seed: this.prng.int(0x1_0000_0000), requestTimeoutMs: REQUEST_TIMEOUT_MS,
      commitEveryMs: 300 });
    const worker = { side, group, topic, alive: true, run };
    this.workers.push(worker);
    return worker;
  }

  /**
   * The worker of a broker that died or was fenced: SIGKILLed (what it had in flight stays
   * indeterminate) and replaced by `<side>2` on the current broker, in the same group and
   * topic, so its group's commits continue there from what that broker has committed.
   */
  async moveWorker(side: string, current: Proc): Promise<void> {
    const worker = this.workers.find((w) => w.side === side && w.alive)!;
    await worker.run.kill();
    worker.alive = false;
    this.fault('client-kill');
    this.log(`worker ${side} moved to ${current.host}:${current.port}`);
    const moved = this.spawnWorker(`${side}2`, current, worker.topic, worker.group);
    await moved.run.waitFor((line) => line.event === 'ready').catch(() => undefined);
  }

  /** Creates a topic from the test process, recorded as process "setup". */
  async create(broker: Proc, topic: string): Promise<void> {
    const client = await connectRetrying(`${broker.host}:${broker.port}`, 'sb-setup',
      REQUEST_TIMEOUT_MS);
    this.recorder.record('setup', { kind: 'create-invoke', topic, partitions: PARTITIONS });
    try {
      await client.admin().createTopic(topic, { partitions: PARTITIONS });
      this.recorder.record('setup', { kind: 'create-ok', topic });
    } finally {
      await client.close();
    }
  }

  /** Phase length: 1.5..2.5 s of load. */
  async load(): Promise<void> {
    await sleep(1500 + this.prng.int(1000));
  }
}

/** `promise`, or 'late' after `ms` (the timer is cleared either way: no dangling timers). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), ms); });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGSTOPs a process and claims that it is stopped (state T in /proc). */
async function pauseProc(round: Round, proc: Proc, name: string): Promise<void> {
  const pid = proc.child.pid!;
  process.kill(pid, 'SIGSTOP');
  round.fault('sigstop');
  let state = '?';
  for (let i = 0; i < 50 && state !== 'T'; i += 1) {
    await sleep(20);
    state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').charAt(0);
  }
  round.claim(`${name} (pid ${pid}) was stopped by SIGSTOP (state ${state})`, state === 'T');
}

/** Waits for a fenced broker's exit; claims code 2 within FENCED_EXIT_WITHIN_MS. */
async function fencedExit(round: Round, proc: Proc, name: string, since: number):
    Promise<void> {
  const code = await within(exitOf(proc.child), FENCED_EXIT_WITHIN_MS);
  const signal = proc.child.signalCode === null ? '' : ` by ${proc.child.signalCode}`;
  round.claim(`${name} exited with code 2 when fenced (${String(code)}${signal}, ` +
    `${Date.now() - since} ms)`, code === 2);
  if (code === 2) round.fault('fenced-exit');
  else round.log(`${name}'s stderr: ${proc.stderr?.().slice(-3000) ?? ''}`);
  if (code === 'late') await stopProc(proc);
}

const epochOf = (proc: Proc): number => Number(proc.match[3]);

function claimEpochs(round: Round, newer: Proc, newerName: string, older: number,
  olderName: string): number {
  const epoch = epochOf(newer);
  round.claim(`${newerName} started at epoch ${epoch}, above ${olderName}'s ${older}`,
    epoch > older);
  return epoch;
}

/** copy / empty: A paused, B started on a copy of `a` or on an empty dir, A resumed. */
async function pauseAndResume(round: Round, empty: boolean): Promise<Proc> {
  await pauseProc(round, round.brokerA, 'A');
  if (!empty) cpSync(join(round.dir, 'a'), join(round.dir, 'b'), { recursive: true });
  else mkdirSync(join(round.dir, 'b'));
  const brokerB = await round.broker('b');
  round.epochs.b = claimEpochs(round, brokerB, `B (${empty ? 'empty' : 'copied'} dir)`,
    round.epochs.a, 'A');
  let topic = TOPIC;
  if (empty) {
    topic = 'sb-b';
    round.dataTopics.push(topic);
    await round.create(brokerB, topic);
  }
  round.spawnWorker('b', brokerB, topic);
  await round.load();
  const resumed = Date.now();
  process.kill(round.brokerA.child.pid!, 'SIGCONT');
  round.fault('sigcont');
  round.log('SIGCONT A');
  await fencedExit(round, round.brokerA, 'A', resumed);
  await round.moveWorker('a', brokerB);
  await round.load();
  return brokerB;
}

/** shared: B on A's own dir is refused while A's process lives; then A is killed. */
async function sharedDir(round: Round): Promise<Proc> {
  await pauseProc(round, round.brokerA, 'A');
  const refused = await runPmq(['broker', '--listen', '127.0.0.1:0', '--storage',
    `${round.storage.host}:${round.storage.port}`, '--data-dir', join(round.dir, 'a'),
    '--transports', 'tcp', '--log-level', 'warn', '--cluster-key-file',
    testKeyFile(round.dir)]);
  round.claim(`a broker on A's dir while A lives is refused (exit ${String(refused.code)}, ` +
    'PMQ_ERR_DATA_DIR_LOCKED)', refused.code === 1 &&
    /PMQ_ERR_DATA_DIR_LOCKED/.test(refused.stderr));
  round.fault('refused-start');
  await stopProc(round.brokerA);
  round.claim('A was SIGKILLed', round.brokerA.child.signalCode === 'SIGKILL');
  round.fault('sigkill');
  const brokerB = await round.broker('a');
  round.epochs.b = claimEpochs(round, brokerB, 'B (A\'s dir)', round.epochs.a, 'A');
  round.spawnWorker('b', brokerB, TOPIC);
  await round.moveWorker('a', brokerB);
  await round.load();
  return brokerB;
}

/** stale-restart: A killed, B on a copy, A restarted on its stale dir fences B. */
async function staleRestart(round: Round): Promise<Proc> {
  const portA = round.brokerA.port;
  await stopProc(round.brokerA);
  round.claim('A was SIGKILLed', round.brokerA.child.signalCode === 'SIGKILL');
  round.fault('sigkill');
  cpSync(join(round.dir, 'a'), join(round.dir, 'b'), { recursive: true });
  const brokerB = await round.broker('b');
  round.epochs.b = claimEpochs(round, brokerB, 'B (copied dir)', round.epochs.a, 'A');
  round.spawnWorker('b', brokerB, TOPIC);
  await round.load();
  const restarted = Date.now();
  const brokerA = await round.broker('a', portA);
  round.epochs.aRestarted = claimEpochs(round, brokerA, 'A (restarted on its stale dir)',
    round.epochs.b, 'B');
  await fencedExit(round, brokerB, 'B', restarted);
  await round.moveWorker('b', brokerA);
  await round.load();
  return brokerA;
}

/** Stops a worker: its sends settle and it exits 0, or it is a problem (and killed). */
async function stopWorker(round: Round, worker: Worker, ms: number): Promise<void> {
  worker.run.tell('stop');
  try {
    if (await within(worker.run.done, ms) === 'late') {
      round.problems.push(`worker ${worker.side} did not finish within ${ms} ms: ` +
        JSON.stringify(worker.run.lines.slice(-2)));
    }
    const done = worker.run.lines.find((line) => line.event === 'done') as
      { errors?: string[] } | undefined;
    if (done?.errors !== undefined && done.errors.length > 0) {
      round.problems.push(`worker ${worker.side}: ${done.errors.join(', ')}`);
    }
  } catch (error) {
    round.problems.push(`worker ${worker.side}: ${String(error).slice(0, 2000)}`);
  }
  await worker.run.kill();
}

/** Every (group, topic, partition) a worker asked to commit, from the history files. */
function committedKeys(historyDir: string): OffsetKey[] {
  const keys = new Map<string, OffsetKey>();
  for (const event of readHistory(historyDir)) {
    if (event.kind !== 'commit-invoke') continue;
    keys.set(`${event.group}\n${event.topic}\n${event.partition}`,
      { group: event.group, topic: event.topic, partition: event.partition });
  }
  return [...keys.values()];
}

async function finalOffsets(round: Round, client: Client): Promise<void> {
  const offsets: (OffsetKey & { offset: number | null })[] = [];
  const keys = committedKeys(round.options.historyDir);
  for (const group of new Set(keys.map((key) => key.group))) {
    const consumer = client.consumer({ groupId: group });
    for (const key of keys.filter((k) => k.group === group)) {
      const offset = await retrying(() => consumer.committed(key.topic, key.partition))
        .catch(() => -1);   // an unknown topic: its creates are judged as lost-topic
      offsets.push({ ...key, offset: offset < 0 ? null : offset });
    }
    await consumer.close();
  }
  round.recorder.record('final', { kind: 'final-offsets', offsets });
}

/** The ground truth from the current broker: topics, records, committed offsets. */
async function finalRead(round: Round, current: Proc): Promise<void> {
  const client = await connectRetrying(`${current.host}:${current.port}`, 'sb-final',
    REQUEST_TIMEOUT_MS);
  try {
    await sleep(2000);   // reservations of killed producers expire (1 s) and are filled
    const topics = (await retrying(() => client.admin().listTopics())).map((t) => t.topic);
    round.recorder.record('final', { kind: 'final-topics', topics });
    for (const topic of round.dataTopics.filter((name) => topics.includes(name))) {
      let read = await readAll(client, topic, PARTITIONS, 5000, 60_000);
      if (read.ends.some((end, p) => end > 0 && read.records[p]!.length === 0)) {
        round.log(`final read of ${topic} got nothing from a partition; again`);
        read = await readAll(client, topic, PARTITIONS, 8000, 60_000);
      }
      read.records.forEach((records, partition) => round.recorder.record('final',
        { kind: 'final-read', topic, partition, records }));
    }
    await finalOffsets(round, client);
  } finally {
    await client.close();
  }
}

async function scenario(round: Round): Promise<Proc> {
  switch (round.options.scenario) {
    case 'copy': return pauseAndResume(round, false);
    case 'empty': return pauseAndResume(round, true);
    case 'shared': return sharedDir(round);
    case 'stale-restart': return staleRestart(round);
    default: {
      const unknown: never = round.options.scenario;
      throw new Error(`unknown scenario ${String(unknown)}`);
    }
  }
}

/** Runs the scenario, settles the workers and reads the ground truth. */
async function play(round: Round): Promise<void> {
  round.storage = await startStorage(join(round.dir, 'region'), 1, 0,
    ['--size', '64MiB', '--segment-size', '256KiB']);
  round.procs.push(round.storage);
  round.brokerA = await round.broker('a');
  round.epochs.a = epochOf(round.brokerA);
  await round.create(round.brokerA, TOPIC);
  const workerA = round.spawnWorker('a', round.brokerA, TOPIC);
  await workerA.run.waitFor((line) => line.event === 'ready');
  await round.load();
  const current = await scenario(round);
  await Promise.all(round.workers.filter((worker) => worker.alive).map((worker) =>
    stopWorker(round, worker, 30_000)));
  const which = round.options.scenario === 'stale-restart' ? 'A' : 'B';
  round.log(`final read from ${which} (${current.host}:${current.port})`);
  await finalRead(round, current);
}

/** One round; never throws for a finding (the caller asserts on the result). */
export async function runRound(options: RoundOptions): Promise<RoundResult> {
  const started = Date.now();
  const { dir, remove } = tempDir('pmq-splitbrain-');
  const round = new Round(dir, options, prngFrom(options.seed));
  try {
    await play(round);
  } finally {
    await Promise.all(round.workers.map((worker) => worker.run.kill()));
    for (const proc of round.procs) await stopProc(proc);   // SIGKILL ends a stopped one too
    remove();
  }
  const check = checkHistory(readHistory(options.historyDir), { allowed: METADATA_KINDS });
  const { counts } = check;
  const dataAnomalies = (Object.keys(COUNT_KEYS) as AnomalyKind[])
    .filter((kind) => !METADATA_KINDS.includes(kind))
    .reduce((sum, kind) => sum + counts[COUNT_KEYS[kind]], 0);
  return { round: options.round, seed: options.seed, scenario: options.scenario,
    historyDir: options.historyDir, claims: round.claims, problems: round.problems, check,
    report: formatReport(check), dataAnomalies, lostCommits: counts.lostCommits,
    lostTopics: counts.lostTopics, faults: round.faults, epochs: round.epochs,
    ms: Date.now() - started };
}

/** One line per round for logs and the test's comments. */
export function roundLine(result: RoundResult): string {
  const { stats } = result.check;
  return `round ${result.round} ${result.scenario} (seed ${result.seed}): epochs A ` +
    `${result.epochs.a} B ${result.epochs.b}` + (result.epochs.aRestarted === null ? '' :
    ` A' ${result.epochs.aRestarted}`) + `; sends ${stats.sends}: acked ${stats.acked}, ` +
    `failed ${stats.failed}, indeterminate ${stats.indeterminate}; commits acked ` +
    `${stats.commitsAcked}/${stats.commits} (failed ${stats.commitsFailed}); creates acked ` +
    `${stats.createsAcked}/${stats.creates} (failed ${stats.createsFailed}); final read ` +
    `${stats.finalRecords}; data anomalies ` +
    `${result.dataAnomalies}; lost-commit ${result.lostCommits}; lost-topic ` +
    `${result.lostTopics} (acked sends in lost topics ${stats.sendsInLostTopics}); faults ` +
    `${JSON.stringify(result.faults)}; problems ` +
    `${result.problems.length}; ${result.ms} ms`;
}
