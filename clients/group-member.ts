/**
 * A consumer's membership of a group (docs/clients.md, "Consumer groups"): joins, asks for its
 * partitions (the broker's assignor computed them), heartbeats in the background and joins
 * again when the broker says the group rebalances.
 *
 * Revocation: with an eager assignor (range, roundrobin) every owned partition is revoked
 * before joining again; with cooperative-sticky only those the new assignment no longer holds,
 * after which the member joins once more so the next generation can give them to their new
 * owner. A revoke lets the application commit first (hooks.revoke, lost = false); partitions
 * whose ownership is already gone (expired, fenced, a broker that forgot the member) are
 * "lost": dropped without a commit, which the broker would refuse anyway.
 *
 * The loop runs one request at a time: join, sync, then a heartbeat every heartbeatIntervalMs.
 * Retriable failures (broker restarting, timeouts) are retried with backoff; no successful
 * round for a whole session timeout counts as lost, as the broker will have expired the member.
 */
import { ArgumentError, PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Connection } from './connection.js';

export type AssignorName = 'range' | 'roundrobin' | 'cooperative-sticky';
const ASSIGNOR_NAMES: readonly string[] = ['range', 'roundrobin', 'cooperative-sticky'];

export interface GroupTopicPartition { topic: string; partition: number }

export interface GroupOptions {
  /** Kafka's session.timeout.ms: the broker removes a member silent this long. Default 10 s. */
  sessionTimeoutMs?: number;
  /** How long a rebalance waits for members to join again. Default 30 s. */
  rebalanceTimeoutMs?: number;
  /** Default a third of the session timeout, at most 3 s. */
  heartbeatIntervalMs?: number;
  /** In preference order; default ['cooperative-sticky', 'range']. */
  assignors?: AssignorName[];
  /**
   * Static membership (Kafka's group.instance.id): back within the session timeout under the
   * same id, the member gets its partitions again without a rebalance; it does not leave the
   * group on close (the session timeout removes it if it does not come back).
   */
  groupInstanceId?: string;
  /** After partitions were assigned and their readers started (at their committed offsets). */
  onAssigned?: (partitions: GroupTopicPartition[]) => void | Promise<void>;
  /**
   * Before partitions are taken away (rebalance, close): commit what was processed. Without it
   * the consumer commits its positions of those partitions itself.
   */
  onRevoked?: (partitions: GroupTopicPartition[]) => void | Promise<void>;
  /** Partitions no longer owned, without a chance to commit (the membership was lost). */
  onLost?: (partitions: GroupTopicPartition[]) => void | Promise<void>;
}

export interface MemberHooks {
  revoke(partitions: GroupTopicPartition[], lost: boolean): Promise<void>;
  assign(partitions: GroupTopicPartition[]): Promise<void>;
}

const keyOf = (tp: GroupTopicPartition): string => `${tp.topic}\u0000${tp.partition}`;
const BACKOFF_MS_MAX = 1000;

export function checkGroupOptions(options: GroupOptions): Required<Pick<GroupOptions,
  'sessionTimeoutMs' | 'rebalanceTimeoutMs' | 'heartbeatIntervalMs' | 'assignors'>> {
  const sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000;
  const rebalanceTimeoutMs = options.rebalanceTimeoutMs ?? 30_000;
  for (const [name, ms] of [['sessionTimeoutMs', sessionTimeoutMs],
    ['rebalanceTimeoutMs', rebalanceTimeoutMs]] as const) {
    if (!Number.isSafeInteger(ms) || ms < 100 || ms > 300_000) {
      throw new ArgumentError(`group.${name} must be 100..300000 ms, got ${String(ms)}`);
    }
  }
  const heartbeatIntervalMs = options.heartbeatIntervalMs ??
    Math.min(3000, Math.floor(sessionTimeoutMs / 3));
  if (!Number.isSafeInteger(heartbeatIntervalMs) || heartbeatIntervalMs < 10 ||
      heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new ArgumentError('group.heartbeatIntervalMs must be 10 ms or more and below the ' +
      'session timeout');
  }
  const assignors = options.assignors ?? ['cooperative-sticky', 'range'];
  if (!Array.isArray(assignors) || assignors.length === 0 ||
      assignors.some((a) => !ASSIGNOR_NAMES.includes(a))) {
    throw new ArgumentError(`group.assignors must be some of ${ASSIGNOR_NAMES.join(', ')}`);
  }
  return { sessionTimeoutMs, rebalanceTimeoutMs, heartbeatIntervalMs, assignors };
}

