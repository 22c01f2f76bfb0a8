/**
 * Operating errors: typed, with a stable `code` documented in docs/error-codes.md.
 * Bad input from a peer becomes an error reply carrying one of these codes; broken invariants
 * never become a PmqError (see invariant.ts).
 */

export class PmqError extends Error {
  readonly code: string;
  /** True when the same request may succeed later (peer restarting, timeout, region busy). */
  readonly retriable: boolean;

  constructor(code: string, message: string, opts: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

/**
 * Thrown by the native addon (native/errors.cc builds instances of this class). `reason` is the
 * library's own words: ucs_status_string, pmem2_errormsg or strerror.
 */
export class NativeError extends PmqError {
  readonly reason: string;

  constructor(code: string, message: string, reason: string) {
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
