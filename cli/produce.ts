/**
 * `pmq produce TOPIC`: records from stdin, one per line (or one record from --value).
 *
 * Streaming: stdin is read in groups of lines (cli/lines.ts); each group is one
 * `producer.send()`. Sends are not awaited one by one (that would wait for a durability round
 * trip per group); up to `SEND_WINDOW_BYTES` of them are outstanding, and the oldest is awaited
 * once the window is full — so stdin is read only as fast as the broker acknowledges, memory
 * stays bounded whatever the input size, and the producer's own batching and byte budget see a
 * steady stream. Results come back in input order, which is the order --print-offsets prints.
 */
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';

import { PmqError } from '../common/errors.js';
import { parseSizeBytes } from '../common/units.js';
import { PartitionOutOfRangeError, type Client, type Producer, type ProducerRecord,
  type RecordMetadata } from '../clients/index.js';
import { addClientOptions, clientLogger, withClient, type ClientCliOptions } from
  './client-options.js';
import { readLineGroups, type LineGroup } from './lines.js';
import { parseInputFormat } from './record-format.js';
import { plural, reportFatal } from './report.js';
import { integerArgument, topicOf, topicOption, type TopicOption } from './options.js';

interface ProduceCliOptions extends ClientCliOptions, TopicOption {
  key?: string;
  /** -H key=value, repeatable: headers of every record. */
  header: { key: string; value: string }[];
  value?: string;
  keySeparator?: string;
  partition?: number;
  acks: 'all' | 'none';
  printOffsets: boolean;
  skipLines: number;
  lingerMs: number;
  batchBytes?: number;
}

const KIB = 1024;
const MIB = 1024 * KIB;

function batchBytesArgument(text: string): number {
  try {
    const bytes = parseSizeBytes(text, '--batch-bytes');
    if (bytes >= 1024) return bytes;
  } catch {
    // reported below
  }
  throw new InvalidArgumentError('--batch-bytes must be a size of at least 1KiB, e.g. 64KiB');
}
/** Bytes of records in sends not yet acknowledged: the producer's default maxInFlightBytes. */
const SEND_WINDOW_BYTES = 32 * MIB;
/** Records in sends not yet acknowledged: bounds the per-record objects when records are tiny
 *  (64 Ki records × ~200 bytes of JS objects ≈ 13 MiB). */
const SEND_WINDOW_RECORDS = 64 * 1024;
/** One send: big enough to fill a few batches, small enough to start early. */
const GROUP_BYTES_MAX = 256 * KIB;
const GROUP_LINES_MAX = 4096;
/** The producer's default maxRecordBatchBytes, less room for the batch and record headers. */
const LINE_BYTES_MAX = MIB - KIB;

interface Pending {
  result: Promise<RecordMetadata[]>;
  sizeBytes: number;
  records: number;
  /** Input line number of the send's first record (0 for --value). */
  firstLine: number;
  /** Set when the result settles (it is awaited in order, or inspected after a stop). */
  outcome: RecordMetadata[] | 'failed' | null;
}

/**
 * What the run got acknowledged. `linesAcknowledged`: every input line up to this number is
 * acknowledged, so a rerun with --skip-lines that number resends nothing stored. After a stop
 * (a failure, Ctrl-C), sends beyond that prefix are counted as acknowledged (`records`,
 * `beyondAcknowledged`) or unknown (`beyondUnknown`: failed or not settled in time; their
 * records may or may not be stored).
 */
interface Totals {
  records: number;
  sizeBytes: number;
  linesAcknowledged: number;
  beyondAcknowledged: number;
  beyondUnknown: number;
}

/** Turns input lines into records: whole lines as values, or key SEP value. */
/** 123 B, 4.5 KiB, 6.7 MiB. */
export function humanBytes(bytes: number): string {
  if (bytes < KIB) return `${bytes} B`;
  return bytes < MIB ? `${(bytes / KIB).toFixed(1)} KiB` : `${(bytes / MIB).toFixed(1)} MiB`;
}

