/**
 * A tiny schema language for wire messages: one source of truth from which both the TS types
 * and the strict, bounded decoder are derived (so they cannot drift apart). No I/O.
 */
import { TOPIC_NAME_RULE, topicNameProblem } from '../topic-name.js';

/** Field kinds. Integers are JS numbers, checked to be safe integers. */
export type FieldKind =
  | 'uint' // 0 ≤ n ≤ 2^53-1
  | 'int' // -2^53+1 ≤ n ≤ 2^53-1 (offsets use -1 for "none")
  | 'bool'
  | 'string' // UTF-8, ≤ STRING_CHARS_MAX
  | 'topic' // a topic name: common/topic-name.ts (Kafka's rule)
  | 'bytes'; // Uint8Array, ≤ BYTES_MAX

export interface ListField { list: Schema; max: number }
export interface EnumField { oneOf: readonly string[] }
export interface OptionalField { optional: FieldKind }
export type Field = FieldKind | ListField | EnumField | OptionalField;
export type Schema = { readonly [name: string]: Field };

export const STRING_CHARS_MAX = 1024;
export const BYTES_MAX = 64 * 1024;
/** A topic field's problem: the peer's request is well formed but names no possible topic, so
 *  it is answered with PMQ_ERR_ARGUMENT (FieldError.code), not PMQ_ERR_PROTOCOL. */
const NOT_A_TOPIC_NAME = `not a topic name (${TOPIC_NAME_RULE})`;

type KindType<K extends FieldKind> = K extends 'uint' | 'int' ? number
  : K extends 'bool' ? boolean
  : K extends 'bytes' ? Uint8Array
  : string;

export type FieldType<F> = F extends FieldKind ? KindType<F>
  : F extends ListField ? SchemaType<F['list']>[]
  : F extends EnumField ? F['oneOf'][number]
  : F extends OptionalField ? KindType<F['optional']> | undefined
  : never;

type OptionalKeys<S extends Schema> =
  { [N in keyof S]: S[N] extends OptionalField ? N : never }[keyof S];
/** Optional fields may be left out by a sender (a newer field an older peer does not send). */
export type SchemaType<S extends Schema> =
  { -readonly [N in Exclude<keyof S, OptionalKeys<S>>]: FieldType<S[N]> } &
  { -readonly [N in OptionalKeys<S>]?: FieldType<S[N]> };

/** Thrown by checkFields; the codec turns it into a ProtocolError with the message kind. */
export class FieldError extends Error {
  constructor(message: string,
    readonly code: 'PMQ_ERR_PROTOCOL' | 'PMQ_ERR_ARGUMENT' = 'PMQ_ERR_PROTOCOL') {
    super(message);
  }
}

/**
 * What is wrong with `value` as a `kind`, or null. Checks run on every message on the hot path
 * (issue 11), so nothing here allocates unless the value is refused: the problem's text, and
 * the path to the field (checkFields), are built only then.
 */
function kindProblem(kind: FieldKind, value: unknown): string | null {
  switch (kind) {
    case 'uint':
      return Number.isSafeInteger(value) && (value as number) >= 0 ? null
        : 'not an unsigned integer';
    case 'int':
      return Number.isSafeInteger(value) ? null : 'not an integer';
    case 'bool':
      return typeof value === 'boolean' ? null : 'not a boolean';
    case 'string':
      return typeof value === 'string' && value.length <= STRING_CHARS_MAX ? null
        : 'not a string';
    case 'topic':
      return topicNameProblem(value) === null ? null : NOT_A_TOPIC_NAME;
    case 'bytes':
      return value instanceof Uint8Array && value.byteLength <= BYTES_MAX ? null : 'not bytes';
    default: {
      const never: never = kind;
      return `unknown field kind ${String(never)}`;
    }
  }
}

/** The problem with `value` as `field`, as a path suffix and reason (`[3].x: not …`), or null. */
function fieldProblem(field: Field, value: unknown): string | null {
  if (typeof field === 'string') {
    const problem = kindProblem(field, value);
    return problem === null ? null : `: ${problem}`;
  }
  if ('optional' in field) {
    if (value === undefined || value === null) return null;
    const problem = kindProblem(field.optional, value);
    return problem === null ? null : `: ${problem}`;
  }
  if ('oneOf' in field) {
    return typeof value === 'string' && field.oneOf.includes(value) ? null
      : `: not one of ${field.oneOf.join(', ')}`;
  }
  if (!Array.isArray(value) || value.length > field.max) {
    return `: not a list of at most ${field.max}`;
  }
  for (let index = 0; index < value.length; index += 1) {
    const problem = fieldsProblem(field.list, value[index], null);
    if (problem !== null) return `[${index}]${problem}`;
  }
  return null;
}

/** Each schema's field names, listed once (Object.entries per message would allocate). */
const FIELD_NAMES = new WeakMap<Schema, readonly string[]>();

function fieldNames(schema: Schema): readonly string[] {
  let names = FIELD_NAMES.get(schema);
  if (names === undefined) {
    names = Object.keys(schema);
    FIELD_NAMES.set(schema, names);
  }
  return names;
}

function fieldsProblem(schema: Schema, value: unknown, allowed: ReadonlySet<string> | null):
  string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ': not a map';
  const record = value as Record<string, unknown>;
  // for…in, not Object.keys(): no array per message. Own keys only, as Object.keys().
  for (const name in record) {
    if (!Object.hasOwn(record, name) || Object.hasOwn(schema, name)) continue;
    if (allowed === null || !allowed.has(name)) return `.${name}: unknown field`;
  }
  const names = fieldNames(schema);
  for (let i = 0; i < names.length; i += 1) {
    const name = names[i]!;
    const problem = fieldProblem(schema[name]!, record[name]);
    if (problem !== null) return `.${name}${problem}`;
  }
  return null;
}

/**
 * Checks every field of `value` against `schema`; unknown fields are refused too, except the
 * names in `allowed` (a message's envelope: v, kind, id), which the caller checks itself.
 */
export function checkFields(schema: Schema, value: unknown, path: string,
  allowed: ReadonlySet<string> | null = null): void {
  const problem = fieldsProblem(schema, value, allowed);
  if (problem === null) return;
  throw new FieldError(`${path}${problem}`, problem.endsWith(`: ${NOT_A_TOPIC_NAME}`) ?
    'PMQ_ERR_ARGUMENT' : 'PMQ_ERR_PROTOCOL');
}
