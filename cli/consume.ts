/**
 * `pmq consume TOPIC`: prints records to stdout, one per line, until --max records, --timeout-ms
 * without a record, Ctrl-C (SIGINT) or SIGTERM, or until the reader of stdout goes away.
 *
 * Reads whole batches (consumer.batches()) and writes each as one chunk, waiting for stdout to
 * drain: a slow reader of the output slows the consumer, whose prefetch is bounded, so memory
 * stays bounded. With --group the positions of what was printed (never of what was only
 * fetched) are committed about once a second and once more at exit, however it exits.
 *
 * Printed means flushed: a batch's position moves only in its write's callback, so records
 * still in the process's buffer when the reader of stdout goes away (EPIPE) are not committed
 * (bug 6). A partition that printed nothing commits where it started (--from latest: the high
 * watermark then), so the next run does not go back (bug 5). With --group and no --partition
 * the process is a member of the group (clients/group-member.ts): it reads the partitions the
 * group gives it, committing a partition's printed position before it gives it back.
 */
import { once } from 'node:events';

import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';

import type { Logger } from '../common/log.js';
import type { AssignorName, Client, Consumer, ConsumerBatch, ConsumerOptions,
  GroupTopicPartition, TopicPartitionOffset } from '../clients/index.js';
import { addClientOptions, clientLogger, withClient, type ClientCliOptions } from
  './client-options.js';
import { integerArgument } from './options.js';
import { textPieces, toJsonRecord } from './record-format.js';
import { plural } from './report.js';

type From = 'earliest' | 'latest' | number;

interface ConsumeCliOptions extends ClientCliOptions {
  from: From;
  autoOffsetReset?: 'earliest' | 'latest' | 'none';
  partition?: number;
  group?: string;
  max?: number;
  timeoutMs?: number;
  format: 'text' | 'json';
  printKeys: boolean;
  sessionTimeoutMs?: number;
  assignor?: AssignorName[];
  groupInstanceId?: string;
}

const COMMIT_INTERVAL_MS = 1000;

function fromArgument(text: string): From {
  if (text === 'earliest' || text === 'latest') return text;
  const offset = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(offset)) {
    throw new InvalidArgumentError('--from must be earliest, latest or an offset (an integer ' +
      '≥ 0)');
  }
  return offset;
}

function assignorsArgument(text: string): AssignorName[] {
  const names = text.split(',').map((name) => name.trim());
  const known = ['cooperative-sticky', 'range', 'roundrobin'];
  if (names.some((name) => !known.includes(name))) {
    throw new InvalidArgumentError(`--assignor takes ${known.join(', ')} (comma-separated)`);
  }
  return names as AssignorName[];
}

/** With --group the committed offset wins; earliest/latest only apply when none is. */
function consumerOptions(opts: ConsumeCliOptions): ConsumerOptions {
  const { from, group } = opts;
  // A position retention deleted moves to where --from points (earliest by default).
  const autoOffsetReset = opts.autoOffsetReset ?? (from === 'earliest' ? 'earliest' : 'latest');
  if (typeof from === 'number') {
    return { ...(group === undefined ? {} : { groupId: group }), start: { offset: from },
      autoOffsetReset };
  }
  if (group === undefined) return { start: from, autoOffsetReset };
  return { groupId: group, start: 'committed', fromBeginning: from === 'earliest',
    autoOffsetReset };
}

/** State of one run: what was printed, where each partition stands, why it stopped. */
class ConsumeRun {
  records = 0;
  stopReason: string | null = null;
  readonly positions = new Map<number, TopicPartitionOffset>();
  /** A group member's partitions (null: not a member, every partition read is this run's). */
  owned: Set<number> | null = null;
  /** Settles when the last write to stdout completed or failed: commits wait for it. */
  lastWrite: Promise<void> = Promise.resolve();
  #commitInFlight: Promise<void> | null = null;
  #committedAtMs = performance.now();
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(readonly consumer: Consumer, readonly opts: ConsumeCliOptions,
    readonly log: Logger) {}