function toRecords(lines: Buffer[], firstLineNumber: number, opts: ProduceCliOptions):
  ProducerRecord[] {
  const separator = opts.keySeparator === undefined ? null : Buffer.from(opts.keySeparator);
  const fixedKey = opts.key ?? null;
  const headers = opts.header.length === 0 ? undefined : opts.header;
  return lines.map((line, index) => {
    if (separator === null) return { key: fixedKey, value: line, headers };
    const at = line.indexOf(separator);
    if (at < 0) {
      throw new PmqError('PMQ_ERR_ARGUMENT', `input line ${firstLineNumber + index} has no ` +
        `key separator ${JSON.stringify(opts.keySeparator)}: write KEY${opts.keySeparator}` +
        'VALUE on every line');
    }
    return { key: line.subarray(0, at), value: line.subarray(at + separator.byteLength),
      headers };
  });
}

class SendWindow {
  readonly #queue: Pending[] = [];
  #sizeBytes = 0;
  #records = 0;
  /** The first failed send: stop reading input at once instead of when it is awaited. */
  #failure: unknown = undefined;

  constructor(private readonly printOffsets: boolean, private readonly totals: Totals) {}

  async add(producer: Producer, topic: string, records: ProducerRecord[], sizeBytes: number,
    partition: number | undefined, firstLine: number): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const pending: Pending = { result: producer.send({ topic, records, partition }), sizeBytes,
      records: records.length, firstLine, outcome: null };
    pending.result.then((results) => { pending.outcome = results; }, (error: unknown) => {
      pending.outcome = 'failed';
      this.#failure ??= error;
    });
    this.#queue.push(pending);
    this.#sizeBytes += sizeBytes;
    this.#records += records.length;
    while (this.#sizeBytes > SEND_WINDOW_BYTES || this.#records > SEND_WINDOW_RECORDS) {
      await this.#settleOldest();
    }
  }

  async drain(): Promise<void> {
    while (this.#queue.length > 0) await this.#settleOldest();
  }

  /**
   * After a failure or an interrupt: waits at most `waitMs` for the sends still out (a batch
   * retrying against a dead storage node gives up within a few seconds), then counts the
   * acknowledged prefix and what is known beyond it. Never throws.
   */
  async settleAfterStop(waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(this.#queue.map((p) => p.result)),
      new Promise((resolve) => { timer = setTimeout(resolve, waitMs); })]);
    clearTimeout(timer);
    let prefix = true;
    for (const pending of this.#queue.splice(0)) {
      const { outcome } = pending;
      prefix &&= outcome !== null && outcome !== 'failed';
      if (prefix) {
        this.#count(pending, outcome as RecordMetadata[]);
      } else if (outcome !== null && outcome !== 'failed') {
        this.totals.records += outcome.length;
        this.totals.sizeBytes += pending.sizeBytes;
        this.totals.beyondAcknowledged += outcome.length;
      } else {
        this.totals.beyondUnknown += pending.records;
      }
    }
  }

  async #settleOldest(): Promise<void> {
    const oldest = this.#queue[0];
    if (oldest === undefined) return;
    const results = await oldest.result;  // a failure stays queued: settleAfterStop counts it
    this.#queue.shift();
    this.#sizeBytes -= oldest.sizeBytes;
    this.#records -= oldest.records;
    this.#count(oldest, results);
  }

  #count(pending: Pending, results: RecordMetadata[]): void {
    this.totals.records += results.length;
    this.totals.sizeBytes += pending.sizeBytes;
    this.totals.linesAcknowledged = pending.firstLine + pending.records - 1;
    if (this.printOffsets) {
      process.stdout.write(results.map((r) => `${r.partition}\t${r.offset}\n`).join(''));
    }
  }
}

/** Set by the first Ctrl-C (SIGINT): stop reading, settle what is out, report. */
interface StopSignal { interrupted: boolean }

/** How long a stopped run waits for its sends still out before it reports them unknown. */
const STOP_SETTLE_MS = 5000;

/** The lines of `group` after --skip-lines, with the number of the first one kept. */
function unskipped(group: LineGroup, skipLines: number): LineGroup {
  const skip = Math.min(group.lines.length, Math.max(0, skipLines - group.firstLineNumber + 1));
  if (skip === 0) return group;
  const lines = group.lines.slice(skip);
  return { lines, firstLineNumber: group.firstLineNumber + skip,
    sizeBytes: lines.reduce((sum, line) => sum + line.byteLength, 0) };
}

