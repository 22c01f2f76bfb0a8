/**
 * Reads one partition: learns where the next offset is (a view: a read grant, the segment's
 * region address and its durable watermark), then reads the segment's bytes straight from the
 * storage node (storage-reads.ts: validated, or one-sided in direct mode), in chunks of at most
 * `readChunkBytes`, each into a fresh buffer that its records view (so they are safe to keep
 * without a copy per batch), and never past the watermark. A read refused because the grant is
 * gone (revoked, stale, its direct key dead), or whose transfer failed, forgets the segment and
 * fails retriable, so the next round asks the broker again.
 *
 * How it learns of new data (docs/clients.md, "How a consumer waits"): it subscribes to the
 * partition (`subscribe`, whose reply is the first view) and the broker pushes the durable head
 * (`watermark`) whenever it moves. A push on the cursor's segment moves the cursor's watermark
 * at once (no request: the segment's read grant is natively bounded by the durable watermark
 * anyway); a push naming a later segment, or a sealed one, makes the reader ask `fetchView`
 * (waitMs 0) for the next segment's view and grant. Caught up, it waits for a push, at most
 * maxWaitMs; then it confirms its view with a fetchView (waitMs 0), so a lost push costs at most
 * maxWaitMs. Subscriptions live in one broker session: after a reconnection it subscribes again;
 * when the broker refuses (PMQ_ERR_LIMIT: too many subscriptions, PMQ_ERR_PROTOCOL: a broker
 * without them) it long-polls `fetchView` with waitMs = maxWaitMs in that session, as before.
 *
 * Pipelined reads: once a chunk has arrived, the reader hops its batch lengths (no checks yet)
 * and issues the read of the next chunk before it checks this one, so checking, decoding and the
 * application's work overlap the next read. At most one read ahead per partition (≤ one chunk
 * of memory beyond the consumer's prefetchBatches); one that no longer fits the cursor (a seek,
 * a failure, another segment) is dropped when it lands.
 *
 * The cursor {segment, position, offset} remembers the byte position of the next batch, so a
 * caught-up reader continues where it stopped. Batch boundaries are found by walking
 * batchLength from the segment's start (after a seek, batches below the target are skipped and
 * records below it dropped). Every batch is CRC-checked and structure-checked (every record
 * walked, validateRecordBatch) and must continue the offsets densely before it is handed out;
 * its records are decoded only when the application asks (CheckedBatch). Control batches (hole
 * fillers) advance the offset and are not returned. When a batch of a chunk fails, the good
 * batches before it are returned and the failure is thrown on the next round.
 * Not re-entrant: one fetch() at a time (the consumer's loop guarantees it); a seek makes a
 * new reader (the old one is closed), so a fetch still in flight on the old one cannot move the
 * new position.
 */
import { PmqError, type ErrorCode } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import {
  BATCH_LENGTH_MIN, BATCH_LENGTH_POSITION, LOG_OVERHEAD_SIZE_BYTES, validateRecordBatch,
} from '../common/record-batch/index.js';
import type { Body } from '../common/wire/messages.js';
import type { Connection } from './connection.js';
import { CheckedBatch, type ConsumerBatch } from './records.js';
import type { SegmentView } from './storage-reads.js';

/**
 * Read failures after which the broker is asked again for the segment (a new grant). A
 * validated read whose data transfer failed (PMQ_ERR_TRANSFER_FAILED: the storage node died
 * or went away while sending it) is asked again too: the refusal codes of AccessError are not
 * retriable as sent, but this one says nothing about the grant, and a consumer must outlive a
 * storage node's restart (the nemesis suite saw a consumer give up on it).
 */
const ASK_AGAIN_CODES = new Set<ErrorCode>(['PMQ_ERR_GRANT_REVOKED', 'PMQ_ERR_GRANT_UNKNOWN',
  'PMQ_ERR_GRANT_STALE_EPOCH', 'PMQ_ERR_DIRECT_FAILED', 'PMQ_ERR_DIRECT_KEY',
  'PMQ_ERR_TRANSFER_FAILED']);
