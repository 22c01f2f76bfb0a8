// One broker per data directory (issue 10): a second `pmq broker` on a directory in use is
// refused with PMQ_ERR_DATA_DIR_LOCKED; the lock of a SIGKILLed broker is taken over; a copy of
// a live broker's directory is a directory of its own.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync } from 'node:fs';

import t from 'tap';

import { lockDataDir } from '../../broker-node/data-dir-lock.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { startBroker, startStorage, stopProc as stop, tempDir } from
  '../helpers/broker-cluster.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];

const { dir, remove } = tempDir('pmq-dir-lock-');
const storage = await startStorage(`${dir}/region`, 1);
t.teardown(async () => {
  await stop(storage);
  remove();
});

t.test('a second broker on a directory in use is refused; a dead one\'s lock is taken over',
  async (t) => {
    const first = await startBroker(`${dir}/data`, [storage]);
    const second = spawn(process.execPath, [...PMQ, 'broker', '--listen', '127.0.0.1:0',
      '--storage', `${storage.host}:${storage.port}`, '--data-dir', `${dir}/data`,
      '--transports', 'tcp', '--cluster-key-file', testKeyFile(dir), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
    let stderr = '';
    second.stderr.on('data', (chunk: Buffer) => { stderr += String(chunk); });
    const [code] = await once(second, 'exit');
    t.equal(code, 1, 'the second broker does not start');
    t.match(stderr, /PMQ_ERR_DATA_DIR_LOCKED/);
    t.match(stderr, new RegExp(`in use by the broker process ${first.child.pid}`));
    t.throws(() => lockDataDir(`${dir}/data`), { code: 'PMQ_ERR_DATA_DIR_LOCKED' },
      'nor does anything else take it');

    cpSync(`${dir}/data`, `${dir}/copy`, { recursive: true });
    const copy = lockDataDir(`${dir}/copy`);
    t.pass('a copy of the directory (lock file and all) is a directory of its own');
    copy.release();

    await stop(first);
    const after = await startBroker(`${dir}/data`, [storage]);
    t.pass('the lock of a SIGKILLed broker is taken over');
    await stop(after);
  });