async function produceLines(producer: Producer, topic: string, opts: ProduceCliOptions,
  totals: Totals, stop: StopSignal): Promise<void> {
  if (process.stdin.isTTY) {
    process.stderr.write('pmq: reading records from the terminal, one per line; ' +
      'Ctrl-D ends the input\n');
  }
  const window = new SendWindow(opts.printOffsets, totals);
  try {
    for await (const read of readLineGroups(process.stdin, { lineBytesMax: LINE_BYTES_MAX,
      groupBytesMax: GROUP_BYTES_MAX, groupLinesMax: GROUP_LINES_MAX })) {
      if (stop.interrupted) break;
      const group = unskipped(read, opts.skipLines);
      if (group.lines.length === 0) continue;
      const records = toRecords(group.lines, group.firstLineNumber, opts);
      await window.add(producer, topic, records, group.sizeBytes, opts.partition,
        group.firstLineNumber);
    }
  } catch (error) {
    await window.settleAfterStop(STOP_SETTLE_MS);  // count what was acknowledged
    if (stop.interrupted) return;  // stdin destroyed by the interrupt: not a failure
    throw error;
  }
  if (stop.interrupted) {
    await window.settleAfterStop(STOP_SETTLE_MS);
    return;
  }
  await window.drain();  // everything sent is acknowledged (and counted) before we report
}

async function produce(client: Client, topic: string, opts: ProduceCliOptions,
  totals: Totals, stop: StopSignal): Promise<void> {
  // Fail fast on an unknown topic or partition, before reading any input.
  const { partitions } = await client.admin().describeTopic(topic);
  if (opts.partition !== undefined && opts.partition >= partitions.length) {
    throw new PartitionOutOfRangeError(topic, opts.partition, partitions.length);
  }
  const producer = client.producer({ acks: opts.acks, lingerMs: opts.lingerMs,
    maxBatchBytes: opts.batchBytes });
  if (opts.value === undefined) {
    await produceLines(producer, topic, opts, totals, stop);
  } else {
    const [result] = await producer.send({ topic, partition: opts.partition,
      records: [{ key: opts.key ?? null, value: opts.value,
        headers: opts.header.length === 0 ? undefined : opts.header }] });
    totals.records += 1;
    totals.sizeBytes += Buffer.byteLength(opts.value);
    if (opts.printOffsets && result !== undefined) {
      process.stdout.write(`${result.partition}\t${result.offset}\n`);
    }
  }
  await producer.close();
}

/** After a failure or Ctrl-C: which input lines are done, and how to resume. */
function resumeAdvice(topic: string, totals: Totals): string {
  const lines = totals.linesAcknowledged;
  const beyond = totals.beyondAcknowledged + totals.beyondUnknown;
  let text = `pmq produce: input lines 1..${lines} are acknowledged; resume with ` +
    `\`pmq produce ${topic} --skip-lines ${lines}\` on the same input`;
  if (lines === 0) text = 'pmq produce: no input line is acknowledged; rerun on the same input';
  if (beyond > 0) {
    text += ` (of ${plural(beyond, 'record')} sent after line ${lines}, ` +
      `${totals.beyondAcknowledged} were acknowledged and ${totals.beyondUnknown} may or may ` +
      'not be stored: a rerun may store those twice)';
  }
  return `${text}\n`;
}

