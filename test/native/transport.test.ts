// Boundary contracts of native/transport.ts: argument checks, independent transports in one
// process, no CPU when idle, and a process that has nothing to do exits.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { ArgumentError } from '../../common/errors.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { testOptions } from '../helpers/transport-config.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

t.test('arguments are checked before native code', async (t) => {
  const transport = Transport.open(testOptions('tcp'));
  t.teardown(() => transport.close());
  t.throws(() => transport.listen('127.0.0.1', 70000), ArgumentError);
  t.throws(() => transport.send(7 as Endpoint, new Uint8Array(1), new Uint8Array(1)),
    { code: 'PMQ_ERR_ENDPOINT_CLOSED' });
  t.throws(() => transport.createGrant({ id: 1, epoch: 1, address: 0, length: 1,
    direction: 'write', session: 1, key: 1 }), ArgumentError, 'grants need attached memory');
  transport.attachMemory(new Uint8Array(4096));
  t.throws(() => transport.attachMemory(new Uint8Array(1)), ArgumentError);
  t.throws(() => transport.createGrant({ id: 1, epoch: 1, address: 4000, length: 200,
    direction: 'write', session: 1, key: 1 }), ArgumentError, 'a grant lies inside the memory');
  transport.createGrant({ id: 1, epoch: 1, address: 0, length: 100, direction: 'read', session: 1,
    key: 1 });
  t.throws(() => transport.createGrant({ id: 1, epoch: 1, address: 0, length: 1,
    direction: 'read', session: 1, key: 1 }), ArgumentError, 'grant ids are unique');
  transport.raiseEpoch(2);
  t.throws(() => transport.raiseEpoch(2), ArgumentError, 'epochs only rise');
  t.throws(() => transport.createGrant({ id: 2, epoch: 1, address: 0, length: 1,
    direction: 'read', session: 1, key: 1 }), ArgumentError, 'no grant below the table epoch');
  await transport.revokeGrant(1);
  t.throws(() => transport.revokeGrant(1), ArgumentError, 'revoked once');
  t.throws(() => Transport.open({ peerTimeoutMs: 100, keepaliveMs: 200 }), ArgumentError);
  t.throws(() => Transport.open({ spinUs: 10_001 }), ArgumentError, 'spin at most 10 ms');
  process.env.PMQ_SPIN_US = 'soon';
  t.throws(() => Transport.open(), { name: 'ArgumentError', message: /PMQ_SPIN_US/ },
    'a bad PMQ_SPIN_US is named');
  delete process.env.PMQ_SPIN_US;
  const { port } = transport.listen();
  t.ok(port > 0, `listening on a free port ${port}`);
});

t.test('a bad transport list fails typed and leaves nothing open', async (t) => {
  t.throws(() => Transport.open({ transports: 'nosuchtransport' }),
    { code: 'PMQ_ERR_TRANSPORT' });
  const transport = Transport.open(testOptions('sm,tcp'));
  transport.close();
  transport.close();
  t.throws(() => transport.listen(), { code: 'PMQ_ERR_TRANSPORT_CLOSED' });
});

t.test('an idle listening worker uses no CPU', async (t) => {
  const transport = Transport.open(testOptions('sm,tcp'));
  t.teardown(() => transport.close());
  transport.listen();
  const before = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const used = process.cpuUsage(before);
  const usedMs = (used.user + used.system) / 1000;
  // Sleeping in epoll costs ~0; busy polling would cost ~1000 ms. The margin covers GC and tap.
  t.ok(usedMs < 200, `used ${usedMs.toFixed(1)} ms of CPU in 1 s`);
});

t.test('several idle listening transports in one process use no CPU', async (t) => {
  const transports = [Transport.open(testOptions('sm,tcp')), Transport.open(testOptions('tcp')),
    Transport.open(testOptions('sm,tcp'))];
  t.teardown(() => { for (const transport of transports) transport.close(); });
  for (const transport of transports) transport.listen();
  const before = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const used = process.cpuUsage(before);
  const usedMs = (used.user + used.system) / 1000;
  t.ok(usedMs < 200, `used ${usedMs.toFixed(1)} ms of CPU in 1 s`);
});

t.test('a process with several open but idle transports exits', async (t) => {
  const script = "import { Transport } from './native/transport.ts';" +
    "const o = { transports: 'sm,tcp', netDevices: 'lo' };" +
    'const a = Transport.open(o); const b = Transport.open(o); a.listen(); a.close();' +
    "Transport.open({ transports: 'tcp', netDevices: 'lo' });";
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    script], { cwd: ROOT, timeout: 20_000, encoding: 'utf8' });
  t.equal(result.status, 0, `exited by itself ${result.stderr}`);
});

t.test('a process with an open but idle transport exits', async (t) => {
  const script = "import { Transport } from './native/transport.ts';" +
    "const t = Transport.open({ transports: 'tcp', netDevices: 'lo' });" +
    "const l = t.listen(); t.close(); Transport.open({ transports: 'tcp', netDevices: 'lo' });";
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    script], { cwd: ROOT, timeout: 20_000, encoding: 'utf8' });
  t.equal(result.status, 0, `exited by itself ${result.stderr}`);
});
