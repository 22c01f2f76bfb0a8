// The control channel's pooled pending requests (rpc/pending-requests.ts, issue 11): a record is
// reused only once its request is settled AND the transport is done with its send, so a late
// `sendFailed` of an old send never fails the request that reuses the record; persist frame
// buffers go back to their pool only when sent.
import t from 'tap';

import { PersistFramePool } from '../../common/wire/persist-frame.js';
import type { Message } from '../../common/wire/messages.js';
import type { Endpoint } from '../../native/transport.js';
import {
  PendingRequests, type PendingRequest, type ReplyCallback,
} from '../../rpc/pending-requests.js';

const ep = 1 as Endpoint;

function recorder(): ReplyCallback & { replies: Message[]; errors: Error[] } {
  const replies: Message[] = [];
  const errors: Error[] = [];
  return { replies, errors, onReply: (reply) => replies.push(reply),
    onError: (error) => errors.push(error) };
}

function harness(): { pending: PendingRequests; frames: PersistFramePool } {
  const frames = new PersistFramePool();
  const pending = new PendingRequests(frames, (request, error) => {
    pending.settle(request)?.onError(error instanceof Error ? error : new Error(String(error)));
  });
  return { pending, frames };
}

const reply = { kind: 'done', id: 1 } as unknown as Message;

t.test('a record settled while its send is in flight is not reused until sent', async (t) => {
  const { pending } = harness();
  const first = recorder();
  const a = pending.add(1, ep, 'hello', first, 1000);
  pending.settle(a)!.onReply(reply);  // the reply came before UCX reported the send done
  const b = pending.add(2, ep, 'hello', recorder(), 1000);
  t.not(b, a, 'still sending: a new record for the next request');
  a.sent();
  const c = pending.add(3, ep, 'hello', recorder(), 1000);
  t.equal(c, a, 'settled and sent: reused');
  t.equal(pending.get(1), undefined, 'the old id is gone');
});

t.test('a reused record waits for its own send and reply; its callbacks are made once',
  async (t) => {
    const { pending } = harness();
    const a = pending.add(1, ep, 'hello', recorder(), 1000);
    const oldFailed = a.sendFailed;
    a.sent();
    pending.settle(a)!.onReply(reply);
    const second = recorder();
    const b = pending.add(2, ep, 'hello', second, 1000);
    t.equal(b, a, 'reused');
    // The transport calls exactly one of sent/sendFailed per send: the old send is over, so
    // only the new send's outcome may settle request 2.
    b.sent();
    t.same(second.errors, [], 'nothing failed request 2');
    t.equal(pending.get(2), b, 'request 2 still waits for its reply');
    t.equal(oldFailed, b.sendFailed, 'callbacks are made once per record');
  });

t.test('a send that fails settles its request once and frees the record', async (t) => {
  const { pending } = harness();
  const waiting = recorder();
  const a = pending.add(7, ep, 'hello', waiting, 1000);
  a.sendFailed(new Error('endpoint closed'));
  t.equal(waiting.errors.length, 1, 'failed once');
  t.equal(pending.get(7), undefined);
  t.equal(pending.settle(a), null, 'settling again is nothing');
  t.equal(pending.add(8, ep, 'hello', recorder(), 1000), a, 'the record is free again');
});

t.test('persist frame buffers return to the pool only when sent', async (t) => {
  const { pending, frames } = harness();
  const frame = frames.acquire(2);
  const a: PendingRequest = pending.add(1, ep, 'persist', recorder(), 1000);
  a.frame = frame;
  pending.settle(a)!.onReply(reply);
  t.not(frames.acquire(2), frame, 'not back while UCX may read it');
  a.sent();
  t.equal(frames.acquire(2), frame, 'back once sent');
  const failing = pending.add(2, ep, 'persist', recorder(), 1000);
  const kept = frames.acquire(2);
  failing.frame = kept;
  failing.sendFailed(new Error('gone'));
  t.not(frames.acquire(2), kept, 'a failed send drops its buffer (UCX may still read it)');
});

t.test('select finds overdue requests without touching the others', async (t) => {
  const { pending } = harness();
  pending.add(1, ep, 'hello', recorder(), 0);
  pending.add(2, ep, 'hello', recorder(), 60_000);
  const overdue = pending.select((request, now) => request.deadline <= now);
  t.same(overdue.map((request) => request.id), [1]);
  t.same(pending.select(() => false), [], 'none: an empty array');
});