/** Refusals of `subscribe` after which the session long-polls instead. */
const POLL_INSTEAD_CODES = new Set<ErrorCode>(['PMQ_ERR_LIMIT', 'PMQ_ERR_PROTOCOL']);

interface Cursor {
  segment: SegmentView;
  /** Byte position (in the segment) of the next batch to read. */
  position: number;
  /** Offset of the batch at `position`. */
  offset: number;
  /** Size of the batch at `position` when a chunk saw only its start; else 0. */
  batchBytesNext: number;
}

/** The read issued ahead of the cursor; `done` never rejects (the failure is in `error`). */
interface Ahead {
  chainPosition: number;
  grantId: number;
  position: number;
  length: number;
  buffer: Uint8Array;
  done: Promise<void>;
  error: unknown;
}

export interface ReaderOptions {
  readChunkBytes: number;
  maxWaitMs: number;
  requestTimeoutMs: number;
  /** Subscribe for pushed watermarks (default); false: long-poll fetchView only. */
  push: boolean;
}

type Watermark = Body<'watermark'>;

/** Is `a` a later head than `b`? (Heads of one broker only grow.) */
function later(a: Watermark, b: Watermark | null): boolean {
  if (b === null) return true;
  if (a.highWatermark !== b.highWatermark) return a.highWatermark > b.highWatermark;
  if (a.chainPosition !== b.chainPosition) return a.chainPosition > b.chainPosition;
  return a.position > b.position || (a.sealed && !b.sealed);
}

export class PartitionReader {
  private cursor: Cursor | undefined;
  /** The largest batch seen beyond readChunkBytes: reads are made that large, so a partition
   *  of batches bigger than a chunk does not read each one twice (a cut chunk, then again). */
  private largeBatchBytes = 0;
  /** Next offset to return (records below it are dropped). */
  private offsetNext: number;
  /** A later batch of the last chunk failed: thrown on the next round. */
  private failure: PmqError | null = null;
  private ahead: Ahead | null = null;
  /** The subscription (its id and the broker session it lives in), or null. */
  private subscription: { id: number; session: number } | null = null;
  /** A session whose broker refused `subscribe`: long-poll in it. */
  private pollSession = -1;
  /** The newest head pushed to this subscription. */
  private latest: Watermark | null = null;
  /** Ask fetchView (waitMs 0) before waiting for a push. */
  private stale = true;
  private wake: ((pushed: boolean) => void) | null = null;
  private closed = false;

  constructor(readonly topic: string, readonly partition: number, offset: number,
    private readonly connection: Connection, private readonly options: ReaderOptions) {
    this.offsetNext = offset;
  }

  get offset(): number {
    return this.offsetNext;
  }

  /**
   * One round: the batches readable now, or [] after a wait found nothing new (a push wait or a
   * long poll of at most maxWaitMs: no busy loop in any state).
   */
  async fetch(): Promise<ConsumerBatch[]> {
    for (let rounds = 0; ; rounds += 1) {
      invariant(rounds < 1_000_000, 'a fetch round makes progress', { rounds });
      if (this.closed) return []; // a seek replaced this reader: no long poll on its behalf
      if (this.failure !== null) {
        const failure = this.failure; // the cursor stays on the failing batch
        this.failure = null;
        throw failure;
      }
      const cursor = this.cursor;
      if (cursor !== undefined && cursor.position < cursor.segment.position) {
        const positionBefore = cursor.position;
        const batches = await this.readChunk(cursor);
        if (batches.length > 0 || this.cursor !== cursor || this.failure !== null) {
          return batches;
        }
        invariant(cursor.position > positionBefore || cursor.batchBytesNext > 0,
          'a chunk read advances or learns the next batch size', { positionBefore });
        continue; // only control batches, or a batch larger than the chunk: read on
      }
      if (cursor !== undefined && this.advance(cursor)) continue;
      if (!(await this.subscribed())) {
        const segment = await this.view(this.options.maxWaitMs);
        if (segment === undefined) return [];
        this.place(segment);
        if (this.cursor!.position >= segment.position) return [];
        continue;
      }
      if (this.readable()) continue; // the subscribe reply's view
      if (this.stale || this.beyond(this.cursor)) {
        this.stale = false;
        const segment = await this.view(0);
        if (segment !== undefined) this.place(segment);
        if (this.readable()) continue;
      }
      if (!(await this.waitForPush())) {
        this.stale = true; // confirm the view before waiting again
        return [];
      }
    }
  }

