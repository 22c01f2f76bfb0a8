/**
 * The history a crash test records and `history-checker.ts` judges: what producers and consumers
 * asked for and what they were told, one event per line (JSON lines), in the order the events
 * happened. No I/O here: `HistoryRecorder` hands each line to a sink the caller supplies (a file
 * append in a crash test, an array in a unit test), and `parseHistory` reads text back.
 *
 * Concurrency: a recorder belongs to one Node process and may record for several logical
 * processes (a producer, a consumer); each logical process has its own `seq`, which grows by one
 * per event. Events of different OS processes are merged afterwards with `sortHistory`.
 * Durability: a crash test writes a line before it acts on the outcome (an acknowledgement is
 * recorded before the next send), so a SIGKILLed test process loses at most its last events,
 * which then read as sends without a completion: indeterminate.
 */

/** 2 added group-offset commits and topic creates (commit-*, commit-read, final-offsets,
 *  create-*, final-topics); version 1 histories (records only) still parse. */
export const HISTORY_VERSION = 2;
const HISTORY_VERSIONS: readonly number[] = [1, 2];
const METADATA_KINDS = new Set(['commit-invoke', 'commit-ok', 'commit-fail', 'commit-info',
  'commit-read', 'final-offsets', 'create-invoke', 'create-ok', 'create-fail', 'create-info',
  'final-topics']);

/** One record as a consumer (or the final read) saw it. Values are unique per send. */
export interface SeenRecord { offset: number; value: string }

/** Who and when: `process` is a logical process ("producer-2", "consumer-1#3" after a restart);
 *  `seq` counts its events from 0; `timeMs` is monotonic (ms since the recorder started);
 *  `wallMs` is `Date.now()` when known. */
export interface EventHeader { v: number; process: string; seq: number; timeMs: number;
  wallMs?: number }

/** A producer is asked to send one record. `partition` is null when the partitioner picks. */
export interface SendInvoke extends EventHeader {
  kind: 'send-invoke'; topic: string; partition: number | null; key: string | null;
  value: string;
}
/** The send was acknowledged (durable, acks 'all') at this partition and offset. */
export interface SendOk extends EventHeader {
  kind: 'send-ok'; value: string; topic: string; partition: number; offset: number;
}
/** Definite failure: the record was not stored (rejected before any byte reached storage). */
export interface SendFail extends EventHeader { kind: 'send-fail'; value: string; error: string }
/** Indeterminate: timed out, connection lost, process killed. It may or may not be stored. */
export interface SendInfo extends EventHeader { kind: 'send-info'; value: string; error: string }
/** A consumer (re)starts reading one partition at `offset` (null: the start is not known, e.g.
 *  'latest'). Starts a new uninterrupted poll sequence for (process, partition). */
export interface Assign extends EventHeader {
  kind: 'assign'; topic: string; partition: number; offset: number | null;
}
/** A consumer moves its position; also starts a new poll sequence for (process, partition). */
export interface Seek extends EventHeader {
  kind: 'seek'; topic: string; partition: number; offset: number;
}
/** Records handed to the application from one partition, in the order the consumer saw them.
 *  A poll that returns several partitions is recorded as one event per partition. */
export interface Poll extends EventHeader {
  kind: 'poll'; topic: string; partition: number; records: SeenRecord[];
}
/** After the run: everything stored in one partition, read from its log start to the end.
 *  Control batches (hole fillers) are not records: their offsets are absent here. `logStart`:
 *  the partition's first offset held, asked after the read; offsets below it were deleted by
 *  retention (absent: 0, none deleted). */
export interface FinalRead extends EventHeader {
  kind: 'final-read'; topic: string; partition: number; records: SeenRecord[];
  logStart?: number;
}

/** Where a group's committed offset lives: (group, topic, partition). */
export interface OffsetKey { group: string; topic: string; partition: number }
/** A consumer asks the broker to store `offset` as the group's committed offset. Workload rule
 *  (the checker relies on it): commits to one key come from one committer at a time, and its
 *  offsets never go down, so the committed offset must never fall below an acknowledged one. */
export interface CommitInvoke extends EventHeader, OffsetKey { kind: 'commit-invoke';
  offset: number }
/** The commit was answered `done`: durable at the broker. */
export interface CommitOk extends EventHeader, OffsetKey { kind: 'commit-ok'; offset: number }
/** Definite failure: the broker says the commit was not done. */
export interface CommitFail extends EventHeader, OffsetKey { kind: 'commit-fail';
  offset: number; error: string }
/** Indeterminate: timed out, connection lost. */
export interface CommitInfo extends EventHeader, OffsetKey { kind: 'commit-info';
  offset: number; error: string }
/** A consumer read the group's committed offset (at its start; null: none). Under the workload
 *  rule it must not be below a commit to that key acknowledged before it. */
