/**
 * Persist frames: `persist` (broker → storage) and `persisted` (storage → broker) in a fixed
 * little-endian layout instead of msgpack, so the storage node's native path
 * (native/persist_native.cc) can serve a persist without JavaScript (docs/wire-protocol.md,
 * "Persist frames"). They travel in the same transport messages as every control message, with
 * their own 4-byte frame header ("PN", layout version, 0). The storage node's JS serves the
 * frames its native path hands on, and answers them in msgpack as every request; the broker takes
 * either reply.
 *
 * Decoding is as strict as the msgpack decoder's: exact length, known kind, flags and reserved
 * bytes zero, every number in its field's range. A frame with a readable id that fails is a
 * ProtocolError with `replyTo` (answered, counted toward MALFORMED_IN_A_ROW_MAX); one too short
 * for an id closes the connection, as for msgpack.
 */
import { invariant } from '../invariant.js';
import { ProtocolError } from './codec.js';
import { WIRE_VERSION, type Body, type Message } from './messages.js';

export const PERSIST_FRAME_VERSION = 1;
export const PERSIST_FRAME_HEADER = Uint8Array.of(0x50, 0x4e, PERSIST_FRAME_VERSION, 0);

const KIND_PERSIST = 1;
const KIND_PERSISTED = 2;
const FLAG_SEAL = 1;
const PERSIST_BYTES = 40;
const PIECE_BYTES = 24;
const PERSISTED_BYTES = 32;
const PIECES_MAX = 4096;
const U32_MAX = 0xffff_ffff;
const TWO_32 = 2 ** 32;

/** Whether a transport message's header says "persist frame" (any layout version). */
export function isPersistFrameHeader(header: Uint8Array): boolean {
  return header.byteLength === 4 && header[0] === 0x50 && header[1] === 0x4e;
}

function setU64(view: DataView, at: number, value: number): void {
  const high = Math.floor(value / TWO_32);
  view.setUint32(at, value - high * TWO_32, true);
  view.setUint32(at + 4, high, true);
}

/** An int64 field that holds -1..2^53-1 (offsets; -1 = none). */
function setI64(view: DataView, at: number, value: number): void {
  const high = Math.floor(value / TWO_32);
  view.setUint32(at, value - high * TWO_32, true);
  view.setInt32(at + 4, high, true);
}

function getU64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * TWO_32 + view.getUint32(at, true);
}

function getI64(view: DataView, at: number): number {
  return view.getInt32(at + 4, true) * TWO_32 + view.getUint32(at, true);
}

function checkSafe(what: string, value: number, min: number): void {
  // Guarded: invariant()'s fields literal would be made per field of every frame (issue 11).
  if (!(Number.isSafeInteger(value) && value >= min)) {
    invariant(false, 'persist frame field in range', { what, value });
  }
}

/** A persist frame's bytes and a view over them, reused through a PersistFramePool. */
export interface PersistFrameBuffer {
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/** Buffers kept per frame size: a partition has one persist in flight, a broker a few. */
const FRAMES_POOLED_PER_SIZE = 16;

/**
 * Persist frames' buffers for reuse (issue 11: no buffer per persist). A frame is sent as the
 * message's payload, which UCX may read until the send is done: release a buffer only then.
 */
export class PersistFramePool {
  readonly #free = new Map<number, PersistFrameBuffer[]>();

  /** A buffer of exactly the frame size for `pieces` pieces. */
  acquire(pieces: number): PersistFrameBuffer {
    const size = PERSIST_BYTES + pieces * PIECE_BYTES;
    const frame = this.#free.get(size)?.pop();
    if (frame !== undefined) return frame;
    const bytes = new Uint8Array(size);
    return { bytes, view: new DataView(bytes.buffer) };
  }

