/**
 * Reads one partition: asks the broker where the next offset is (`fetchView`: a read grant,
 * the segment's region address and its durable watermark), then reads the segment's bytes
 * straight from the storage node (storage-reads.ts: validated, or one-sided in direct mode),
 * in chunks of at most `readChunkBytes`, each into a fresh buffer that its records view (so
 * they are safe to keep without a copy per batch), and never past the watermark. A read
 * refused because the grant is gone (revoked, stale, its direct key dead) forgets the segment
 * and fails retriable, so the next round asks the broker again.
 *
 * The cursor {segment, position, offset} remembers the byte position of the next batch, so a
 * caught-up reader continues where it stopped. Batch boundaries are found by walking
 * batchLength from the segment's start (after a seek, batches below the target are skipped
 * and records below it dropped). Every batch is CRC-checked and structure-checked
 * (openRecordBatch, every record read) and must continue the offsets densely; control batches
 * (hole fillers) advance the offset and are not returned. At the end of a sealed segment the
 * reader moves to the next one; when caught up on the head segment it long-polls (fetchView
 * with waitMs).
 * Not re-entrant: one fetch() at a time (the consumer's loop guarantees it); a seek makes a
 * new reader, so a fetch still in flight on the old one cannot move the new position.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import {
  BATCH_LENGTH_POSITION, LOG_OVERHEAD_SIZE_BYTES, openRecordBatch,
} from '../common/record-batch/index.js';
import type { Connection } from './connection.js';
import { toConsumerRecord, type ConsumerBatch, type ConsumerRecord } from './records.js';
import type { SegmentView } from './storage-reads.js';

/**
 * Read failures after which the broker is asked again for the segment (a new grant).
 * PMQ_ERR_TRANSFER_FAILED: the read's data never arrived (the storage node died or its
 * endpoint broke mid-transfer; seen under the nemesis): nothing was delivered, so reading
 * again from the same position is safe.
 */
const ASK_AGAIN_CODES = new Set(['PMQ_ERR_GRANT_REVOKED', 'PMQ_ERR_GRANT_UNKNOWN',
  'PMQ_ERR_GRANT_STALE_EPOCH', 'PMQ_ERR_DIRECT_FAILED', 'PMQ_ERR_DIRECT_KEY',
  'PMQ_ERR_TRANSFER_FAILED']);

interface Cursor {
  segment: SegmentView;
  /** Byte position (in the segment) of the next batch to read. */
  position: number;
  /** Offset of the batch at `position`. */
  offset: number;
  /** Size of the batch at `position` when a chunk saw only its start; else 0. */
  batchBytesNext: number;
}

export interface ReaderOptions {
  readChunkBytes: number;
  maxWaitMs: number;
  requestTimeoutMs: number;
}

/** Read refusals that a fresh fetchView cures: a restarted broker raised the epoch and the
 *  storage node revoked the old instance's grants, or the broker replaced the grant. */
export class PartitionReader {
  private cursor: Cursor | undefined;
  /** The largest batch seen beyond readChunkBytes: reads are made that large, so a partition
   *  of batches bigger than a chunk does not read each one twice (a cut chunk, then again). */
  private largeBatchBytes = 0;
  /** Next offset to return (records below it are dropped). */
  private offsetNext: number;

  constructor(readonly topic: string, readonly partition: number, offset: number,
    private readonly connection: Connection, private readonly options: ReaderOptions) {
    this.offsetNext = offset;
  }

  get offset(): number {
    return this.offsetNext;
  }

  /**
   * One round: the batches readable now, or [] after a long poll found nothing new. The
   * broker's fetchView returns at once when there is data past the offset and waits up to
   * maxWaitMs otherwise, so asking with maxWaitMs is right in every state: no busy loop.
   */
  async fetch(): Promise<ConsumerBatch[]> {
    for (let rounds = 0; ; rounds += 1) {
      invariant(rounds < 1_000_000, 'a fetch round makes progress', { rounds });
      const cursor = this.cursor;
      if (cursor !== undefined && cursor.position < cursor.segment.position) {
        const positionBefore = cursor.position;
        const batches = await this.readChunk(cursor);
        if (batches.length > 0 || this.cursor !== cursor) return batches;
        invariant(cursor.position > positionBefore || cursor.batchBytesNext > 0,
          'a chunk read advances or learns the next batch size', { positionBefore });
        continue; // only control batches, or a batch larger than the chunk: read on
      }
      const segment = await this.view(this.options.maxWaitMs);
      if (segment === undefined) return [];
      this.place(segment);
      if (this.cursor!.position >= segment.position) return [];
    }
  }

  private async view(waitMs: number): Promise<SegmentView | undefined> {
    const reply = await this.connection.call('fetchView', { topic: this.topic,
      partition: this.partition, offset: this.offsetNext, waitMs }, 'view',
    { what: 'fetching', topic: this.topic, partition: this.partition, offset: this.offsetNext },
    waitMs + this.options.requestTimeoutMs);
    return reply.segment[0];
  }

  /** Keeps the cursor on the same segment (new watermark) or starts the new one at 0. */
  private place(segment: SegmentView): void {
    const cursor = this.cursor;
    if (cursor !== undefined && cursor.segment.chainPosition === segment.chainPosition) {
      invariant(segment.position >= cursor.segment.position, 'a watermark never moves back',
        { before: cursor.segment.position, after: segment.position });
      cursor.segment = segment;
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
    // A fresh buffer per read: records are views into it (safe to keep, no copy per batch).
    const buffer = new Uint8Array(length);
    try {
      await this.connection.reads.read(segment, cursor.position, buffer, length);
    } catch (error) {
      this.cursor = undefined; // the grant may be gone: ask the broker again
      if (error instanceof PmqError && !error.retriable && ASK_AGAIN_CODES.has(error.code)) {
        throw new PmqError(error.code, `${this.topic}/${this.partition}: ${error.message}: ` +
          'asking the broker again', { cause: error, retriable: true });
      }
      throw error;
    }
    return this.walk(cursor, buffer, length);
  }

  private walk(cursor: Cursor, buffer: Uint8Array, length: number): ConsumerBatch[] {
    const batches: ConsumerBatch[] = [];
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
    return batches;
  }

  /** Checks and decodes the batch at buffer[at..], advances the cursor. */
  private takeBatch(cursor: Cursor, buffer: Uint8Array, at: number,
    sizeBytes: number): ConsumerBatch | undefined {
    const batch = openRecordBatch(buffer, at, sizeBytes);
    const { header } = batch;
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
    // Every record is read (and checked) even when none is returned.
    const first = this.offsetNext;
    const keep = lastOffset >= first && !header.attributes.isControl;
    const records: ConsumerRecord[] = [];
    while (batch.next()) {
      if (keep && batch.offset >= first) {
        records.push(toConsumerRecord(this.topic, this.partition, batch));
      }
    }
    cursor.position += sizeBytes;
    cursor.offset = lastOffset + 1;
    cursor.batchBytesNext = 0;
    if (lastOffset < first) return undefined; // below a seek target
    this.offsetNext = lastOffset + 1;
    if (!keep) return undefined;
    return { topic: this.topic, partition: this.partition, baseOffset: first, lastOffset,
      records };
  }
}
