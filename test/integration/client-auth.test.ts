// Client sessions, SCRAM authentication and ACLs, as users run them: `pmq broker --auth-file`
// over a `pmq storage` node (child processes), this process as raw clients on several
// endpoints of one Transport (each endpoint its own broker session).
import { writeFileSync } from 'node:fs';

import t, { type Test } from 'tap';

import { formatAuthFile, type AuthFile, type AuthUser } from '../../common/auth/auth-file.js';
import { ClusterKey, randomSessionId } from '../../common/auth/keys.js';
import { scramCredentials } from '../../common/auth/scram.js';
import { issueTicket, type Ticket } from '../../common/auth/ticket.js';
import { PmqError } from '../../common/errors.js';
import {
  decodeRecordBatch, encodeRecordBatch,
} from '../../common/record-batch/index.js';
import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import { ScramClient } from '../../clients/auth.js';
import type { Endpoint } from '../../native/transport.js';
import { Client, startBroker, startStorage, tempDir } from '../helpers/broker-cluster.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';

const { dir, remove } = tempDir('pmq-client-auth-');
const AUTH_FILE = `${dir}/auth.json`;
const CLUSTER_KEY = testKey(testKeyFile(dir));
const salt = new Uint8Array(16).fill(3);
const user = (name: string, password: string): AuthUser =>
  ({ name, ...scramCredentials(password, salt, 4096) });
const mallory = user('mallory', 'm-pw');
const BASE: AuthFile = {
  users: [user('alice', 'a-pw'), user('bob', 'b-pw'),
    // storedKey of her password, serverKey of another: the broker cannot sign for her.
    { ...mallory, serverKey: user('x', 'other').serverKey }],
  acls: [
    { principal: 'alice', resourceType: 'topic', name: 'orders',
      operations: ['create', 'write', 'read', 'delete'] },
    { principal: 'alice', resourceType: 'group', name: 'g1', operations: ['read'] },
    { principal: 'alice', resourceType: 'topic', name: 'secret', operations: ['create'] },
    { principal: 'bob', resourceType: 'topic', name: 'orders', operations: ['read'] },
  ],
};
writeFileSync(AUTH_FILE, formatAuthFile(BASE), { mode: 0o600 });

const storage = await startStorage(`${dir}/region`, 1);
const broker = await startBroker(`${dir}/data`, [storage],
  ['--auth-file', AUTH_FILE, '--reservation-timeout-ms', '3000']);
const client = new Client();
t.teardown(async () => {
  client.transport.close();
  broker.child.kill('SIGKILL');
  storage.child.kill('SIGKILL');
  remove();
});

async function failure(promise: Promise<unknown>): Promise<PmqError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PmqError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

interface Session { ep: Endpoint; welcome: Message<'welcome'>;
  /** This session's own endpoint to the storage node, bound to it with its ticket. */
  storage: Endpoint;
  call<K extends RequestKind>(kind: K, body: Body<K>): Promise<Message> }

async function endpoint(): Promise<Session['call'] & { ep: Endpoint }> {
  const ep = await client.transport.connect(broker.host, broker.port);
  const call = (<K extends RequestKind>(kind: K, body: Body<K>) =>
    client.channel.request(ep, kind, body)) as Session['call'] & { ep: Endpoint };
  call.ep = ep;
  return call;
}

/** A new endpoint, authenticated as `name`, that said hello: a session. */
async function session(name: string, password: string): Promise<Session> {
  const call = await endpoint();
  await new ScramClient({ user: name, password }).authenticate(client.channel, call.ep, 10_000);
  const welcome = await call('hello', { clientId: name, role: 'admin' }) as Message<'welcome'>;
  const storageEp = await client.transport.connect(storage.host, storage.port);
  await client.channel.request(storageEp, 'sessionBind', { ticket: welcome.ticket });
  return { ep: call.ep, welcome, call, storage: storageEp };
}

