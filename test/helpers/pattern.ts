/** Deterministic test bytes and their digests, shared by tests and the transport peer. */
import { createHash } from 'node:crypto';

/** Fills bytes[offset, offset+length) with a pattern derived from seed (xorshift32). */
export function fillPattern(bytes: Uint8Array, seed: number, offset = 0,
  length = bytes.byteLength - offset): Uint8Array {
  let state = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < length; i += 1) {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    bytes[offset + i] = state & 0xff;
  }
  return bytes;
}

export function pattern(length: number, seed: number): Buffer {
  return fillPattern(Buffer.alloc(length), seed) as Buffer;
}

export function sha256(bytes: Uint8Array, offset = 0, length = bytes.byteLength - offset): string {
  return createHash('sha256').update(bytes.subarray(offset, offset + length)).digest('hex');
}
