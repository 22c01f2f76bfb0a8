/**
 * The fixed layouts a broker reads and writes per batch, spelt out field by field (fixed.ts has
 * the layouts as a table, and the generic code every other use goes through): the requests it
 * decodes (append, lease, leaseRelease) and the replies and push it encodes (acked, duplicate,
 * leased, done, watermark).
 *
 * Why spelt out: V8 keeps a number that is not a small integer (a grant key, an offset past
 * 2^31, a producer id) boxed. The table's loop reads and writes fields by a name it looks up
 * (`message[name]`), which boxes every such number afresh: an allocation per field per message.
 * Named fields of one object shape are read and written in place. test/unit/wire-fixed.test.ts
 * checks that these functions and the table agree byte for byte, and that neither direction
 * allocates.
 */
import { WIRE_VERSION } from './messages.js';

const TWO_32 = 0x1_0000_0000;
/** The high word of the largest safe integer (2^53 - 1). */
const SAFE_HIGH_MAX = 0x1f_ffff;

/*
 * Range checks come before the reads, apart: a read that may give NaN (or any constant that is
 * no small integer) for "out of range" makes V8 box every value it returns (measured). The reads
 * are written out (high word × 2^32 + low word), not a helper's result: a helper V8 does not
 * inline (its budget runs out in the decoder's switch) returns each number boxed (measured).
 */

/** Whether the u64 at `at` is a safe integer (at most 2^53 - 1). */
function u64Ok(view: DataView, at: number): boolean {
  return view.getUint32(at + 4, true) <= SAFE_HIGH_MAX;
}

/** Whether the i64 at `at` is a safe integer (within ±(2^53 - 1)). */
function i64Ok(view: DataView, at: number): boolean {
  const high = view.getInt32(at + 4, true);
  if (high > SAFE_HIGH_MAX || high < -SAFE_HIGH_MAX - 1) return false;
  return high !== -SAFE_HIGH_MAX - 1 || view.getUint32(at, true) !== 0; // -2^53 is not safe
}


/** Writes a safe integer (non-negative unless `signed`) as 8 bytes; false if it is none. */
function put64(view: DataView, at: number, value: number, signed: boolean): boolean {
  if (!Number.isSafeInteger(value) || (!signed && value < 0)) return false;
  const high = Math.floor(value / TWO_32);
  view.setUint32(at, value - high * TWO_32, true);
  view.setInt32(at + 4, high, true);
  return true;
}

function put32(view: DataView, at: number, value: number): boolean {
  if (!Number.isInteger(value) || value < 0 || value >= TWO_32) return false;
  view.setUint32(at, value, true);
  return true;
}

function putBool(view: DataView, at: number, value: boolean): boolean {
  if (typeof value !== 'boolean') return false;
  view.setUint8(at, value ? 1 : 0);
  return true;
}

/** A decoded `append` (one per decoder, reused). */
export class AppendFields {
  readonly v = WIRE_VERSION;
  readonly kind = 'append' as const;
  id = 0;
  topicId = 0;
  partition = 0;
  epoch = 0;
  leaseId = 0;
  position = 0;
  bytes = 0;
  records = 0;
  producerId = 0;
  sequence = 0;
}

/**
 * Reads an append (whole, prefix checked) into `m`: the name of a field out of range, or null.
 * Everything is read from `view`, nothing passed in: a number passed to a call V8 does not
 * inline is boxed.
 */
export function readAppend(view: DataView, m: AppendFields): string | null {
  if (!u64Ok(view, 20)) return 'epoch';
  if (!u64Ok(view, 28)) return 'leaseId';
  if (!u64Ok(view, 36)) return 'position';
  if (!u64Ok(view, 44)) return 'bytes';
  if (!u64Ok(view, 52)) return 'records';
  if (!i64Ok(view, 60)) return 'producerId';
  if (!i64Ok(view, 68)) return 'sequence';
  m.id = view.getUint32(8, true);
  m.topicId = view.getUint32(12, true);
  m.partition = view.getUint32(16, true);
  m.epoch = view.getUint32(24, true) * TWO_32 + view.getUint32(20, true);
  m.leaseId = view.getUint32(32, true) * TWO_32 + view.getUint32(28, true);
  m.position = view.getUint32(40, true) * TWO_32 + view.getUint32(36, true);
  m.bytes = view.getUint32(48, true) * TWO_32 + view.getUint32(44, true);
  m.records = view.getUint32(56, true) * TWO_32 + view.getUint32(52, true);
  m.producerId = view.getInt32(64, true) * TWO_32 + view.getUint32(60, true);
  m.sequence = view.getInt32(72, true) * TWO_32 + view.getUint32(68, true);
  return null;
}

