// Several transports in one process (docs/native-transport.md, "Handles: several transports per
// process"): a storage side (listening, exposed memory, grants) and a client side in the same
// process exchange messages both ways and validated writes and reads; closing either leaves the
// other working; two listeners serve their own peers only. Events never cross transports.
import '../helpers/ucx-env.js';  // first: before the addon loads
import t, { type Test } from 'tap';

import type { PmqError } from '../../common/errors.js';
import { Transport, type Endpoint, type TransportOptions } from '../../native/transport.js';
import { fillPattern, pattern, sha256 } from '../helpers/pattern.js';
import { TRANSPORTS, connectRetrying, testOptions } from '../helpers/transport-config.js';

const MEMORY_BYTES = 4 << 20;
const SESSION = 5;
const WRITE = { id: 1, epoch: 1, key: 77 };
const READ = { id: 2, epoch: 1, key: 99 };

interface Received { ep: Endpoint; header: string; payload: Uint8Array }
interface Closed { ep: Endpoint; code: string }

/** Everything one transport reports, in order, with waits for the next of each kind. */
class Inbox {
  readonly messages: Received[] = [];
  readonly accepted: Endpoint[] = [];
  readonly closed: Closed[] = [];
  readonly errors: PmqError[] = [];
  private wake: (() => void) | undefined;

  constructor(readonly transport: Transport, onMessage?: (got: Received) => void) {
    transport.setMessageHandler({
      deliver: (ep, header, payload) => {
        const got = { ep, header: Buffer.from(header).toString(), payload };
        this.messages.push(got);
        onMessage?.(got);
        this.notify();
      },
    });
    transport.on('accepted', (ep) => { this.accepted.push(ep); this.notify(); });
    transport.on('closed', (ep, code) => { this.closed.push({ ep, code }); this.notify(); });
    transport.on('error', (_ep, error) => { this.errors.push(error); this.notify(); });
  }

