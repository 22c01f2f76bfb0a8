/**
 * Values larger than one wire `bytes` field (BYTES_MAX) travel as a list of chunks
 * (`{ bytes }[]`, the metadata log's messages). Pure.
 */
import { BYTES_MAX } from './schema.js';

export function toChunks(value: Uint8Array): { bytes: Uint8Array }[] {
  const chunks: { bytes: Uint8Array }[] = [];
  for (let at = 0; at < value.byteLength; at += BYTES_MAX) {
    chunks.push({ bytes: value.subarray(at, Math.min(value.byteLength, at + BYTES_MAX)) });
  }
  return chunks;
}

export function joinChunks(chunks: readonly { bytes: Uint8Array }[]): Uint8Array {
  const joined = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.bytes.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    joined.set(chunk.bytes, at);
    at += chunk.bytes.byteLength;
  }
  return joined;
}
