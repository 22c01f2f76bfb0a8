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

/**
 * A consume output template (`-f '%t %p %o %d %k %h %v\n'`, as rpk's): %t topic, %p partition,
 * %o offset, %d timestamp (ms since the epoch), %k key, %v value, %h headers (key=value pairs
 * joined by ','), %% a percent sign; \n, \t, \\ escapes. Keys, values and header values are
 * printed as their bytes (nothing for null). Parsed once; applied per record without copying
 * the payload.
 */
export type Template = (Buffer | 't' | 'p' | 'o' | 'd' | 'k' | 'v' | 'h')[];

const FIELDS = new Set(['t', 'p', 'o', 'd', 'k', 'v', 'h']);
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', '\\': '\\', r: '\r' };

/** The template, or the problem with it. */
export function parseTemplate(text: string): Template | string {
  const template: Template = [];
  let literal = '';
  for (let at = 0; at < text.length; at += 1) {
    const c = text[at]!;
    const next = text[at + 1];
    if (c === '\\' && next !== undefined && ESCAPES[next] !== undefined) {
      literal += ESCAPES[next];
      at += 1;
    } else if (c === '%') {
      if (next === '%') {
        literal += '%';
      } else if (next !== undefined && FIELDS.has(next)) {
        if (literal.length > 0) template.push(Buffer.from(literal));
        literal = '';
        template.push(next as Template[number] & string);
      } else {
        return `unknown %${next ?? ''} at ${at}: use %t %p %o %d %k %v %h or %%`;
      }
      at += 1;
    } else {
      literal += c;
    }
  }
  if (literal.length > 0) template.push(Buffer.from(literal));
  return template;
}

/**
 * A produce input format (`pmq produce -f`, rpk's flag): one record per line, either the value
 * (`%v`) or a key, a literal separator and the value (`%k<sep>%v`, as --key-separator), with
 * an optional trailing `\n`. Returns the separator (null: value only) or the problem: rpk's
 * other directives (headers, sizes, JSON) are not read here.
 */
export function parseInputFormat(text: string): { separator: string | null } | string {
  const template = parseTemplate(text);
  if (typeof template === 'string') return template;
  const last = template.at(-1);
  if (Buffer.isBuffer(last) && last.toString() === '\n') template.pop();
  if (template.length === 1 && template[0] === 'v') return { separator: null };
  const separator = template[1];
  if (template.length === 3 && template[0] === 'k' && Buffer.isBuffer(separator) &&
      template[2] === 'v') {
    return { separator: separator.toString() };
  }
  return `'${text}': pmq produce reads '%v' (a value per line) or '%k<separator>%v' (a key, ` +
    'a separator and a value per line), with an optional trailing \\n';
}

function headerPieces(record: PrintableRecord): Buffer[] {
  return record.headers.flatMap(({ key, value }, index) => [
    ...(index === 0 ? [] : [COMMA]), Buffer.from(`${key}=`), textBytes(value)]);
}

const COMMA = Buffer.from(',');

/** The pieces of one record printed through `template`. */
export function templatePieces(template: Template, topic: string, partition: number,
  record: PrintableRecord): Buffer[] {
  const pieces: Buffer[] = [];
  for (const part of template) {
    if (part instanceof Buffer) pieces.push(part);
    else if (part === 't') pieces.push(Buffer.from(topic));
    else if (part === 'p') pieces.push(Buffer.from(String(partition)));
    else if (part === 'o') pieces.push(Buffer.from(String(record.offset)));
    else if (part === 'd') pieces.push(Buffer.from(String(record.timestamp)));
    else if (part === 'k') pieces.push(textBytes(record.key));
    else if (part === 'v') pieces.push(textBytes(record.value));
    else pieces.push(...headerPieces(record));
  }
  return pieces;
}