t.test('nothing before authentication; bad users and passwords look the same', async (t) => {
  const call = await endpoint();
  for (const [kind, body] of [['hello', { clientId: 'x', role: 'admin' }], ['topicList', {}],
    ['producerInit', {}]] as const) {
    const error = await failure(call(kind, body as Body<typeof kind>));
    t.equal(error.code, 'PMQ_ERR_AUTH', `${kind} before authentication`);
    t.match(error.message, /^authenticate first: /);
  }
  const wrong = await failure(new ScramClient({ user: 'alice', password: 'nope' })
    .authenticate(client.channel, call.ep, 10_000));
  const unknown = await failure(new ScramClient({ user: 'nobody', password: 'nope' })
    .authenticate(client.channel, call.ep, 10_000));
  t.equal(wrong.code, 'PMQ_ERR_AUTH');
  t.equal(unknown.code, 'PMQ_ERR_AUTH');
  t.equal(wrong.message, unknown.message, 'no user enumeration');
  t.equal((await failure(call('topicList', {}))).code, 'PMQ_ERR_AUTH', 'still refused');
});

t.test('the client refuses a broker that cannot sign for the user', async (t) => {
  const call = await endpoint();
  const error = await failure(new ScramClient({ user: 'mallory', password: 'm-pw' })
    .authenticate(client.channel, call.ep, 10_000));
  t.equal(error.code, 'PMQ_ERR_AUTH');
  t.match(error.message, /signature does not match/);
});

interface Written { lease: Message<'leased'>; batch: Uint8Array; records: number }

/** Leases exactly one batch of `n` records on `s`'s session and writes it there. */
async function leaseAndWrite(s: Session, n: number, producerId = -1, sequence = -1):
  Promise<Written> {
  const batch = encodeRecordBatch(Array.from({ length: n }, (_, i) =>
    ({ value: new TextEncoder().encode(`v${i}`) })), producerId < 0 ? {}
    : { producerId, producerEpoch: 0, baseSequence: sequence });
  const lease = await s.call('lease', { topic: 'orders', partition: 0, bytes: batch.byteLength,
    bytesMin: batch.byteLength, releaseEpoch: 0, releaseId: -1 }) as Message<'leased'>;
  await client.transport.writeValidated(s.storage, { id: lease.grantId,
    epoch: lease.grantEpoch, key: lease.grantKey }, lease.address, batch, 0, batch.byteLength);
  return { lease, batch, records: n };
}

const appendOf = (w: Written, producerId = -1, sequence = -1) => ({ topic: 'orders',
  partition: 0, epoch: w.lease.epoch, leaseId: w.lease.leaseId, position: w.lease.position,
  bytes: w.batch.byteLength, records: w.records, producerId, sequence });

t.test('allowed produce and consume; each denied operation names who, what, which',
  async (t) => {
    const alice = await session('alice', 'a-pw');
    t.ok(alice.welcome.ticket.byteLength > 0 && alice.welcome.ticketExpiresInMs > 0, 'a ticket');
    t.equal((await alice.call('topicCreate',
        { topic: 'orders', partitions: 1, configs: [] })).kind, 'topicCreated');
    t.equal((await alice.call('topicCreate',
        { topic: 'secret', partitions: 1, configs: [] })).kind, 'topicCreated');
    const written = await leaseAndWrite(alice, 3);
    t.equal((await alice.call('append', appendOf(written))).kind, 'acked');
    const view = await alice.call('fetchView', { topic: 'orders', partition: 0, offset: 0,
      waitMs: 0 }) as Message<'view'>;
    t.equal(view.highWatermark, 3, 'alice reads what she wrote');
    t.equal((await alice.call('offsetCommit', { group: 'g1', topic: 'orders', partition: 0,
      offset: 3 })).kind, 'done');

    const bob = await session('bob', 'b-pw');
    const denied: [string, Promise<Message>][] = [
      ['create topic other', bob.call('topicCreate',
          { topic: 'other', partitions: 1, configs: [] })],
      ['delete topic orders', bob.call('topicDelete', { topic: 'orders' })],
      ['write topic orders', bob.call('lease', { topic: 'orders', partition: 0, bytes: 100,
        bytesMin: 100, releaseEpoch: 0, releaseId: -1 })],
      ['write topic orders', bob.call('append', appendOf(written))],
      ['write topic orders', bob.call('leaseRelease', { topic: 'orders', partition: 0,
        epoch: written.lease.epoch, leaseId: written.lease.leaseId })],
      ['read group g1', bob.call('offsetCommit', { group: 'g1', topic: 'orders', partition: 0,
        offset: 0 })],
      ['describe group g1', bob.call('offsetFetch', { group: 'g1', topic: 'orders',
        partition: 0 })],
      ['read group g2', alice.call('offsetCommit', { group: 'g2', topic: 'orders',
        partition: 0, offset: 1 })],
      ['describe topic hidden', alice.call('topicDescribe', { topic: 'hidden' })],
    ];
    for (const [what, promise] of denied) {
      const error = await failure(promise);
      t.equal(error.code, 'PMQ_ERR_DENIED', what);
      const [op, type, name] = what.split(' ');
      t.match(error.message, new RegExp(`^user (bob|alice) may not ${op} ${type} ${name}: ` +
        'grant it with `pmq acl add'), what);
    }
    const list = await bob.call('topicList', {}) as Message<'topics'>;
    t.same(list.topics.map((x) => x.topic), ['orders'], 'bob lists what he may describe');
    t.equal((await bob.call('fetchView', { topic: 'orders', partition: 0, offset: 0,
      waitMs: 0 })).kind, 'view', 'bob may read');
  });

