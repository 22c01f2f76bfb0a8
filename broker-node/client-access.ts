/**
 * Who a client endpoint is, and what it may do (docs/security.md, "Clients: sessions, users
 * and ACLs"):
 *
 * - Sessions: every client endpoint gets one on `hello` (or on its first request, for a client
 *   that never says hello): a random id (randomSessionId), its principal and whether SCRAM
 *   authenticated it. It is forgotten when the endpoint closes. Reservations belong to the
 *   session that made them (partition.ts).
 * - Tickets: `welcome` and `ticketRefresh` carry a session ticket signed with the cluster key
 *   (common/auth/ticket.ts), valid for `ticketTtlMs`, which storage nodes check on
 *   `sessionBind`. directAllowed: authentication off, or the principal authenticated.
 * - Authentication (only with `--auth-file`): SCRAM-SHA-256 in authStart → authFinish before
 *   anything else; every other request of an unauthenticated endpoint is refused
 *   (PMQ_ERR_AUTH). An unknown user gets a challenge like a known one (a salt derived from the
 *   name with a secret of this process) and the same refusal, after the same delay, as a
 *   wrong password: nobody learns which users exist.
 * - ACLs (common/auth/acl.ts) against the auth file's current contents; none when off.
 *
 * Concurrency: JS thread only. State: two maps keyed by endpoint, both bounded by the
 * transport's endpoints and cleared on 'closed'.
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';

import {
  checkAllowed, isAllowed, type Operation, type Resource,
} from '../common/auth/acl.js';
import { randomSessionId, type ClusterKey } from '../common/auth/keys.js';
import {
  isScramNonce, SCRAM_ITERATIONS_DEFAULT, scramNonce, verifyClientProof, type ScramExchange,
} from '../common/auth/scram.js';
import { issueTicket } from '../common/auth/ticket.js';
import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Body, Message, RequestKind } from '../common/wire/messages.js';
import type { Endpoint, Transport } from '../native/transport.js';
import type { Reply } from '../rpc/control-channel.js';
import type { AuthStore } from './auth-store.js';

export interface Session {
  readonly id: number;
  /** The authenticated user; '' when authentication is off. */
  readonly principal: string;
  readonly authenticated: boolean;
}

interface Pending { exchange: ScramExchange; known: boolean }

/** A session ticket lives this long unless the broker is told otherwise (`ticketTtlMs`). */
export const TICKET_TTL_MS_DEFAULT = 60 * 60_000;
/** Wrong password or unknown user: the refusal waits this long plus up to 100 ms of jitter. */
export const AUTH_FAILURE_DELAY_MS = 200;
/** Requests allowed on an endpoint before it authenticated. */
const BEFORE_AUTH: ReadonlySet<RequestKind> = new Set<RequestKind>(['authStart', 'authFinish']);

export interface ClientAccessParts {
  auth: AuthStore;
  clusterKey: ClusterKey;
  /** The broker's epoch, which tickets carry. */
  epoch: () => number;
  ticketTtlMs: number;
  transport: Transport;
  log: Logger;
}

export class ClientAccess {
  readonly #sessions = new Map<Endpoint, Session>();
  /** Endpoints SCRAM authenticated (before their hello), by principal. */
  readonly #authenticated = new Map<Endpoint, string>();
  readonly #pending = new Map<Endpoint, Pending>();
  readonly #endListeners = new Set<(sessionId: number) => void>();
  /** Derives unknown users' fake salts; never leaves the process. */
  readonly #fakeSaltKey = randomBytes(32);

