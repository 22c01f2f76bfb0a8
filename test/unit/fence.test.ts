// The broker's fence (broker-node/fence.ts) and what a client makes of its refusal
// (clients/errors.ts): once tripped, requests in flight and later are answered PMQ_ERR_FENCED,
// listeners hear it once; the client library turns it into a retriable FencedError.
import t from 'tap';

import { Fence } from '../../broker-node/fence.js';
import { FencedError, toClientError } from '../../clients/errors.js';
import { PmqError } from '../../common/errors.js';

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    return `resolved ${String(await promise)}`;
  } catch (error) {
    return error instanceof PmqError ? error.code : String(error);
  }
}

t.test('a trip answers what is in flight and all that follows, once', async (t) => {
  const fence = new Fence(() => 7);
  const heard: string[] = [];
  fence.onTrip((why) => heard.push(why));
  t.equal(await fence.guard(() => 'done'), 'done', 'served while current');
  t.equal(await codeOf(fence.guard(() => { throw new PmqError('PMQ_ERR_ARGUMENT', 'no'); })),
    'PMQ_ERR_ARGUMENT', 'a handler\'s own refusal passes through');
  let finishLater: (value: string) => void = () => undefined;
  const parked = fence.guard(() => new Promise<string>((resolve) => { finishLater = resolve; }));
  t.equal(fence.fenced(), null);
  t.equal(fence.trip('storage node 1 refused epoch 7'), true);
  t.equal(fence.trip('again'), false, 'a second trip does nothing');
  t.same(heard, ['storage node 1 refused epoch 7'], 'listeners hear it once');
  finishLater('done');
  t.equal(await codeOf(parked), 'PMQ_ERR_FENCED', 'in flight: answered fenced, not done');
  t.equal(await codeOf(fence.guard(() => 'done')), 'PMQ_ERR_FENCED', 'later: refused');
  t.throws(() => fence.check(), { code: 'PMQ_ERR_FENCED' });
  t.match(fence.fenced()?.message,
    /epoch 7\) was fenced by a newer broker: reconnect to the current broker/);
  t.equal(fence.why, 'storage node 1 refused epoch 7');
});

t.test('guardNow: at once when the work answers at once, guarded like guard() otherwise',
  async (t) => {
    const fence = new Fence(() => 7);
    t.equal(fence.guardNow(() => 'done'), 'done', 'a value, not a promise');
    t.throws(() => fence.guardNow(() => { throw new PmqError('PMQ_ERR_ARGUMENT', 'no'); }),
      { code: 'PMQ_ERR_ARGUMENT' }, 'a handler\'s own refusal passes through');
    let finishLater: (value: string) => void = () => undefined;
    const parked = fence.guardNow(() => new Promise<string>((resolve) => {
      finishLater = resolve;
    }));
    t.ok(parked instanceof Promise, 'a promise stays one');
    t.throws(() => fence.guardNow(() => { fence.trip('during'); return 'done'; }),
      { code: 'PMQ_ERR_FENCED' }, 'fenced while it ran: refused, not done');
    finishLater('done');
    t.equal(await codeOf(parked as Promise<string>), 'PMQ_ERR_FENCED', 'in flight: fenced');
    t.throws(() => fence.guardNow(() => 'done'), { code: 'PMQ_ERR_FENCED' }, 'later: refused');
  });

t.test('the client maps the broker\'s PMQ_ERR_FENCED to a retriable FencedError', (t) => {
  const error = toClientError(new PmqError('PMQ_ERR_FENCED', 'this broker (epoch 3) was ' +
    'fenced by a newer broker: reconnect to the current broker'), { what: 'offsetCommit' });
  t.ok(error instanceof FencedError);
  t.equal(error.code, 'PMQ_ERR_FENCED');
  t.equal(error.retriable, true);
  t.match(error.message, /reconnect to the current broker/);
  t.end();
});
