/**
 * How `pmq consume` and `pmq inspect --records` print a record. Text: the value, or
 * key<TAB>value; bytes that are not valid UTF-8 are printed as they are. JSON: one object per
 * line; a key, value or header value is a string when it is valid UTF-8, `{ "base64": "…" }`
 * when it is not, or null.
 */
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

export type JsonBytes = string | { base64: string } | null;

export interface JsonRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: JsonBytes;
  value: JsonBytes;
  headers: { key: string; value: JsonBytes }[];
}

export interface PrintableRecord {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: { key: string; value: Uint8Array | null }[];
}

export function jsonBytes(bytes: Uint8Array | null): JsonBytes {
  if (bytes === null) return null;
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return { base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      .toString('base64') };
  }
}

export function toJsonRecord(topic: string, partition: number, record: PrintableRecord):
  JsonRecord {
  return { topic, partition, offset: record.offset, timestamp: record.timestamp,
    key: jsonBytes(record.key), value: jsonBytes(record.value),
    headers: record.headers.map(({ key, value }) => ({ key, value: jsonBytes(value) })) };
}

function textBytes(bytes: Uint8Array | null): Buffer {
  return bytes === null ? Buffer.alloc(0) :
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const TAB = Buffer.from('\t');
const NEWLINE = Buffer.from('\n');

/** The pieces of one text line (no copies of the payload): [key, TAB,] value, newline. */
export function textPieces(record: PrintableRecord, printKeys: boolean): Buffer[] {
  return printKeys ? [textBytes(record.key), TAB, textBytes(record.value), NEWLINE]
    : [textBytes(record.value), NEWLINE];
}
