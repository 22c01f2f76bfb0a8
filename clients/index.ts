/**
 * The pmq client library: `connect()` returns a Client, from which come an admin, producers
 * and consumers. docs/clients.md is the guide (API, errors, acks, backpressure, waiting).
 *
 * Lifecycle: a Client owns a control connection to the broker and, on demand, data
 * connections to storage nodes. All clients of a process share one UCX transport of their
 * own (other transports of the process, a storage node's or a broker's, are separate): the
 * first connect() opens it, the last close() closes it. `client.close()` closes the client's
 * producers and consumers first (producers flush). Concurrency: everything runs on the JS
 * thread; calls may be made concurrently.
 */
import { ArgumentError } from '../common/errors.js';
import { createLogger, LOG_LEVELS, type Logger } from '../common/log.js';
import type { LevelWithSilent } from 'pino';
import { Admin } from './admin.js';
import { Connection, parseBroker, type ConnectionStats } from './connection.js';
import { Consumer, type ConsumerOptions } from './consumer.js';
import { Metadata } from './metadata.js';
import { Producer, type ProducerOptions } from './producer.js';
import { DATA_PATHS, type DataPath, type DataPathInfo } from './storage-reads.js';

export * from './errors.js';
export type { QuarantinedSegment, TopicConfigInput, TopicListing } from './admin.js';
export type { ConsumerOptions, StartPosition, TopicPartition, TopicPartitionOffset } from
  './consumer.js';
export type { PartitionInfo, TopicConfigEntry, TopicDescription } from './metadata.js';
export type { ProducerOptions, SendInput } from './producer.js';
export type { ZeroCopyWrites } from './batch-sender.js';
export type { DataPath, DataPathInfo } from './storage-reads.js';
export type { ConnectionStats } from './connection.js';
export type { AssignorName, GroupOptions, GroupTopicPartition } from './group-member.js';
export type { GroupDescription, GroupListing } from './admin.js';
export type { ConsumerBatch, ConsumerRecord, ProducerRecord, RecordMetadata } from
  './records.js';
export { Admin, Consumer, Producer };
export { partitionForKey } from '../common/partitioner.js';
export { offsetsForTimes } from './offsets-for-times.js';

export interface ClientOptions {
  /** Bootstrap brokers as 'host:port'; the first that answers is used. */
  brokers: string[];
  /** Shown in the broker's logs. Default 'pmq-client-<pid>'. */
  clientId?: string;
  /** UCX transports (UCX_TLS syntax), e.g. 'tcp' or 'sm,tcp'. Default: UCX's choice. */
  transports?: string;
  /** UCX network devices (UCX_NET_DEVICES syntax), e.g. 'lo'. Default: UCX's choice. */
  netDevices?: string;
  /**
   * Busy-poll the transport: progress UCX on every event-loop turn instead of sleeping between
   * messages, for the lowest latency at the cost of one busy core while the client is open
   * (docs/clients.md, "Latency"). All clients of a process share one transport, so they must
   * agree. Default false: sleep after an adaptive spin of at most PMQ_SPIN_US µs (50).
   */
  busyPoll?: boolean;
  /**
   * How consumers read record batches from storage nodes (docs/clients.md, "Data path"):
   * 'validated' (default; every transport), 'direct' (one-sided RDMA reads with keys from the
   * storage node: trusted clients on RDMA lanes only, an error otherwise) or 'auto' (direct
   * where the lanes are RDMA and the storage node offers it, else validated). Producers always
   * write validated.
   */
  dataPath?: DataPath;
  /** Timeout of one request to the broker. Default 10 000 ms. */
  requestTimeoutMs?: number;
  /** Level of the client's own pino logger (stderr). Default 'warn'. Ignored with `logger`. */
  logLevel?: LevelWithSilent;
  /** A pino logger to log to instead (the client takes a child). */
  logger?: Logger;
  /**
   * SCRAM-SHA-256 credentials for a broker that runs with `--auth-file` (docs/clients.md,
   * "Authentication and sessions"). The client authenticates on every (re)connection and
   * checks the broker's signature. Default: none (the broker must run without --auth-file).
   */
  auth?: { user: string; password: string };
}