  async next<T>(list: T[]): Promise<T> {
    while (list.length === 0) await new Promise<void>((resolve) => { this.wake = resolve; });
    return list.shift()!;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

function open(t: Test, tls: string, extra: TransportOptions = {}): Transport {
  const transport = Transport.open(testOptions(tls, extra));
  t.teardown(() => transport.close());  // a second close() is a no-op
  return transport;
}

/** A storage side as a storage node sets one up: memory, a write and a read grant. */
function storageSide(t: Test, tls: string): { storage: Transport; memory: Uint8Array;
  inbox: Inbox; address: { host: string; port: number } } {
  const storage = open(t, tls);
  const memory = fillPattern(new Uint8Array(MEMORY_BYTES), 3);
  storage.attachMemory(memory);
  storage.createGrant({ ...WRITE, address: 0, length: 2 << 20, direction: 'write',
    session: SESSION });
  storage.createGrant({ ...READ, address: 0, length: 2 << 20, direction: 'read',
    session: SESSION });
  const inbox = new Inbox(storage);
  return { storage, memory, inbox, address: storage.listen() };
}

async function exchange(t: Test, a: Inbox, epA: Endpoint, b: Inbox, epB: Endpoint,
  size: number, label: string): Promise<void> {
  const there = pattern(size, size + 1);
  await a.transport.send(epA, Buffer.from(`${label} there`), there);
  const got = await b.next(b.messages);
  t.same([got.ep, got.header, sha256(got.payload)], [epB, `${label} there`, sha256(there)],
    `${label}: ${size} B one way`);
  const back = pattern(size, size + 2);
  await b.transport.send(epB, Buffer.from(`${label} back`), back);
  const answer = await a.next(a.messages);
  t.same([answer.ep, answer.header, sha256(answer.payload)], [epA, `${label} back`,
    sha256(back)], `${label}: ${size} B the other way`);
}

async function validatedAccess(t: Test, client: Transport, ep: Endpoint,
  memory: Uint8Array): Promise<void> {
  const small = pattern(4096, 11);
  const big = pattern(1 << 20, 12);
  await client.writeValidated(ep, WRITE, 8192, small, 0, 4096);
  t.equal(sha256(memory, 8192, 4096), sha256(small), 'an eager validated write landed');
  await client.writeValidated(ep, WRITE, 1 << 20, big, 0, 1 << 20);
  t.equal(sha256(memory, 1 << 20, 1 << 20), sha256(big), 'a rendezvous validated write landed');
  const dst = Buffer.alloc((1 << 20) + 3);
  await client.readValidated(ep, READ, 1 << 20, dst, 3, 1 << 20);
  t.equal(sha256(dst, 3, 1 << 20), sha256(big), 'a validated read brought it back');
  const before = sha256(memory);
  await t.rejects(client.writeValidated(ep, WRITE, (2 << 20) - 100, small, 0, 4096),
    { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' }, 'a write past the grant is refused');
  await t.rejects(client.writeValidated(ep, READ, 0, small, 0, 4096),
    { code: 'PMQ_ERR_GRANT_DIRECTION' }, 'a write through the read grant is refused');
  t.equal(sha256(memory), before, 'refused writes changed no byte');
}

for (const tls of TRANSPORTS) {
  t.test(`${tls}: a storage transport and a client transport in one process`, async (t) => {
    const { storage, memory, inbox: storageIn, address } = storageSide(t, tls);
    const client = open(t, tls);
    const clientIn = new Inbox(client);
    const ep = await connectRetrying(client, address.host, address.port);
    const storageEp = await storageIn.next(storageIn.accepted);
    storage.bindSession(storageEp, SESSION);
    t.same(client.openEndpoints(), [ep], 'the client has its endpoint only');
    t.same(storage.openEndpoints(), [storageEp], 'the storage side has its endpoint only');

    for (const size of [64, 1 << 20]) await exchange(t, clientIn, ep, storageIn, storageEp, size,
      'client/storage');
    await validatedAccess(t, client, ep, memory);
    await storage.revokeGrant(WRITE.id);
    await t.rejects(client.writeValidated(ep, WRITE, 0, pattern(64, 1), 0, 64),
      { code: 'PMQ_ERR_GRANT_REVOKED' }, 'the storage side revoked the grant');
    t.same(clientIn.accepted, [], 'no accepted event reached the client');

    client.close();
    t.same(await storageIn.next(storageIn.closed), { ep: storageEp, code: '' },
      'the storage side saw the client leave (bye)');
    t.same([client.stats().open, storage.stats().open], [false, true], 'only the client closed');
    t.same(storageIn.errors, [], 'no error on the storage side');

    const second = open(t, tls);
    const secondIn = new Inbox(second);
    const ep2 = await connectRetrying(second, address.host, address.port);
    const storageEp2 = await storageIn.next(storageIn.accepted);
    storage.bindSession(storageEp2, SESSION);
    const dst = Buffer.alloc(4096);
    await second.readValidated(ep2, READ, 8192, dst, 0, 4096);
    t.equal(sha256(dst), sha256(memory, 8192, 4096), 'the storage side still serves reads');
    await exchange(t, secondIn, ep2, storageIn, storageEp2, 4096, 'second client');

    storage.close();
    t.same(await secondIn.next(secondIn.closed), { ep: ep2, code: '' },
      'the client saw the storage side leave (bye)');
    const { host, port } = second.listen();
    const third = open(t, tls);
    const thirdIn = new Inbox(third);
    const ep3 = await connectRetrying(third, host, port);
    await exchange(t, thirdIn, ep3, secondIn, await secondIn.next(secondIn.accepted), 64,
      'after the storage side closed');
    t.same(secondIn.errors, [], 'no error on the client');
  });

  t.test(`${tls}: two listeners in one process`, async (t) => {
    const a = open(t, tls);
    const b = open(t, tls);
    const aIn = new Inbox(a);
    const bIn = new Inbox(b, (got) => { if (got.header === 'close a') a.close(); });
    const la = a.listen();
    const lb = b.listen();
    t.not(la.port, lb.port, 'each listener has its own port');
    const client = open(t, tls);
    const clientIn = new Inbox(client);
    const toA = await connectRetrying(client, la.host, la.port);
    const toB = await connectRetrying(client, lb.host, lb.port);
    const atA = await aIn.next(aIn.accepted);
    const atB = await bIn.next(bIn.accepted);
    await exchange(t, clientIn, toA, aIn, atA, 1 << 20, 'listener a');
    await exchange(t, clientIn, toB, bIn, atB, 1 << 20, 'listener b');
    t.same([aIn.messages.length, bIn.messages.length, aIn.accepted.length,
      bIn.accepted.length], [0, 0, 0, 0], 'each listener got its own traffic only');

    const aToB = await connectRetrying(a, lb.host, lb.port);  // a listener connects out too
    const bFromA = await bIn.next(bIn.accepted);
    await exchange(t, aIn, aToB, bIn, bFromA, 4096, 'listener to listener');

    // b closes a from b's own event callback, while b's events are being dispatched.
    await client.send(toB, Buffer.from('close a'), new Uint8Array(0));
    await bIn.next(bIn.messages);
    t.ok(a.closed, 'a closed from b\'s callback');
    const gone = [await clientIn.next(clientIn.closed), await bIn.next(bIn.closed)];
    t.same(gone, [{ ep: toA, code: '' }, { ep: bFromA, code: '' }], 'a\'s peers saw it leave');
    await exchange(t, clientIn, toB, bIn, atB, 4096, 'listener b after a closed');
    t.same([clientIn.errors, bIn.errors], [[], []], 'no errors');
  });
}

t.test('a busy-polling and a sleeping transport in one process', async (t) => {
  const busy = open(t, 'sm,tcp', { busyPoll: true });
  const sleeping = open(t, 'sm,tcp');
  const busyIn = new Inbox(busy);
  const sleepingIn = new Inbox(sleeping);
  const { host, port } = sleeping.listen();
  const ep = await connectRetrying(busy, host, port);
  const accepted = await sleepingIn.next(sleepingIn.accepted);
  for (let i = 0; i < 20; i += 1) {
    await exchange(t, busyIn, ep, sleepingIn, accepted, 64 << (i % 15), `round ${i}`);
  }
  busy.close();
  t.same(await sleepingIn.next(sleepingIn.closed), { ep: accepted, code: '' },
    'the sleeping one saw the busy one leave');
});

t.test('several transports open and close independently', async (t) => {
  const first = Transport.open(testOptions('tcp'));
  const second = Transport.open(testOptions('tcp'));
  t.teardown(() => { first.close(); second.close(); });
  first.attachMemory(new Uint8Array(4096));
  second.attachMemory(new Uint8Array(4096));  // memory, grants and epochs are per transport
  first.createGrant({ id: 1, epoch: 1, address: 0, length: 1, direction: 'read', session: 1,
    key: 1 });
  second.createGrant({ id: 1, epoch: 1, address: 0, length: 1, direction: 'read', session: 1,
    key: 1 });
  first.raiseEpoch(3);
  t.same([first.stats().epoch, second.stats().epoch], [3, 0], 'epochs are per transport');
  first.close();
  t.same([first.stats().open, second.stats().open], [false, true], 'closing one closes one');
  t.throws(() => first.listen(), { code: 'PMQ_ERR_TRANSPORT_CLOSED' });
  t.ok(second.listen().port > 0, 'the other still listens');
  second.raiseEpoch(2);
  t.equal(second.stats().epoch, 2);
});
