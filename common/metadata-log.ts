/**
 * Names and bounds of the cluster metadata log that both the storage node (which keeps it:
 * storage-node/metadata-log.ts) and the broker (which writes it: broker-node/metadata-store.ts)
 * rely on. docs/region-format.md, "The metadata log".
 */

/** The reserved topic of the metadata log (no client may create a topic named `__pmq…`). */
export const METADATA_TOPIC = '__pmq_meta';
/** The largest value (a snapshot): with its framing, within 112 wire chunks of 64 KiB. */
export const METADATA_VALUE_BYTES_MAX = 7 * 1024 * 1024 - 4096;

/** Is a topic name reserved for pmq's own use? */
export function reservedTopic(topic: string): boolean {
  return topic.startsWith('__pmq');
}

/** Framing of the values a `metaRead` returns: each as its u32 LE length, then its bytes. */
export const FRAME_LENGTH_BYTES = 4;

export function frameValues(values: readonly Uint8Array[]): Uint8Array {
  const framed = new Uint8Array(values.reduce((sum, value) =>
    sum + FRAME_LENGTH_BYTES + value.byteLength, 0));
  const view = new DataView(framed.buffer);
  let at = 0;
  for (const value of values) {
    view.setUint32(at, value.byteLength, true);
    framed.set(value, at + FRAME_LENGTH_BYTES);
    at += FRAME_LENGTH_BYTES + value.byteLength;
  }
  return framed;
}

/** The values of `framed` (views into it); null when a length runs past its end. */
export function unframeValues(framed: Uint8Array): Uint8Array[] | null {
  const view = new DataView(framed.buffer, framed.byteOffset, framed.byteLength);
  const values: Uint8Array[] = [];
  for (let at = 0; at < framed.byteLength;) {
    if (at + FRAME_LENGTH_BYTES > framed.byteLength) return null;
    const end = at + FRAME_LENGTH_BYTES + view.getUint32(at, true);
    if (end > framed.byteLength) return null;
    values.push(framed.subarray(at + FRAME_LENGTH_BYTES, end));
    at = end;
  }
  return values;
}
