/**
 * Fixed-layout control messages (WIRE_VERSION 8, docs/wire-protocol.md, "Fixed-layout
 * messages"): the per-batch client ↔ broker messages — append / acked / duplicate, lease /
 * leased / leaseRelease / done and the watermark push — as little-endian fields at fixed
 * offsets, keyed by a topic id instead of the topic's name, so that the broker decodes them
 * without building a msgpack map and strings per batch (issue 11, "allocation-free control
 * path"). Every other message stays msgpack (codec.ts); both share one control channel.
 *
 * A fixed message travels whole in the transport message's user header, after the frame
 * header's 4 bytes (its format byte is FIXED_FORMAT), with an empty payload. The transport
 * copies a user header when the message is sent (native/transport_am.cc), so an encoder may
 * reuse one buffer for every message; a payload it would keep referenced until UCX is done.
 *
 * Decoding is strict, as msgpack's: the version, the kind, the exact length, the reserved
 * bytes, every field's range. A message too short to carry its id is not answerable; any other
 * failure is a ProtocolError with `replyTo` set. The fields land in one reused object per kind
 * (`FixedDecoder`), valid until the next decode. What a broker decodes and encodes per batch
 * goes through fixed-fast.ts, which allocates nothing (test/fixtures/fixed-wire-alloc.ts counts
 * it); everything else through the table, whose loop boxes numbers above 2^31 (a client's
 * replies and pushes: it copies them anyway).
 */
import { ProtocolError } from './codec.js';
import {
  AppendFields, LeaseFields, LeaseReleaseFields, readAppend, readLease, readLeaseRelease,
  writeAcked, writeDuplicate, writeLeased, writeWatermark, type AckedBody, type DuplicateBody,
  type LeasedBody, type WatermarkBody,
} from './fixed-fast.js';
import { WIRE_VERSION, type MessageKind } from './messages.js';

/** Frame header byte 3: how the message is laid out. */
export const MSGPACK_FORMAT = 0;
export const FIXED_FORMAT = 1;

/** Field widths. u64 / i64 hold JS safe integers only (anything else is out of range). */
export type FixedType = 'u32' | 'u64' | 'i64' | 'bool';
const WIDTH: Record<FixedType, number> = { u32: 4, u64: 8, i64: 8, bool: 1 };

/**
 * The layouts: kind byte, then the fields in order after the 12-byte prefix (magic, version,
 * format, kind, 3 reserved bytes, u32 id). docs/wire-protocol.md has them as byte tables
 * (test/unit/wire-fixed.test.ts checks the two agree). Bump WIRE_VERSION on any change.
 */
export const FIXED_LAYOUTS = {
  append: { code: 1, fields: [['topicId', 'u32'], ['partition', 'u32'], ['epoch', 'u64'],
    ['leaseId', 'u64'], ['position', 'u64'], ['bytes', 'u64'], ['records', 'u64'],
    ['producerId', 'i64'], ['sequence', 'i64']] },
  acked: { code: 2, fields: [['baseOffset', 'u64'], ['leaseEnd', 'bool']] },
  duplicate: { code: 3, fields: [['baseOffset', 'u64']] },
  lease: { code: 4, fields: [['topicId', 'u32'], ['partition', 'u32'], ['bytes', 'u64'],
    ['bytesMin', 'u64'], ['releaseEpoch', 'u64'], ['releaseId', 'i64']] },
  leased: { code: 5, fields: [['topicId', 'u32'], ['epoch', 'u64'], ['leaseId', 'u64'],
    ['nodeId', 'u64'], ['grantId', 'u64'], ['grantKey', 'u64'], ['grantEpoch', 'u64'],
    ['address', 'u64'], ['position', 'u64'], ['sizeBytes', 'u64']] },
  leaseRelease: { code: 6, fields: [['topicId', 'u32'], ['partition', 'u32'],
    ['epoch', 'u64'], ['leaseId', 'u64']] },
  done: { code: 7, fields: [] },
  watermark: { code: 8, fields: [['subscription', 'u64'], ['epoch', 'u64'],
    ['chainPosition', 'u64'], ['position', 'u64'], ['offsetLast', 'i64'], ['sealed', 'bool'],
    ['highWatermark', 'u64']] },
} as const satisfies Partial<Record<MessageKind, {
  code: number; fields: readonly (readonly [string, FixedType])[];
}>>;

