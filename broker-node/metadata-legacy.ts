/**
 * The metadata files of a version-1 broker data directory (topics.pmqmeta,
 * group-offsets.pmqmeta; docs/broker.md, "Metadata files (version 1)"), read once to move
 * them into the metadata log on the storage nodes (metadata-store.ts), then renamed
 * `*.migrated`. Nothing writes these files any more.
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';

import { PmqError, type ErrorCode } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { crc32c } from '../native/crc32c.js';

export const METADATA_FORMAT_VERSION = 1;
const MAGIC = [0x50, 0x4d, 0x51, 0x4d] as const; // "PMQM"
export const METADATA_HEADER_SIZE_BYTES = 24;
const BODY_SIZE_BYTES_MAX = 64 * 1024 * 1024;
export const LEGACY_TOPICS_FILE = 'topics.pmqmeta';
export const LEGACY_OFFSETS_FILE = 'group-offsets.pmqmeta';

export const DocumentKind = { topics: 1, groupOffsets: 2 } as const;
export type DocumentKind = (typeof DocumentKind)[keyof typeof DocumentKind];

export interface TopicRecord { topic: string; partitions: number; createdAtMs: number }
export interface OffsetRecord { group: string; topic: string; partition: number; offset: number }

function metadataError(code: ErrorCode, message: string): PmqError {
  return new PmqError(code, message);
}

/** Header + UTF-8 JSON body (docs/broker.md). Pure. */
export function encodeDocument(kind: DocumentKind, generation: number, body: unknown):
  Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(body));
  invariant(json.byteLength <= BODY_SIZE_BYTES_MAX, 'metadata document within limit',
    { sizeBytes: json.byteLength });
  const bytes = new Uint8Array(METADATA_HEADER_SIZE_BYTES + json.byteLength);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint16(4, METADATA_FORMAT_VERSION, true);
  view.setUint8(6, kind);
  view.setBigUint64(8, BigInt(generation), true);
  view.setUint32(16, json.byteLength, true);
  view.setUint32(20, crc32c(json, 0, json.byteLength), true);
  bytes.set(json, METADATA_HEADER_SIZE_BYTES);
  return bytes;
}

/** Checks header, version, kind, length and CRC; returns the generation and parsed body. */
export function decodeDocument(bytes: Uint8Array, kind: DocumentKind, path: string):
  { generation: number; body: unknown } {
  const corrupt = (what: string): PmqError => metadataError('PMQ_ERR_METADATA_CORRUPT',
    `${path}: ${what}: restore the file from a backup or remove it (loses its contents)`);
  if (bytes.byteLength < METADATA_HEADER_SIZE_BYTES) throw corrupt('shorter than its header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (MAGIC.some((byte, index) => bytes[index] !== byte)) throw corrupt('bad magic');
  const version = view.getUint16(4, true);
  if (version !== METADATA_FORMAT_VERSION) {
    throw metadataError('PMQ_ERR_METADATA_VERSION', `${path}: format version ${version}; ` +
      `this broker reads ${METADATA_FORMAT_VERSION}: run the pmq version that wrote it`);
  }
  if (view.getUint8(6) !== kind || view.getUint8(7) !== 0) throw corrupt('wrong kind');
  const generation = Number(view.getBigUint64(8, true));
  const length = view.getUint32(16, true);
  if (length !== bytes.byteLength - METADATA_HEADER_SIZE_BYTES) throw corrupt('bad length');
  if (crc32c(bytes, METADATA_HEADER_SIZE_BYTES, length) !== view.getUint32(20, true)) {
    throw corrupt('CRC mismatch');
  }
  try {
    const text = new TextDecoder('utf-8', { fatal: true })
      .decode(bytes.subarray(METADATA_HEADER_SIZE_BYTES));
    return { generation, body: JSON.parse(text) as unknown };
  } catch (error) {
    throw corrupt(`body is not JSON (${String(error)})`);
  }
}

/** What a version-1 broker data directory held, or null when it holds no metadata file. */
export async function readLegacyMetadata(dir: string):
  Promise<{ topics: TopicRecord[]; offsets: OffsetRecord[] } | null> {
  const load = async (name: string, kind: DocumentKind): Promise<unknown> => {
    const path = join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw metadataError('PMQ_ERR_METADATA_IO', `${path}: ${String(error)}`);
    }
    return decodeDocument(bytes, kind, path).body;
  };
  const topics = await load(LEGACY_TOPICS_FILE, DocumentKind.topics);
  const offsets = await load(LEGACY_OFFSETS_FILE, DocumentKind.groupOffsets);
  if (topics === undefined && offsets === undefined) return null;
  return { topics: parseTopics(topics ?? null, dir), offsets: parseOffsets(offsets ?? null, dir) };
}

/** Renames the files once their contents are durable in the metadata log. */
export async function retireLegacyMetadata(dir: string): Promise<void> {
  for (const name of [LEGACY_TOPICS_FILE, LEGACY_OFFSETS_FILE]) {
    await rename(join(dir, name), join(dir, `${name}.migrated`)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
  }
}

function parseTopics(body: unknown, dir: string): TopicRecord[] {
  if (body === null) return [];
  const list = (body as { topics?: unknown }).topics;
  const valid = Array.isArray(list) && list.every((item: unknown) => {
    const record = item as TopicRecord;
    return typeof record?.topic === 'string' && Number.isSafeInteger(record.partitions) &&
      record.partitions >= 1 && Number.isSafeInteger(record.createdAtMs);
  });
  if (!valid) throw metadataError('PMQ_ERR_METADATA_CORRUPT', `${dir}/topics.pmqmeta: bad body`);
  return list as TopicRecord[];
}

function parseOffsets(body: unknown, dir: string): OffsetRecord[] {
  if (body === null) return [];
  const list = (body as { offsets?: unknown }).offsets;
  const valid = Array.isArray(list) && list.every((item: unknown) => {
    const record = item as OffsetRecord;
    return typeof record?.group === 'string' && typeof record.topic === 'string' &&
      Number.isSafeInteger(record.partition) && Number.isSafeInteger(record.offset);
  });
  if (!valid) {
    throw metadataError('PMQ_ERR_METADATA_CORRUPT', `${dir}/group-offsets.pmqmeta: bad body`);
  }
  return list as OffsetRecord[];
}
