/**
 * The consumer: reads assigned partitions and yields their records in per-partition order.
 *
 * Each assigned partition has a PartitionReader and a fetch loop that keeps at most
 * `prefetchBatches` batches buffered ahead of the application (a bounded queue: a slow
 * application stops the fetching, never grows memory; the reader keeps at most one storage
 * read in flight ahead of that). Caught up, readers wait for the broker's pushed watermarks
 * (or long-poll, where the broker refuses subscriptions). Records are decoded as the
 * application iterates them. `for await (const record of consumer)` yields records;
 * `consumer.batches()` yields whole batches. A `seek` drops what was buffered for that
 * partition (a generation number makes late results of the old position harmless).
 *
 * Positions: a partition's position is the offset after the last record handed to the
 * application; `commit()` stores those positions for `groupId` at the broker (Kafka's meaning
 * of a committed offset: the next one to read).
 *
 * Membership: with `group` options, `subscribe()` joins the group (group-member.ts) and the
 * consumer reads what the group's assignor gives it, starting each partition at the group's
 * committed offset; a revoked partition is committed (onRevoked, or its position) and its
 * reader stopped. Commits carry the member's generation: the broker refuses a zombie's. Without
 * `group`, a consumer reads exactly what it assigned or subscribed to, and its commits are a
 * simple consumer's (refused while the group has members).
 *
 * Errors: retriable fetch failures (broker restarting, timeouts) are retried by the loop
 * with backoff; anything else (a CRC failure, an unknown topic) is thrown from the iterator.
 */