async function runProduce(topic: string, opts: ProduceCliOptions): Promise<void> {
  const startedAtMs = performance.now();
  const totals: Totals = { records: 0, sizeBytes: 0, linesAcknowledged: opts.skipLines,
    beyondAcknowledged: 0, beyondUnknown: 0 };
  const stop: StopSignal = { interrupted: false };
  const report = (stopped: string | null): void => {
    const seconds = (performance.now() - startedAtMs) / 1000;
    const rate = seconds > 0 ? Math.round(totals.records / seconds) : 0;
    process.stderr.write(`pmq produce: ${plural(totals.records, 'record')} ` +
      `(${humanBytes(totals.sizeBytes)}) ${opts.acks === 'all' ? 'acknowledged' :
        'written, not yet durable (acks none)'} to ${topic} in ${seconds.toFixed(2)} s ` +
      `(${rate} records/s)${stopped === null ? '' : `; stopped: ${stopped}`}\n`);
    if (stopped !== null && opts.value === undefined) {
      process.stderr.write(resumeAdvice(topic, totals));
    }
  };
  // Ctrl-C: stop reading, wait (bounded) for what is out, report, exit 130. A second one
  // exits at once.
  process.on('SIGINT', () => {
    if (stop.interrupted) process.exit(130);
    stop.interrupted = true;
    process.stdin.destroy();
  });
  try {
    await withClient(opts, clientLogger(opts), (client) => produce(client, topic, opts, totals,
      stop), true);
  } catch (error) {
    // The records still in flight were given a few seconds (settleAfterStop); say what was
    // acknowledged, how to resume and what went wrong, and exit now.
    report(error instanceof PmqError ? error.code : 'a failure');
    reportFatal(error);
    process.exit(1);
  }
  report(stop.interrupted ? 'SIGINT' : null);
  if (stop.interrupted) process.exit(130);
}

function collectHeader(text: string, previous: ProduceCliOptions['header']):
  ProduceCliOptions['header'] {
  const at = text.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('-H takes key=value (a non-empty key)');
  return [...previous, { key: text.slice(0, at), value: text.slice(at + 1) }];
}

function inputFormatArgument(text: string): string | null {
  const format = parseInputFormat(text);
  if (typeof format === 'string') throw new InvalidArgumentError(format);
  return format.separator;
}

function separatorArgument(text: string): string {
  if (text.length === 0) throw new InvalidArgumentError('--key-separator must not be empty');
  return text;
}

export function registerProduceCommand(program: Command): void {
  const command = program.command('produce')
    .description('send records to a topic: one per line from stdin, or one with --value')
    .argument('[topic]', 'topic to send to (or -t)')
    .addOption(topicOption('topic to send to'))
    .addOption(new Option('--value <value>', 'send this one record instead of reading stdin'))
    .addOption(new Option('-k, --key <key>', 'key of every record (default: none)'))
    .addOption(new Option('-H, --header <key=value>', 'a header of every record (Kafka ' +
      'record headers), repeatable').default([]).argParser(collectHeader))
    .addOption(new Option('--key-separator <sep>', 'each line is KEY<sep>VALUE (split at ' +
      'the first <sep>)').conflicts(['key', 'value']).argParser(separatorArgument))
    .addOption(new Option('-f, --format <format>', 'input lines as rpk\'s -f: \'%v\' (the ' +
      'value, the default) or \'%k<sep>%v\' (as --key-separator), optional trailing \\n')
      .conflicts(['keySeparator', 'value']).argParser(inputFormatArgument))
    .addOption(new Option('-p, --partition <n>', 'send every record to this partition (default: ' +
      'by key, else sticky round robin)').argParser(integerArgument('--partition', 0,
      0x7fff_ffff)))
    .addOption(new Option('--acks <acks>', 'all: wait until durable; none: until written')
      .choices(['all', 'none']).default('all'))
    .option('--print-offsets', 'print each record\'s partition<TAB>offset to stdout', false)
    .addOption(new Option('--skip-lines <n>', 'skip the first n input lines (resume a run ' +
      'that stopped: it says n)').default(0).argParser(integerArgument('--skip-lines', 0,
      Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--linger-ms <ms>', 'how long a batch waits for more records')
      .default(5).argParser(integerArgument('--linger-ms', 0, 60_000)))
    .addOption(new Option('--batch-bytes <bytes>', 'largest batch per partition (default ' +
      '256KiB; keyless records stay on one partition per batch)').argParser(batchBytesArgument));
  addClientOptions(command).action(async (topic: string | undefined,
    opts: ProduceCliOptions & { format?: string | null }) => {
    if (typeof opts.format === 'string') {
      if (opts.key !== undefined) {
        throw new PmqError('PMQ_ERR_ARGUMENT', '-f \'%k…%v\' reads the key from each line: ' +
          'drop -k');
      }
      opts.keySeparator = opts.format;
    }
    await runProduce(topicOf(topic, opts), opts);
  });
}