  stop(reason: string): void {
    this.stopReason ??= reason;
    clearTimeout(this.#idleTimer);
    this.consumer.close().catch(() => undefined); // finalCommit awaits it and reports
  }

  /** A batch's records up to `offset` reached stdout. */
  flushed(topic: string, partition: number, offset: number): void {
    if (this.owned !== null && !this.owned.has(partition)) return; // given back meanwhile
    this.positions.set(partition, { topic, partition, offset });
  }

  /** Where each partition starts counts as its position until it prints (bug 5). */
  started(partitions: readonly GroupTopicPartition[]): void {
    for (const p of this.consumer.positions()) {
      if (!partitions.some((tp) => tp.partition === p.partition)) continue;
      this.owned?.add(p.partition);
      if (!this.positions.has(p.partition)) this.positions.set(p.partition, p);
    }
  }

  /** A member gives partitions back: their printed positions are committed first. */
  async revoked(partitions: readonly GroupTopicPartition[], lost: boolean): Promise<void> {
    await this.lastWrite;
    const mine = partitions.flatMap((tp) => this.positions.get(tp.partition) ?? []);
    for (const tp of partitions) {
      this.owned?.delete(tp.partition);
      this.positions.delete(tp.partition);
    }
    await this.#commitInFlight;
    if (!lost && mine.length > 0) await this.consumer.commit(mine);
  }

  /** (Re)arms --timeout-ms: no batch for that long stops the run. */
  touch(): void {
    const { timeoutMs } = this.opts;
    if (timeoutMs === undefined || this.stopReason !== null) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.stop(`no record for ${timeoutMs} ms`), timeoutMs);
  }