  /** Ends the subscription (best effort) and any wait; the reader is not used again. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wake?.(false);
    const subscription = this.subscription;
    this.subscription = null;
    if (subscription === null) return;
    this.connection.forgetSubscription(subscription.id);
    if (subscription.session !== this.connection.session) return;
    this.connection.request('unsubscribe', { subscription: subscription.id },
      { what: 'unsubscribing', topic: this.topic, partition: this.partition })
      .catch(() => undefined); // the session may be gone: it forgot the subscription then
  }

  private readable(): boolean {
    const cursor = this.cursor;
    return cursor !== undefined && cursor.position < cursor.segment.position;
  }

  /** A push moved the cursor's segment's watermark: take it (true when there is more to read). */
  private advance(cursor: Cursor): boolean {
    const head = this.latest;
    if (head === null || head.chainPosition !== cursor.segment.chainPosition) return false;
    if (head.position < cursor.segment.position ||
        (head.position === cursor.segment.position && head.sealed === cursor.segment.sealed)) {
      return false;
    }
    cursor.segment = { ...cursor.segment, position: head.position, offsetLast: head.offsetLast,
      sealed: head.sealed || cursor.segment.sealed };
    return cursor.position < cursor.segment.position;
  }

  /**
   * The cursor is at the end of its segment and a later one is (or will be) the head, or there
   * is no cursor and a push says there is data: the next view is asked for.
   */
  private beyond(cursor: Cursor | undefined): boolean {
    const head = this.latest;
    if (cursor === undefined) return head !== null && head.highWatermark > this.offsetNext;
    return cursor.segment.sealed ||
      (head !== null && head.chainPosition > cursor.segment.chainPosition);
  }

  /**
   * Subscribes in the current broker session unless it did already (the reply's view placed);
   * false when this session long-polls (the broker refused, or pushes are off).
   */
  private async subscribed(): Promise<boolean> {
    if (!this.options.push || this.closed) return false;
    const session = this.connection.session;
    if (this.subscription !== null && this.subscription.session === session) return true;
    if (this.pollSession === session && session !== 0) return false;
    if (this.subscription !== null) this.connection.forgetSubscription(this.subscription.id);
    this.subscription = null;
    this.latest = null; // heads of an earlier session (maybe an earlier broker) say nothing
    const id = this.connection.addSubscription({
      push: (message) => this.onPush(id, message),
      ended: () => this.onEnded(id),
    });
    let reply;
    try {
      reply = await this.connection.call('subscribe', { subscription: id, topic: this.topic,
        partition: this.partition, offset: this.offsetNext }, 'subscribed',
      { what: 'subscribing', topic: this.topic, partition: this.partition,
        offset: this.offsetNext });
    } catch (error) {
      this.connection.forgetSubscription(id);
      if (error instanceof PmqError && POLL_INSTEAD_CODES.has(error.code)) {
        this.pollSession = this.connection.session;
        return false;
      }
      throw error;
    }
    if (this.closed) {
      this.connection.forgetSubscription(id);
      return false;
    }
    this.subscription = { id, session: this.connection.session };
    this.stale = false;
    const segment = reply.segment[0];
    if (segment !== undefined) this.place(segment);
    return true;
  }

  private onPush(id: number, message: Watermark): void {
    if (this.subscription !== null && this.subscription.id !== id) return;
    if (!later(message, this.latest)) return;
    this.latest = message;
    this.wake?.(true);
  }

  private onEnded(id: number): void {
    if (this.subscription?.id === id) this.subscription = null;
    this.stale = true;
    this.wake?.(true);
  }

