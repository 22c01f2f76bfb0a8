// The broker's subscriptions (broker-node/subscriptions.ts), driven by a seeded random stream of
// advances against subscribers whose sends complete late or never (a client that stops
// reading): at most one push in flight per subscription whatever the rate, the latest head sent
// when a send completes, no push of a head already sent, nothing after unsubscribe, session
// end, source close or clear.
import t from 'tap';

import { pino } from 'pino';

import { Subscriptions, type Head, type HeadSource } from '../../broker-node/subscriptions.js';
import type { Body } from '../../common/wire/messages.js';
import type { Endpoint } from '../../native/transport.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const seed = testSeed();
const log = pino({ level: 'silent' });

class Source implements HeadSource {
  highWatermark = 0;
  head(): Head {
    return { chainPosition: 0, position: this.highWatermark * 100,
      offsetLast: this.highWatermark - 1, sealed: false, highWatermark: this.highWatermark };
  }

  headInto(into: Head): boolean {
    Object.assign(into, this.head());
    return true;
  }
}

interface Sent { ep: Endpoint; body: Body<'watermark'>; complete: () => void }

function harness(): { subs: Subscriptions; sent: Sent[] } {
  const sent: Sent[] = [];
  // A copy, as a transport encodes it: the body is the subscription's, refilled per push.
  const subs = new Subscriptions((ep, body, complete) => {
    sent.push({ ep, body: { ...body }, complete });
  }, () => 7, log);
  return { subs, sent };
}

const ep = (n: number): Endpoint => n as Endpoint;
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test(`a client that never reads costs one push per subscription (seed ${seed})`, async (t) => {
  const { subs, sent } = harness();
  const source = new Source();
  subs.add(ep(1), 11, 1, source, source.head());
  subs.add(ep(1), 11, 2, source, source.head());
  const prng = prngFrom(seed);
  for (let i = 0; i < 10_000; i += 1) {
    source.highWatermark += 1 + prng.int(3);
    subs.advanced(source);
  }
  t.equal(sent.length, 2, 'one push in flight per subscription, never completed');
  t.equal(subs.stats().inFlight, 2);
  t.ok(subs.stats().coalesced >= 19_990, 'every other advance folded into the next push');
  t.same(sent.map((s) => s.body.epoch), [7, 7], 'pushes carry the broker epoch');
});

t.test(`the latest head goes out when a send completes (seed ${seed})`, async (t) => {
  const { subs, sent } = harness();
  const source = new Source();
  subs.add(ep(1), 11, 1, source, source.head());
  const prng = prngFrom(seed + 1);
  let completed = 0;
  let inFlightMax = 0;
  for (let i = 0; i < 2_000; i += 1) {
    source.highWatermark += 1;
    subs.advanced(source);
    if (prng.chance(0.3) && completed < sent.length) {
      sent[completed]!.complete();
      completed += 1;
      await flush();
    }
    inFlightMax = Math.max(inFlightMax, sent.length - completed);
  }
  t.equal(inFlightMax, 1, 'never two in flight');
  while (completed < sent.length) {
    sent[completed]!.complete();
    completed += 1;
    await flush();
  }
  t.equal(sent.at(-1)!.body.highWatermark, source.highWatermark, 'the last push is the head');
  const marks = sent.map((s) => s.body.highWatermark);
  t.ok(marks.every((mark, i) => i === 0 || mark > marks[i - 1]!), 'each push a newer head');
  subs.advanced(source);
  await flush();
  t.equal(sent.length, completed, 'an unchanged head is not pushed again');
});

t.test('a head newer than the subscribe reply is pushed at once', async (t) => {
  const { subs, sent } = harness();
  const source = new Source();
  const answered = source.head();
  source.highWatermark = 5; // moved while the reply's read grant was made
  subs.add(ep(1), 11, 1, source, answered);
  t.equal(sent.length, 1);
  t.equal(sent[0]!.body.highWatermark, 5);
  subs.add(ep(2), 12, 1, source, source.head());
  t.equal(sent.length, 1, 'a subscriber told the head already is not pushed');
});

t.test('nothing is pushed after unsubscribe, session end, endpoint close, source close, clear',
  async (t) => {
    const { subs, sent } = harness();
    const source = new Source();
    const other = new Source();
    subs.add(ep(1), 11, 1, source, source.head());
    subs.add(ep(2), 12, 1, source, source.head());
    subs.add(ep(3), 13, 1, source, source.head());
    subs.add(ep(4), 14, 1, other, other.head());
    subs.add(ep(5), 15, 1, source, source.head());
    subs.remove(ep(1), 1);
    subs.endSession(12);
    subs.endEndpoint(ep(3));
    subs.dropSource(other);
    t.equal(subs.stats().live, 1, 'one left');
    source.highWatermark = 1;
    other.highWatermark = 1;
    subs.advanced(source);
    subs.advanced(other);
    t.same(sent.map((s) => s.ep), [ep(5)], 'only the live one is pushed');
    subs.clear();
    source.highWatermark = 2;
    sent[0]!.complete();
    await flush();
    subs.advanced(source);
    t.equal(sent.length, 1, 'nothing after clear');
    subs.add(ep(6), 16, 1, source, null);
    t.equal(subs.stats().live, 0, 'nor any subscription');
  });
