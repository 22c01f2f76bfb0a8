// A node restarted on its fixed port right after a SIGKILL listens at once: before listeners
// set SO_REUSEADDR (native/index.ts, UCX_TCP_CM_REUSEADDR), about one restart in three failed
// with "bind ... Address already in use" while the dead broker's connections lingered in
// TIME_WAIT. A second live listener on a port in use is still refused.
import { spawn } from 'node:child_process';

import t from 'tap';

import { connect } from '../../clients/index.js';
import { exitOf } from '../helpers/broker-cluster.js';
import { E2eCluster } from '../helpers/e2e-cluster.js';

const cluster = await E2eCluster.start();
t.teardown(() => cluster.stop());

t.test('a broker SIGKILLed with clients connected restarts on its port at once', async (t) => {
  const port = cluster.broker!.port;
  for (let round = 1; round <= 4; round += 1) {
    const client = await connect({ brokers: [cluster.brokerAddress], transports: 'tcp',
      netDevices: 'lo', logLevel: 'silent' });
    await client.admin().listTopics();
    await cluster.killBroker();
    await client.close();
    await cluster.startBroker();
    t.equal(cluster.broker!.port, port, `restart ${round} listens on ${port}`);
  }
});

t.test('a second listener on a live port is refused', async (t) => {
  const pmq = new URL('../../cli/pmq.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', pmq, 'storage', '--path',
    `${cluster.dir}/second-region`, '--size', '4MiB', '--segment-size', '64KiB', '--listen',
    `127.0.0.1:${cluster.storage!.port}`, '--transports', 'tcp', '--log-level', 'silent',
    '--cluster-key-file', cluster.keyFile],
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
  t.equal(await exitOf(child), 1, 'pmq storage exits');
  t.match(stderr, /address 127\.0\.0\.1:\d+ is already in use/);
});