export type FixedKind = keyof typeof FIXED_LAYOUTS;
export type FixedRequestKind = 'append' | 'lease' | 'leaseRelease';
export type FixedReplyKind = 'acked' | 'duplicate' | 'leased' | 'done';
type Fields<K extends FixedKind> = (typeof FIXED_LAYOUTS)[K]['fields'][number];
/** A fixed message's fields (numbers and booleans only: a topic is its id). */
export type FixedBody<K extends FixedKind> = {
  -readonly [F in Fields<K> as F[0]]: F[1] extends 'bool' ? boolean : number
};
/** A decoded fixed message: its envelope and fields, in the decoder's reused object. */
export type FixedMessage<K extends FixedKind = FixedKind> =
  K extends FixedKind ? { v: number; kind: K; id: number } & FixedBody<K> : never;

/** Magic, version, format; kind, 3 reserved bytes; u32 id. */
export const FIXED_PREFIX_BYTES = 12;
const TWO_32 = 0x1_0000_0000;
/** The high word of the largest safe integer (2^53 - 1). */
const SAFE_HIGH_MAX = 0x1f_ffff;

interface Compiled {
  readonly kind: FixedKind;
  readonly code: number;
  readonly names: readonly string[];
  readonly types: readonly FixedType[];
  readonly offsets: readonly number[];
  readonly bytes: number;
}

function compile(kind: FixedKind): Compiled {
  const { code, fields } = FIXED_LAYOUTS[kind];
  const names: string[] = [];
  const types: FixedType[] = [];
  const offsets: number[] = [];
  let at = FIXED_PREFIX_BYTES;
  for (const [name, type] of fields as readonly (readonly [string, FixedType])[]) {
    names.push(name);
    types.push(type);
    offsets.push(at);
    at += WIDTH[type];
  }
  return { kind, code, names, types, offsets, bytes: at };
}

const COMPILED = new Map<FixedKind, Compiled>();
/** By kind byte; undefined: not a kind. */
const BY_CODE: (Compiled | undefined)[] = [];
for (const kind of Object.keys(FIXED_LAYOUTS) as FixedKind[]) {
  const compiled = compile(kind);
  COMPILED.set(kind, compiled);
  BY_CODE[compiled.code] = compiled;
}
/** The largest fixed message (every encoder and decoder buffer holds this much). */
export const FIXED_BYTES_MAX = Math.max(...[...COMPILED.values()].map((c) => c.bytes));

/** A layout's whole length (prefix included): what docs/wire-protocol.md lists. */
export function fixedBytes(kind: FixedKind): number {
  return COMPILED.get(kind)!.bytes;
}

/** Each field's offset and type, in order (for docs and tests). */
export function fixedFields(kind: FixedKind): { name: string; type: FixedType; offset: number }[] {
  const compiled = COMPILED.get(kind)!;
  return compiled.names.map((name, index) =>
    ({ name, type: compiled.types[index]!, offset: compiled.offsets[index]! }));
}

export function isFixedKind(kind: string): kind is FixedKind {
  return Object.hasOwn(FIXED_LAYOUTS, kind);
}

/**
 * Writes fixed messages into one reused buffer. The returned view is valid until the next
 * encode: hand it to the transport (which copies a user header when sending) at once.
 */
export class FixedEncoder {
  readonly #buffer = new Uint8Array(FIXED_BYTES_MAX);
  readonly #view = new DataView(this.#buffer.buffer);
  /** One view per kind over the buffer's prefix of the kind's length: no subarray per message. */
  readonly #frames = new Map<FixedKind, Uint8Array>();

  constructor() {
    for (const [kind, compiled] of COMPILED) {
      this.#frames.set(kind, this.#buffer.subarray(0, compiled.bytes));
    }
  }

