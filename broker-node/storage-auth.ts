/**
 * The broker's side of the cluster-key handshake with a storage node (docs/security.md,
 * "Broker ↔ storage: the cluster key"; the storage side is storage-node/broker-auth.ts):
 * `brokerAuth { Nb }` → `brokerChallenge { Ns, MAC(storage-proof, Nb, Ns) }`, which the broker
 * checks before it proves anything itself → `storageHello { epoch, instance, MAC(broker-proof,
 * Ns, Nb, u64(epoch), u64(instance)) }` → `storageInfo`. A fresh Nb per hello: a storage
 * node's proof cannot be replayed to the broker, nor the broker's to a storage node (Ns is
 * fresh and single-use).
 */
import {
  type ClusterKey, NONCE_BYTES, nonce as freshNonce, u64,
} from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';
import type { Message } from '../common/wire/messages.js';
import type { Endpoint } from '../native/transport.js';
import type { ControlChannel } from '../rpc/control-channel.js';

export function notOurKey(where: string): PmqError {
  return new PmqError('PMQ_ERR_AUTH', `storage node at ${where} does not hold this cluster's ` +
    'key: give every storage node and broker the same --cluster-key-file');
}

/**
 * Authenticates both ways on `ep`, then sends storageHello at `epoch` as broker `instance`;
 * returns storageInfo.
 */
export async function helloWithKey(channel: ControlChannel, ep: Endpoint, key: ClusterKey,
  hello: { epoch: number; instance: number }, where: string, timeoutMs: number):
  Promise<Message<'storageInfo'>> {
  const { epoch, instance } = hello;
  const brokerNonce = freshNonce();
  const challenge = await channel.request(ep, 'brokerAuth', { nonce: brokerNonce }, timeoutMs);
  if (challenge.kind !== 'brokerChallenge') {
    throw new PmqError('PMQ_ERR_PROTOCOL', `brokerAuth answered with ${challenge.kind}`);
  }
  if (challenge.nonce.byteLength !== NONCE_BYTES ||
      !key.verify('storage-proof', challenge.proof, brokerNonce, challenge.nonce)) {
    throw notOurKey(where);
  }
  const proof = key.mac('broker-proof', challenge.nonce, brokerNonce, u64(epoch), u64(instance));
  const reply = await channel.request(ep, 'storageHello', { epoch, instance, proof },
    timeoutMs);
  if (reply.kind !== 'storageInfo') {
    throw new PmqError('PMQ_ERR_PROTOCOL', `storageHello answered with ${reply.kind}`);
  }
  return reply;
}