export interface CommitRead extends EventHeader, OffsetKey { kind: 'commit-read';
  offset: number | null }
/** After the run, from the current broker: the committed offset of each key that was committed
 *  (null: none, or the topic is unknown there). */
export interface FinalOffsets extends EventHeader { kind: 'final-offsets';
  offsets: (OffsetKey & { offset: number | null })[] }
/** A topic create; topic names are unique per create in a history. */
export interface CreateInvoke extends EventHeader { kind: 'create-invoke'; topic: string;
  partitions: number }
export interface CreateOk extends EventHeader { kind: 'create-ok'; topic: string }
export interface CreateFail extends EventHeader { kind: 'create-fail'; topic: string;
  error: string }
export interface CreateInfo extends EventHeader { kind: 'create-info'; topic: string;
  error: string }
/** After the run, from the current broker: every topic it lists. */
export interface FinalTopics extends EventHeader { kind: 'final-topics'; topics: string[] }

export type CommitEvent = CommitInvoke | CommitOk | CommitFail | CommitInfo;
export type CreateEvent = CreateInvoke | CreateOk | CreateFail | CreateInfo;
export type MetadataEvent = CommitEvent | CommitRead | FinalOffsets | CreateEvent | FinalTopics;
export type HistoryEvent = SendInvoke | SendOk | SendFail | SendInfo | Assign | Seek | Poll |
  FinalRead | MetadataEvent;
export type HistoryKind = HistoryEvent['kind'];
type Body<E> = E extends HistoryEvent ? Omit<E, keyof EventHeader> : never;
export type HistoryBody = Body<HistoryEvent>;

export class HistoryFormatError extends Error {
  override readonly name = 'HistoryFormatError';
}

/** Assigns `seq` and time to events and hands each one, as a JSON line, to `sink`. */
export class HistoryRecorder {
  private readonly seqNext = new Map<string, number>();

  constructor(
    private readonly sink: (line: string) => void,
    private readonly clock: { monotonicMs(): number; wallMs(): number },
  ) {}

  record(process: string, body: HistoryBody): HistoryEvent {
    const seq = this.seqNext.get(process) ?? 0;
    this.seqNext.set(process, seq + 1);
    const header: EventHeader = { v: HISTORY_VERSION, process, seq,
      timeMs: this.clock.monotonicMs(), wallMs: this.clock.wallMs() };
    const event = { ...header, ...body } as HistoryEvent;
    this.sink(encodeEvent(event));
    return event;
  }
}

export function encodeEvent(event: HistoryEvent): string {
  return JSON.stringify(event);
}

export function encodeHistory(events: readonly HistoryEvent[]): string {
  return events.map((event) => `${encodeEvent(event)}\n`).join('');
}

/** Parses JSON lines strictly: every field's type is checked, unknown kinds and versions are
 *  refused with the line number. Blank lines are skipped; a torn last line (a test process
 *  killed mid-write) is dropped when `tornTailAllowed`. */
export function parseHistory(text: string, options: { tornTailAllowed?: boolean } = {}):
    HistoryEvent[] {
  const lines = text.split('\n');
  const events: HistoryEvent[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (error) {
      const last = lines.slice(index + 1).every((rest) => rest.trim() === '');
      if (last && options.tornTailAllowed === true) return;
      throw new HistoryFormatError(`line ${index + 1}: not JSON`, { cause: error });
    }
    events.push(parseEvent(raw, index + 1));
  });
  return events;
}

/** Merges events recorded by several OS processes: by time, then process, then seq. Stable. */
export function sortHistory(events: readonly HistoryEvent[]): HistoryEvent[] {
  return [...events].sort((a, b) => a.timeMs - b.timeMs ||
    (a.process < b.process ? -1 : a.process > b.process ? 1 : 0) || a.seq - b.seq);
}

type Raw = Record<string, unknown>;

function fail(line: number, what: string): never {
  throw new HistoryFormatError(`line ${line}: ${what}`);
}

function str(raw: Raw, field: string, line: number): string {
  const value = raw[field];
  return typeof value === 'string' ? value : fail(line, `${field} must be a string`);
}

function nullableStr(raw: Raw, field: string, line: number): string | null {
  return raw[field] === null ? null : str(raw, field, line);
}

function whole(raw: Raw, field: string, line: number): number {
  const value = raw[field];
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value :
    fail(line, `${field} must be a whole number`);
}

function nullableWhole(raw: Raw, field: string, line: number): number | null {
  return raw[field] === null ? null : whole(raw, field, line);
}

function records(raw: Raw, line: number): SeenRecord[] {
  const list = raw.records;
  if (!Array.isArray(list)) fail(line, 'records must be an array');
  return list.map((item: unknown) => {
    if (typeof item !== 'object' || item === null) fail(line, 'a record must be an object');
    const record = item as Raw;
    return { offset: whole(record, 'offset', line), value: str(record, 'value', line) };
  });
}