export class Client {
  private readonly metadata: Metadata;
  private readonly children = new Set<Producer | Consumer>();
  private closed = false;

  /** Use connect(). */
  constructor(private readonly connection: Connection, private readonly log: Logger,
    private readonly requestTimeoutMs: number) {
    this.metadata = new Metadata(connection);
  }

  /** Per storage node read from so far: the data path in use, its lanes, reads by path. */
  dataPaths(): DataPathInfo[] {
    return this.connection.reads.dataPaths();
  }

  /**
   * What this client's connection sent and received: broker requests by kind, watermark pushes
   * delivered and dropped (diagnostics; docs/clients.md, "How a consumer waits").
   */
  stats(): ConnectionStats {
    return this.connection.stats();
  }

  admin(): Admin {
    return new Admin(this.connection, this.metadata);
  }

  producer(options: ProducerOptions = {}): Producer {
    const producer: Producer = new Producer(this.connection, this.metadata, options,
      this.requestTimeoutMs, this.log.child({ role: 'producer' }),
      () => this.children.delete(producer));
    this.children.add(producer);
    return producer;
  }

  consumer(options: ConsumerOptions = {}): Consumer {
    const consumer: Consumer = new Consumer(this.connection, this.metadata, options,
      this.requestTimeoutMs, this.log.child({ role: 'consumer' }),
      () => this.children.delete(consumer));
    this.children.add(consumer);
    return consumer;
  }

  /** Closes producers (flushing them) and consumers, then the connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.children].map((child) => child.close()));
    await this.connection.close();
  }
}

function checkedBusyPoll(value: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new ArgumentError(`busyPoll must be a boolean, got ${String(value)}`);
  }
  return value ?? false;
}

/** Connects to the broker (hello → welcome) and returns a Client. */
export async function connect(options: ClientOptions): Promise<Client> {
  if (!Array.isArray(options?.brokers) || options.brokers.length === 0) {
    throw new ArgumentError("connect() needs brokers: ['host:port', ...]");
  }
  const brokers = options.brokers.map(parseBroker);
  const level = options.logLevel ?? 'warn';
  if (!LOG_LEVELS.includes(level)) throw new ArgumentError(`unknown logLevel ${level}`);
  const log = (options.logger ?? createLogger({ level })).child({ component: 'client' });
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  if (!Number.isSafeInteger(requestTimeoutMs) || requestTimeoutMs < 1) {
    throw new ArgumentError('requestTimeoutMs must be a positive integer');
  }
  const dataPath = options.dataPath ?? 'validated';
  if (!DATA_PATHS.includes(dataPath)) {
    throw new ArgumentError(`dataPath must be one of ${DATA_PATHS.join(', ')}, got ` +
      String(dataPath));
  }
  const transport = {
    ...(options.transports === undefined ? {} : { transports: options.transports }),
    ...(options.netDevices === undefined ? {} : { netDevices: options.netDevices }),
    busyPoll: checkedBusyPoll(options.busyPoll),
  };
  const auth = options.auth;
  if (auth !== undefined && (typeof auth.user !== 'string' || auth.user.length === 0 ||
      typeof auth.password !== 'string')) {
    throw new ArgumentError('auth must be { user: string, password: string }');
  }
  const connection = new Connection({ brokers, clientId: options.clientId ??
    `pmq-client-${process.pid}`, role: 'admin', dataPath, transport, requestTimeoutMs, log,
  ...(auth === undefined ? {} : { auth: { user: auth.user, password: auth.password } }) });
  try {
    await connection.ready();
  } catch (error) {
    await connection.close();
    throw error;
  }
  return new Client(connection, log, requestTimeoutMs);
}
