/**
 * The broker's own durable metadata: topics (name → partition count) and consumer-group
 * committed offsets, each in one small file of the broker's data directory
 * (docs/broker.md, "Metadata files", byte by byte).
 *
 * Durability: a change is acknowledged only after the file holding it is durable: the whole
 * document is written to `<name>.tmp`, fsynced, renamed over `<name>`, and the directory
 * fsynced, so a crash leaves the old or the new file, never a torn one. Writes are batched:
 * changes made while a write is in flight go out together in the next write (many offset
 * commits, one fsync).
 *
 * Fencing (guard()): with a guard set (broker.ts), each write first has every storage node
 * confirm the broker's epoch (one round trip per batched write), and none is written, nor
 * renamed into place, once the broker is fenced: the waiters get PMQ_ERR_FENCED and the file
 * keeps its bytes. This narrows, but does not close, the window in which a broker that is
 * about to be fenced writes; metadata that only fenced storage can hold closes it.
 *
 * Concurrency: JS thread only; at most one write per file in flight.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { BROKER_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { crc32c } from '../native/crc32c.js';

export const METADATA_FORMAT_VERSION = 1;
const MAGIC = [0x50, 0x4d, 0x51, 0x4d] as const; // "PMQM"
export const METADATA_HEADER_SIZE_BYTES = 24;
const BODY_SIZE_BYTES_MAX = 64 * 1024 * 1024;

export const DocumentKind = { topics: 1, groupOffsets: 2 } as const;
export type DocumentKind = (typeof DocumentKind)[keyof typeof DocumentKind];

/** What a metadata write asks first (broker.ts wires it to the fence and the storage pool). */
export interface MetadataGuard {
  /** PMQ_ERR_FENCED once the broker is fenced, else null. */
  fenced(): PmqError | null;
  /** Resolves while the broker's epoch is current; throws PMQ_ERR_FENCED when it is not. */
  confirm(): Promise<void>;
}

export interface TopicRecord { topic: string; partitions: number; createdAtMs: number }
export interface OffsetRecord { group: string; topic: string; partition: number; offset: number }

function metadataError(code: string, message: string): PmqError {
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

/** Writes `bytes` to dir/name atomically and durably (temp file, fsync, rename, fsync dir). */
export async function writeFileDurably(dir: string, name: string, bytes: Uint8Array,
  beforeRename: () => void = () => undefined): Promise<void> {
  const temp = join(dir, `${name}.tmp`);
  const file = await open(temp, 'w', 0o644);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    beforeRename();
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await rename(temp, join(dir, name));
  const directory = await open(dir, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** One durable document: save() resolves once a write that began after the call is durable. */
class DurableDocument {
  #generation = 0;
  #writing = false;
  #waiting: { resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(private readonly dir: string, private readonly name: string,
    private readonly kind: DocumentKind, private readonly snapshot: () => unknown,
    private readonly guard: () => MetadataGuard | null) {}

  async load(): Promise<unknown> {
    const path = join(this.dir, this.name);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw metadataError('PMQ_ERR_METADATA_IO', `${path}: ${String(error)}`);
    }
    const { generation, body } = decodeDocument(bytes, this.kind, path);
    this.#generation = generation;
    return body;
  }

  save(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#writeNext();
    });
  }

  #writeNext(): void {
    if (this.#writing || this.#waiting.length === 0) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#writing = true;
    this.#write().then(
      () => { for (const waiter of waiting) waiter.resolve(); },
      (error: unknown) => {
        const failure = error instanceof PmqError ? error : new PmqError('PMQ_ERR_METADATA_IO',
          `writing ${this.name} failed: ${String(error)}: check the data directory (space, ` +
          'permissions)', { cause: error, retriable: true });
        for (const waiter of waiting) waiter.reject(failure);
      },
    ).finally(() => {
      this.#writing = false;
      this.#writeNext();
    });
  }

  /** Confirms the epoch (with a guard), then writes; never once fenced. */
  async #write(): Promise<void> {
    const guard = this.guard();
    const checkFence = (): void => {
      const fenced = guard?.fenced() ?? null;
      if (fenced !== null) throw fenced;
    };
    checkFence();
    await guard?.confirm();
    checkFence();
    this.#generation += 1;
    const bytes = encodeDocument(this.kind, this.#generation, this.snapshot());
    try {
      await writeFileDurably(this.dir, this.name, bytes, checkFence);
    } catch (error) {
      if (error instanceof PmqError) throw error;
      throw new PmqError('PMQ_ERR_METADATA_IO', `writing ${this.name} failed: ` +
        `${String(error)}: check the data directory (space, permissions)`,
      { cause: error, retriable: true });
    }
  }
}

const offsetKey = (group: string, topic: string, partition: number): string =>
  JSON.stringify([group, topic, partition]);