  /** Waits for a push (true) or maxWaitMs (false). */
  private waitForPush(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake?.(false), this.options.maxWaitMs);
      this.wake = (pushed) => {
        clearTimeout(timer);
        this.wake = null;
        resolve(pushed);
      };
    });
  }

  private async view(waitMs: number): Promise<SegmentView | undefined> {
    const reply = await this.connection.call('fetchView', { topic: this.topic,
      partition: this.partition, offset: this.offsetNext, waitMs }, 'view',
    { what: 'fetching', topic: this.topic, partition: this.partition, offset: this.offsetNext },
    waitMs + this.options.requestTimeoutMs);
    return reply.segment[0];
  }

  /**
   * Keeps the cursor on the same segment (a newer watermark; an older one, which a push may
   * have overtaken, changes nothing) or starts the new one at 0.
   */
  private place(segment: SegmentView): void {
    const cursor = this.cursor;
    if (cursor !== undefined && cursor.segment.chainPosition === segment.chainPosition) {
      if (segment.position >= cursor.segment.position) cursor.segment = segment;
      return;
    }
    this.cursor = { segment, position: 0, offset: segment.baseOffset, batchBytesNext: 0 };
  }

  /** Reads [position, watermark) up to one chunk and returns the whole batches in it. */
  private async readChunk(cursor: Cursor): Promise<ConsumerBatch[]> {
    const { segment } = cursor;
    const available = segment.position - cursor.position;
    const length = Math.min(available, Math.max(this.options.readChunkBytes,
      cursor.batchBytesNext, this.largeBatchBytes));
    let buffer: Uint8Array;
    try {
      buffer = await this.takeRead(cursor, length);
    } catch (error) {
      this.cursor = undefined; // the grant may be gone: ask the broker again
      this.stale = true;
      this.ahead = null;
      if (error instanceof PmqError && !error.retriable && ASK_AGAIN_CODES.has(error.code)) {
        throw new PmqError(error.code, `${this.topic}/${this.partition}: ${error.message}: ` +
          'asking the broker again', { cause: error, retriable: true });
      }
      throw error;
    }
    this.readAhead(cursor, buffer);
    return this.walk(cursor, buffer, buffer.byteLength);
  }

  /** The read issued ahead when it starts at the cursor, else a new read of `length`. */
  private async takeRead(cursor: Cursor, length: number): Promise<Uint8Array> {
    const ahead = this.ahead;
    this.ahead = null;
    if (ahead !== null && ahead.position === cursor.position &&
        ahead.chainPosition === cursor.segment.chainPosition &&
        ahead.grantId === cursor.segment.grantId && ahead.length >= cursor.batchBytesNext) {
      await ahead.done;
      if (ahead.error !== null) throw ahead.error;
      return ahead.buffer;
    }
    // A fresh buffer per read: records are views into it (safe to keep, no copy per batch).
    const buffer = new Uint8Array(length);
    await this.connection.reads.read(cursor.segment, cursor.position, buffer, length);
    return buffer;
  }

  /**
   * Issues the read of the chunk after `buffer` (which starts at the cursor) before the chunk is
   * checked: it hops batchLength fields only; the walk checks everything, and a read ahead that
   * no longer fits the cursor afterwards is dropped.
   */
  private readAhead(cursor: Cursor, buffer: Uint8Array): void {
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    let at = 0;
    let partial = 0;
    while (buffer.byteLength - at >= LOG_OVERHEAD_SIZE_BYTES) {
      const batchLength = view.getInt32(at + BATCH_LENGTH_POSITION);
      if (batchLength < BATCH_LENGTH_MIN) return; // the walk fails on it
      const sizeBytes = batchLength + LOG_OVERHEAD_SIZE_BYTES;
      if (sizeBytes > buffer.byteLength - at) {
        partial = sizeBytes;
        break;
      }
      at += sizeBytes;
    }
    const { segment } = cursor;
    const position = cursor.position + at;
    if (at === 0 || position >= segment.position) return;
    const length = Math.min(segment.position - position, Math.max(this.options.readChunkBytes,
      partial, this.largeBatchBytes));
    const ahead: Ahead = { chainPosition: segment.chainPosition, grantId: segment.grantId,
      position, length, buffer: new Uint8Array(length), done: Promise.resolve(), error: null };
    ahead.done = this.connection.reads.read(segment, position, ahead.buffer, length)
      .then(() => undefined, (error: unknown) => { ahead.error = error; });
    this.ahead = ahead;
  }

  /**
   * Takes the whole batches of a chunk. A check failing after good batches were taken (their
   * offsets are behind the cursor now) returns those and keeps the failure for the next round.
   */
  private walk(cursor: Cursor, buffer: Uint8Array, length: number): ConsumerBatch[] {
    const batches: ConsumerBatch[] = [];
    try {
      this.walkInto(batches, cursor, buffer, length);
    } catch (error) {
      if (!(error instanceof PmqError) || batches.length === 0) throw error;
      this.failure = error;
      this.ahead = null;
    }
    return batches;
  }

  private walkInto(batches: ConsumerBatch[], cursor: Cursor, buffer: Uint8Array,
    length: number): void {
    const view = new DataView(buffer.buffer, buffer.byteOffset, length);
    let at = 0;
    while (length - at >= LOG_OVERHEAD_SIZE_BYTES) {
      const sizeBytes = view.getInt32(at + BATCH_LENGTH_POSITION) + LOG_OVERHEAD_SIZE_BYTES;
      if (sizeBytes > cursor.segment.position - cursor.position) {
        throw new PmqError('PMQ_ERR_BATCH_TRUNCATED', `${this.topic}/${this.partition}: a batch ` +
          `of ${sizeBytes} bytes at position ${cursor.position} crosses the watermark`);
      }
      if (sizeBytes > this.options.readChunkBytes) {
        this.largeBatchBytes = Math.max(this.largeBatchBytes, sizeBytes);
      }
      if (sizeBytes > length - at) {
        cursor.batchBytesNext = sizeBytes;
        break;
      }
      const batch = this.takeBatch(cursor, buffer, at, sizeBytes);
      if (batch !== undefined) batches.push(batch);
      at += sizeBytes;
    }
    if (at === 0 && length < LOG_OVERHEAD_SIZE_BYTES) {
      throw new PmqError('PMQ_ERR_BATCH_TRUNCATED', `${this.topic}/${this.partition}: ` +
        `${length} bytes before the watermark at position ${cursor.position}: not a batch`);
    }
  }

  /** Checks the batch at buffer[at..] whole, advances the cursor; records decode later. */
  private takeBatch(cursor: Cursor, buffer: Uint8Array, at: number,
    sizeBytes: number): ConsumerBatch | undefined {
    // Every record is walked (and checked) even when none is returned.
    const header = validateRecordBatch(buffer, at, sizeBytes);
    if (header.baseOffset !== cursor.offset) {
      throw new PmqError('PMQ_ERR_BATCH_CORRUPT', `${this.topic}/${this.partition}: batch at ` +
        `position ${cursor.position} has baseOffset ${header.baseOffset}, expected ` +
        `${cursor.offset}`);
    }
    const lastOffset = header.baseOffset + header.lastOffsetDelta;
    if (lastOffset > cursor.segment.offsetLast) {
      throw new PmqError('PMQ_ERR_BATCH_CORRUPT', `${this.topic}/${this.partition}: batch ` +
        `ends at offset ${lastOffset}, past the watermark ${cursor.segment.offsetLast}`);
    }
    const first = this.offsetNext;
    cursor.position += sizeBytes;
    cursor.offset = lastOffset + 1;
    cursor.batchBytesNext = 0;
    if (lastOffset < first) return undefined; // below a seek target
    this.offsetNext = lastOffset + 1;
    if (header.attributes.isControl) return undefined;
    return new CheckedBatch(this.topic, this.partition, Math.max(first, header.baseOffset),
      lastOffset, buffer, at, sizeBytes);
  }
}
