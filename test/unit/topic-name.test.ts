// One topic-name rule for the whole cluster (issue 13, bugs 3 and 4): Kafka's 1..249 of
// [a-zA-Z0-9._-], not "." or "..". The client's check, the broker's strict decoder and the
// storage node's segment-table check (common/layout.ts) all answer with the same function; a
// request naming an impossible topic is answered with PMQ_ERR_ARGUMENT, not dropped.
import t from 'tap';

import { topicProblem } from '../../common/layout.js';
import { topicNameMessage, topicNameProblem, TOPIC_NAME_RULE } from
  '../../common/topic-name.js';
import { decodeMessage, encodeMessage, ProtocolError } from '../../common/wire/codec.js';
import type { Body } from '../../common/wire/messages.js';

const valid = ['a', 'orders', 'a.b_c-D9', '...', '.a', 'a..', 'x'.repeat(249)];
const invalid = ['', '.', '..', 'bad/name', 'has space', 'ünïcode', 'x'.repeat(250), 'a\nb',
  'tab\t'];

t.test('the rule', async (t) => {
  for (const name of valid) t.equal(topicNameProblem(name), null, `${JSON.stringify(name)} ok`);
  for (const name of invalid) {
    t.type(topicNameProblem(name), 'string', `${JSON.stringify(name)} refused`);
  }
  t.match(topicNameProblem('.'), /may not be "\."/);
  t.match(topicNameProblem('x'.repeat(250)), /250 characters is longer than 249/);
  t.type(topicNameProblem(7), 'string', 'not a string');
  t.match(topicNameMessage('.', topicNameProblem('.')!), TOPIC_NAME_RULE, 'says the rule');
});

t.test('the storage node checks the same rule', async (t) => {
  for (const name of [...valid, ...invalid]) {
    t.equal(topicProblem(name), topicNameProblem(name), JSON.stringify(name));
  }
});

t.test('the decoder answers an impossible name with PMQ_ERR_ARGUMENT', async (t) => {
  for (const name of invalid) {
    const bytes = encodeMessage('topicCreate', 5, { topic: name, partitions: 1, configs: [] } as
      Body<'topicCreate'>);
    try {
      decodeMessage(bytes);
      t.fail(`${JSON.stringify(name)} decoded`);
    } catch (error) {
      t.ok(error instanceof ProtocolError, 'a ProtocolError (the channel answers it)');
      t.equal((error as ProtocolError).code, 'PMQ_ERR_ARGUMENT', JSON.stringify(name));
      t.same((error as ProtocolError).replyTo, { id: 5, kind: 'topicCreate' }, 'answerable');
    }
  }
  // Other malformed fields stay protocol errors.
  const bytes = encodeMessage('topicCreate', 6, { topic: 'ok', partitions: -1, configs: [] } as
    Body<'topicCreate'>);
  t.throws(() => decodeMessage(bytes), { code: 'PMQ_ERR_PROTOCOL' });
});
