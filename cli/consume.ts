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
import { fromArgument, isPerPartition, startOffsets, type From } from './consume-start.js';
import { integerArgument, topicOf, topicOption, type TopicOption } from './options.js';
import { parseTemplate, templatePieces, textPieces, toJsonRecord, type Template } from
  './record-format.js';
import { plural } from './report.js';

interface ConsumeCliOptions extends ClientCliOptions {
  from: From;
  autoOffsetReset?: 'earliest' | 'latest' | 'none';
  /** -p 0,2: these partitions only. */
  partition?: number[];
  group?: string;
  max?: number;
  timeoutMs?: number;
  format: 'text' | 'json' | Template;
  printKeys: boolean;
  sessionTimeoutMs?: number;
  assignor?: AssignorName[];
  groupInstanceId?: string;
}

const COMMIT_INTERVAL_MS = 1000;

function assignorsArgument(text: string): AssignorName[] {
  const names = text.split(',').map((name) => name.trim());
  const known = ['cooperative-sticky', 'range', 'roundrobin'];
  if (names.some((name) => !known.includes(name))) {
    throw new InvalidArgumentError(`--assignor takes ${known.join(', ')} (comma-separated)`);
  }
  return names as AssignorName[];
}

/**
 * With --group the committed offset wins; earliest/latest only apply when none is. Any other
 * --from starts 'latest' and each partition is then sought to its own start (startOffsets).
 */