  /**
   * The message, or null when a field does not fit its layout (a number out of its width's
   * range, not a safe integer, a missing field): the caller sends it as msgpack instead, which
   * the receiver's schema judges. `topicId`, when given, fills the `topicId` field (the body is
   * a msgpack body naming its topic).
   */
  encode(kind: FixedKind, id: number, body: object, topicId = -1): Uint8Array | null {
    let fits: boolean;
    switch (kind) {
      case 'acked':
        fits = this.#prefix(kind, id) && writeAcked(this.#view, body as AckedBody);
        break;
      case 'duplicate':
        fits = this.#prefix(kind, id) && writeDuplicate(this.#view, body as DuplicateBody);
        break;
      case 'leased':
        fits = this.#prefix(kind, id) && writeLeased(this.#view, body as LeasedBody);
        break;
      case 'done':
        fits = this.#prefix(kind, id);
        break;
      case 'watermark':
        fits = this.#prefix(kind, id) && writeWatermark(this.#view, body as WatermarkBody);
        break;
      default:
        return this.encodeByTable(kind, id, body, topicId);
    }
    return fits ? this.#frames.get(kind)! : null;
  }

  /** encode() by the table, field by field (what fixed-fast.ts must equal). */
  encodeByTable(kind: FixedKind, id: number, body: object, topicId = -1): Uint8Array | null {
    const compiled = COMPILED.get(kind)!;
    const view = this.#view;
    if (!this.#prefix(kind, id)) return null;
    const record = body as Record<string, unknown>;
    for (let index = 0; index < compiled.names.length; index += 1) {
      const name = compiled.names[index]!;
      const value = name === 'topicId' && topicId >= 0 ? topicId : record[name];
      if (!writeField(view, compiled.offsets[index]!, compiled.types[index]!, value)) {
        return null;
      }
    }
    return this.#frames.get(kind)!;
  }

  /** The 12-byte prefix; false when `id` is no uint32. */
  #prefix(kind: FixedKind, id: number): boolean {
    if (!fitsU32(id)) return false;
    const buffer = this.#buffer;
    buffer[0] = 0x50;
    buffer[1] = 0x51;
    buffer[2] = WIRE_VERSION;
    buffer[3] = FIXED_FORMAT;
    buffer[4] = FIXED_LAYOUTS[kind].code;
    buffer[5] = 0;
    buffer[6] = 0;
    buffer[7] = 0;
    this.#view.setUint32(8, id, true);
    return true;
  }
}

function fitsU32(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) < TWO_32;
}

function writeField(view: DataView, at: number, type: FixedType, value: unknown): boolean {
  switch (type) {
    case 'u32':
      if (!fitsU32(value)) return false;
      view.setUint32(at, value, true);
      return true;
    case 'u64':
    case 'i64': {
      if (!Number.isSafeInteger(value) || (type === 'u64' && (value as number) < 0)) return false;
      const number = value as number;
      const high = Math.floor(number / TWO_32);
      view.setUint32(at, number - high * TWO_32, true);
      view.setInt32(at + 4, high, true);
      return true;
    }
    case 'bool':
      if (typeof value !== 'boolean') return false;
      view.setUint8(at, value ? 1 : 0);
      return true;
    default:
      return type satisfies never;
  }
}

/** True when a frame header announces a fixed-layout message (its format byte). */
export function isFixedFrame(header: Uint8Array): boolean {
  return header.byteLength >= 4 && header[3] === FIXED_FORMAT;
}

/**
 * Reads fixed messages into one reused object per kind. `decode` returns that object: read it
 * before the next decode (the control channel hands requests to their handlers synchronously;
 * replies and pushes it copies: fixedCopy).
 */
export class FixedDecoder {
  /** Room for the largest message: a header is copied here first (no DataView per message). */
  readonly #bytes = new Uint8Array(FIXED_BYTES_MAX);
  readonly #view = new DataView(this.#bytes.buffer);
  readonly #messages = new Map<FixedKind, Record<string, unknown>>();
  readonly #append = new AppendFields();
  readonly #lease = new LeaseFields();
  readonly #leaseRelease = new LeaseReleaseFields();
  /** Decode by the table only (tests compare the two ways). */
  readonly #byTable: boolean;

  constructor(options: { byTable?: boolean } = {}) {
    this.#byTable = options.byTable ?? false;
    for (const [kind, compiled] of COMPILED) {
      const message: Record<string, unknown> = { v: WIRE_VERSION, kind, id: 0 };
      for (let index = 0; index < compiled.names.length; index += 1) {
        message[compiled.names[index]!] = compiled.types[index] === 'bool' ? false : 0;
      }
      this.#messages.set(kind, message);
    }
  }

