/**
 * The storage node's side of the client → storage requests (docs/wire-protocol.md, "Client →
 * storage"): `sessionBind`, which binds a client endpoint to the session named by a ticket the
 * broker signed (docs/security.md), and `directKey`, which hands a trusted consumer the key to
 * read a whole segment one-sided (direct mode; DESIGN.md, "One-sided access must be safe").
 *
 * sessionBind: the ticket must verify under the cluster key (MAC, expiry with clock slack) and
 * carry the node's current epoch (PMQ_ERR_TICKET_STALE otherwise: a ticket of an older or
 * newer broker instance); then the endpoint belongs to that session (a later bind replaces
 * it: a client that reconnected to the broker binds again) until it closes. The ticket is
 * checked at bind time only: an endpoint stays bound after its ticket's expiry.
 *
 * A key leaves the node only when every one of these holds (checked in this order), else a
 * typed refusal and nothing is exported: the node runs with `--direct` (its transport opened
 * with `direct: true`); the grant exists, is live, carries the request's epoch and that epoch
 * is the node's (fencing); it is a read grant (direct writes need page-aligned leased ranges:
 * a documented follow-up); it covers its whole segment, so the registration is page aligned
 * and exposes nothing but that segment; and the asking endpoint's lanes are RDMA (on tcp or
 * shared memory a key would let the client write anywhere in this process). The transport
 * checks lanes and alignment again natively. The key stops working when the grant is revoked
 * or the epoch rises above it (the registration is removed at once: grant-registry.ts →
 * transport.revokeGrant).
 *
 * Trust: a read grant's key also allows writes (UCX cannot make read-only keys), so `--direct`
 * is for clusters whose clients the operator trusts; a key is exported only to an endpoint
 * bound to a session whose ticket allows direct mode. Concurrency: JS thread only; state: the
 * session of each bound endpoint, forgotten when it closes.
 */
import type { ClusterKey } from '../common/auth/keys.js';
import { verifyTicket, type Ticket } from '../common/auth/ticket.js';
import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Message } from '../common/wire/messages.js';
import { hasRdmaLane, type Endpoint, type Transport } from '../native/transport.js';
import type { ControlChannel, Reply } from '../rpc/control-channel.js';
import type { GrantRegistry } from './grant-registry.js';
import type { RegionStore } from './region-store.js';

export class ClientService {
  readonly #store: RegionStore;
  readonly #transport: Transport;
  readonly #grants: GrantRegistry;
  readonly #log: Logger;
  readonly #clusterKey: ClusterKey;
  /** The session each bound client endpoint belongs to (its verified ticket). */
  readonly #sessions = new Map<Endpoint, Ticket>();

  constructor(parts: { store: RegionStore; transport: Transport; grants: GrantRegistry;
    clusterKey: ClusterKey; log: Logger }) {
    this.#store = parts.store;
    this.#transport = parts.transport;
    this.#grants = parts.grants;
    this.#clusterKey = parts.clusterKey;
    this.#log = parts.log;
    parts.transport.on('closed', (ep) => { this.#sessions.delete(ep); });
  }

  register(channel: ControlChannel): void {
    channel.handle('sessionBind', (ep, m) => this.sessionBind(ep, m));
    channel.handle('directKey', (ep, m) => this.directKey(ep, m));
  }

  /** The session an endpoint is bound to, if any. */
  sessionOf(ep: Endpoint): Ticket | undefined {
    return this.#sessions.get(ep);
  }

  sessionBind(ep: Endpoint, m: Message<'sessionBind'>): Reply<'done'> {
    const ticket = verifyTicket(this.#clusterKey, m.ticket, Date.now());
    if (ticket.epoch !== this.#store.epoch) {
      throw new PmqError('PMQ_ERR_TICKET_STALE', `session ticket of epoch ${ticket.epoch}, ` +
        `this node is at epoch ${this.#store.epoch}: reconnect to the current broker for a ` +
        'new ticket', { retriable: true });
    }
    this.#bindNativeSession(ep, ticket.sessionId);
    this.#sessions.set(ep, ticket);
    this.#log.debug({ ep, session: ticket.sessionId, principal: ticket.principal },
      'session bound');
    return { kind: 'done', body: {} };
  }

  /**
   * The native grant table from now on refuses on this endpoint every access of a grant of
   * another session (and of no session): the binding that makes grants capabilities.
   */
  #bindNativeSession(ep: Endpoint, sessionId: number): void {
    this.#transport.bindSession(ep, sessionId);
  }

  directKey(ep: Endpoint, m: Message<'directKey'>): Reply<'directKeyIs'> {
    const at = `direct key of grant ${m.grantId}`;
    if (!this.#transport.directEnabled) {
      throw unsupported(`${at}: this storage node runs without --direct: read validated`);
    }
    const session = this.#sessions.get(ep);
    if (session === undefined || !session.directAllowed) {
      throw new PmqError('PMQ_ERR_DENIED', `${at}: ${session === undefined ? 'this connection ' +
        'is bound to no session (sessionBind first)' : 'the session\'s ticket does not allow ' +
        'direct mode (authenticate to the broker)'}`);
    }
    const grant = this.#grants.find(m.grantId);
    // Another session's grant, a wrong key and an unknown id look the same, and before anything
    // else is said about the grant (as the native checks): no oracle for guessers.
    if (grant === undefined || grant.key !== m.grantKey ||
        grant.session !== session.sessionId) {
      throw new PmqError('PMQ_ERR_GRANT_UNKNOWN', `${at}: no such grant on this node`);
    }
    if (grant.revoked) throw new PmqError('PMQ_ERR_GRANT_REVOKED', `${at}: revoked`);
    if (grant.epoch !== m.grantEpoch || grant.epoch < this.#store.epoch) {
      throw new PmqError('PMQ_ERR_GRANT_STALE_EPOCH', `${at}: epoch ${m.grantEpoch} asked, the ` +
        `grant's is ${grant.epoch}, the node's ${this.#store.epoch}`);
    }
    if (grant.direction !== 'read') {
      throw unsupported(`${at}: direct keys are for read grants only (producers write ` +
        'validated)');
    }
    const segment = this.#store.segment(grant.segmentIndex);
    if (grant.address !== segment.address || grant.sizeBytes !== segment.sizeBytes) {
      throw new PmqError('PMQ_ERR_DIRECT_UNALIGNED', `${at}: it covers [${grant.address}, ` +
        `+${grant.sizeBytes}), not its whole segment ${segment.segmentIndex}`);
    }
    const lanes = this.#transport.lanes(ep);
    if (!hasRdmaLane(lanes)) {
      throw unsupported(`${at}: the connection uses ${lanes.join('/') || 'no lanes'}, not ` +
        'RDMA: a key there would expose the whole storage process; read validated');
    }
    const key = this.#transport.exportDirectKey(ep, m.grantId, m.grantKey);
    this.#log.info({ ep, grant: m.grantId, segment: segment.segmentIndex, lanes },
      'direct key exported');
    return { kind: 'directKeyIs', body: { key } };
  }
}

function unsupported(message: string): PmqError {
  return new PmqError('PMQ_ERR_DIRECT_UNSUPPORTED', message);
}