function consumerOptions(opts: ConsumeCliOptions): ConsumerOptions {
  const { from, group } = opts;
  // A position retention deleted moves to where --from points (earliest by default).
  const autoOffsetReset = opts.autoOffsetReset ?? (from === 'earliest' ? 'earliest' : 'latest');
  if (isPerPartition(from)) {
    return { ...(group === undefined ? {} : { groupId: group }), start: 'latest',
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
  /** Reads were failing when the run stopped (not --max): the cause, reported, exit 1. */
  readFailure: ReturnType<Consumer['readFailure']> = null;
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
    if (this.stopReason === null && !reason.endsWith('(--max)')) {
      this.readFailure = this.consumer.readFailure();
    }
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
  const { format } = opts;
  if (format === 'json') {
    return records.map((r) => `${JSON.stringify(toJsonRecord(batch.topic, batch.partition,
      r))}\n`).join('');
  }
  if (format !== 'text') {
    return Buffer.concat(records.flatMap((r) => templatePieces(format, batch.topic,
      batch.partition, r)));
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

/** Where each partition starts for an offset, -N, +N or @TIME --from; empty otherwise. */
async function perPartitionStarts(client: Client, topic: string, opts: ConsumeCliOptions):
  Promise<Map<number, number>> {
  const { from } = opts;
  if (!isPerPartition(from)) return new Map();
  const { partitions } = await client.admin().describeTopic(topic);
  const read = opts.partition === undefined ? partitions
    : partitions.filter((p) => opts.partition!.includes(p.partition));
  return startOffsets(client, topic, from, read, opts.autoOffsetReset !== undefined);
}

/**
 * With --group and no --partition: a member of the group, committing on revoke. A partition
 * assigned to it starts where `starts` says (a per-partition --from), then counts as started.
 */
function memberOptions(opts: ConsumeCliOptions, run: () => ConsumeRun,
  starts: () => ReadonlyMap<number, number>): ConsumerOptions {
  if (opts.group === undefined || opts.partition !== undefined) return consumerOptions(opts);
  return { ...consumerOptions(opts), group: {
    ...(opts.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: opts.sessionTimeoutMs }),
    ...(opts.assignor === undefined ? {} : { assignors: opts.assignor }),
    ...(opts.groupInstanceId === undefined ? {} : { groupInstanceId: opts.groupInstanceId }),
    onAssigned: (partitions) => {
      for (const { topic, partition } of partitions) {
        const offset = starts().get(partition);
        if (offset !== undefined) run().consumer.seek(topic, partition, offset);
      }
      run().started(partitions);
    },
    onRevoked: (partitions) => run().revoked(partitions, false),
    onLost: (partitions) => run().revoked(partitions, true),
  } };
}

async function consume(client: Client, topic: string, opts: ConsumeCliOptions,
  log: Logger): Promise<ConsumeRun> {
  let run: ConsumeRun | undefined;
  let starts: ReadonlyMap<number, number> = new Map();
  const consumer = client.consumer(memberOptions(opts, () => run!, () => starts));
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
    starts = await perPartitionStarts(client, topic, opts);
    if (opts.partition === undefined) await consumer.subscribe(topic);
    else await consumer.assign(opts.partition.map((partition) => ({ topic, partition })));
    if (run.owned === null) {
      for (const [partition, offset] of starts) consumer.seek(topic, partition, offset);
      run.started(consumer.positions()); // after the seeks: where it starts is committed (bug 5)
    }
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
  const failure = run.readFailure;
  if (failure !== null) {
    // "0 records" must not look like an empty topic when nothing could be read.
    process.stderr.write(`pmq: reads of ${failure.topic}/${failure.partition} were failing ` +
      `when it stopped: ${failure.error.message}; is every storage node up? ` +
      `[${failure.error.code}]\n`);
    process.exitCode = 1;
  }
}

function formatArgument(text: string): ConsumeCliOptions['format'] {
  if (text === 'text' || text === 'json') return text;
  const template = parseTemplate(text);
  if (typeof template === 'string') {
    throw new InvalidArgumentError(`text, json or a template: ${template}`);
  }
  return template;
}

function partitionsArgument(text: string): number[] {
  const parse = integerArgument('--partition', 0, 0x7fff_ffff);
  return [...new Set(text.split(',').map((one) => parse(one.trim())))];
}

export function registerConsumeCommand(program: Command): void {
  const command = program.command('consume')
    .description('print the records of a topic to stdout, one per line')
    .argument('[topic]', 'topic to read (or -t)')
    .addOption(topicOption('topic to read'))
    .addOption(new Option('-o, --from <where>', 'earliest, latest, an offset N, -N (N ' +
      'before the end), +N (N after the start) or @TIME (ms since the epoch, or ISO 8601); ' +
      'with --group earliest/latest apply only where the group committed nothing')
      .default('earliest' as From).argParser(fromArgument))
    .addOption(new Option('--auto-offset-reset <policy>', 'where a partition goes when its ' +
      'position is not held (deleted by retention, past the end) or the group committed ' +
      'none: earliest, latest, or none (fail with PMQ_ERR_OFFSET_OUT_OF_RANGE); default: ' +
      'earliest with --from earliest, else latest').choices(['earliest', 'latest', 'none']))
    .addOption(new Option('-p, --partition <n,...>', 'read only these partitions (default: ' +
      'all)').argParser(partitionsArgument))
    .addOption(new Option('--group <group>', 'consumer group: start from its committed ' +
      'offsets, commit what was printed as it goes and at exit'))
    .addOption(new Option('-n, --max <n>', 'exit after this many records')
      .argParser(integerArgument('--max', 1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--timeout-ms <ms>', 'exit when no record arrives for this long ' +
      '(default: wait forever)').argParser(integerArgument('--timeout-ms', 1, 2 ** 31 - 1)))
    .addOption(new Option('-f, --format <format>', 'text: the value (key<TAB>value with ' +
      '--print-keys); json: one object per line; or a template such as \'%p %o %k %v\\n\' ' +
      '(%t topic, %p partition, %o offset, %d timestamp, %k key, %h headers, %v value)')
      .default('text').argParser(formatArgument))
    .option('--print-keys', 'text format: print key<TAB>value', false)
    .addOption(new Option('--session-timeout-ms <ms>', 'with --group: the group drops this ' +
      'member after this long without a heartbeat (default 10000)')
      .argParser(integerArgument('--session-timeout-ms', 100, 300_000)))
    .addOption(new Option('--assignor <names>', 'with --group: assignors in preference order, ' +
      'comma-separated: cooperative-sticky, range, roundrobin (default cooperative-sticky,range)')
      .argParser(assignorsArgument))
    .addOption(new Option('--group-instance-id <id>', 'with --group: a static member: back ' +
      'within the session timeout, it gets its partitions again without a rebalance'));
  addClientOptions(command).action(async (topic: string | undefined,
    opts: ConsumeCliOptions & TopicOption) => {
    await runConsume(topicOf(topic, opts), opts);
  });
}