  release(frame: PersistFrameBuffer): void {
    const size = frame.bytes.byteLength;
    let free = this.#free.get(size);
    if (free === undefined) {
      free = [];
      this.#free.set(size, free);
    }
    if (free.length < FRAMES_POOLED_PER_SIZE) free.push(frame);
  }
}

/** A persist frame in a new buffer (tests and tools; the channel encodes into its pool's). */
export function encodePersistFrame(id: number, body: Body<'persist'>): Uint8Array {
  const bytes = new Uint8Array(PERSIST_BYTES + body.patches.length * PIECE_BYTES);
  encodePersistFrameInto({ bytes, view: new DataView(bytes.buffer) }, id, body);
  return bytes;
}

/** Encodes into `frame`, whose size must be the frame's (PersistFramePool.acquire). */
export function encodePersistFrameInto(frame: PersistFrameBuffer, id: number,
  body: Body<'persist'>): void {
  const pieces = body.patches;
  if (!(id >= 1 && id <= U32_MAX && pieces.length <= PIECES_MAX)) {
    invariant(false, 'a persist frame has an id and at most 4096 pieces',
      { id, pieces: pieces.length });
  }
  const { view } = frame;
  invariant(frame.bytes.byteLength === PERSIST_BYTES + pieces.length * PIECE_BYTES,
    'a persist frame buffer of the frame\'s size');
  checkSafe('epoch', body.epoch, 0);
  checkSafe('position', body.position, 0);
  checkSafe('offsetLast', body.offsetLast, -1);
  invariant(body.segmentIndex >= 0 && body.segmentIndex <= U32_MAX, 'segment index is a u32');
  view.setUint8(0, KIND_PERSIST);
  view.setUint8(1, body.seal ? FLAG_SEAL : 0);
  view.setUint16(2, 0, true);
  view.setUint32(4, id, true);
  setU64(view, 8, body.epoch);
  view.setUint32(16, body.segmentIndex, true);
  view.setUint32(20, pieces.length, true);
  setU64(view, 24, body.position);
  setI64(view, 32, body.offsetLast);
  for (let i = 0; i < pieces.length; i += 1) {
    const piece = pieces[i]!;
    const at = PERSIST_BYTES + i * PIECE_BYTES;
    checkSafe('piece position', piece.position, 0);
    checkSafe('piece baseOffset', piece.baseOffset, 0);
    if (!(piece.bytes <= U32_MAX && piece.records <= U32_MAX && piece.bytes >= 0 &&
        piece.records >= 0)) {
      invariant(false, 'piece sizes are u32', { ...piece });
    }
    setU64(view, at, piece.position);
    setI64(view, at + 8, piece.baseOffset);
    view.setUint32(at + 16, piece.bytes, true);
    view.setUint32(at + 20, piece.records, true);
  }
}

/** For tests and tools: the frame the native path answers with. */
export function encodePersistedFrame(id: number, body: Body<'persisted'>): Uint8Array {
  const bytes = new Uint8Array(PERSISTED_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, KIND_PERSISTED);
  view.setUint8(1, body.sealed ? FLAG_SEAL : 0);
  view.setUint32(4, id, true);
  view.setUint32(8, body.segmentIndex, true);
  setU64(view, 16, body.position);
  setI64(view, 24, body.offsetLast);
  return bytes;
}

function bad(id: number, kind: string | null, problem: string): ProtocolError {
  const error = new ProtocolError(`bad ${kind ?? 'persist frame'}: ${problem}`);
  error.replyTo = { id, kind };
  return error;
}

/** A `persisted` message to refill (decodePersistFrame's `into`). */
export type PersistedMessage =
  { -readonly [F in keyof Message<'persisted'>]: Message<'persisted'>[F] };

export function emptyPersistedMessage(): PersistedMessage {
  return { v: WIRE_VERSION, kind: 'persisted', id: 0, segmentIndex: 0, position: 0,
    offsetLast: -1, sealed: false };
}

function u32At(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)) +
    bytes[at + 3]! * 0x100_0000;
}

/**
 * A whole persist frame (header checked by isPersistFrameHeader) as the message it carries.
 * A `persisted` reply (one per batch in the broker) is written into `into` when given, read
 * from the bytes without a DataView: nothing allocated (issue 11); the caller reads it before
 * the next decode.
 */
