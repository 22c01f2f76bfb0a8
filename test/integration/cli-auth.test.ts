// `pmq user` / `pmq acl` round trip on an auth file, then the client library authenticating
// through the CLI (`--user`, PMQ_PASSWORD / --password-file): topic create, produce, consume
// against `pmq broker --auth-file`, and the refusals without credentials or an ACL.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, statSync, writeFileSync } from 'node:fs';

import t from 'tap';

import { startBroker, startStorage, tempDir } from '../helpers/broker-cluster.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];
const { dir, remove } = tempDir('pmq-cli-auth-');
const AUTH = `${dir}/auth.json`;
const PASSWORD_FILE = `${dir}/carol.pw`;
writeFileSync(PASSWORD_FILE, 'carol-secret\n', { mode: 0o600 });

interface Run { code: number | null; stdout: string; stderr: string }

async function pmq(args: string[], opts: { input?: string; env?: Record<string, string> } = {}):
  Promise<Run> {
  const child = spawn(process.execPath, [...PMQ, ...args], { stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, UCX_NET_DEVICES: 'lo', ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += String(chunk); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += String(chunk); });
  child.stdin.on('error', () => undefined);
  child.stdin.end(opts.input ?? '');
  const [code] = await once(child, 'close');
  return { code: code as number | null, stdout, stderr };
}

t.teardown(remove);

t.test('user and acl commands round-trip through the file', async (t) => {
  t.equal((await pmq(['user', 'add', 'carol', '--auth-file', AUTH, '--password-file',
    PASSWORD_FILE])).code, 0);
  t.equal((await pmq(['user', 'add', 'dave', '--auth-file', AUTH],
    { env: { PMQ_PASSWORD: 'dave-secret' } })).code, 0);
  const noPassword = await pmq(['user', 'add', 'erin', '--auth-file', AUTH]);
  t.equal(noPassword.code, 1, 'no password source and no terminal: an error');
  t.match(noPassword.stderr, /--password-file FILE or set PMQ_PASSWORD/);
  t.equal(statSync(AUTH).mode & 0o777, 0o600, 'the file is private');
  t.notMatch(readFileSync(AUTH, 'utf8'), /secret/, 'no password in the file');
  t.equal((await pmq(['user', 'list', '--auth-file', AUTH])).stdout, 'carol\ndave\n');
  t.equal((await pmq(['acl', 'add', '--auth-file', AUTH, '--principal', 'carol', '--topic',
    'cli', '--operation', 'create,write,read'])).code, 0);
  t.equal((await pmq(['acl', 'add', '--auth-file', AUTH, '--principal', 'dave', '--group',
    '*', '--operation', 'all'])).code, 0);
  const listed = JSON.parse((await pmq(['acl', 'list', '--auth-file', AUTH, '--principal',
    'carol', '--json'])).stdout) as unknown;
  t.same(listed, [{ principal: 'carol', resourceType: 'topic', name: 'cli',
    operations: ['create', 'write', 'read'] }]);
  t.equal((await pmq(['acl', 'remove', '--auth-file', AUTH, '--principal', 'dave', '--group',
    '*', '--operation', 'all'])).code, 0);
  t.equal((await pmq(['user', 'delete', 'dave', '--auth-file', AUTH])).code, 0);
  t.equal((await pmq(['user', 'list', '--auth-file', AUTH])).stdout, 'carol\n');
  const table = (await pmq(['acl', 'list', '--auth-file', AUTH])).stdout;
  t.match(table, /carol\s+topic\s+cli\s+create,write,read/);
  t.notMatch(table, /dave/, 'a deleted user\'s ACLs go with it');
});

t.test('clients authenticate with --user; refusals say why', async (t) => {
  const storage = await startStorage(`${dir}/region`, 1);
  const broker = await startBroker(`${dir}/data`, [storage], ['--auth-file', AUTH]);
  t.teardown(() => {
    broker.child.kill('SIGKILL');
    storage.child.kill('SIGKILL');
  });
  const common = ['--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'];
  const carol = [...common, '--user', 'carol', '--password-file', PASSWORD_FILE];
  const anonymous = await pmq(['topic', 'list', ...common]);
  t.equal(anonymous.code, 1);
  t.match(anonymous.stderr, /authenticate first: .*\[PMQ_ERR_AUTH\]/);
  const wrong = await pmq(['topic', 'list', ...common, '--user', 'carol'],
    { env: { PMQ_PASSWORD: 'wrong' } });
  t.match(wrong.stderr, /unknown user or wrong password \[PMQ_ERR_AUTH\]/);
  t.equal((await pmq(['topic', 'create', 'cli', '--partitions', '1', ...carol])).code, 0);
  const other = await pmq(['topic', 'create', 'other', '--partitions', '1', ...carol]);
  t.match(other.stderr, /user carol may not create topic other: grant it with `pmq acl add/);
  const produced = await pmq(['produce', 'cli', ...carol], { input: 'a\nb\nc\n' });
  t.equal(produced.code, 0, produced.stderr);
  const consumed = await pmq(['consume', 'cli', '--from', 'earliest', '--max', '3', ...carol]);
  t.equal(consumed.code, 0, consumed.stderr);
  t.equal(consumed.stdout, 'a\nb\nc\n', 'records through sessionBind-ed storage endpoints');
});
