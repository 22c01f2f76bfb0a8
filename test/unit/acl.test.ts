// ACL evaluation (common/auth/acl.ts) and the auth file's strict format (auth-file.ts).
import t from 'tap';

import { checkAllowed, isAllowed, type AclEntry } from '../../common/auth/acl.js';
import {
  formatAuthFile, parseAuthFile, withAcl, withoutAcl, withoutUser, withUser,
} from '../../common/auth/auth-file.js';
import { scramCredentials } from '../../common/auth/scram.js';

const acls: AclEntry[] = [
  { principal: 'alice', resourceType: 'topic', name: 'orders', operations: ['write'] },
  { principal: 'alice', resourceType: 'group', name: 'g1', operations: ['read'] },
  { principal: 'bob', resourceType: 'topic', name: '*', operations: ['read'] },
  { principal: '*', resourceType: 'topic', name: 'public', operations: ['describe'] },
  { principal: 'root', resourceType: 'topic', name: '*', operations: ['all'] },
];
const topic = (name: string) => ({ type: 'topic' as const, name });
const group = (name: string) => ({ type: 'group' as const, name });

t.test('exact names, wildcards and operations', async (t) => {
  t.ok(isAllowed(acls, 'alice', topic('orders'), 'write'));
  t.notOk(isAllowed(acls, 'alice', topic('orders'), 'read'), 'write is not read');
  t.notOk(isAllowed(acls, 'alice', topic('orders2'), 'write'), 'names are exact');
  t.notOk(isAllowed(acls, 'alice', group('orders'), 'write'), 'a group is not a topic');
  t.ok(isAllowed(acls, 'alice', group('g1'), 'read'));
  t.ok(isAllowed(acls, 'bob', topic('anything'), 'read'), '* names every topic');
  t.notOk(isAllowed(acls, 'bob', topic('anything'), 'delete'));
  t.ok(isAllowed(acls, 'carol', topic('public'), 'describe'), '* principal: every user');
  t.notOk(isAllowed(acls, 'carol', topic('public'), 'read'));
  t.notOk(isAllowed(acls, 'carol', topic('orders'), 'describe'), 'nothing without an entry');
  for (const op of ['read', 'write', 'create', 'delete', 'describe'] as const) {
    t.ok(isAllowed(acls, 'root', topic('x'), op), `all includes ${op}`);
  }
  t.notOk(isAllowed(acls, 'root', group('x'), 'read'), 'all on topics is not groups');
});

t.test('describe is implied by read, write and delete, not by create', async (t) => {
  t.ok(isAllowed(acls, 'alice', topic('orders'), 'describe'), 'by write');
  t.ok(isAllowed(acls, 'alice', group('g1'), 'describe'), 'by read');
  const create: AclEntry[] = [{ principal: 'c', resourceType: 'topic', name: 't',
    operations: ['create'] }];
  t.notOk(isAllowed(create, 'c', topic('t'), 'describe'));
});

t.test('a refusal names principal, operation, resource and the fix', async (t) => {
  t.throws(() => checkAllowed(acls, 'alice', topic('orders'), 'read', '/etc/pmq/auth.json'), {
    code: 'PMQ_ERR_DENIED',
    message: 'user alice may not read topic orders: grant it with `pmq acl add --auth-file ' +
      '/etc/pmq/auth.json --principal alice --topic orders --operation read`',
  });
});

t.test('auth file: round trip, edits, strict parse', async (t) => {
  const credentials = scramCredentials('pw', new Uint8Array(16).fill(7), 4096);
  let file = withUser({ users: [], acls: [] }, { name: 'alice', ...credentials });
  file = withAcl(file, { principal: 'alice', resourceType: 'topic', name: 'orders',
    operations: ['write'] });
  file = withAcl(file, { principal: 'alice', resourceType: 'topic', name: 'orders',
    operations: ['read', 'write'] });
  const text = formatAuthFile(file);
  t.notMatch(text, /"pw"/, 'no password in the file');
  const parsed = parseAuthFile(text);
  t.same(parsed.acls, [{ principal: 'alice', resourceType: 'topic', name: 'orders',
    operations: ['write', 'read'] }], 'operations merged into one entry');
  t.same(parsed.users[0]!.storedKey, credentials.storedKey);
  const less = withoutAcl(parsed, { principal: 'alice', resourceType: 'topic', name: 'orders',
    operations: ['write'] });
  t.same(less.acls[0]!.operations, ['read']);
  t.same(withoutUser(less, 'alice'), { users: [], acls: [] }, 'a user goes with its ACLs');
  t.throws(() => withoutUser(less, 'nobody'), { code: 'PMQ_ERR_ARGUMENT' });
  const json = JSON.parse(text) as { version: number; users: { iterations: number }[] };
  t.throws(() => parseAuthFile('{'), { code: 'PMQ_ERR_AUTH_FILE' });
  t.throws(() => parseAuthFile(JSON.stringify({ ...json, version: 2 })),
    { code: 'PMQ_ERR_AUTH_FILE' });
  t.throws(() => parseAuthFile(JSON.stringify({ ...json, extra: 1 })),
    { code: 'PMQ_ERR_AUTH_FILE' });
  json.users[0]!.iterations = 1000;
  t.throws(() => parseAuthFile(JSON.stringify(json)), { code: 'PMQ_ERR_AUTH_FILE',
    message: /4096/ });
});
