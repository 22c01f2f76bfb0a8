/**
 * Per-topic configuration (Kafka's topic configs, by Kafka's names and meanings): today the
 * two retention settings. A topic stores only its overrides; what is not set follows the
 * broker's defaults (`pmq broker --retention-ms`, `--retention-bytes`). Values travel and are
 * stored as decimal strings, as Kafka's are; every one is checked here before it is stored
 * (a client's input: PMQ_ERR_ARGUMENT, never an invariant).
 *
 * - `retention.ms`: a segment is deleted once its newest record's timestamp (the largest
 *   maxTimestamp of its batches) is more than this many milliseconds before the broker's
 *   clock; -1: no time limit.
 * - `retention.bytes`: per partition, the oldest segments are deleted while the partition
 *   would still hold at least this many bytes without them; -1: no size limit.
 *
 * Pure: no I/O.
 */
import { PmqError } from '../common/errors.js';

export const TOPIC_CONFIG_KEYS = ['retention.ms', 'retention.bytes'] as const;
export type TopicConfigKey = (typeof TOPIC_CONFIG_KEYS)[number];
/** A topic's overrides: only the keys set on it. */
export type TopicConfigs = Readonly<Partial<Record<TopicConfigKey, number>>>;

/** Kafka's defaults: log.retention.hours = 168 (7 days), log.retention.bytes = -1. */
export const RETENTION_MS_DEFAULT = 7 * 24 * 60 * 60 * 1000;
export const RETENTION_BYTES_DEFAULT = -1;

export interface RetentionSettings {
  /** -1: none. */
  readonly retentionMs: number;
  /** -1: none. Per partition. */
  readonly retentionBytes: number;
}

const isKey = (key: string): key is TopicConfigKey =>
  (TOPIC_CONFIG_KEYS as readonly string[]).includes(key);

/** A config value is -1 or a non-negative safe integer. */
export function validConfigValue(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= -1;
}

/** Parses `key=value` pairs as a client sent them; throws PMQ_ERR_ARGUMENT naming the bad one. */
export function parseTopicConfigs(entries: readonly { key: string; value: string }[]):
  TopicConfigs {
  const out: Partial<Record<TopicConfigKey, number>> = {};
  for (const { key, value } of entries) {
    if (!isKey(key)) {
      throw new PmqError('PMQ_ERR_ARGUMENT', `unknown topic config ${JSON.stringify(key)}: ` +
        `pmq knows ${TOPIC_CONFIG_KEYS.join(', ')}`);
    }
    const parsed = /^-?\d{1,16}$/.test(value) ? Number(value) : Number.NaN;
    if (!validConfigValue(parsed)) {
      throw new PmqError('PMQ_ERR_ARGUMENT', `${key}=${JSON.stringify(value)}: the value must ` +
        'be -1 (unlimited) or an integer ≥ 0');
    }
    out[key] = parsed;
  }
  return out;
}

/** The stored form ([key, value] pairs, sorted) and back; `fromPairs` null when malformed. */
export function configPairs(configs: TopicConfigs): [string, number][] {
  return TOPIC_CONFIG_KEYS.filter((key) => configs[key] !== undefined)
    .map((key) => [key, configs[key]!]);
}

export function configsFromPairs(pairs: unknown): TopicConfigs | null {
  if (!Array.isArray(pairs)) return null;
  const out: Partial<Record<TopicConfigKey, number>> = {};
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) return null;
    const [key, value] = pair as unknown[];
    if (typeof key !== 'string' || !isKey(key) || !validConfigValue(value)) return null;
    out[key] = value;
  }
  return out;
}

/** The settings in force: the topic's overrides over the broker's defaults. */
export function effectiveRetention(configs: TopicConfigs, defaults: RetentionSettings):
  RetentionSettings {
  return { retentionMs: configs['retention.ms'] ?? defaults.retentionMs,
    retentionBytes: configs['retention.bytes'] ?? defaults.retentionBytes };
}

/** As the wire carries them (topicInfo): every key, its value in force and where it comes from. */
export function describeConfigs(configs: TopicConfigs, defaults: RetentionSettings):
  { key: string; value: string; isDefault: boolean }[] {
  const effective = effectiveRetention(configs, defaults);
  return [
    { key: 'retention.ms', value: String(effective.retentionMs),
      isDefault: configs['retention.ms'] === undefined },
    { key: 'retention.bytes', value: String(effective.retentionBytes),
      isDefault: configs['retention.bytes'] === undefined },
  ];
}
