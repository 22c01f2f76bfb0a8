/**
 * The client's side of SCRAM-SHA-256 with the broker (docs/clients.md, "Authentication"):
 * authStart → authChallenge → authFinish → authOk on a fresh endpoint, before hello. The
 * client checks the broker's ServerSignature (mutual authentication): a peer that does not
 * hold the user's ServerKey is refused even though it accepted the proof. The salted password
 * is computed once per (salt, iterations) and kept, so reconnections cost no PBKDF2.
 */
import {
  clientFinal, saltedPassword, scramNonce, serverSignatureMatches,
} from '../common/auth/scram.js';
import { PmqError } from '../common/errors.js';
import type { Endpoint } from '../native/transport.js';
import type { ControlChannel } from '../rpc/control-channel.js';

export interface ClientAuth { user: string; password: string }

export class ScramClient {
  #salted: { key: string; value: Uint8Array } | undefined;

  constructor(private readonly auth: ClientAuth) {}

  /** Authenticates `ep`; resolves with the principal the broker names, or throws PMQ_ERR_AUTH. */
  async authenticate(channel: ControlChannel, ep: Endpoint, timeoutMs: number):
    Promise<string> {
    const clientNonce = scramNonce();
    const challenge = await channel.request(ep, 'authStart', { user: this.auth.user,
      nonce: clientNonce }, timeoutMs);
    if (challenge.kind !== 'authChallenge' || !challenge.nonce.startsWith(clientNonce) ||
        challenge.nonce.length <= clientNonce.length) {
      throw new PmqError('PMQ_ERR_AUTH', 'the broker answered authStart with a challenge ' +
        'that does not extend our nonce');
    }
    const exchange = { user: this.auth.user, clientNonce, nonce: challenge.nonce,
      salt: challenge.salt, iterations: challenge.iterations };
    const { proof, expectedSignature } = clientFinal(exchange,
      this.salted(challenge.salt, challenge.iterations));
    const ok = await channel.request(ep, 'authFinish', { nonce: challenge.nonce, proof },
      timeoutMs);
    if (ok.kind !== 'authOk' || !serverSignatureMatches(expectedSignature, ok.signature)) {
      throw new PmqError('PMQ_ERR_AUTH', 'the broker\'s SCRAM signature does not match: it ' +
        'does not hold this user\'s credentials (not the broker you meant?)');
    }
    return ok.principal;
  }

  private salted(salt: Uint8Array, iterations: number): Uint8Array {
    const key = `${Buffer.from(salt).toString('base64')}/${iterations}`;
    if (this.#salted?.key !== key) {
      this.#salted = { key, value: saltedPassword(this.auth.password, salt, iterations) };
    }
    return this.#salted.value;
  }
}