/** A decoded `lease` (one per decoder, reused). */
export class LeaseFields {
  readonly v = WIRE_VERSION;
  readonly kind = 'lease' as const;
  id = 0;
  topicId = 0;
  partition = 0;
  bytes = 0;
  bytesMin = 0;
  releaseEpoch = 0;
  releaseId = 0;
}

export function readLease(view: DataView, m: LeaseFields): string | null {
  if (!u64Ok(view, 20)) return 'bytes';
  if (!u64Ok(view, 28)) return 'bytesMin';
  if (!u64Ok(view, 36)) return 'releaseEpoch';
  if (!i64Ok(view, 44)) return 'releaseId';
  m.id = view.getUint32(8, true);
  m.topicId = view.getUint32(12, true);
  m.partition = view.getUint32(16, true);
  m.bytes = view.getUint32(24, true) * TWO_32 + view.getUint32(20, true);
  m.bytesMin = view.getUint32(32, true) * TWO_32 + view.getUint32(28, true);
  m.releaseEpoch = view.getUint32(40, true) * TWO_32 + view.getUint32(36, true);
  m.releaseId = view.getInt32(48, true) * TWO_32 + view.getUint32(44, true);
  return null;
}

/** A decoded `leaseRelease` (one per decoder, reused). */
export class LeaseReleaseFields {
  readonly v = WIRE_VERSION;
  readonly kind = 'leaseRelease' as const;
  id = 0;
  topicId = 0;
  partition = 0;
  epoch = 0;
  leaseId = 0;
}

export function readLeaseRelease(view: DataView, m: LeaseReleaseFields):
  string | null {
  if (!u64Ok(view, 20)) return 'epoch';
  if (!u64Ok(view, 28)) return 'leaseId';
  m.id = view.getUint32(8, true);
  m.topicId = view.getUint32(12, true);
  m.partition = view.getUint32(16, true);
  m.epoch = view.getUint32(24, true) * TWO_32 + view.getUint32(20, true);
  m.leaseId = view.getUint32(32, true) * TWO_32 + view.getUint32(28, true);
  return null;
}

/** The fields of each reply and push a broker encodes (as its handlers build them). */
export interface AckedBody { baseOffset: number; leaseEnd: boolean }
export interface DuplicateBody { baseOffset: number }
export interface LeasedBody {
  topicId: number; epoch: number; leaseId: number; nodeId: number; grantId: number;
  grantKey: number; grantEpoch: number; address: number; position: number; sizeBytes: number;
}
export interface WatermarkBody {
  subscription: number; epoch: number; chainPosition: number; position: number;
  offsetLast: number; sealed: boolean; highWatermark: number;
}

/** Writes an acked's fields after the prefix; false when one does not fit. */
export function writeAcked(view: DataView, b: AckedBody): boolean {
  return put64(view, 12, b.baseOffset, false) && putBool(view, 20, b.leaseEnd);
}

export function writeDuplicate(view: DataView, b: DuplicateBody): boolean {
  return put64(view, 12, b.baseOffset, false);
}

export function writeLeased(view: DataView, b: LeasedBody): boolean {
  return put32(view, 12, b.topicId) && put64(view, 16, b.epoch, false) &&
    put64(view, 24, b.leaseId, false) && put64(view, 32, b.nodeId, false) &&
    put64(view, 40, b.grantId, false) && put64(view, 48, b.grantKey, false) &&
    put64(view, 56, b.grantEpoch, false) && put64(view, 64, b.address, false) &&
    put64(view, 72, b.position, false) && put64(view, 80, b.sizeBytes, false);
}

export function writeWatermark(view: DataView, b: WatermarkBody): boolean {
  return put64(view, 12, b.subscription, false) && put64(view, 20, b.epoch, false) &&
    put64(view, 28, b.chainPosition, false) && put64(view, 36, b.position, false) &&
    put64(view, 44, b.offsetLast, true) && putBool(view, 52, b.sealed) &&
    put64(view, 53, b.highWatermark, false);
}
