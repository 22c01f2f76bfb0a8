/**
 * The one msgpackr configuration of pmq's control messages, and the strict decoder.
 * Plain maps (no records/structures): nothing is learned implicitly between messages, so any
 * two processes of the same WIRE_VERSION understand each other whatever they sent before.
 * A message travels as the payload of a transport message whose 4-byte header is
 * FRAME_HEADER (magic "PQ", version, format 0 = msgpack). Format 1 is a fixed-layout message
 * (fixed.ts), carried whole in a longer header; the control channel tells them apart.
 */
import { Packr } from 'msgpackr';

import { PmqError } from '../errors.js';
import { checkFields, FieldError } from './schema.js';
import { MESSAGES, WIRE_VERSION, type Message, type MessageKind, type Body } from './messages.js';

export const CONTROL_MESSAGE_BYTES_MAX = 8 * 1024 * 1024;
export const FRAME_HEADER = Uint8Array.of(0x50, 0x51, WIRE_VERSION, 0);

/**
 * A peer sent something this version cannot accept. `replyTo` is set when the message was at
 * least a msgpack map with a valid uint32 `id` (the receiver answers it with an `error` and
 * keeps the connection), null when it was not even that (the receiver closes the connection).
 */
export class ProtocolError extends PmqError {
  replyTo: { id: number; kind: string | null } | null = null;

  /** `code` PMQ_ERR_ARGUMENT: well formed, but a value no request may carry (a topic name
   *  outside the rule); answered with that code, so the client says what to fix. */
  constructor(message: string, cause?: unknown,
    code: 'PMQ_ERR_PROTOCOL' | 'PMQ_ERR_ARGUMENT' = 'PMQ_ERR_PROTOCOL') {
    super(code, message, { cause });
  }
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false,
  bundleStrings: false, int64AsType: 'number' });

export function encodeMessage<K extends MessageKind>(kind: K, id: number,
  body: Body<K>): Uint8Array {
  return packr.pack({ v: WIRE_VERSION, kind, id, ...body });
}

export function checkFrameHeader(header: Uint8Array): void {
  if (header.byteLength !== FRAME_HEADER.byteLength || header[0] !== 0x50 ||
      header[1] !== 0x51 || header[3] !== 0) {
    throw new ProtocolError('not a pmq control message (bad frame header)');
  }
  if (header[2] !== WIRE_VERSION) {
    throw new ProtocolError(`wire version ${header[2]} not supported (this is ${WIRE_VERSION})`);
  }
}

/**
 * A whole control message: frame header and payload. A bad magic or header length is never
 * answerable (not a pmq peer); another wire version in the header is answerable when the
 * payload still carries a usable id (a peer of another version learns why, in a reply).
 */
export function decodeFrame(header: Uint8Array, payload: Uint8Array): Message {
  try {
    checkFrameHeader(header);
  } catch (error) {
    if (!(error instanceof ProtocolError) || header.byteLength !== FRAME_HEADER.byteLength ||
        header[0] !== 0x50 || header[1] !== 0x51 || header[3] !== 0) {
      throw error;
    }
    try {
      decodeMessage(payload);
    } catch (inner) {
      if (inner instanceof ProtocolError) error.replyTo = inner.replyTo;
      throw error;
    }
    const { id, kind } = packr.unpack(payload) as { id: number; kind: string };
    error.replyTo = { id, kind };
    throw error;
  }
  return decodeMessage(payload);
}

/**
 * A peer's value in an error message. Never String() on it: a map such as {toString: 1} makes
 * String() throw a TypeError (found by the fuzz test), which would escape the decoder.
 */
function shown(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object' && value !== null) return 'a map';
  if (typeof value === 'string') return value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return String(value);
}

/** The fields every message has besides its kind's (checked by decodeMessage itself). */
const ENVELOPE: ReadonlySet<string> = new Set(['v', 'kind', 'id']);

export function decodeMessage(bytes: Uint8Array): Message {
  if (bytes.byteLength > CONTROL_MESSAGE_BYTES_MAX) {
    throw new ProtocolError(`control message of ${bytes.byteLength} bytes is too large`);
  }
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (error) {
    throw new ProtocolError('control message is not valid msgpack', error);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new ProtocolError('message is not a map');
  }
  // Not `{ v, kind, id, ...fields }`: that copies every message into a second object.
  const { v, kind, id } = raw as Record<string, unknown>;
  if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > 0xffffffff) {
    throw new ProtocolError(`message id ${shown(id)} is not a uint32`);
  }
  const answerable = (error: ProtocolError): ProtocolError => {
    error.replyTo = { id: id as number, kind: typeof kind === 'string' ? kind : null };
    return error;
  };
  if (v !== WIRE_VERSION) {
    throw answerable(new ProtocolError(`message version ${shown(v)} not supported (this ` +
      `node speaks ${WIRE_VERSION})`));
  }
  if (typeof kind !== 'string' || !Object.hasOwn(MESSAGES, kind)) {
    throw answerable(new ProtocolError(`unknown message kind ${shown(kind)}`));
  }
  try {
    checkFields(MESSAGES[kind as MessageKind], raw, kind, ENVELOPE);
  } catch (error) {
    if (error instanceof FieldError) {
      throw answerable(new ProtocolError(`bad ${kind}: ${error.message}`, undefined,
        error.code));
    }
    throw error;
  }
  return raw as Message;
}

/** Narrows a decoded message to one kind (for replies whose kind the caller expects). */
export function isKind<K extends MessageKind>(message: Message, kind: K): message is Message<K> {
  return message.kind === kind;
}
