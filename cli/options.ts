/** Options shared by several subcommands. */
import { type Command, InvalidArgumentError, Option } from 'commander';

import { PmqError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { LOG_LEVELS } from '../common/log.js';
import { metricsListenOption } from './metrics-listen.js';

export const DEFAULT_REGION_PATH = '/dev/shm/pmq/storage-0.region';
export const DEFAULT_REGION_SIZE_BYTES = 1024 ** 3;

/**
 * --busy-poll (native/transport.ts busyPoll) for every command that opens a transport; `who`
 * says which processes poll (`pmq dev`, `pmq bench`: every one they start).
 */
export function busyPollOption(who = 'this process'): Option {
  return new Option('--busy-poll', 'progress UCX on every event-loop turn instead of sleeping ' +
    'after an adaptive spin of at most PMQ_SPIN_US µs: the lowest latency, for a busy core ' +
    `(${who})`).default(false);
}

export function addStorageOptions(command: Command, defaultListen: string,
  busyPollWho?: string): Command {
  return command
    .option('--path <file>', 'region file (DAX file, /dev/shm file or ordinary file)',
      DEFAULT_REGION_PATH)
    .option('--size <bytes>', 'region size when it is created (default 1GiB, at most 64TiB; ' +
      'an existing region keeps its size)')
    .option('--sparse', 'create the region file sparse instead of allocating it (tests, thin ' +
      'disks): refused unless its file system has the size free', false)
    .option('--listen <host:port>', 'address to listen on (port 0: pick a free one)',
      defaultListen)
    .addOption(new Option('--transports <list>',
      'UCX transports, UCX_TLS syntax (e.g. tcp, sm,tcp); default: UCX picks (sm + tcp)'))
    .addOption(new Option('--net-devices <list>', 'UCX net devices, UCX_NET_DEVICES syntax'))
    .addOption(busyPollOption(busyPollWho))
    .option('--direct', 'offer direct mode: consumers on RDMA lanes may read segments ' +
      'one-sided with keys (trusted clients only: a key can also write)', false)
    .option('--segment-size <bytes>', 'largest segment when a blank region is formatted ' +
      '(default 64MiB; power of two, 64KiB..2GiB; a formatted region keeps its own)')
    .option('--first-segment-size <bytes>', 'smallest segment (a partition\'s first; the ' +
      'next ones double up to --segment-size) when a blank region is formatted (default ' +
      '256KiB, or --segment-size when smaller)')
    .option('--node-id <n>', 'storage node id when a blank region is formatted (default 0; ' +
      'a formatted region keeps its own)', integerArgument('--node-id', 0, LIMITS.nodeIdMax))
    .addOption(clusterKeyFileOption())
    .addOption(metricsListenOption('--metrics-listen', 'the storage node'));
}

/** --cluster-key-file (env PMQ_CLUSTER_KEY_FILE): required by `pmq storage` and `pmq broker`. */
export function clusterKeyFileOption(): Option {
  return new Option('--cluster-key-file <file>', 'the cluster key shared by storage nodes and ' +
    'brokers (make one with `pmq keygen --out FILE`)').env('PMQ_CLUSTER_KEY_FILE');
}

export interface StorageCliOptions {
  path: string;
  metricsListen?: string;
  size?: string;
  sparse: boolean;
  listen: string;
  transports?: string;
  netDevices?: string;
  busyPoll: boolean;
  direct: boolean;
  segmentSize?: string;
  firstSegmentSize?: string;
  nodeId?: number;
  clusterKeyFile?: string;
  logLevel: string;
}

export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info');
}

export function integerArgument(name: string, min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`);
    }
    return value;
  };
}

/** `-t, --topic`: the topic as an option too (rpk's spelling), for produce and consume. */
export interface TopicOption { topic?: string }

export function topicOption(description: string): Option {
  return new Option('-t, --topic <topic>', `${description} (instead of the argument)`);
}

/** The topic given as the argument or by -t; exactly one of them. */
export function topicOf(argument: string | undefined, opts: TopicOption): string {
  if (argument !== undefined && opts.topic !== undefined && argument !== opts.topic) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `two topics given: ${argument} and -t ${opts.topic}`);
  }
  const topic = argument ?? opts.topic;
  if (topic === undefined) {
    throw new PmqError('PMQ_ERR_ARGUMENT', 'name the topic: pmq … TOPIC, or -t TOPIC');
  }
  return topic;
}
