import t from 'tap';

import { formatBytes, parseHostPort, parseSizeBytes } from '../../common/units.js';

t.test('sizes', async (t) => {
  t.equal(parseSizeBytes('4096'), 4096);
  t.equal(parseSizeBytes('64MiB'), 64 * 1024 * 1024);
  t.equal(parseSizeBytes('1g'), 1024 ** 3);
  t.equal(parseSizeBytes('2GB'), 2e9);
  for (const bad of ['', 'x', '1.5', '-1', '0', '12 parsecs']) {
    t.throws(() => parseSizeBytes(bad), { code: 'PMQ_ERR_ARGUMENT' }, bad);
  }
  t.equal(formatBytes(64 * 1024 * 1024), '64 MiB');
  t.equal(formatBytes(1000), '1000 B');
});

t.test('addresses', async (t) => {
  t.same(parseHostPort('127.0.0.1:7000'), { host: '127.0.0.1', port: 7000 });
  t.same(parseHostPort('7000'), { host: '127.0.0.1', port: 7000 });
  t.same(parseHostPort(':7000'), { host: '0.0.0.0', port: 7000 });
  t.same(parseHostPort('[::1]:9'), { host: '::1', port: 9 });
  t.same(parseHostPort('localhost:0'), { host: 'localhost', port: 0 });
  for (const bad of ['host', 'a:b', '1:99999']) {
    t.throws(() => parseHostPort(bad), { code: 'PMQ_ERR_ARGUMENT' }, bad);
  }
});
