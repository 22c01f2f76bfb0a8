/**
 * The cluster key and what is derived from it. Storage nodes and brokers share one 32-byte
 * cluster key (a key file made by `pmq keygen`, docs/security.md). It is never used directly:
 * each use gets its own subkey (HKDF-SHA256 with a purpose label), so a proof made for one
 * purpose can never be replayed as another. Pure: no I/O (cli/cluster-key-file.ts reads files).
 */
import { createHmac, hkdfSync, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

import { PmqError } from '../errors.js';

export const CLUSTER_KEY_BYTES = 32;
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;

/** What a subkey is for; the label is part of the derivation. */
export type KeyPurpose = 'broker-proof' | 'storage-proof' | 'ticket';

const LABELS: Record<KeyPurpose, string> = {
  'broker-proof': 'pmq v1 broker proves it holds the cluster key',
  'storage-proof': 'pmq v1 storage node proves it holds the cluster key',
  ticket: 'pmq v1 session ticket',
};

/** The session id natively bound to an authenticated broker endpoint (its own grants). */
export const BROKER_SESSION = 1;
/** Client session ids are random in [SESSION_ID_MIN, 2^48). */
export const SESSION_ID_MIN = 2;

export class ClusterKey {
  readonly #subkeys = new Map<KeyPurpose, Buffer>();

  private constructor(key: Uint8Array) {
    for (const purpose of Object.keys(LABELS) as KeyPurpose[]) {
      this.#subkeys.set(purpose, Buffer.from(hkdfSync('sha256', key, 'pmq cluster key',
        LABELS[purpose], 32)));
    }
  }

  /** Checks length and that the key is not all zero (an unwritten file). */
  static from(key: Uint8Array): ClusterKey {
    if (key.byteLength !== CLUSTER_KEY_BYTES) {
      throw new PmqError('PMQ_ERR_CLUSTER_KEY', `a cluster key is ${CLUSTER_KEY_BYTES} bytes, ` +
        `this one ${key.byteLength}: make one with \`pmq keygen --out FILE\``);
    }
    if (key.every((byte) => byte === 0)) {
      throw new PmqError('PMQ_ERR_CLUSTER_KEY', 'the cluster key is all zero bytes: make one ' +
        'with `pmq keygen --out FILE`');
    }
    return new ClusterKey(key);
  }

  static generate(): Uint8Array {
    return new Uint8Array(randomBytes(CLUSTER_KEY_BYTES));
  }

  /** HMAC-SHA256 under the purpose's subkey over the parts, each length-prefixed. */
  mac(purpose: KeyPurpose, ...parts: readonly Uint8Array[]): Uint8Array {
    const hmac = createHmac('sha256', this.#subkeys.get(purpose)!);
    const length = Buffer.alloc(4);
    for (const part of parts) {
      length.writeUInt32LE(part.byteLength, 0);
      hmac.update(length);
      hmac.update(part);
    }
    return new Uint8Array(hmac.digest());
  }

  /** Constant-time check of a MAC a peer sent. */
  verify(purpose: KeyPurpose, mac: Uint8Array, ...parts: readonly Uint8Array[]): boolean {
    const expected = this.mac(purpose, ...parts);
    return mac.byteLength === expected.byteLength && timingSafeEqual(mac, expected);
  }
}

export function nonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** A uint64 little-endian, for numbers inside MACs. */
export function u64(value: number): Uint8Array {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(BigInt(value));
  return new Uint8Array(bytes);
}

/** A random client session id (never BROKER_SESSION, never 0). */
export function randomSessionId(): number {
  return randomInt(SESSION_ID_MIN, 2 ** 48);
}

/** A random grant key: 48 unguessable bits a data-path request must carry with its grant id. */
export function randomGrantKey(): number {
  return randomInt(1, 2 ** 48);
}