  /**
   * The message in `header` (whose format byte is FIXED_FORMAT: isFixedFrame). Throws
   * ProtocolError: with replyTo null when the header is not a pmq frame or too short for an id,
   * else with the id and (when known) the kind.
   */
  decode(header: Uint8Array, payload: Uint8Array): FixedMessage {
    if (header.byteLength < FIXED_PREFIX_BYTES || header[0] !== 0x50 || header[1] !== 0x51) {
      throw new ProtocolError(`not a pmq control message (fixed-layout frame of ` +
        `${header.byteLength} bytes, bad magic or no id)`);
    }
    const compiled = BY_CODE[header[4]!];
    const kind = compiled?.kind ?? null;
    // The id is read where needed (a number kept across calls may be boxed: fixed-fast.ts).
    if (header[2] !== WIRE_VERSION) {
      throw answerable(header, kind, `wire version ${header[2]} not supported (this is ` +
        `${WIRE_VERSION})`);
    }
    if (compiled === undefined) {
      throw answerable(header, kind, `unknown fixed-layout kind ${header[4]}`);
    }
    if (header[5] !== 0 || header[6] !== 0 || header[7] !== 0) {
      throw answerable(header, kind, `bad ${compiled.kind}: reserved bytes are not 0`);
    }
    if (header.byteLength !== compiled.bytes || payload.byteLength !== 0) {
      throw answerable(header, kind, `bad ${compiled.kind}: ${header.byteLength} bytes and a ` +
        `payload of ${payload.byteLength}; the layout is ${compiled.bytes} bytes, no payload`);
    }
    this.#bytes.set(header);
    const view = this.#view;
    if (!this.#byTable) {
      let problem: string | null = null;
      switch (compiled.kind) {
        case 'append':
          problem = readAppend(view, this.#append);
          if (problem === null) return this.#append;
          break;
        case 'lease':
          problem = readLease(view, this.#lease);
          if (problem === null) return this.#lease;
          break;
        case 'leaseRelease':
          problem = readLeaseRelease(view, this.#leaseRelease);
          if (problem === null) return this.#leaseRelease;
          break;
        default:
          return this.#decodeByTable(compiled, header);
      }
      throw answerable(header, kind, `bad ${compiled.kind}.${problem}: out of range`);
    }
    return this.#decodeByTable(compiled, header);
  }

  #decodeByTable(compiled: Compiled, header: Uint8Array): FixedMessage {
    const view = this.#view;
    const kind = compiled.kind;
    const message = this.#messages.get(compiled.kind)!;
    message.id = idOf(header);
    for (let index = 0; index < compiled.names.length; index += 1) {
      const at = compiled.offsets[index]!;
      const type = compiled.types[index]!;
      const name = compiled.names[index]!;
      let value: number | boolean;
      if (type === 'u32') {
        value = view.getUint32(at, true);
      } else if (type === 'bool') {
        const byte = view.getUint8(at);
        if (byte > 1) throw answerable(header, kind, `bad ${compiled.kind}.${name}: not 0 or 1`);
        value = byte === 1;
      } else {
        const high = view.getInt32(at + 4, true);
        if (high > SAFE_HIGH_MAX || high < (type === 'u64' ? 0 : -SAFE_HIGH_MAX - 1)) {
          throw answerable(header, kind, `bad ${compiled.kind}.${name}: out of range (a ` +
            `${type === 'u64' ? 'non-negative ' : ''}safe integer)`);
        }
        value = high * TWO_32 + view.getUint32(at, true);
        // -2^53 has a valid high word but is one past the smallest safe integer.
        if (!Number.isSafeInteger(value)) {
          throw answerable(header, kind, `bad ${compiled.kind}.${name}: out of range`);
        }
      }
      message[name] = value;
    }
    return message as unknown as FixedMessage;
  }
}

/** The id of a fixed-layout frame (at least FIXED_PREFIX_BYTES long). */
function idOf(header: Uint8Array): number {
  return (header[8]! | (header[9]! << 8) | (header[10]! << 16)) + header[11]! * 0x100_0000;
}

/** A refusal the receiver answers (no closure per decode: this runs only on failure). */
function answerable(header: Uint8Array, kind: FixedKind | null, message: string):
  ProtocolError {
  const error = new ProtocolError(message);
  error.replyTo = { id: idOf(header), kind };
  return error;
}

/** A decoded message as an object of its own (the decoder's is reused by the next decode). */
export function fixedCopy<K extends FixedKind>(message: FixedMessage<K>): FixedMessage<K> {
  return { ...message };
}