t.test('an append to another session\'s lease is refused; the partition reads clean',
  async (t) => {
    const owner = await session('alice', 'a-pw');
    const other = await session('alice', 'a-pw');
    const written = await leaseAndWrite(owner, 2);
    const error = await failure(other.call('append', appendOf(written)));
    t.equal(error.code, 'PMQ_ERR_DENIED');
    t.match(error.message, new RegExp(`lease ${written.lease.leaseId} of orders/0 ` +
      'belongs to another session'));
    t.notMatch(error.message, /alice/, 'the other principal is not named');
    t.equal((await other.call('leaseRelease', { topic: 'orders', partition: 0,
      epoch: written.lease.epoch, leaseId: written.lease.leaseId })).kind, 'done',
    'another session\'s release is a no-op');
    const acked = await owner.call('append', appendOf(written)) as Message<'acked'>;
    t.equal(acked.kind, 'acked', 'the owner\'s lease still stands');
    await checkReadsClean(t, owner, acked.baseOffset + 2);
  });

t.test('an idempotent retry from a new session is stored once', async (t) => {
  const first = await session('alice', 'a-pw');
  const { producerId } = await first.call('producerInit', {}) as Message<'producerId'>;
  const original = await leaseAndWrite(first, 2, producerId, 0);
  const appending = first.call('append', appendOf(original, producerId, 0));
  // The producer lost its connection before the ack and sends the batch again elsewhere.
  const second = await session('alice', 'a-pw');
  const copy = await leaseAndWrite(second, 2, producerId, 0);
  const retried = await second.call('append', appendOf(copy, producerId, 0)) as
    Message<'duplicate'>;
  const acked = await appending as Message<'acked'>;
  t.same([retried.kind, retried.baseOffset], ['duplicate', acked.baseOffset],
    'the retry answers the original\'s offset');
  t.equal((await failure(second.call('append', appendOf(original, producerId, 0)))).code,
    'PMQ_ERR_DENIED', 'the new session may not append to the old one\'s lease');
  // The copy's lease was closed (its grant revoked first, then its rest given back to the
  // segment): the copy never becomes visible, and no offset is spent on it.
  await checkReadsClean(t, second, acked.baseOffset + 2);
});

async function checkReadsClean(t: Test, s: Session, highWatermark: number): Promise<void> {
  const view = await s.call('fetchView', { topic: 'orders', partition: 0,
    offset: highWatermark - 1, waitMs: 5000 }) as Message<'view'>;
  t.equal(view.highWatermark, highWatermark);
  const segment = view.segment[0]!;
  const bytes = new Uint8Array(segment.position);
  await client.transport.readValidated(s.storage, { id: segment.grantId,
    epoch: segment.grantEpoch, key: segment.grantKey }, segment.address, bytes, 0,
  bytes.byteLength);
  let offset = 0;
  for (let position = 0; position < bytes.byteLength;) {
    const batch = decodeRecordBatch(bytes, position);
    t.equal(batch.baseOffset, offset, 'dense offsets, every CRC good');
    offset += batch.records.length;
    position += batch.batchLength + 12;
  }
  t.equal(offset, highWatermark);
}