  /** Commits in the background about once a second; one commit at a time. */
  maybeCommit(): void {
    if (this.opts.group === undefined || this.#commitInFlight !== null ||
        performance.now() - this.#committedAtMs < COMMIT_INTERVAL_MS) return;
    this.#committedAtMs = performance.now();
    this.#commitInFlight = this.consumer.commit([...this.positions.values()])
      .catch((error: unknown) => this.log.warn({ err: String(error) }, 'commit failed'))
      .finally(() => { this.#commitInFlight = null; });
  }

  /** The last commit, awaited: failures reach the user. */
  async finalCommit(): Promise<void> {
    if (this.opts.group === undefined) return;
    await this.#commitInFlight;
    await this.lastWrite;
    if (this.owned !== null) return this.consumer.close(); // revokes: commits what it owns
    if (this.positions.size > 0) await this.consumer.commit([...this.positions.values()]);
  }
}

/**
 * Writes and waits for stdout to drain; resolves early when stdout failed (EPIPE). `done` runs
 * once the data left the process (true) or the write failed (false).
 */
async function writeOut(data: Buffer | string, done: (ok: boolean) => void): Promise<void> {
  if (process.stdout.write(data, (error) => done(error == null))) return;
  await Promise.race([once(process.stdout, 'drain'), once(process.stdout, 'close'),
    new Promise((resolve) => process.stdout.once('error', resolve))]);
}

function formatBatch(batch: ConsumerBatch, count: number, opts: ConsumeCliOptions):
  Buffer | string {
  const records = batch.records.slice(0, count);
  if (opts.format === 'json') {
    return records.map((r) => `${JSON.stringify(toJsonRecord(batch.topic, batch.partition,
      r))}\n`).join('');
  }
  return Buffer.concat(records.flatMap((r) => textPieces(r, opts.printKeys)));
}

async function consumeBatches(run: ConsumeRun): Promise<void> {
  const { opts } = run;
  run.touch();
  for await (const batch of run.consumer.batches()) {
    if (run.stopReason !== null) break;
    run.touch();
    const count = Math.min(batch.records.length, (opts.max ?? Infinity) - run.records);
    const lastOffset = count === batch.records.length ? batch.lastOffset
      : batch.records[count - 1]!.offset;
    let settle = (): void => undefined;
    run.lastWrite = new Promise((resolve) => { settle = resolve; });
    const done = (ok: boolean): void => {
      if (ok) run.flushed(batch.topic, batch.partition, lastOffset + 1);
      settle();
    };
    if (count > 0) await writeOut(formatBatch(batch, count, opts), done);
    else done(true);
    run.touch();  // time spent waiting for a slow reader of stdout is not idle time
    run.records += count;
    run.maybeCommit();
    if (opts.max !== undefined && run.records >= opts.max) {
      run.stop(`${plural(opts.max, 'record')} (--max)`);
      break;
    }
  }
}

/** With --group and no --partition: a member of the group, committing on revoke. */
function memberOptions(opts: ConsumeCliOptions, run: () => ConsumeRun): ConsumerOptions {
  if (opts.group === undefined || opts.partition !== undefined) return consumerOptions(opts);
  return { ...consumerOptions(opts), group: {
    ...(opts.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: opts.sessionTimeoutMs }),
    ...(opts.assignor === undefined ? {} : { assignors: opts.assignor }),
    ...(opts.groupInstanceId === undefined ? {} : { groupInstanceId: opts.groupInstanceId }),
    onAssigned: (partitions) => run().started(partitions),
    onRevoked: (partitions) => run().revoked(partitions, false),
    onLost: (partitions) => run().revoked(partitions, true),
  } };
}

async function consume(client: Client, topic: string, opts: ConsumeCliOptions,
  log: Logger): Promise<ConsumeRun> {
  let run: ConsumeRun | undefined;
  const consumer = client.consumer(memberOptions(opts, () => run!));
  run = new ConsumeRun(consumer, opts, log);
  if (opts.group !== undefined && opts.partition === undefined) run.owned = new Set();
  const onSignal = (signal: string) => (): void => {
    if (run.stopReason !== null) process.exit(130);  // a second Ctrl-C: stop waiting
    run.stop(`${signal}`);
  };
  const onOutputError = (error: NodeJS.ErrnoException): void => run.stop(error.code === 'EPIPE'
    ? 'the reader of the output went away' : `output failed: ${error.message}`);
  const sigint = onSignal('SIGINT');
  const sigterm = onSignal('SIGTERM');
  process.on('SIGINT', sigint).on('SIGTERM', sigterm);
  process.stdout.on('error', onOutputError);
  try {
    if (opts.partition === undefined) await consumer.subscribe(topic);
    else await consumer.assign([{ topic, partition: opts.partition }]);
    if (run.owned === null) run.started(consumer.positions());
    await consumeBatches(run);
    await run.finalCommit();
  } finally {
    run.stop('done');
    process.off('SIGINT', sigint).off('SIGTERM', sigterm);
  }
  return run;
}

async function runConsume(topic: string, opts: ConsumeCliOptions): Promise<void> {
  const startedAtMs = performance.now();
  const log = clientLogger(opts);
  const run = await withClient(opts, log, (client) => consume(client, topic, opts, log));
  const seconds = (performance.now() - startedAtMs) / 1000;
  process.stderr.write(`pmq consume: ${plural(run.records, 'record')} from ${topic} in ` +
    `${seconds.toFixed(2)} s; stopped: ${run.stopReason ?? 'end'}` +
    (opts.group === undefined ? '' : `; positions committed for group ${opts.group}`) + '\n');
}

export function registerConsumeCommand(program: Command): void {
  const command = program.command('consume')
    .description('print the records of a topic to stdout, one per line')
    .argument('<topic>', 'topic to read')
    .addOption(new Option('--from <where>', 'earliest, latest or an offset (with --group: ' +
      'where to start when the group has no committed offset; an offset always wins)')
      .default('earliest' as From).argParser(fromArgument))
    .addOption(new Option('--auto-offset-reset <policy>', 'where a partition goes when its ' +
      'position is not held (deleted by retention, past the end) or the group committed ' +
      'none: earliest, latest, or none (fail with PMQ_ERR_OFFSET_OUT_OF_RANGE); default: ' +
      'earliest with --from earliest, else latest').choices(['earliest', 'latest', 'none']))
    .addOption(new Option('--partition <n>', 'read only this partition (default: all)')
      .argParser(integerArgument('--partition', 0, 0x7fff_ffff)))
    .addOption(new Option('--group <group>', 'consumer group: start from its committed ' +
      'offsets, commit what was printed as it goes and at exit'))
    .addOption(new Option('--max <n>', 'exit after this many records')
      .argParser(integerArgument('--max', 1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--timeout-ms <ms>', 'exit when no record arrives for this long ' +
      '(default: wait forever)').argParser(integerArgument('--timeout-ms', 1, 2 ** 31 - 1)))
    .addOption(new Option('--format <format>', 'text: the value (key<TAB>value with ' +
      '--print-keys); json: one object per line').choices(['text', 'json']).default('text'))
    .option('--print-keys', 'text format: print key<TAB>value', false)
    .addOption(new Option('--session-timeout-ms <ms>', 'with --group: the group drops this ' +
      'member after this long without a heartbeat (default 10000)')
      .argParser(integerArgument('--session-timeout-ms', 100, 300_000)))
    .addOption(new Option('--assignor <names>', 'with --group: assignors in preference order, ' +
      'comma-separated: cooperative-sticky, range, roundrobin (default cooperative-sticky,range)')
      .argParser(assignorsArgument))
    .addOption(new Option('--group-instance-id <id>', 'with --group: a static member: back ' +
      'within the session timeout, it gets its partitions again without a rebalance'));
  addClientOptions(command).action(async (topic: string, opts: ConsumeCliOptions) => {
    await runConsume(topic, opts);
  });
}
