/**
 * Access control lists for authenticated clients (docs/security.md, "Clients: sessions, users
 * and ACLs"), as Kafka's: allow-only entries naming a principal (a user, or `*` for every
 * authenticated user), a resource (a topic or a consumer group, by exact name or `*`) and
 * operations. Nothing is allowed unless an entry allows it. `describe` is implied by read,
 * write and delete (as in Kafka); `all` is every operation. Pure: the broker passes the
 * entries of its auth file in.
 */
import { PmqError } from '../errors.js';

export const ACL_OPERATIONS = ['read', 'write', 'create', 'delete', 'describe', 'all'] as const;
export type AclOperation = (typeof ACL_OPERATIONS)[number];
/** What a request needs: one operation, never `all`. */
export type Operation = Exclude<AclOperation, 'all'>;
export const RESOURCE_TYPES = ['topic', 'group'] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];
export const ACL_WILDCARD = '*';

export interface AclEntry {
  readonly principal: string;
  readonly resourceType: ResourceType;
  readonly name: string;
  readonly operations: readonly AclOperation[];
}

export interface Resource { readonly type: ResourceType; readonly name: string }

const IMPLIES_DESCRIBE: readonly AclOperation[] = ['read', 'write', 'delete', 'all', 'describe'];

function grants(entry: AclEntry, operation: Operation): boolean {
  if (operation === 'describe') return entry.operations.some((op) => IMPLIES_DESCRIBE.includes(op));
  return entry.operations.includes(operation) || entry.operations.includes('all');
}

function matches(pattern: string, value: string): boolean {
  return pattern === ACL_WILDCARD || pattern === value;
}

/** True when some entry allows `principal` the operation on the resource. */
export function isAllowed(acls: readonly AclEntry[], principal: string, resource: Resource,
  operation: Operation): boolean {
  return acls.some((entry) => entry.resourceType === resource.type &&
    matches(entry.principal, principal) && matches(entry.name, resource.name) &&
    grants(entry, operation));
}

/**
 * The refusal: names principal, operation and resource, and the command that would allow it
 * (the operator's fix). Never says what the principal may do instead.
 */
export function denied(principal: string, resource: Resource, operation: Operation,
  authFile: string): PmqError {
  return new PmqError('PMQ_ERR_DENIED', `user ${principal} may not ${operation} ` +
    `${resource.type} ${resource.name}: grant it with \`pmq acl add --auth-file ${authFile} ` +
    `--principal ${principal} --${resource.type} ${resource.name} --operation ${operation}\``);
}

/** Throws `denied(…)` unless allowed. */
export function checkAllowed(acls: readonly AclEntry[], principal: string, resource: Resource,
  operation: Operation, authFile: string): void {
  if (!isAllowed(acls, principal, resource, operation)) {
    throw denied(principal, resource, operation, authFile);
  }
}
