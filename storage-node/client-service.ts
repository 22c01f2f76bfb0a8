/**
 * The storage node's side of the client → storage requests (docs/wire-protocol.md, "Client →
 * storage"). Today one: `directKey`, which hands a trusted consumer the key to read a whole
 * segment one-sided (direct mode; DESIGN.md, "One-sided access must be safe").
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
 * is for clusters whose clients the operator trusts. Concurrency: JS thread only; no state.
 */
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

  constructor(parts: { store: RegionStore; transport: Transport; grants: GrantRegistry;
    log: Logger }) {
    this.#store = parts.store;
    this.#transport = parts.transport;
    this.#grants = parts.grants;
    this.#log = parts.log;
  }

  register(channel: ControlChannel): void {
    channel.handle('directKey', (ep, m) => this.directKey(ep, m));
  }

  directKey(ep: Endpoint, m: Message<'directKey'>): Reply<'directKeyIs'> {
    const at = `direct key of grant ${m.grantId}`;
    if (!this.#transport.directEnabled) {
      throw unsupported(`${at}: this storage node runs without --direct: read validated`);
    }
    const grant = this.#grants.find(m.grantId);
    if (grant === undefined) {
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
    const key = this.#transport.exportDirectKey(ep, m.grantId, grant.key);
    this.#log.info({ ep, grant: m.grantId, segment: segment.segmentIndex, lanes },
      'direct key exported');
    return { kind: 'directKeyIs', body: { key } };
  }
}

function unsupported(message: string): PmqError {
  return new PmqError('PMQ_ERR_DIRECT_UNSUPPORTED', message);
}
