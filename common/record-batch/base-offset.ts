/**
 * Patching a batch's baseOffset in place. The CRC covers attributes..end, not baseOffset, so a
 * producer can encode (and checksum) a batch before the sequencer has given it an offset, then
 * write the offset into the 8 bytes at position 0 — in its own buffer or in the region.
 */
import { ArgumentError } from '../errors.js';
import { writeInt64 } from './bytes.js';
import { RecordBatchError } from './errors.js';
import * as layout from './layout.js';

/** Writes baseOffset into the batch at bytes[position..]; the CRC stays valid. */
export function setBaseOffset(bytes: Uint8Array, position: number, baseOffset: number): void {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError('setBaseOffset: bytes type');
  if (!Number.isSafeInteger(baseOffset) || baseOffset < 0) {
    throw new ArgumentError(`setBaseOffset: baseOffset ${baseOffset} is not a safe integer ≥ 0`);
  }
  if (!Number.isSafeInteger(position) || position < 0 || position > bytes.byteLength) {
    throw new ArgumentError(`setBaseOffset: position ${position} outside 0..${bytes.byteLength}`);
  }
  const available = bytes.byteLength - position;
  if (available < layout.RECORD_BATCH_HEADER_SIZE_BYTES) {
    throw new RecordBatchError('PMQ_ERR_BATCH_TRUNCATED', available,
      `${available} bytes available, a batch header needs ` +
      `${layout.RECORD_BATCH_HEADER_SIZE_BYTES}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + position,
    layout.RECORD_BATCH_HEADER_SIZE_BYTES);
  const magic = view.getInt8(layout.MAGIC_POSITION);
  if (magic !== layout.MAGIC_V2) {
    throw new RecordBatchError('PMQ_ERR_BATCH_MAGIC', layout.MAGIC_POSITION,
      `magic ${magic}: not a RecordBatch v2, refusing to patch its baseOffset`);
  }
  writeInt64(view, layout.BASE_OFFSET_POSITION, baseOffset);
}
