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
