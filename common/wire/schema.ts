/**
 * A tiny schema language for wire messages: one source of truth from which both the TS types
 * and the strict, bounded decoder are derived (so they cannot drift apart). No I/O.
 */

/** Field kinds. Integers are JS numbers, checked to be safe integers. */
export type FieldKind =
  | 'uint' // 0 ≤ n ≤ 2^53-1
  | 'int' // -2^53+1 ≤ n ≤ 2^53-1 (offsets use -1 for "none")
  | 'bool'
  | 'string' // UTF-8, ≤ STRING_CHARS_MAX
  | 'topic' // a topic name: 1..249 of [a-zA-Z0-9._-], as Kafka
  | 'bytes'; // Uint8Array, ≤ BYTES_MAX

export interface ListField { list: Schema; max: number }
export interface EnumField { oneOf: readonly string[] }
export interface OptionalField { optional: FieldKind }
export type Field = FieldKind | ListField | EnumField | OptionalField;
export type Schema = { readonly [name: string]: Field };

export const STRING_CHARS_MAX = 1024;
export const BYTES_MAX = 64 * 1024;
export const TOPIC_PATTERN = /^[a-zA-Z0-9._-]{1,249}$/;

type KindType<K extends FieldKind> = K extends 'uint' | 'int' ? number
  : K extends 'bool' ? boolean
  : K extends 'bytes' ? Uint8Array
  : string;

export type FieldType<F> = F extends FieldKind ? KindType<F>
  : F extends ListField ? SchemaType<F['list']>[]
  : F extends EnumField ? F['oneOf'][number]
  : F extends OptionalField ? KindType<F['optional']> | undefined
  : never;

export type SchemaType<S extends Schema> = { -readonly [N in keyof S]: FieldType<S[N]> };

/** Thrown by checkFields; the codec turns it into a ProtocolError with the message kind. */
export class FieldError extends Error {}

function checkKind(kind: FieldKind, value: unknown, path: string): void {
  const fail = (what: string): never => { throw new FieldError(`${path}: ${what}`); };
  switch (kind) {
    case 'uint':
      if (!Number.isSafeInteger(value) || (value as number) < 0) fail('not an unsigned integer');
      return;
    case 'int':
      if (!Number.isSafeInteger(value)) fail('not an integer');
      return;
    case 'bool':
      if (typeof value !== 'boolean') fail('not a boolean');
      return;
    case 'string':
      if (typeof value !== 'string' || value.length > STRING_CHARS_MAX) fail('not a string');
      return;
    case 'topic':
      if (typeof value !== 'string' || !TOPIC_PATTERN.test(value)) {
        fail('not a topic name (1..249 characters of a-z A-Z 0-9 . _ -)');
      }
      return;
    case 'bytes':
      if (!(value instanceof Uint8Array) || value.byteLength > BYTES_MAX) fail('not bytes');
      return;
    default: {
      const never: never = kind;
      fail(`unknown field kind ${String(never)}`);
    }
  }
}

function checkField(field: Field, value: unknown, path: string): void {
  if (typeof field === 'string') return checkKind(field, value, path);
  if ('optional' in field) {
    if (value !== undefined && value !== null) checkKind(field.optional, value, path);
    return;
  }
  if ('oneOf' in field) {
    if (typeof value !== 'string' || !field.oneOf.includes(value)) {
      throw new FieldError(`${path}: not one of ${field.oneOf.join(', ')}`);
    }
    return;
  }
  if (!Array.isArray(value) || value.length > field.max) {
    throw new FieldError(`${path}: not a list of at most ${field.max}`);
  }
  value.forEach((item, index) => checkFields(field.list, item, `${path}[${index}]`));
}

/** Checks every field of `value` against `schema`; unknown fields are refused too. */
export function checkFields(schema: Schema, value: unknown, path: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FieldError(`${path}: not a map`);
  }
  const record = value as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (!Object.hasOwn(schema, name)) throw new FieldError(`${path}.${name}: unknown field`);
  }
  for (const [name, field] of Object.entries(schema)) {
    checkField(field, record[name], `${path}.${name}`);
  }
}
