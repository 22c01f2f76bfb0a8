/**
 * The cluster's metadata log, kept in this node's region where fencing applies
 * (docs/broker.md, "Where metadata lives"; docs/region-format.md, "The metadata log").
 *
 * The broker's metadata (topics, group offsets) is a log of opaque values in segments of the
 * reserved topic METADATA_TOPIC, partition 0: each value is one record of one RecordBatch v2,
 * so the region stays self-describing and `verifySegmentData` checks these segments like every
 * other. Every metadata segment starts with a snapshot (the whole state); the values after it
 * are changes. A snapshot goes into a new segment at the next chain position and, once it is
 * durable, every older metadata segment is freed: the log is read from the last segment whose
 * snapshot is durable (watermark above 0), so a crash anywhere in a rotation leaves either the
 * old segment or the new one, each whole.
 *
 * Fencing: BrokerService serves append and read only to the broker instance that owns the
 * node's epoch, at that epoch, one at a time and in turn with epoch raises: a raise waits for
 * an append in flight, so a newer broker that raised the epoch reads every value an older one
 * was told is durable, and the older one can append nothing after it.
 *
 * Concurrency: JS thread only; the caller (BrokerService) runs calls one at a time.
 */
import { PmqError, type ErrorCode } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import {
  FRAME_LENGTH_BYTES, frameValues, METADATA_TOPIC, METADATA_VALUE_BYTES_MAX,
} from '../common/metadata-log.js';
import { encodeRecordBatch, openRecordBatch, setBaseOffset } from '../common/record-batch/index.js';
import type { RegionStore, SegmentInfo } from './region-store.js';

/** Bytes of the framed values one read returns at most (a reply stays under a message). */
export const METADATA_READ_BYTES_MAX = 7 * 1024 * 1024;

/** A metadata segment holds its snapshot and this many times its size minus one of changes. */
const METADATA_SEGMENT_ROOM = 8;
const SNAPSHOT_KEY = Uint8Array.of(0x73); // "s"
const CHANGE_KEY = Uint8Array.of(0x63); // "c"

export interface MetadataLogUse {
  /** Bytes of the current segment in use, and its size: the broker snapshots before it fills. */
  readonly usedBytes: number;
  readonly sizeBytes: number;
}

export interface MetadataRead extends MetadataLogUse {
  /** Values from record `from` of the current segment, framed (frameValues). */
  readonly framed: Uint8Array;
  /** The record index after the last value returned. */
  readonly next: number;
  /** True when `framed` reaches the durable end of the log. */
  readonly end: boolean;
}

function metaError(code: ErrorCode, message: string, retriable?: boolean): PmqError {
  return new PmqError(code, message, { retriable });
}

export class MetadataLog {
  constructor(private readonly store: RegionStore) {}

