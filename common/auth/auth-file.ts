/**
 * The auth file (`pmq broker --auth-file FILE`, `pmq user …`, `pmq acl …`): users with their
 * SCRAM credentials (never a password) and ACLs, one JSON document (docs/security.md):
 *
 *   { "version": 1,
 *     "users": [{ "name", "salt" (base64), "iterations", "storedKey" (base64),
 *                 "serverKey" (base64) }],
 *     "acls": [{ "principal", "topic" | "group", "operations": [...] }] }
 *
 * Parsing is strict (unknown fields, bad base64 lengths, iterations below 4096, duplicate
 * users are refused with PMQ_ERR_AUTH_FILE naming the place). Pure: the CLI writes files,
 * the broker reads them (broker-node/auth-store.ts).
 */
import { PmqError } from '../errors.js';
import {
  ACL_OPERATIONS, ACL_WILDCARD, RESOURCE_TYPES, type AclEntry, type AclOperation,
  type ResourceType,
} from './acl.js';
import { checkIterations, type ScramCredentials } from './scram.js';

export const AUTH_FILE_VERSION = 1;
/** User names: what a ticket, a log line and a shell command can carry without escaping. */
export const USER_NAME_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;
/** Topic names as Kafka's; group names and ACL resource names the same, or `*`. */
const RESOURCE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,249}$/;

export interface AuthUser extends ScramCredentials { readonly name: string }
export interface AuthFile {
  readonly users: readonly AuthUser[];
  readonly acls: readonly AclEntry[];
}

export const EMPTY_AUTH_FILE: AuthFile = { users: [], acls: [] };

function bad(where: string, what: string): PmqError {
  return new PmqError('PMQ_ERR_AUTH_FILE', `auth file: ${where}: ${what}`);
}

function fields(value: unknown, where: string, allowed: readonly string[]):
  Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad(where, 'not an object');
  }
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) throw bad(where, `unknown field ${name}`);
  }
  return value as Record<string, unknown>;
}

function key(value: unknown, where: string): Uint8Array {
  if (typeof value !== 'string') throw bad(where, 'not a base64 string');
  const bytes = Buffer.from(value, 'base64');
  if (bytes.byteLength !== 32 || bytes.toString('base64') !== value) {
    throw bad(where, 'not 32 bytes of base64');
  }
  return new Uint8Array(bytes);
}

export function checkUserName(name: unknown, where = 'user name'): string {
  if (typeof name !== 'string' || !USER_NAME_PATTERN.test(name)) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `${where} ${JSON.stringify(name)}: use 1..128 of ` +
      'A-Z a-z 0-9 . _ @ -');
  }
  return name;
}

export function checkResourceName(name: unknown, where: string): string {
  if (typeof name !== 'string' || (name !== ACL_WILDCARD && !RESOURCE_NAME_PATTERN.test(name))) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `${where} ${JSON.stringify(name)}: a name of ` +
      `1..249 of A-Z a-z 0-9 . _ -, or ${ACL_WILDCARD} for all`);
  }
  return name;
}

function parseUser(value: unknown, where: string): AuthUser {
  const raw = fields(value, where, ['name', 'salt', 'iterations', 'storedKey', 'serverKey']);
  const salt = typeof raw.salt === 'string' ? Buffer.from(raw.salt, 'base64') : null;
  if (salt === null || salt.byteLength < 8) throw bad(`${where}.salt`, 'base64 of ≥ 8 bytes');
  if (typeof raw.iterations !== 'number') throw bad(`${where}.iterations`, 'not a number');
  try {
    checkIterations(raw.iterations);
    checkUserName(raw.name);
  } catch (error) {
    throw bad(where, (error as Error).message);
  }
  return { name: raw.name as string, salt: new Uint8Array(salt), iterations: raw.iterations,
    storedKey: key(raw.storedKey, `${where}.storedKey`),
    serverKey: key(raw.serverKey, `${where}.serverKey`) };
}

