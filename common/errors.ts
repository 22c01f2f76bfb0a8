/**
 * Operating errors: typed, with a stable `code` from the catalogue (common/error-codes.ts,
 * documented in docs/error-codes.md). Bad input from a peer becomes an error reply carrying one
 * of these codes; broken invariants never become a PmqError (see invariant.ts).
 */
import { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.js';
import { invariant } from './invariant.js';

export type { ErrorCode } from './error-codes.js';
export { isErrorCode } from './error-codes.js';

export class PmqError extends Error {
  readonly code: ErrorCode;
  /**
   * True when the same request may succeed later (peer restarting, timeout, region busy).
   * Default: the catalogue's for the code.
   */
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string,
    opts: { cause?: unknown; retriable?: boolean } = {}) {
    // Typed callers cannot miss; this guards codes that crossed an untyped boundary (native
    // code builds NativeErrors; peers' codes are narrowed before they get here).
    invariant(isErrorCode(code), 'error codes come from common/error-codes.ts', { code });
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? ERROR_CODES[code].retriable;
  }
}

/**
 * Thrown by the native addon (native/errors.cc builds instances of this class). `reason` is the
 * library's own words: ucs_status_string, pmem2_errormsg or strerror.
 */
export class NativeError extends PmqError {
  readonly reason: string;

  constructor(code: ErrorCode, message: string, reason: string) {
    super(code, reason.length > 0 ? `${message}: ${reason}` : message);
    this.reason = reason;
  }
}

/** A caller passed an argument that can never work (wrong type, out of range). */
export class ArgumentError extends PmqError {
  constructor(message: string) {
    super('PMQ_ERR_ARGUMENT', message);
  }
}