  /** The metadata segments, in chain order. */
  #segments(): SegmentInfo[] {
    return this.store.segments()
      .filter((s) => s.state !== 'free' && s.topic === METADATA_TOPIC && s.partition === 0)
      .sort((a, b) => a.chainPosition - b.chainPosition);
  }

  /** The segment the log is read from: the last one whose first value (a snapshot) is durable. */
  #current(): SegmentInfo | null {
    const list = this.#segments();
    for (let i = list.length - 1; i >= 0; i -= 1) {
      if (list[i]!.watermark.position > 0) return list[i]!;
    }
    return null;
  }

  use(): MetadataLogUse {
    const current = this.#current();
    return { usedBytes: current?.watermark.position ?? 0,
      sizeBytes: current?.sizeBytes ?? this.store.superblock.segmentSizeBytesMin };
  }

  /**
   * Appends `value` durably under `epoch`. A snapshot starts a new segment and then frees the
   * older ones; a change goes after the current segment's last value, and is refused with the
   * retriable PMQ_ERR_METADATA_FULL when it does not fit (send a snapshot instead) and with
   * PMQ_ERR_METADATA_SNAPSHOT while the log is empty.
   */
  async append(epoch: number, value: Uint8Array, snapshot: boolean): Promise<MetadataLogUse> {
    if (value.byteLength > METADATA_VALUE_BYTES_MAX) {
      throw metaError('PMQ_ERR_LIMIT', `a metadata value of ${value.byteLength} bytes is above ` +
        `${METADATA_VALUE_BYTES_MAX}`);
    }
    const batch = encodeRecordBatch([{ key: snapshot ? SNAPSHOT_KEY : CHANGE_KEY, value }]);
    const sizeBytes = this.store.superblock.segmentSizeBytes; // the largest segment
    if (batch.byteLength > sizeBytes) {
      throw metaError('PMQ_ERR_LIMIT', `metadata of ${value.byteLength} bytes does not fit a ` +
        `segment of ${sizeBytes} bytes: use larger segments (pmq storage --segment-size), or ` +
        'delete topics and groups');
    }
    if (snapshot) {
      await this.#appendSnapshot(epoch, batch);
    } else {
      const current = this.#current();
      if (current === null) {
        throw metaError('PMQ_ERR_METADATA_SNAPSHOT', 'the metadata log is empty: its first ' +
          'value must be a snapshot');
      }
      if (current.watermark.position + batch.byteLength > current.sizeBytes) {
        throw metaError('PMQ_ERR_METADATA_FULL', 'the metadata segment is full: send a ' +
          'snapshot', true);
      }
      await this.#write(current, batch, epoch);
    }
    return this.use();
  }

  async #appendSnapshot(epoch: number, batch: Uint8Array): Promise<void> {
    const list = this.#segments();
    const last = list.at(-1);
    // A segment allocated for a snapshot that never became durable (a crash) is reused when
    // the snapshot fits it.
    const reuse = last !== undefined && last.watermark.position === 0 &&
      batch.byteLength <= last.sizeBytes;
    if (last !== undefined && last.watermark.position === 0 && !reuse) {
      await this.store.freeSegment(last.segmentIndex, epoch);
    }
    // Sized to the snapshot, not grown by chain position (every rotation is a chain place):
    // room for the snapshot and about seven times as many bytes of changes after it.
    const target = reuse ? last : await this.store.allocateSegment({ topic: METADATA_TOPIC,
      partition: 0, chainPosition: last === undefined ? 0 : last.chainPosition + 1,
      baseOffset: last === undefined ? 0 : last.watermark.offsetLast + 1, epoch,
      sizing: 'fit', sizeBytesMin: Math.min(this.store.superblock.segmentSizeBytes,
        METADATA_SEGMENT_ROOM * batch.byteLength) });
    await this.#write(target, batch, epoch);
    for (const older of list) {
      if (older.chainPosition < target.chainPosition) {
        await this.store.freeSegment(older.segmentIndex, epoch);
      }
    }
  }

  /** Writes one batch after the segment's watermark and persists data, then the watermark. */
  async #write(segment: SegmentInfo, batch: Uint8Array, epoch: number): Promise<void> {
    const { position, offsetLast } = segment.watermark;
    invariant(position + batch.byteLength <= segment.sizeBytes,
      'a metadata batch inside its segment', { position, sizeBytes: batch.byteLength });
    setBaseOffset(batch, 0, offsetLast + 1);
    this.store.region.view(this.store.segmentAddress(segment.segmentIndex) + position,
      batch.byteLength).set(batch);
    await this.store.persistWatermark(segment.segmentIndex,
      { position: position + batch.byteLength, offsetLast: offsetLast + 1 }, epoch);
  }

  /** Values from record `from` of the current segment (0: its snapshot), up to a bound. */
  read(from: number): MetadataRead {
    const current = this.#current();
    const use = this.use();
    if (current === null) return { ...use, framed: new Uint8Array(0), next: 0, end: true };
    // The segment's committed bytes, indexed by position.
    const bytes = this.store.region.view(this.store.segmentAddress(current.segmentIndex),
      current.watermark.position);
    const end = current.watermark.position;
    const values: Uint8Array[] = [];
    let framedBytes = 0; // what frameValues(values) will take
    let index = 0;
    let at = 0;
    for (; at < end; index += 1) {
      const cursor = openRecordBatch(bytes, at, end - at);
      invariant(cursor.next() && cursor.value !== null, 'a metadata batch holds one value');
      const key = cursor.key?.[0];
      invariant((index === 0) === (key === SNAPSHOT_KEY[0]) && cursor.key?.byteLength === 1,
        'a metadata segment starts with its one snapshot', { index, key });
      const value = cursor.value;
      invariant(!cursor.next(), 'one value per metadata batch');
      if (index >= from) {
        const bytes = FRAME_LENGTH_BYTES + value.byteLength;
        if (values.length > 0 && framedBytes + bytes > METADATA_READ_BYTES_MAX) break;
        values.push(value);
        framedBytes += bytes;
      }
      at += cursor.header.batchLength + 12;
    }
    return { ...use, framed: frameValues(values), next: index, end: at >= end };
  }
}
