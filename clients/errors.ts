/**
 * The client library's typed errors: each a PmqError with a stable `code` (docs/error-codes.md,
 * "Clients") and a message that says what to do. Errors that reach a user are always one of
 * these classes or a PmqError with a documented code; `toClientError` maps what the broker,
 * the storage node and the transport report onto them, keeping the original as `cause`.
 *
 * `retriable` is true when the same call may succeed later unchanged; the producer already
 * retries those itself where that is safe, so a user sees one only once retries ran out.
 */
import { ArgumentError, PmqError, type ErrorCode } from '../common/errors.js';
import { AccessError } from '../native/transport-core.js';

// Thrown to users as they are (an argument that can never work; a batch read from storage
// that fails its checks), so the package entry exports them for `instanceof`.
export { ArgumentError, PmqError };
export { RecordBatchError } from '../common/record-batch/errors.js';

export class UnknownTopicError extends PmqError {
  constructor(readonly topic: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist: create it first ` +
      '(admin.createTopic) or check the name', opts);
  }
}

export class TopicExistsError extends PmqError {
  constructor(readonly topic: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_TOPIC_EXISTS', `topic ${topic} exists already: use it, or delete it first`,
      opts);
  }
}

export class PartitionOutOfRangeError extends PmqError {
  constructor(readonly topic: string, readonly partition: number, readonly partitions?: number,
    opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_PARTITION_RANGE', `topic ${topic} has no partition ${partition}` +
      (partitions === undefined ? '' : ` (it has ${partitions}: 0..${partitions - 1})`) +
      ': pick a partition in range or leave it out to let the partitioner choose', opts);
  }
}

export class RecordTooLargeError extends PmqError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_RECORD_TOO_LARGE', `${message}: send smaller records, or raise ` +
      'maxRecordBatchBytes (client) or the segment size (storage)', opts);
  }
}

export class NotConnectedError extends PmqError {
  constructor(what: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_NOT_CONNECTED', `${what}: is it running and reachable? ` +
      'The call may be retried once it is back', { ...opts, retriable: true });
  }
}

export class TimeoutError extends PmqError {
  constructor(what: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_TIMEOUT', `${what}: the broker is slow or unreachable; retry, or raise ` +
      'requestTimeoutMs', { ...opts, retriable: true });
  }
}

export class FencedError extends PmqError {
  constructor(what: string, opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_FENCED', `${what}: a newer broker instance took over (fencing epoch ` +
      'raised): reconnect to the current broker and retry there', { ...opts, retriable: true });
  }
}

export class OffsetOutOfRangeError extends PmqError {
  constructor(readonly topic: string, readonly partition: number, readonly offset: number,
    opts: { cause?: unknown } = {}) {
    super('PMQ_ERR_OFFSET_OUT_OF_RANGE', `offset ${offset} is outside what ${topic}/` +
      `${partition} holds: seek to an offset between the first held and the high watermark`,
    opts);
  }
}

export class ClosedError extends PmqError {
  constructor(what: string) {
    super('PMQ_ERR_CLOSED', `${what} is closed: create a new one`);
  }
}

/** What a request was about, for messages that name the topic and partition. */
export interface ErrorContext {
  what: string;
  topic?: string;
  partition?: number;
  offset?: number;
}

const NOT_CONNECTED_CODES = new Set<ErrorCode>([
  'PMQ_ERR_PEER_GONE', 'PMQ_ERR_ENDPOINT_CLOSED', 'PMQ_ERR_TRANSPORT_CLOSED',
  'PMQ_ERR_PEER_FAILED', 'PMQ_ERR_PEER_TIMEOUT', 'PMQ_ERR_TRANSPORT', 'PMQ_ERR_TRANSFER_FAILED',
]);
/** A fenced broker answers PMQ_ERR_FENCED itself (broker-node/fence.ts). */
const FENCED_CODES = new Set<ErrorCode>(['PMQ_ERR_FENCED', 'PMQ_ERR_EPOCH_STALE',
  'PMQ_ERR_GRANT_STALE_EPOCH']);

/** Maps any failure of a request onto the client's typed errors (original kept as cause). */
export function toClientError(error: unknown, context: ErrorContext): PmqError {
  if (!(error instanceof PmqError)) {
    return new PmqError('PMQ_ERR_INTERNAL', `${context.what} failed: ${String(error)}`,
      { cause: error });
  }
  // Already typed (ours, a record-batch error, an argument error): keep it.
  if (error.constructor !== PmqError && !(error instanceof AccessError)) return error;
  const opts = { cause: error };
  const topic = context.topic ?? '?';
  const partition = context.partition ?? -1;
  switch (error.code) {
    case 'PMQ_ERR_UNKNOWN_TOPIC': return new UnknownTopicError(topic, opts);
    case 'PMQ_ERR_TOPIC_EXISTS': return new TopicExistsError(topic, opts);
    case 'PMQ_ERR_PARTITION_RANGE':
      return new PartitionOutOfRangeError(topic, partition, undefined, opts);
    case 'PMQ_ERR_RECORD_TOO_LARGE':
      return new RecordTooLargeError(`${context.what}: ${error.message}`, opts);
    case 'PMQ_ERR_TIMEOUT': return new TimeoutError(`${context.what}: ${error.message}`, opts);
    case 'PMQ_ERR_OFFSET_OUT_OF_RANGE':
      return new OffsetOutOfRangeError(topic, partition, context.offset ?? -1, opts);
    default: break;
  }
  if (NOT_CONNECTED_CODES.has(error.code)) {
    return new NotConnectedError(`${context.what}: ${error.message}`, opts);
  }
  if (FENCED_CODES.has(error.code)) {
    return new FencedError(`${context.what}: ${error.message}`, opts);
  }
  return error;
}