export function decodePersistFrame(header: Uint8Array, payload: Uint8Array,
  into?: PersistedMessage): Message {
  if (payload.byteLength < 8) {
    throw new ProtocolError(`a persist frame of ${payload.byteLength} bytes has no id`);
  }
  if (into !== undefined && payload[0] === KIND_PERSISTED) {
    return decodePersistedInto(header, payload, into);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const kindCode = view.getUint8(0);
  const id = view.getUint32(4, true);
  const kind = kindCode === KIND_PERSIST ? 'persist' : kindCode === KIND_PERSISTED ?
    'persisted' : null;
  if (id === 0) throw new ProtocolError('a persist frame with id 0');
  if (header[2] !== PERSIST_FRAME_VERSION) {
    throw bad(id, kind, `layout version ${header[2]}, this build reads ${PERSIST_FRAME_VERSION}`);
  }
  if (header[3] !== 0 || view.getUint16(2, true) !== 0) throw bad(id, kind, 'reserved bytes');
  const flags = view.getUint8(1);
  if ((flags & ~FLAG_SEAL) !== 0) throw bad(id, kind, `flags ${flags}`);
  if (kind === 'persisted') return decodePersisted(view, id, flags);
  if (kind === null) throw bad(id, null, `kind ${kindCode}`);
  if (payload.byteLength < PERSIST_BYTES) {
    throw bad(id, kind, `${payload.byteLength} bytes, a persist has at least ${PERSIST_BYTES}`);
  }
  const count = view.getUint32(20, true);
  if (count > PIECES_MAX || payload.byteLength !== PERSIST_BYTES + count * PIECE_BYTES) {
    throw bad(id, kind, `${payload.byteLength} bytes for ${count} pieces`);
  }
  const epoch = getU64(view, 8);
  const position = getU64(view, 24);
  const offsetLast = getI64(view, 32);
  if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(position) ||
      !Number.isSafeInteger(offsetLast) || offsetLast < -1) {
    throw bad(id, kind, 'epoch, position or offsetLast out of range');
  }
  const patches: Body<'persist'>['patches'][number][] = [];
  for (let i = 0; i < count; i += 1) {
    const at = PERSIST_BYTES + i * PIECE_BYTES;
    const piecePosition = getU64(view, at);
    const baseOffset = getI64(view, at + 8);
    if (!Number.isSafeInteger(piecePosition) || !Number.isSafeInteger(baseOffset) ||
        baseOffset < 0) {
      throw bad(id, kind, `piece ${i} out of range`);
    }
    patches.push({ position: piecePosition, baseOffset, bytes: view.getUint32(at + 16, true),
      records: view.getUint32(at + 20, true) });
  }
  return { v: WIRE_VERSION, kind, id, epoch, segmentIndex: view.getUint32(16, true), position,
    offsetLast, seal: (flags & FLAG_SEAL) !== 0, patches };
}

/** decodePersisted's checks, from the bytes into a refilled message. */
function decodePersistedInto(header: Uint8Array, payload: Uint8Array,
  into: PersistedMessage): Message {
  const id = u32At(payload, 4);
  if (id === 0) throw new ProtocolError('a persist frame with id 0');
  if (header[2] !== PERSIST_FRAME_VERSION) {
    throw bad(id, 'persisted',
      `layout version ${header[2]}, this build reads ${PERSIST_FRAME_VERSION}`);
  }
  const flags = payload[1]!;
  if (header[3] !== 0 || payload[2] !== 0 || payload[3] !== 0) {
    throw bad(id, 'persisted', 'reserved bytes');
  }
  if ((flags & ~FLAG_SEAL) !== 0) throw bad(id, 'persisted', `flags ${flags}`);
  if (payload.byteLength !== PERSISTED_BYTES || u32At(payload, 12) !== 0) {
    throw bad(id, 'persisted', `${payload.byteLength} bytes, or reserved bytes set`);
  }
  const positionHigh = u32At(payload, 20);
  const offsetHigh = u32At(payload, 28);
  const position = positionHigh * TWO_32 + u32At(payload, 16);
  // Two's complement: a high word of 2^32 - 1 is -1 above, so the offset is low - 2^32.
  const offsetLast = (offsetHigh >= 0x8000_0000 ? offsetHigh - TWO_32 : offsetHigh) * TWO_32 +
    u32At(payload, 24);
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(offsetLast) || offsetLast < -1) {
    throw bad(id, 'persisted', 'position or offsetLast out of range');
  }
  into.id = id;
  into.segmentIndex = u32At(payload, 8);
  into.position = position;
  into.offsetLast = offsetLast;
  into.sealed = (flags & FLAG_SEAL) !== 0;
  return into;
}

function decodePersisted(view: DataView, id: number, flags: number): Message {
  if (view.byteLength !== PERSISTED_BYTES || view.getUint32(12, true) !== 0) {
    throw bad(id, 'persisted', `${view.byteLength} bytes, or reserved bytes set`);
  }
  const position = getU64(view, 16);
  const offsetLast = getI64(view, 24);
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(offsetLast) || offsetLast < -1) {
    throw bad(id, 'persisted', 'position or offsetLast out of range');
  }
  return { v: WIRE_VERSION, kind: 'persisted', id,
    segmentIndex: view.getUint32(8, true), position, offsetLast,
    sealed: (flags & FLAG_SEAL) !== 0 };
}
