/** `pmq broker`: run the broker until SIGINT/SIGTERM (docs/broker.md). */
import type { Command } from 'commander';
import { Option } from 'commander';

import { createLogger } from '../common/log.js';
import { SEQUENCER_LIMITS } from '../common/limits.js';
import { parseHostPort } from '../common/units.js';
import { startBroker, type Broker } from '../broker-node/broker.js';
import { BrokerMetrics } from '../broker-node/metrics.js';
import { metricsListenOption, serveMetrics, type MetricsEndpoint } from './metrics-listen.js';
import { busyPollOption, clusterKeyFileOption, integerArgument, logLevelOption } from
  './options.js';
import { checkListenAddressFree } from './listen-check.js';
import { loadClusterKey } from './storage.js';

/** A fenced broker exits (code 2) within this long, whatever its stop is waiting for. */
const FENCED_EXIT_MS = 2_000;
/** Time for the PMQ_ERR_FENCED answers already sent to leave (loopback: well under 1 ms). */
const FENCED_REPLY_GRACE_MS = 200;

export interface BrokerCliOptions {
  listen: string;
  storage: string;
  dataDir: string;
  transports?: string;
  netDevices?: string;
  busyPoll: boolean;
  reservationTimeoutMs?: number;
  retentionMs?: number;
  retentionBytes?: number;
  retentionCheckMs?: number;
  authFile?: string;
  clusterKeyFile?: string;
  metricsListen?: string;
  logLevel: string;
}

export async function runBroker(opts: BrokerCliOptions, banner: string): Promise<Broker> {
  const log = createLogger({ level: opts.logLevel as 'info' });
  const listen = parseHostPort(opts.listen);
  await checkListenAddressFree(listen.host, listen.port, '--listen');
  const storage = opts.storage.split(',').filter((text) => text.length > 0)
    .map((text) => parseHostPort(text));
  const clusterKey = loadClusterKey(opts.clusterKeyFile, log);
  // The broker logged why at error level and answers every request PMQ_ERR_FENCED by now
  // (broker.ts). It exits without a graceful stop: nothing it could still do helps (its
  // storage requests are refused), and a stop would run more of its code — lease revocations,
  // hole fills, closing its transport with requests in flight — after it lost its epoch. It
  // waits FENCED_REPLY_GRACE_MS so the PMQ_ERR_FENCED answers already given reach their
  // clients, flushes the log, and exits 2 (within FENCED_EXIT_MS even if the flush hangs).
  const onFenced = (why: string): void => {
    process.stderr.write(`pmq: fenced by a newer broker (${why}); exiting with code 2\n`);
    setTimeout(() => process.exit(2), FENCED_EXIT_MS);
    setTimeout(() => log.flush(() => process.exit(2)), FENCED_REPLY_GRACE_MS);
  };
  // The metrics endpoint first: a port it cannot have fails before the storage nodes are asked.
  const metrics = opts.metricsListen === undefined ? undefined : new BrokerMetrics();
  const endpoint = metrics === undefined ? null
    : await serveMetrics(opts.metricsListen!, metrics.metrics, log);
  process.stdout.write(`${banner} recovering from storage node(s) ${opts.storage}: it ` +
    'listens once every one has answered\n');
  const broker = await startBroker({ host: listen.host, port: listen.port, storage,
    dataDir: opts.dataDir, log, clusterKey, transports: opts.transports,
    netDevices: opts.netDevices, busyPoll: opts.busyPoll,
    reservationTimeoutMs: opts.reservationTimeoutMs, onFenced,
    retentionMs: opts.retentionMs, retentionBytes: opts.retentionBytes,
    retentionCheckMs: opts.retentionCheckMs, metrics,
    ...(opts.authFile === undefined ? {} : { authFile: opts.authFile }) })
    .catch(async (error: unknown) => {
      await endpoint?.close();
      throw error;
    });
  process.stdout.write(`${banner} listening on ${broker.address.host}:${broker.address.port} ` +
    `(epoch ${broker.epoch}, ${broker.recovery.topics} topics, ` +
    `${broker.recovery.partitions} partitions, ${broker.recovery.segments} segments)\n`);
  if (endpoint !== null) {
    process.stdout.write(`${banner} metrics at http://${endpoint.host}:${endpoint.port}` +
      '/metrics\n');
  }
  stopBrokerOnSignals(broker, endpoint);
  return broker;
}

function stopBrokerOnSignals(broker: Broker, endpoint: MetricsEndpoint | null): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`pmq: ${signal}, stopping\n`);
    broker.stop().then(() => endpoint?.close()).then(() => { process.exitCode = 0; },
      (error: unknown) => {
        process.stderr.write(`pmq: stop failed: ${String(error)}\n`);
        process.exitCode = 1;
      });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

export function addBrokerOptions(command: Command, defaultListen: string): Command {
  return command
    .option('--listen <host:port>', 'address clients connect to (port 0: a free one)',
      defaultListen)
    .addOption(new Option('--reservation-timeout-ms <ms>', 'close a producer\'s lease ' +
      'after this long without an append and fill its unwritten rest')
      .argParser(integerArgument('--reservation-timeout-ms',
        SEQUENCER_LIMITS.reservationTimeoutMsMin, SEQUENCER_LIMITS.reservationTimeoutMsMax)))
    .addOption(new Option('--retention-ms <ms>', 'default retention.ms of topics: delete a ' +
      'segment once its newest record is older than this; -1: no time limit (default 7 days, ' +
      'Kafka\'s)').argParser(integerArgument('--retention-ms', -1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--retention-bytes <bytes>', 'default retention.bytes of topics, ' +
      'per partition: delete the oldest segments beyond it; -1: no size limit (the default)')
      .argParser(integerArgument('--retention-bytes', -1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--retention-check-ms <ms>', 'how often retention looks at every ' +
      'partition (default 1000; 0: never)')
      .argParser(integerArgument('--retention-check-ms', 0, 3_600_000)))
    .addOption(new Option('--auth-file <file>', 'turn client authentication on: SCRAM users ' +
      'and ACLs from this file (pmq user, pmq acl), reloaded when it changes'))
    .addOption(metricsListenOption('--metrics-listen', 'the broker'));
}

export function registerBrokerCommand(program: Command): void {
  const command = program.command('broker')
    .description('run the broker: topics, sequencing, group offsets, over storage nodes')
    .requiredOption('--storage <host:port,...>', 'storage nodes (all of them: recovery reads ' +
      'every segment table)')
    .requiredOption('--data-dir <dir>', 'the broker\'s directory: its lock (one broker per ' +
      'directory); the cluster metadata lives on the storage nodes')
    .addOption(new Option('--transports <list>', 'UCX transports, UCX_TLS syntax'))
    .addOption(new Option('--net-devices <list>', 'UCX net devices, UCX_NET_DEVICES syntax'))
    .addOption(busyPollOption())
    .addOption(clusterKeyFileOption())
    .addOption(logLevelOption());
  addBrokerOptions(command, '127.0.0.1:9092').action(async (opts: BrokerCliOptions) => {
    await runBroker(opts, 'pmq broker');
  });
}