function parseAcl(value: unknown, where: string): AclEntry {
  const raw = fields(value, where, ['principal', 'topic', 'group', 'operations']);
  const types = RESOURCE_TYPES.filter((type) => raw[type] !== undefined);
  if (types.length !== 1) throw bad(where, 'name exactly one of topic, group');
  const resourceType = types[0]!;
  const operations = raw.operations;
  if (!Array.isArray(operations) || operations.length === 0 ||
      !operations.every((op) => ACL_OPERATIONS.includes(op as AclOperation))) {
    throw bad(`${where}.operations`, `a non-empty list of ${ACL_OPERATIONS.join(', ')}`);
  }
  try {
    if (raw.principal !== ACL_WILDCARD) checkUserName(raw.principal, 'principal');
    checkResourceName(raw[resourceType], resourceType);
  } catch (error) {
    throw bad(where, (error as Error).message);
  }
  return { principal: raw.principal as string, resourceType,
    name: raw[resourceType] as string, operations: operations as AclOperation[] };
}

export function parseAuthFile(text: string): AuthFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw bad('JSON', (error as Error).message);
  }
  const raw = fields(json, 'top level', ['version', 'users', 'acls']);
  if (raw.version !== AUTH_FILE_VERSION) {
    throw bad('version', `${String(raw.version)} is not ${AUTH_FILE_VERSION}: written by ` +
      'another pmq version');
  }
  if (!Array.isArray(raw.users) || !Array.isArray(raw.acls)) {
    throw bad('top level', 'users and acls must be lists');
  }
  const users = raw.users.map((user, index) => parseUser(user, `users[${index}]`));
  const names = new Set<string>();
  for (const user of users) {
    if (names.has(user.name)) throw bad('users', `${user.name} appears twice`);
    names.add(user.name);
  }
  return { users, acls: raw.acls.map((acl, index) => parseAcl(acl, `acls[${index}]`)) };
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

export function formatAuthFile(file: AuthFile): string {
  return `${JSON.stringify({
    version: AUTH_FILE_VERSION,
    users: file.users.map((user) => ({ name: user.name, salt: b64(user.salt),
      iterations: user.iterations, storedKey: b64(user.storedKey),
      serverKey: b64(user.serverKey) })),
    acls: file.acls.map((acl) => ({ principal: acl.principal, [acl.resourceType]: acl.name,
      operations: acl.operations })),
  }, null, 2)}\n`;
}

/** Adds or replaces a user (a new password). */
export function withUser(file: AuthFile, user: AuthUser): AuthFile {
  return { ...file, users: [...file.users.filter((u) => u.name !== user.name), user] };
}

/** Removes a user and the ACLs naming it; throws when there is no such user. */
export function withoutUser(file: AuthFile, name: string): AuthFile {
  if (!file.users.some((user) => user.name === name)) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `no user ${name} in the auth file`);
  }
  return { users: file.users.filter((user) => user.name !== name),
    acls: file.acls.filter((acl) => acl.principal !== name) };
}

function sameResource(acl: AclEntry, principal: string, type: ResourceType, name: string):
  boolean {
  return acl.principal === principal && acl.resourceType === type && acl.name === name;
}

/** Adds operations to the principal's entry for the resource (one entry per triple). */
export function withAcl(file: AuthFile, entry: AclEntry): AuthFile {
  const old = file.acls.find((acl) => sameResource(acl, entry.principal, entry.resourceType,
    entry.name));
  const operations = [...new Set([...(old?.operations ?? []), ...entry.operations])];
  const others = file.acls.filter((acl) => acl !== old);
  return { ...file, acls: [...others, { ...entry, operations }] };
}

/** Removes operations from the entry (the entry goes when none is left); throws when absent. */
export function withoutAcl(file: AuthFile, entry: AclEntry): AuthFile {
  const old = file.acls.find((acl) => sameResource(acl, entry.principal, entry.resourceType,
    entry.name));
  if (old === undefined) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `no ACL for ${entry.principal} on ` +
      `${entry.resourceType} ${entry.name}`);
  }
  const operations = old.operations.filter((op) => !entry.operations.includes(op) &&
    !entry.operations.includes('all'));
  const others = file.acls.filter((acl) => acl !== old);
  return { ...file, acls: operations.length === 0 ? others : [...others,
    { ...old, operations }] };
}