t.test('sessionBind: forged, expired and other-epoch tickets are refused', async (t) => {
  const alice = await session('alice', 'a-pw');
  const ep = await client.transport.connect(storage.host, storage.port);
  const bind = (ticket: Uint8Array) => client.channel.request(ep, 'sessionBind', { ticket });
  const now = Date.now();
  const base: Ticket = { epoch: alice.welcome.brokerEpoch, sessionId: randomSessionId(),
    issuedAtMs: now, expiresAtMs: now + 60_000, principal: 'alice', authenticated: true,
    directAllowed: true };
  const key = CLUSTER_KEY; // the key file the nodes are started with
  const forged = issueTicket(ClusterKey.from(ClusterKey.generate()), base);
  t.equal((await failure(bind(forged))).code, 'PMQ_ERR_TICKET_INVALID', 'another key');
  const flipped = new Uint8Array(alice.welcome.ticket);
  flipped[20] = flipped[20]! ^ 1;
  t.equal((await failure(bind(flipped))).code, 'PMQ_ERR_TICKET_INVALID', 'a changed byte');
  const expired = issueTicket(key, { ...base, issuedAtMs: now - 7_200_000,
    expiresAtMs: now - 3_600_000 });
  t.equal((await failure(bind(expired))).code, 'PMQ_ERR_TICKET_EXPIRED');
  const older = issueTicket(key, { ...base, epoch: base.epoch - 1 });
  t.equal((await failure(bind(older))).code, 'PMQ_ERR_TICKET_STALE', 'an older epoch');
  t.equal((await failure(bind(issueTicket(key, { ...base, epoch: base.epoch + 1 })))).code,
    'PMQ_ERR_TICKET_STALE', 'a newer epoch');
  t.equal((await bind(alice.welcome.ticket)).kind, 'done', 'the broker\'s ticket binds');
  const refreshed = await alice.call('ticketRefresh', {}) as Message<'ticket'>;
  t.equal((await bind(refreshed.ticket)).kind, 'done', 'so does a refreshed one');
});

t.test('the auth file is reloaded without a restart; a bad one keeps the old', async (t) => {
  const bob = await session('bob', 'b-pw');
  t.equal((await failure(bob.call('topicDelete', { topic: 'orders' }))).code, 'PMQ_ERR_DENIED');
  writeFileSync(AUTH_FILE, '{ "version": 1, "users": [');
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.equal((await bob.call('fetchView', { topic: 'orders', partition: 0, offset: 0,
    waitMs: 0 })).kind, 'view', 'a broken file changes nothing');
  writeFileSync(AUTH_FILE, formatAuthFile({ ...BASE, acls: [...BASE.acls,
    { principal: 'bob', resourceType: 'topic', name: '*', operations: ['delete'] }] }));
  let reply: Message | PmqError | undefined;
  for (let waited = 0; waited < 5000; waited += 250) {
    reply = await bob.call('topicDelete', { topic: 'orders' }).catch((error: PmqError) => error);
    if (!(reply instanceof PmqError)) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  t.equal((reply as Message).kind, 'done', 'bob may delete once the file says so');
  writeFileSync(AUTH_FILE, formatAuthFile({ ...BASE,
    users: BASE.users.filter((u) => u.name !== 'bob') }));
  let error: PmqError | undefined;
  for (let waited = 0; waited < 5000 && error === undefined; waited += 250) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    error = await bob.call('topicList', {}).then(() => undefined, (e: PmqError) => e);
  }
  t.equal(error?.code, 'PMQ_ERR_AUTH', 'a deleted user\'s session ends');
});

t.test('directKey needs a bound session whose ticket allows direct mode', async (t) => {
  // A fresh node of its own (epoch 0, --direct), so its epoch is known without a broker.
  const direct = await startStorage(`${dir}/region-direct`, 2, 0, ['--direct']);
  t.teardown(() => { direct.child.kill('SIGKILL'); });
  const ep = await client.transport.connect(direct.host, direct.port);
  const ask = () => client.channel.request(ep, 'directKey', { grantId: 77, grantKey: 1,
    grantEpoch: 0 });
  const unbound = await failure(ask());
  t.equal(unbound.code, 'PMQ_ERR_DENIED');
  t.match(unbound.message, /bound to no session/);
  const now = Date.now();
  const ticket = (directAllowed: boolean) => issueTicket(CLUSTER_KEY, { epoch: 0,
    sessionId: randomSessionId(), issuedAtMs: now, expiresAtMs: now + 60_000, principal: 'x',
    authenticated: false, directAllowed });
  await client.channel.request(ep, 'sessionBind', { ticket: ticket(false) });
  const notAllowed = await failure(ask());
  t.equal(notAllowed.code, 'PMQ_ERR_DENIED');
  t.match(notAllowed.message, /does not allow direct mode/);
  await client.channel.request(ep, 'sessionBind', { ticket: ticket(true) });
  t.equal((await failure(ask())).code, 'PMQ_ERR_GRANT_UNKNOWN', 'past the session check');
});
