/**
 * Bad record batches: what is wrong and where. A batch from a peer that fails validation is
 * answered with one of these codes (an error reply); it never aborts the process.
 */
import { PmqError, type ErrorCode } from '../errors.js';

/** The catalogue's codes (common/error-codes.ts) of bad record batches. */
export type RecordBatchErrorCode = Extract<ErrorCode,
  | 'PMQ_ERR_BATCH_TRUNCATED'
  | 'PMQ_ERR_BATCH_MAGIC'
  | 'PMQ_ERR_BATCH_CRC'
  | 'PMQ_ERR_BATCH_COMPRESSION'
  | 'PMQ_ERR_BATCH_CORRUPT'>;

export class RecordBatchError extends PmqError {
  declare readonly code: RecordBatchErrorCode;
  /** Byte position of the problem, relative to the first byte of the batch. */
  readonly position: number;

  constructor(code: RecordBatchErrorCode, position: number, what: string) {
    super(code, `record batch: ${what} (at batch byte ${position})`);
    this.position = position;
  }
}
