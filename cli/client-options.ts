/**
 * What the client subcommands (`topic`, `produce`, `consume`) share: the broker address and
 * transport flags, one pino root logger on stderr (stdout carries only the command's data),
 * and `withClient`, which connects, runs the command and always closes the client.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';

import { PmqError } from '../common/errors.js';
import { createLogger, LOG_LEVELS, type Logger } from '../common/log.js';
import { parseBroker } from '../clients/connection.js';
import { connect, type Client } from '../clients/index.js';
import { DATA_PATHS, type DataPath } from '../clients/storage-reads.js';
import { readPassword } from './auth-file-io.js';
import { busyPollOption, integerArgument } from './options.js';

/** Where `pmq broker` and `pmq dev` listen by default (cli/broker.ts, cli/dev.ts). */
export const DEFAULT_BROKER = '127.0.0.1:9092';

export interface ClientCliOptions {
  broker: string;
  brokers?: string;
  transports?: string;
  netDevices?: string;
  busyPoll: boolean;
  dataPath: DataPath;
  requestTimeoutMs: number;
  logLevel: string;
  user?: string;
  passwordFile?: string;
}

/** One broker or several, comma-separated (the first that answers is used, as bootstrap). */
function brokerArgument(text: string): string {
  try {
    for (const one of text.split(',')) parseBroker(one.trim());
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return text;
}

/** The brokers named by --broker / --brokers (Kafka and rpk spell it with an s). */
export function brokerList(opts: ClientCliOptions): string[] {
  return (opts.brokers ?? opts.broker).split(',').map((one) => one.trim())
    .filter((one) => one.length > 0);
}

/** --broker (env PMQ_BROKER), --transports, --net-devices, --busy-poll, --data-path,
 *  --request-timeout-ms, --log-level. */
export function addClientOptions(command: Command): Command {
  return command
    .addOption(new Option('--broker <host:port>', 'the broker to talk to (several: ' +
      'comma-separated, the first that answers)').env('PMQ_BROKER').default(DEFAULT_BROKER)
      .argParser(brokerArgument))
    .addOption(new Option('--brokers <host:port,...>', 'the same as --broker').hideHelp()
      .argParser(brokerArgument))
    .addOption(new Option('--transports <list>', 'UCX transports, UCX_TLS syntax ' +
      '(e.g. tcp, sm,tcp); default: UCX picks'))
    .addOption(new Option('--net-devices <list>', 'UCX net devices, UCX_NET_DEVICES syntax'))
    .addOption(busyPollOption())
    .addOption(new Option('--data-path <path>', 'how records are read from storage: ' +
      'validated, direct (trusted clients on RDMA only) or auto').choices(DATA_PATHS)
      .default('validated'))
    .addOption(new Option('--request-timeout-ms <ms>', 'timeout of one request to the broker')
      .default(10_000).argParser(integerArgument('--request-timeout-ms', 1, 600_000)))
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)')
      .choices(LOG_LEVELS).default('warn'))
    .addOption(new Option('--user <name>', 'authenticate as this user (SCRAM-SHA-256; the ' +
      'broker runs with --auth-file)').env('PMQ_USER'))
    .addOption(new Option('--password-file <file>', 'the --user\'s password (first line); ' +
      'else env PMQ_PASSWORD, else a prompt'));
}

/** The root logger of a client command: stderr only, so stdout stays data. */
export function clientLogger(opts: ClientCliOptions): Logger {
  return createLogger({ level: opts.logLevel as 'warn', fd: 2 });
}

/**
 * Connects to the broker, runs `body`, and closes the client (producers flush on close). When
 * `body` fails and `abandonOnError` is set, the close is not awaited: a producer's batches in
 * flight would each run out their retries first; the caller exits instead. A broker that
 * cannot be reached is an operating error that says what to do.
 */
export async function withClient<T>(opts: ClientCliOptions, log: Logger,
  body: (client: Client) => Promise<T>, abandonOnError = false): Promise<T> {
  let client: Client;
  const auth = opts.user === undefined ? undefined
    : { user: opts.user, password: await readPassword(opts.passwordFile, `user ${opts.user}`) };
  try {
    client = await connect({ brokers: brokerList(opts), clientId: `pmq-cli-${process.pid}`,
      transports: opts.transports, netDevices: opts.netDevices, busyPoll: opts.busyPoll,
      dataPath: opts.dataPath,
      requestTimeoutMs: opts.requestTimeoutMs, logger: log,
      ...(auth === undefined ? {} : { auth }) });
  } catch (error) {
    if (error instanceof PmqError && (error.code === 'PMQ_ERR_NOT_CONNECTED' ||
        error.code === 'PMQ_ERR_TIMEOUT')) {
      throw new PmqError(error.code, `no broker answers at ${brokerList(opts).join(', ')}: ` +
        'start one ' +
        '(pmq dev, pmq broker) or pass --broker host:port (or set PMQ_BROKER)',
      { cause: error });
    }
    throw error;
  }
  let result: T;
  try {
    result = await body(client);
  } catch (error) {
    if (abandonOnError) void client.close().catch(() => undefined);
    else await client.close();
    throw error;
  }
  await client.close();
  return result;
}