import { ArgumentError, PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import type { Logger } from '../common/log.js';
import type { Connection } from './connection.js';
import { ClosedError, OffsetOutOfRangeError, PartitionOutOfRangeError } from './errors.js';
import type { Metadata } from './metadata.js';
import { GroupMember, type GroupOptions } from './group-member.js';
import { PartitionReader, type ReaderOptions } from './partition-reader.js';
import { partitionKey, recordsOf, type ConsumerBatch, type ConsumerRecord } from './records.js';

export type StartPosition = 'earliest' | 'latest' | 'committed' | { offset: number };
/** Kafka's auto.offset.reset. */
export type AutoOffsetReset = 'earliest' | 'latest' | 'none';

export interface ConsumerOptions {
  /** Consumer group whose committed offsets commit() stores and 'committed' starts from. */
  groupId?: string;
  /** Where a newly assigned partition starts. Default: 'committed' with a groupId (falling
   *  back to earliest/latest by fromBeginning), else fromBeginning ? 'earliest' : 'latest'. */
  start?: StartPosition;
  /** Kafka's auto.offset.reset, as a flag: start at the beginning when nothing is committed. */
  fromBeginning?: boolean;
  /**
   * Kafka's auto.offset.reset: where a partition goes when its position is not held (deleted
   * by retention, or past the high watermark) or nothing is committed: 'earliest' (the log
   * start), 'latest' (the high watermark) or 'none' (the iterator throws
   * OffsetOutOfRangeError). Default: 'earliest' with fromBeginning, else 'latest' (Kafka's).
   */
  autoOffsetReset?: AutoOffsetReset;
  /** Longest a fetch waits at the broker for new data. Default 500 ms. */
  maxWaitMs?: number;
  /** Largest single read from a storage node. Default 1 MiB. */
  readChunkBytes?: number;
  /** Batches buffered per partition ahead of the application. Default 4. */
  prefetchBatches?: number;
  /**
   * Learn of new data from the broker's pushes (subscribe; default true), or only by
   * long-polling fetchView (false; also what a broker that refuses subscriptions gets).
   */
  push?: boolean;
  /** Join `groupId` as a member on subscribe() (docs/clients.md, "Consumer groups"). */
  group?: GroupOptions;
}

export interface TopicPartition { topic: string; partition: number }
export interface TopicPartitionOffset extends TopicPartition { offset: number }

interface Assigned {
  reader: PartitionReader;
  /** Offset after the last record handed to the application. */
  position: number;
  generation: number;
  buffered: number;
  running: boolean;
  /** The last fetch failure being retried, until a fetch succeeds again (readFailure()). */
  failure: PmqError | null;
}

interface Fetched { key: string; generation: number; batch?: ConsumerBatch; error?: PmqError }

const RETRY_BACKOFF_MS_MAX = 2000;

export class Consumer implements AsyncIterable<ConsumerRecord> {
  private readonly assigned = new Map<string, Assigned>();
  private readonly ready: Fetched[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly readerOptions: ReaderOptions;
  private readonly prefetchBatches: number;
  private readonly member: GroupMember | null = null;
  private readonly topics = new Set<string>();
  private closing: Promise<void> | null = null;

  constructor(private readonly connection: Connection, private readonly metadata: Metadata,
    private readonly options: ConsumerOptions, requestTimeoutMs: number,
    private readonly log: Logger, private readonly onClose: () => void) {
    if (options.groupId !== undefined && (typeof options.groupId !== 'string' ||
        options.groupId.length === 0 || options.groupId.length > 1024)) {
      throw new ArgumentError('groupId must be a string of 1..1024 characters');
    }
    this.readerOptions = { maxWaitMs: options.maxWaitMs ?? 500,
      readChunkBytes: options.readChunkBytes ?? 1024 * 1024, requestTimeoutMs,
      push: options.push ?? true };
    this.prefetchBatches = options.prefetchBatches ?? 4;
    const reset = options.autoOffsetReset;
    if (reset !== undefined && reset !== 'earliest' && reset !== 'latest' && reset !== 'none') {
      throw new ArgumentError(`autoOffsetReset must be 'earliest', 'latest' or 'none', got ` +
        String(reset));
    }
    this.autoOffsetReset = reset ?? (options.fromBeginning === true ? 'earliest' : 'latest');
    if (options.group !== undefined) {
      if (options.groupId === undefined) throw new ArgumentError('group needs a groupId');
      this.member = new GroupMember(connection, options.groupId, connection.clientId,
        options.group, { assign: (tps) => this.assignFromGroup(tps),
          revoke: (tps, lost) => this.revoke(tps, lost) }, log);
    }
  }

  private readonly autoOffsetReset: AutoOffsetReset;

  /** Reads these partitions (added to any already assigned). */
  async assign(partitions: TopicPartition[]): Promise<void> {
    this.checkOpen();
    for (const { topic, partition } of partitions) {
      const count = await this.metadata.partitionCount(topic);
      if (!Number.isSafeInteger(partition) || partition < 0 || partition >= count) {
        throw new PartitionOutOfRangeError(topic, partition, count);
      }
      if (this.assigned.has(partitionKey(topic, partition))) continue;
      const offset = await this.startOffset(topic, partition);
      const reader = new PartitionReader(topic, partition, offset, this.connection,
        this.readerOptions);
      const entry: Assigned = { reader, position: offset, generation: 0, buffered: 0,
        running: false, failure: null };
      this.assigned.set(partitionKey(topic, partition), entry);
      this.startLoop(entry);
    }
  }

  /**
   * Reads every partition of the topic; with `group`: joins the group (or joins again with
   * this topic added) and resolves once the group assigned this member its partitions.
   */
  async subscribe(topic: string): Promise<void> {
    if (this.member !== null) {
      this.checkOpen();
      this.topics.add(topic);
      await this.member.subscribe([...this.topics]);
      return;
    }
    const count = await this.metadata.partitionCount(topic);
    await this.assign(Array.from({ length: count }, (_, partition) => ({ topic, partition })));
  }

  /** The next record read from this partition will be `offset`. */
  seek(topic: string, partition: number, offset: number): void {
    this.checkOpen();
    const entry = this.assigned.get(partitionKey(topic, partition));
    if (entry === undefined) throw new ArgumentError(`${topic}/${partition} is not assigned`);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ArgumentError(`offset must be an integer ≥ 0, got ${String(offset)}`);
    }
    // A fresh reader: a fetch of the old position may still be in flight on the old one.
    entry.generation += 1;
    entry.buffered = 0;
    entry.position = offset;
    entry.reader.close();
    entry.reader = new PartitionReader(topic, partition, offset, this.connection,
      this.readerOptions);
    for (let i = this.ready.length - 1; i >= 0; i -= 1) {
      if (this.ready[i]!.key === partitionKey(topic, partition)) this.ready.splice(i, 1);
    }
    this.startLoop(entry);
  }

  /** Current positions (the next offset the application will get, per partition). */
  positions(): TopicPartitionOffset[] {
    return [...this.assigned.values()].map(({ reader, position }) => ({ topic: reader.topic,
      partition: reader.partition, offset: position }));
  }

  /**
   * A partition whose reads are failing right now (retried with backoff, e.g. its storage node
   * is down), with the last error; null when every partition's last fetch succeeded. A caller
   * that stops for lack of records can tell "nothing arrived" from "nothing could be read".
   */
  readFailure(): (TopicPartition & { error: PmqError }) | null {
    for (const { reader, failure } of this.assigned.values()) {
      if (failure !== null) {
        return { topic: reader.topic, partition: reader.partition, error: failure };
      }
    }
    return null;
  }

  /**
   * Stores the current positions (or the given offsets) as the group's committed offsets; a
   * member's carry its generation (PMQ_ERR_GENERATION_STALE: it was fenced).
   */
  async commit(offsets: TopicPartitionOffset[] = this.positions()): Promise<void> {
    const group = this.options.groupId;
    if (group === undefined) throw new ArgumentError('commit() needs a consumer groupId');
    const member = this.member === null || this.member.generation === 0 ? {}
      : { generation: this.member.generation, memberId: this.member.memberId };
    await Promise.all(offsets.map(({ topic, partition, offset }) =>
      this.connection.call('offsetCommit', { group, topic, partition, offset, ...member },
        'done', { what: 'committing offsets', topic, partition, offset })));
  }

  /** The group membership: member id, generation, assignor and owned partitions, or null. */
  membership(): { memberId: string; generation: number; assignor: string;
    partitions: TopicPartition[] } | null {
    const member = this.member;
    return member === null ? null : { memberId: member.memberId,
      generation: member.generation, assignor: member.assignor,
      partitions: member.owned.map((tp) => ({ ...tp })) };
  }

  private async assignFromGroup(partitions: TopicPartition[]): Promise<void> {
    await this.assign(partitions);
    await this.options.group?.onAssigned?.(partitions);
  }

  /** Commits (unless lost) through onRevoked or the positions, then stops the readers. */
  private async revoke(partitions: TopicPartition[], lost: boolean): Promise<void> {
    const keys = new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)));
    try {
      if (lost) {
        await this.options.group?.onLost?.(partitions);
      } else if (this.options.group?.onRevoked !== undefined) {
        await this.options.group.onRevoked(partitions);
      } else {
        await this.commit(this.positions().filter((p) =>
          keys.has(partitionKey(p.topic, p.partition))));
      }
    } finally {
      for (const key of keys) {
        this.assigned.get(key)?.reader.close();
        this.assigned.delete(key);
      }
      for (let i = this.ready.length - 1; i >= 0; i -= 1) {
        if (keys.has(this.ready[i]!.key)) this.ready.splice(i, 1);
      }
    }
  }

  /** Committed offset of the group for a partition, or -1 when none. */
  async committed(topic: string, partition: number): Promise<number> {
    const group = this.options.groupId;
    if (group === undefined) throw new ArgumentError('committed() needs a consumer groupId');
    const reply = await this.connection.call('offsetFetch', { group, topic, partition },
      'offset', { what: 'fetching the committed offset', topic, partition });
    return reply.offset;
  }

  /** Batches as they arrive (control batches skipped, records below a seek target dropped). */
  async *batches(): AsyncGenerator<ConsumerBatch> {
    for (;;) {
      const next = await this.next();
      if (next === undefined) return;
      next.entry.position = next.batch.lastOffset + 1;
      yield next.batch;
    }
  }

  /** Records one by one; a partition's position moves past each record as it is yielded. */
  async *[Symbol.asyncIterator](): AsyncGenerator<ConsumerRecord> {
    for (;;) {
      const next = await this.next();
      if (next === undefined) return;
      const { entry, batch, generation } = next;
      for (const record of recordsOf(batch)) { // decoded one at a time, as asked for
        if (entry.generation !== generation || this.closed) break; // seek or close meanwhile
        entry.position = record.offset + 1;
        yield record;
      }
      if (entry.generation === generation) {
        entry.position = Math.max(entry.position, batch.lastOffset + 1);
      }
    }
  }

  private async next(): Promise<{ entry: Assigned; batch: ConsumerBatch;
    generation: number } | undefined> {
    while (!this.closed) {
      const fetched = this.ready.shift();
      if (fetched === undefined) {
        await new Promise<void>((resolve) => { this.wake = resolve; });
        continue;
      }
      const entry = this.assigned.get(fetched.key);
      if (entry === undefined || entry.generation !== fetched.generation) continue;
      entry.buffered -= 1;
      this.startLoop(entry);
      if (fetched.error !== undefined) throw fetched.error;
      return { entry, batch: fetched.batch!, generation: fetched.generation };
    }
    return undefined;
  }

  /**
   * Stops fetching and ends the iterators. A member then revokes its partitions (onRevoked,
   * or a commit of its positions; its failure rejects close) and leaves the group (a static
   * member stays until its session timeout). The client stays open.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    this.wake?.();
    for (const entry of this.assigned.values()) entry.reader.close();
    this.closing = (this.member?.close() ?? Promise.resolve()).finally(() => this.onClose());
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closed) throw new ClosedError('the consumer');
  }

  private async startOffset(topic: string, partition: number): Promise<number> {
    const start = this.options.start ?? (this.options.groupId !== undefined ? 'committed'
      : this.options.fromBeginning === true ? 'earliest' : 'latest');
    if (typeof start === 'object') return start.offset;
    if (start === 'committed') {
      // A committed offset below the log start is reset by the fetch loop when refused.
      const committed = await this.committed(topic, partition);
      if (committed >= 0) return committed;
      if (this.autoOffsetReset === 'none') {
        throw new OffsetOutOfRangeError(topic, partition, -1);
      }
      return this.resetOffset(topic, partition, this.autoOffsetReset);
    }
    return this.resetOffset(topic, partition, start);
  }

  /** The log start or the high watermark of the partition now. */
  private async resetOffset(topic: string, partition: number, to: 'earliest' | 'latest'):
    Promise<number> {
    const description = await this.metadata.describe(topic);
    const info = description.partitions[partition];
    if (info === undefined) throw new PartitionOutOfRangeError(topic, partition);
    return to === 'earliest' ? info.logStart : info.highWatermark;
  }

  /**
   * The partition's position is not held (retention deleted it, or it is past the high
   * watermark): moves it as autoOffsetReset ('earliest' or 'latest') says, as a seek would.
   */
  private async reset(entry: Assigned, generation: number): Promise<void> {
    const policy = this.autoOffsetReset;
    invariant(policy !== 'none', 'reset only under a reset policy');
    const { topic, partition } = entry.reader;
    const offset = await this.resetOffset(topic, partition, policy);
    if (generation !== entry.generation || this.closed) return; // a seek won
    this.log.info({ topic, partition, from: entry.position, to: offset, policy },
      'offset out of range: reset');
    this.seek(topic, partition, offset);
  }

  private startLoop(entry: Assigned): void {
    if (entry.running || this.closed || entry.buffered >= this.prefetchBatches) return;
    entry.running = true;
    void this.fetchLoop(entry);
  }

  /**
   * Fetches until `prefetchBatches` batches wait. `running` is cleared in this function's own
   * `finally`, in the same turn as the last push: cleared by a `.finally()` on the returned
   * promise (or after an `await` of an inner loop) it was still set a few microtasks later,
   * when the woken iterator took that batch and asked for more, so with one batch buffered
   * nothing ever fetched again.
   */
  private async fetchLoop(entry: Assigned): Promise<void> {
    const key = partitionKey(entry.reader.topic, entry.reader.partition);
    let failures = 0;
    try {
      while (!this.closed && entry.buffered < this.prefetchBatches &&
          this.assigned.get(key) === entry) {
        const generation = entry.generation;
        try {
          const batches = await entry.reader.fetch();  // a seek swaps entry.reader meanwhile
          if (entry.failure !== null) this.log.info({ key }, 'fetch recovered');
          failures = 0;
          entry.failure = null;
          if (generation !== entry.generation) continue;
          for (const batch of batches) this.push({ key, generation, batch }, entry);
        } catch (error) {
          if (generation !== entry.generation || this.closed) continue;
          if (error instanceof PmqError && error.code === 'PMQ_ERR_OFFSET_OUT_OF_RANGE' &&
              this.autoOffsetReset !== 'none') {
            // The describe may fail like any request: then try again after a backoff.
            if (!await this.reset(entry, generation).then(() => true, () => false)) {
              failures += 1;
              await sleep(Math.min(RETRY_BACKOFF_MS_MAX, 50 * 2 ** failures));
            }
            continue;
          }
          const retriable = error instanceof PmqError && error.retriable;
          if (!retriable) {
            this.push({ key, generation, error: asPmqError(error) }, entry);
            return;
          }
          failures += 1;
          entry.failure = asPmqError(error);
          // Degraded (a storage node or the broker down): said once per streak at warn, after
          // a few retries (~350 ms), so a blip stays quiet.
          this.log[failures === 3 ? 'warn' : 'debug']({ key, failures, err: String(error) },
            failures === 3 ? 'fetch failing, retrying' : 'fetch retried');
          await sleep(Math.min(RETRY_BACKOFF_MS_MAX, 50 * 2 ** failures));
        }
      }
    } finally {
      entry.running = false;
    }
  }

  private push(fetched: Fetched, entry: Assigned): void {
    entry.buffered += 1;
    this.ready.push(fetched);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

function asPmqError(error: unknown): PmqError {
  return error instanceof PmqError ? error
    : new PmqError('PMQ_ERR_INTERNAL', String(error), { cause: error });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