export class MetadataStore {
  readonly #topics = new Map<string, TopicRecord>();
  #epochLast = 0;
  readonly #offsets = new Map<string, OffsetRecord>();
  readonly #topicsDocument: DurableDocument;
  readonly #offsetsDocument: DurableDocument;
  #guard: MetadataGuard | null = null;

  private constructor(readonly dir: string) {
    const guard = (): MetadataGuard | null => this.#guard;
    this.#topicsDocument = new DurableDocument(dir, 'topics.pmqmeta', DocumentKind.topics,
      () => ({ epoch: this.#epochLast, topics: [...this.#topics.values()] }), guard);
    this.#offsetsDocument = new DurableDocument(dir, 'group-offsets.pmqmeta',
      DocumentKind.groupOffsets, () => ({ offsets: [...this.#offsets.values()] }), guard);
  }

  /** From now on every write asks `guard` first (see the file comment, "Fencing"). */
  setGuard(guard: MetadataGuard): void {
    this.#guard = guard;
  }

  /** Opens (creating the directory if needed) and loads both files. */
  static async open(dir: string, log: Logger): Promise<MetadataStore> {
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw metadataError('PMQ_ERR_METADATA_IO', `cannot create data directory ${dir}: ` +
        `${String(error)}`);
    }
    const store = new MetadataStore(dir);
    await rm(join(dir, 'topics.pmqmeta.tmp'), { force: true });
    await rm(join(dir, 'group-offsets.pmqmeta.tmp'), { force: true });
    const topicsBody = await store.#topicsDocument.load();
    for (const topic of parseTopics(topicsBody, dir)) store.#topics.set(topic.topic, topic);
    const epoch = (topicsBody as { epoch?: unknown } | null)?.epoch ?? 0;
    if (!Number.isSafeInteger(epoch) || (epoch as number) < 0) {
      throw metadataError('PMQ_ERR_METADATA_CORRUPT', `${dir}/topics.pmqmeta: bad epoch`);
    }
    store.#epochLast = epoch as number;
    for (const offset of parseOffsets(await store.#offsetsDocument.load(), dir)) {
      store.#offsets.set(offsetKey(offset.group, offset.topic, offset.partition), offset);
    }
    log.info({ dir, topics: store.#topics.size, groupOffsets: store.#offsets.size },
      'metadata loaded');
    return store;
  }

  /** The broker's fencing epoch when it last started (0: never). */
  get epochLast(): number {
    return this.#epochLast;
  }

  /** Remembers the broker's new epoch; durable on return. */
  async recordEpoch(epoch: number): Promise<void> {
    invariant(epoch >= this.#epochLast, 'epochs never go down', { epoch, last: this.#epochLast });
    this.#epochLast = epoch;
    await this.#topicsDocument.save();
  }

  topics(): TopicRecord[] {
    return [...this.#topics.values()];
  }

  topic(name: string): TopicRecord | undefined {
    return this.#topics.get(name);
  }

  /** Durable on return. Throws PMQ_ERR_TOPIC_EXISTS. */
  async createTopic(topic: string, partitions: number): Promise<TopicRecord> {
    if (this.#topics.has(topic)) {
      throw new PmqError('PMQ_ERR_TOPIC_EXISTS', `topic ${topic} exists: use it, or delete it ` +
        'first');
    }
    const record = { topic, partitions, createdAtMs: Date.now() };
    this.#topics.set(topic, record);
    try {
      await this.#topicsDocument.save();
    } catch (error) {
      this.#topics.delete(topic);
      throw error;
    }
    return record;
  }

  /** Durable on return; the topic's group offsets go too. */
  async deleteTopic(topic: string): Promise<void> {
    const record = this.#topics.get(topic);
    invariant(record !== undefined, 'deleteTopic of a known topic', { topic });
    this.#topics.delete(topic);
    for (const [key, offset] of this.#offsets) {
      if (offset.topic === topic) this.#offsets.delete(key);
    }
    try {
      await this.#topicsDocument.save();
    } catch (error) {
      this.#topics.set(topic, record);
      throw error;
    }
    await this.#offsetsDocument.save();
  }

  groupOffset(group: string, topic: string, partition: number): number {
    return this.#offsets.get(offsetKey(group, topic, partition))?.offset ?? -1;
  }

  /** Durable on return; commits made meanwhile share one write. */
  async commitGroupOffset(record: OffsetRecord): Promise<void> {
    const key = offsetKey(record.group, record.topic, record.partition);
    if (!this.#offsets.has(key) && this.#offsets.size >= BROKER_LIMITS.groupOffsetsMax) {
      throw new PmqError('PMQ_ERR_LIMIT', `${BROKER_LIMITS.groupOffsetsMax} group offsets are ` +
        'stored (the maximum): delete unused topics');
    }
    this.#offsets.set(key, { ...record });
    await this.#offsetsDocument.save();
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
