// The consume command's small languages (issue 13): output templates (-f '%t %p %o %d %k %h %v')
// and where a partition starts (-o earliest|latest|N|-N|+N|@time).
import t from 'tap';

import { fromArgument } from '../../cli/consume-start.js';
import {
  parseInputFormat, parseTemplate, templatePieces, type Template,
} from '../../cli/record-format.js';

const record = { offset: 7, timestamp: 1763900000000, key: Buffer.from('k'),
  value: Buffer.from('v\tw'), headers: [{ key: 'a', value: Buffer.from('1') },
    { key: 'b', value: null }] };

function print(format: string): string {
  const template = parseTemplate(format);
  if (typeof template === 'string') throw new Error(template);
  return Buffer.concat(templatePieces(template as Template, 'top', 3, record)).toString();
}

t.test('templates', async (t) => {
  t.equal(print('%t %p %o %d %k %h %v\\n'), 'top 3 7 1763900000000 k a=1,b= v\tw\n');
  t.equal(print('%%%v\\\\'), '%v\tw\\', '%% and \\\\');
  t.equal(print('plain'), 'plain', 'no field: the literal');
  t.equal(print('%k'), 'k');
  t.equal(Buffer.concat(templatePieces(parseTemplate('[%k][%h]') as Template, 't', 0,
    { ...record, key: null, headers: [] })).toString(), '[][]', 'null key, no headers');
  for (const bad of ['%x', '%', 'a%']) t.type(parseTemplate(bad), 'string', `refused: ${bad}`);
});

t.test('starts', async (t) => {
  t.equal(fromArgument('earliest'), 'earliest');
  t.equal(fromArgument('start'), 'earliest');
  t.equal(fromArgument('end'), 'latest');
  t.equal(fromArgument('42'), 42);
  t.same(fromArgument('-10'), { fromEnd: 10 });
  t.same(fromArgument('+3'), { fromStart: 3 });
  t.same(fromArgument('@1763900000000'), { timestampMs: 1763900000000 });
  t.same(fromArgument('@2025-11-23T12:13:20Z'), { timestampMs: 1763900000000 });
  for (const bad of ['yesterday', '-', '+x', '@soon', '1.5', '']) {
    t.throws(() => fromArgument(bad), `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('produce -f: a value per line, or key, separator, value (as rpk)', async (t) => {
  t.same(parseInputFormat('%v'), { separator: null });
  t.same(parseInputFormat('%v\\n'), { separator: null }, 'a trailing \\n is the line end');
  t.same(parseInputFormat('%k %v\\n'), { separator: ' ' });
  t.same(parseInputFormat('%k\\t%v'), { separator: '\t' }, 'escapes');
  t.same(parseInputFormat('%k::%v'), { separator: '::' });
  for (const unsupported of ['%k%v', '%v %k', '%k %v %h', 'x%v', '%t %v', '%k %v\\nx']) {
    t.match(parseInputFormat(unsupported), /pmq produce reads '%v'/, unsupported);
  }
  t.match(parseInputFormat('%x'), /unknown %x/);
});
