/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677), the exchange Kafka's SASL/SCRAM uses, for clients that
 * authenticate to the broker (docs/security.md, "Clients: sessions, users and ACLs"). pmq
 * carries the four SCRAM messages' fields in its own wire messages (authStart → authChallenge
 * → authFinish → authOk); both sides rebuild the RFC's text messages from them, so the
 * AuthMessage, proofs and signatures are exactly the RFC's (no channel binding: `c=biws`).
 *
 * What the server stores per user: salt, iterations, StoredKey = H(ClientKey) and ServerKey,
 * never the password nor anything a client could log in with. Pure: no I/O, no clock; the
 * caller draws nonces (`scramNonce`) and salts.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

import { PmqError } from '../errors.js';

/** RFC 7677 asks for at least 4096; new users get 16384 (`pmq user add --iterations`). */
export const SCRAM_ITERATIONS_MIN = 4096;
export const SCRAM_ITERATIONS_DEFAULT = 16_384;
/** Beyond this a login costs the broker too much CPU (about 1 s at 1M on one core). */
export const SCRAM_ITERATIONS_MAX = 1_000_000;
export const SCRAM_SALT_BYTES = 16;
const KEY_BYTES = 32;
/** A nonce: printable ASCII except ',' (RFC 5802); pmq asks for 24..64 base64 characters. */
const NONCE_PATTERN = /^[A-Za-z0-9+/=]{24,64}$/;

export interface ScramCredentials {
  salt: Uint8Array;
  iterations: number;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

/** What both sides know once the challenge is out: the pieces of the RFC's AuthMessage. */
export interface ScramExchange {
  user: string;
  clientNonce: string;
  /** clientNonce followed by the server's nonce. */
  nonce: string;
  salt: Uint8Array;
  iterations: number;
}

function hmac(key: Uint8Array, text: string | Uint8Array): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.byteLength);
  for (let index = 0; index < a.byteLength; index += 1) out[index] = a[index]! ^ b[index]!;
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/** RFC 5802 saslname: ',' and '=' escaped. */
function saslName(user: string): string {
  return user.replaceAll('=', '=3D').replaceAll(',', '=2C');
}

export function checkIterations(iterations: number): void {
  if (!Number.isSafeInteger(iterations) || iterations < SCRAM_ITERATIONS_MIN ||
      iterations > SCRAM_ITERATIONS_MAX) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `SCRAM iterations must be ${SCRAM_ITERATIONS_MIN}..` +
      `${SCRAM_ITERATIONS_MAX}, got ${iterations}`);
  }
}

export function isScramNonce(text: string): boolean {
  return NONCE_PATTERN.test(text);
}

/** A fresh nonce of 32 base64 characters (24 random bytes). */
export function scramNonce(): string {
  return randomBytes(24).toString('base64');
}

/** SaltedPassword = Hi(password, salt, i) = PBKDF2-HMAC-SHA256. Costs `iterations` HMACs. */
export function saltedPassword(password: string, salt: Uint8Array, iterations: number):
  Uint8Array {
  checkIterations(iterations);
  return new Uint8Array(pbkdf2Sync(Buffer.from(password.normalize('NFKC'), 'utf8'), salt,
    iterations, KEY_BYTES, 'sha256'));
}

/** What `pmq user add` stores: from the password, a salt and the iteration count. */
export function scramCredentials(password: string, salt: Uint8Array, iterations: number):
  ScramCredentials {
  const salted = saltedPassword(password, salt, iterations);
  return { salt, iterations, storedKey: new Uint8Array(sha256(hmac(salted, 'Client Key'))),
    serverKey: new Uint8Array(hmac(salted, 'Server Key')) };
}

/**
 * AuthMessage = client-first-message-bare "," server-first-message "," client-final-message-
 * without-proof, as RFC 5802 section 3 builds it.
 */
export function authMessage(exchange: ScramExchange): string {
  const salt = Buffer.from(exchange.salt).toString('base64');
  return `n=${saslName(exchange.user)},r=${exchange.clientNonce},` +
    `r=${exchange.nonce},s=${salt},i=${exchange.iterations},` +
    `c=biws,r=${exchange.nonce}`;
}

/** The client's side: its proof, and the server signature it must see in return. */
export function clientFinal(exchange: ScramExchange, salted: Uint8Array):
  { proof: Uint8Array; expectedSignature: Uint8Array } {
  const message = authMessage(exchange);
  const clientKey = hmac(salted, 'Client Key');
  const clientSignature = hmac(sha256(clientKey), message);
  const serverKey = hmac(salted, 'Server Key');
  return { proof: new Uint8Array(xor(clientKey, clientSignature)),
    expectedSignature: new Uint8Array(hmac(serverKey, message)) };
}

/**
 * The server's side: true when ClientProof recovers a ClientKey whose hash is StoredKey
 * (constant-time compare), and then the ServerSignature to send back.
 */
export function verifyClientProof(exchange: ScramExchange, credentials: ScramCredentials,
  proof: Uint8Array): { ok: true; signature: Uint8Array } | { ok: false } {
  if (proof.byteLength !== KEY_BYTES) return { ok: false };
  const message = authMessage(exchange);
  const clientSignature = hmac(credentials.storedKey, message);
  const clientKey = xor(proof, clientSignature);
  if (!equal(sha256(clientKey), credentials.storedKey)) return { ok: false };
  return { ok: true, signature: new Uint8Array(hmac(credentials.serverKey, message)) };
}

/** The client's check of the server's signature (mutual authentication), constant time. */
export function serverSignatureMatches(expected: Uint8Array, signature: Uint8Array): boolean {
  return equal(expected, signature);
}