function parseHeader(raw: Raw, line: number): EventHeader {
  const v = raw.v;
  if (typeof v !== 'number' || !HISTORY_VERSIONS.includes(v)) {
    fail(line, `unknown history version ${String(v)}`);
  }
  if (v < 2 && METADATA_KINDS.has(String(raw.kind))) {
    fail(line, `${String(raw.kind)} needs history version 2`);
  }
  const timeMs = raw.timeMs;
  if (typeof timeMs !== 'number' || !Number.isFinite(timeMs)) fail(line, 'timeMs: a number');
  const header: EventHeader = { v, process: str(raw, 'process', line),
    seq: whole(raw, 'seq', line), timeMs };
  if (raw.wallMs !== undefined) header.wallMs = whole(raw, 'wallMs', line);
  return header;
}

function parseBody(raw: Raw, line: number): HistoryBody {
  const kind = raw.kind as HistoryKind;
  const where = (): { topic: string; partition: number } =>
    ({ topic: str(raw, 'topic', line), partition: whole(raw, 'partition', line) });
  switch (kind) {
    case 'send-invoke':
      return { kind, topic: str(raw, 'topic', line),
        partition: nullableWhole(raw, 'partition', line), key: nullableStr(raw, 'key', line),
        value: str(raw, 'value', line) };
    case 'send-ok':
      return { kind, value: str(raw, 'value', line), ...where(),
        offset: whole(raw, 'offset', line) };
    case 'send-fail':
    case 'send-info':
      return { kind, value: str(raw, 'value', line), error: str(raw, 'error', line) };
    case 'assign':
      return { kind, ...where(), offset: nullableWhole(raw, 'offset', line) };
    case 'seek':
      return { kind, ...where(), offset: whole(raw, 'offset', line) };
    case 'poll':
      return { kind, ...where(), records: records(raw, line) };
    case 'final-read':
      return { kind, ...where(), records: records(raw, line),
        ...(raw.logStart === undefined ? {} : { logStart: whole(raw, 'logStart', line) }) };
    case 'commit-invoke': case 'commit-ok': case 'commit-fail': case 'commit-info':
    case 'commit-read':
    case 'final-offsets': case 'create-invoke': case 'create-ok': case 'create-fail':
    case 'create-info': case 'final-topics':
      return parseMetadataBody(kind, raw, line);
    default: {
      const unknown: never = kind;
      return fail(line, `unknown event kind ${String(unknown)}`);
    }
  }
}

function offsetKey(raw: Raw, line: number): OffsetKey {
  return { group: str(raw, 'group', line), topic: str(raw, 'topic', line),
    partition: whole(raw, 'partition', line) };
}

function list(raw: Raw, field: string, line: number): unknown[] {
  const value = raw[field];
  return Array.isArray(value) ? value : fail(line, `${field} must be an array`);
}

function parseMetadataBody(kind: MetadataEvent['kind'], raw: Raw, line: number): HistoryBody {
  switch (kind) {
    case 'commit-invoke': case 'commit-ok':
      return { kind, ...offsetKey(raw, line), offset: whole(raw, 'offset', line) };
    case 'commit-fail': case 'commit-info':
      return { kind, ...offsetKey(raw, line), offset: whole(raw, 'offset', line),
        error: str(raw, 'error', line) };
    case 'commit-read':
      return { kind, ...offsetKey(raw, line), offset: nullableWhole(raw, 'offset', line) };
    case 'final-offsets':
      return { kind, offsets: list(raw, 'offsets', line).map((item) => {
        if (typeof item !== 'object' || item === null) fail(line, 'an offset must be an object');
        const entry = item as Raw;
        return { ...offsetKey(entry, line), offset: nullableWhole(entry, 'offset', line) };
      }) };
    case 'create-invoke':
      return { kind, topic: str(raw, 'topic', line), partitions: whole(raw, 'partitions', line) };
    case 'create-ok':
      return { kind, topic: str(raw, 'topic', line) };
    case 'create-fail': case 'create-info':
      return { kind, topic: str(raw, 'topic', line), error: str(raw, 'error', line) };
    case 'final-topics':
      return { kind, topics: list(raw, 'topics', line).map((topic) =>
        (typeof topic === 'string' ? topic : fail(line, 'a topic must be a string'))) };
    default: {
      const unknown: never = kind;
      return fail(line, `unknown event kind ${String(unknown)}`);
    }
  }
}

function parseEvent(raw: unknown, line: number): HistoryEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(line, 'not an object');
  const fields = raw as Raw;
  return { ...parseHeader(fields, line), ...parseBody(fields, line) } as HistoryEvent;
}
