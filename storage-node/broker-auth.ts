/**
 * Which endpoints may speak as the broker (docs/security.md, "Broker ↔ storage: the cluster
 * key"). A peer proves it holds the cluster key with a mutual challenge/response, fresh nonces
 * both ways:
 *
 *   broker → `brokerAuth { nonce: Nb }`
 *   storage ← `brokerChallenge { nonce: Ns, proof: MAC(storage-proof, Nb, Ns) }`
 *   broker → `storageHello { epoch, instance, proof: MAC(broker-proof, Ns, Nb, u64(epoch),
 *            u64(instance)) }`
 *
 * Ns is fresh per brokerAuth and used at most once: the first storageHello after it consumes
 * it, valid or not, and a new brokerAuth replaces it. Only after a valid proof is the endpoint
 * a broker endpoint; that state is per endpoint and forgotten when the endpoint closes.
 * Refusals (PMQ_ERR_AUTH) never name the node's epoch or anything of its region.
 *
 * Concurrency: JS thread only.
 */
import { BROKER_SESSION, type ClusterKey, NONCE_BYTES, nonce, u64 } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Message } from '../common/wire/messages.js';
import type { Endpoint, Transport } from '../native/transport.js';
import type { Reply } from '../rpc/control-channel.js';

interface EndpointAuth {
  /** The challenge of the last brokerAuth, until a storageHello consumes it. */
  pending: { brokerNonce: Uint8Array; nodeNonce: Uint8Array } | null;
  broker: boolean;
  /** The broker instance that authenticated on this endpoint (its last valid storageHello). */
  instance: number;
}

export function authRefused(why: string): PmqError {
  return new PmqError('PMQ_ERR_AUTH', `not an authenticated broker: ${why}`);
}

export class BrokerAuth {
  readonly #key: ClusterKey;
  readonly #transport: Transport;
  readonly #log: Logger;
  readonly #endpoints = new Map<Endpoint, EndpointAuth>();

  constructor(key: ClusterKey, transport: Transport, log: Logger) {
    this.#key = key;
    this.#transport = transport;
    this.#log = log;
    const forget = (ep: Endpoint): void => { this.#endpoints.delete(ep); };
    transport.on('closed', forget);
    transport.on('error', forget);
  }

  /** `brokerAuth`: a fresh challenge for this endpoint (replacing any earlier one). */
  challenge(ep: Endpoint, m: Message<'brokerAuth'>): Reply<'brokerChallenge'> {
    if (m.nonce.byteLength !== NONCE_BYTES) {
      throw authRefused(`a brokerAuth nonce is ${NONCE_BYTES} bytes, not ${m.nonce.byteLength}`);
    }
    const brokerNonce = Uint8Array.from(m.nonce);
    const nodeNonce = nonce();
    const state = this.#endpoints.get(ep) ?? { pending: null, broker: false, instance: 0 };
    state.pending = { brokerNonce, nodeNonce };
    this.#endpoints.set(ep, state);
    return { kind: 'brokerChallenge', body: { nonce: nodeNonce,
      proof: this.#key.mac('storage-proof', brokerNonce, nodeNonce) } };
  }

  /**
   * Checks storageHello's proof against this endpoint's pending challenge, which it consumes
   * whatever the outcome. Valid: the endpoint is a broker endpoint from now on.
   */
  acceptHello(ep: Endpoint, m: Message<'storageHello'>): void {
    const state = this.#endpoints.get(ep);
    const pending = state?.pending ?? null;
    if (state === undefined || pending === null) {
      throw authRefused('send brokerAuth first: storageHello must answer a fresh challenge');
    }
    state.pending = null;
    if (!this.#key.verify('broker-proof', m.proof, pending.nodeNonce, pending.brokerNonce,
      u64(m.epoch), u64(m.instance))) {
      this.#log.warn({ ep }, 'storageHello with a proof that does not verify: a peer without ' +
        'this cluster\'s key, or a replay');
      throw authRefused('the proof does not verify (another cluster\'s key, or a replay)');
    }
    state.instance = m.instance;
    if (!state.broker) {
      state.broker = true;
      bindBrokerSession(this.#transport, ep);
      this.#log.info({ ep }, 'broker authenticated');
    }
  }

  /**
   * Every broker request other than storageHello: only on an authenticated endpoint. Returns
   * the broker instance that authenticated there.
   */
  require(ep: Endpoint, kind: string): number {
    const state = this.#endpoints.get(ep);
    if (state?.broker !== true) {
      throw authRefused(`${kind} is a broker request; authenticate first (brokerAuth, ` +
        'storageHello)');
    }
    return state.instance;
  }

  isBroker(ep: Endpoint): boolean {
    return this.#endpoints.get(ep)?.broker === true;
  }
}

/**
 * Binds an authenticated broker endpoint natively to BROKER_SESSION: the grant table lets it
 * use the broker's own grants (hole fillers, recovery reads) and no client session's.
 */
export function bindBrokerSession(transport: Transport, ep: Endpoint): void {
  transport.bindSession(ep, BROKER_SESSION);
}