  constructor(private readonly parts: ClientAccessParts) {
    parts.transport.on('closed', (ep) => {
      const session = this.#sessions.get(ep);
      if (session !== undefined) for (const listener of this.#endListeners) listener(session.id);
      this.#sessions.delete(ep);
      this.#authenticated.delete(ep);
      this.#pending.delete(ep);
    });
  }

  /** Called with a session's id when its endpoint closes (its grants are to be revoked). */
  onSessionEnd(listener: (sessionId: number) => void): void {
    this.#endListeners.add(listener);
  }

  get enabled(): boolean {
    return this.parts.auth.enabled;
  }

  /** How many sessions are live (tests, logs). */
  get sessions(): number {
    return this.#sessions.size;
  }

  /**
   * The session of a request's endpoint; refuses (PMQ_ERR_AUTH) every request but the SCRAM
   * ones while authentication is on and the endpoint has not authenticated, or its user was
   * removed from the auth file since.
   */
  gate(ep: Endpoint, kind: RequestKind): Session | null {
    if (BEFORE_AUTH.has(kind)) return null;
    const principal = this.#authenticated.get(ep);
    if (this.enabled) {
      if (principal === undefined) {
        throw new PmqError('PMQ_ERR_AUTH', `authenticate first: this broker requires SCRAM-` +
          `SHA-256 before ${kind} (connect with auth: { user, password }, or --user NAME)`);
      }
      if (this.parts.auth.user(principal) === undefined) {
        this.#authenticated.delete(ep);
        // Its leases and subscriptions end with it (the endpoint may stay open).
        const session = this.#sessions.get(ep);
        this.#sessions.delete(ep);
        if (session !== undefined) for (const listener of this.#endListeners) listener(session.id);
        throw new PmqError('PMQ_ERR_AUTH', `authenticate first: user ${principal} no longer ` +
          'exists in the auth file');
      }
    }
    return this.sessionOf(ep);
  }

  /** The endpoint's session, made on first use. */
  sessionOf(ep: Endpoint): Session {
    let session = this.#sessions.get(ep);
    if (session === undefined) {
      const principal = this.#authenticated.get(ep);
      session = { id: randomSessionId(), principal: principal ?? '',
        authenticated: principal !== undefined };
      this.#sessions.set(ep, session);
      this.parts.log.debug({ ep, session: session.id, principal }, 'client session');
    }
    return session;
  }

  /** A fresh ticket of the session, and its lifetime (relative: client clocks do not matter). */
  ticket(session: Session): { ticket: Uint8Array; expiresInMs: number } {
    const now = Date.now();
    const ttl = this.parts.ticketTtlMs;
    const ticket = issueTicket(this.parts.clusterKey, { epoch: this.parts.epoch(),
      sessionId: session.id, issuedAtMs: now, expiresAtMs: now + ttl,
      principal: session.principal, authenticated: session.authenticated,
      directAllowed: !this.enabled || session.authenticated });
    return { ticket, expiresInMs: ttl };
  }

  /** Throws PMQ_ERR_DENIED unless the session may; no check with authentication off. */
  check(session: Session, resource: Resource, operation: Operation): void {
    if (!this.enabled) return;
    checkAllowed(this.parts.auth.acls, session.principal, resource, operation,
      this.parts.auth.path ?? '');
  }

  may(session: Session, resource: Resource, operation: Operation): boolean {
    return !this.enabled || isAllowed(this.parts.auth.acls, session.principal, resource,
      operation);
  }

  /** SCRAM client-first → server-first. */
  authStart(ep: Endpoint, m: Message<'authStart'>): Reply<'authChallenge'> {
    if (!this.enabled) {
      throw new PmqError('PMQ_ERR_AUTH', 'this broker runs without --auth-file: connect ' +
        'without auth');
    }
    if (this.#authenticated.has(ep)) {
      throw new PmqError('PMQ_ERR_AUTH', 'this connection is authenticated already');
    }
    if (!isScramNonce(m.nonce)) {
      throw new PmqError('PMQ_ERR_ARGUMENT', 'authStart nonce: 24..64 base64 characters');
    }
    const user = this.parts.auth.user(m.user);
    const salt = user?.salt ?? new Uint8Array(createHmac('sha256', this.#fakeSaltKey)
      .update(m.user).digest().subarray(0, 16));
    const exchange: ScramExchange = { user: m.user, clientNonce: m.nonce,
      nonce: `${m.nonce}${scramNonce()}`, salt,
      iterations: user?.iterations ?? SCRAM_ITERATIONS_DEFAULT };
    this.#pending.set(ep, { exchange, known: user !== undefined });
    return { kind: 'authChallenge', body: { nonce: exchange.nonce, salt: exchange.salt,
      iterations: exchange.iterations } };
  }

  /** SCRAM client-final → server-final; failures wait, then all say the same. */
  async authFinish(ep: Endpoint, m: Message<'authFinish'>): Promise<Reply<'authOk'>> {
    const pending = this.#pending.get(ep);
    this.#pending.delete(ep);
    if (pending === undefined || pending.exchange.nonce !== m.nonce) {
      throw new PmqError('PMQ_ERR_AUTH', 'authFinish without a matching authStart: start over');
    }
    const { exchange } = pending;
    const user = pending.known ? this.parts.auth.user(exchange.user) : undefined;
    const result = user === undefined ? { ok: false as const }
      : verifyClientProof(exchange, user, m.proof);
    if (!result.ok) {
      this.parts.log.warn({ ep, user: exchange.user }, 'client authentication failed');
      await new Promise((resolve) => setTimeout(resolve,
        AUTH_FAILURE_DELAY_MS + randomInt(0, 100)));
      throw new PmqError('PMQ_ERR_AUTH', 'authentication failed: unknown user or wrong ' +
        'password');
    }
    this.#authenticated.set(ep, exchange.user);
    this.#sessions.delete(ep);
    this.parts.log.info({ ep, principal: exchange.user }, 'client authenticated');
    return { kind: 'authOk', body: { signature: result.signature, principal: exchange.user } };
  }

  /** `welcome`'s session fields. */
  welcomeTicket(session: Session): Pick<Body<'welcome'>, 'ticket' | 'ticketExpiresInMs'> {
    const { ticket, expiresInMs } = this.ticket(session);
    return { ticket, ticketExpiresInMs: expiresInMs };
  }
}