export class GroupMember {
  memberId = '';
  generation = 0;
  assignor = '';
  /** The partitions this member reads (assigned and not yet revoked). */
  owned: GroupTopicPartition[] = [];
  #topics: string[] = [];
  #needJoin = true;
  #closed = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #lastOkMs = performance.now();
  #assigned: { resolve: () => void; reject: (error: Error) => void } | null = null;
  #failure: PmqError | null = null;
  readonly #settings: ReturnType<typeof checkGroupOptions>;

  constructor(private readonly connection: Connection, readonly group: string,
    private readonly clientId: string, private readonly options: GroupOptions,
    private readonly hooks: MemberHooks, private readonly log: Logger) {
    this.#settings = checkGroupOptions(options);
  }

  /** Subscribes to these topics (all of them, from now on); resolves at the next assignment. */
  subscribe(topics: string[]): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    this.#topics = [...new Set(topics)];
    this.#needJoin = true;
    const assigned = new Promise<void>((resolve, reject) => {
      this.#assigned = { resolve, reject };
    });
    this.#wake?.();
    this.#loop ??= this.#run();
    return assigned;
  }

  /** Stops heartbeating, revokes (committing) what it owns, leaves unless static. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
    const owned = this.owned;
    this.owned = [];
    let failure: unknown = null;
    if (owned.length > 0) {
      await this.hooks.revoke(owned, false).catch((error: unknown) => { failure = error; });
    }
    if (this.memberId !== '' && (this.options.groupInstanceId ?? '') === '') {
      await this.connection.call('groupLeave', { group: this.group, memberId: this.memberId },
        'done', { what: `leaving group ${this.group}` }).catch((error: unknown) =>
        this.log.debug({ err: String(error) }, 'group leave failed'));
    }
    if (failure !== null) throw failure;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      try {
        if (this.#needJoin) await this.#join();
        else await this.#heartbeat();
        failures = 0;
      } catch (error) {
        if (this.#closed) break;
        failures += 1;
        if (!await this.#handle(error, failures)) return;
      }
    }
  }

  async #heartbeat(): Promise<void> {
    await this.#sleep(this.#settings.heartbeatIntervalMs);
    if (this.#closed || this.#needJoin) return;
    await this.connection.call('groupHeartbeat', { group: this.group, memberId: this.memberId,
      generation: this.generation }, 'done', { what: `heartbeat to group ${this.group}` });
    this.#lastOkMs = performance.now();
  }

  /** What a failed round means; false: the membership failed for good (the waiter is told). */
  async #handle(error: unknown, failures: number): Promise<boolean> {
    const code = error instanceof PmqError ? error.code : '';
    if (code === 'PMQ_ERR_REBALANCE_IN_PROGRESS') {
      this.#needJoin = true;
      return true;
    }
    if (code === 'PMQ_ERR_UNKNOWN_MEMBER' || code === 'PMQ_ERR_GENERATION_STALE') {
      this.log.info({ group: this.group, memberId: this.memberId, code }, 'group membership ' +
        'lost: joining again');
      await this.#lose();
      if (code === 'PMQ_ERR_UNKNOWN_MEMBER') this.memberId = '';
      this.#needJoin = true;
      return true;
    }
    if (error instanceof PmqError && error.retriable) {
      this.log.debug({ group: this.group, err: String(error), failures }, 'group round retried');
      if (performance.now() - this.#lastOkMs > this.#settings.sessionTimeoutMs) {
        await this.#lose();
        this.#needJoin = true;
      }
      await this.#sleep(Math.min(BACKOFF_MS_MAX, 50 * 2 ** failures));
      return true;
    }
    this.#failure = error instanceof PmqError ? error : new PmqError('PMQ_ERR_INTERNAL',
      String(error), { cause: error });
    this.log.error({ group: this.group, err: String(error) }, 'group membership failed');
    this.#assigned?.reject(this.#failure);
    this.#assigned = null;
    await this.#lose();
    return false;
  }

  async #lose(): Promise<void> {
    const owned = this.owned;
    this.owned = [];
    if (owned.length > 0) await this.#revoke(owned, true);
  }

  /**
   * A failed revoke (its commit refused or cut) is logged, not fatal: the readers are stopped
   * either way, and the next owner reads from the last commit (at-least-once).
   */
  async #revoke(partitions: GroupTopicPartition[], lost: boolean): Promise<void> {
    await this.hooks.revoke(partitions, lost).catch((error: unknown) => this.log.warn(
      { group: this.group, partitions: partitions.length, err: String(error) },
      'revoking partitions failed: their last positions are not committed'));
  }

  async #join(): Promise<void> {
    // Eager assignors give everything back before the next generation is made.
    if (this.assignor !== 'cooperative-sticky' && this.owned.length > 0) {
      const owned = this.owned;
      this.owned = [];
      await this.#revoke(owned, false);
    }
    const joined = await this.connection.call('groupJoin', { group: this.group,
      memberId: this.memberId, groupInstanceId: this.options.groupInstanceId ?? '',
      clientId: this.clientId, assignors: this.#settings.assignors.map((name) => ({ name })),
      topics: this.#topics.map((topic) => ({ topic })), owned: this.owned,
      sessionTimeoutMs: this.#settings.sessionTimeoutMs,
      rebalanceTimeoutMs: this.#settings.rebalanceTimeoutMs }, 'groupJoined',
    { what: `joining group ${this.group}` }, this.#settings.rebalanceTimeoutMs + 10_000);
    this.memberId = joined.memberId;
    this.generation = joined.generation;
    this.assignor = joined.assignor;
    const reply = await this.connection.call('groupSync', { group: this.group,
      memberId: this.memberId, generation: this.generation }, 'groupAssignment',
    { what: `syncing with group ${this.group}` });
    this.#lastOkMs = performance.now();
    this.#needJoin = false;
    await this.#apply(reply.partitions);
  }

  /** Revokes what the generation no longer gives, then starts what it adds. */
  async #apply(partitions: GroupTopicPartition[]): Promise<void> {
    const now = new Set(partitions.map(keyOf));
    const before = new Set(this.owned.map(keyOf));
    const lost = this.owned.filter((tp) => !now.has(keyOf(tp)));
    const added = partitions.filter((tp) => !before.has(keyOf(tp)));
    if (lost.length > 0) {
      this.owned = this.owned.filter((tp) => now.has(keyOf(tp)));
      await this.#revoke(lost, false);
      // Cooperative: join again so the next generation gives them to their new owner.
      this.#needJoin = true;
    }
    if (added.length > 0) {
      try {
        await this.hooks.assign(added);
      } catch (error) {
        // Some may be reading: stop them all, and join again to be given them once more.
        await this.#revoke(added, true);
        this.#needJoin = true;
        throw error;
      }
      this.owned = [...this.owned, ...added];
    }
    this.log.info({ group: this.group, generation: this.generation, memberId: this.memberId,
      partitions: this.owned.length, revoked: lost.length, added: added.length },
    'group assignment');
    this.#assigned?.resolve();
    this.#assigned = null;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }
}
