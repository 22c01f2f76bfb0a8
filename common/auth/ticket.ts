/**
 * Session tickets (docs/security.md, "Sessions and tickets"): the broker gives each client
 * session a ticket; the client presents it to a storage node (`sessionBind`), which checks it
 * with the cluster key and binds that endpoint to the session natively. Grants name their
 * session, so a grant is usable only on endpoints bound to it.
 *
 * Format, version 1 (little endian), then an HMAC-SHA256 under the cluster key's ticket subkey
 * over everything before it:
 *
 *   u8 version (1) | u8 flags | u16 principal bytes (≤ 255) | u32 reserved (0)
 *   u64 epoch | u64 session id | u64 issued at (ms, wall clock) | u64 expires at (ms, wall clock)
 *   principal (UTF-8) | mac (32 bytes)
 *
 * flags: bit 0 = the principal was authenticated (SCRAM); bit 1 = direct mode allowed.
 * Pure: the caller passes the wall clock in.
 */
import { PmqError } from '../errors.js';
import { MAC_BYTES, type ClusterKey } from './keys.js';

export const TICKET_VERSION = 1;
const FIXED_BYTES = 8 + 4 * 8;
const PRINCIPAL_BYTES_MAX = 255;
export const TICKET_BYTES_MAX = FIXED_BYTES + PRINCIPAL_BYTES_MAX + MAC_BYTES;
/** How much a storage node's clock may be ahead of or behind the broker's. */
export const TICKET_CLOCK_SKEW_MS = 5 * 60_000;

export interface Ticket {
  epoch: number;
  sessionId: number;
  issuedAtMs: number;
  expiresAtMs: number;
  /** The authenticated user, or '' when client authentication is off. */
  principal: string;
  authenticated: boolean;
  directAllowed: boolean;
}

export function issueTicket(key: ClusterKey, ticket: Ticket): Uint8Array {
  const principal = Buffer.from(ticket.principal, 'utf8');
  if (principal.byteLength > PRINCIPAL_BYTES_MAX) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `principal of ${principal.byteLength} bytes: at ` +
      `most ${PRINCIPAL_BYTES_MAX}`);
  }
  const body = Buffer.alloc(FIXED_BYTES + principal.byteLength);
  body.writeUInt8(TICKET_VERSION, 0);
  body.writeUInt8((ticket.authenticated ? 1 : 0) | (ticket.directAllowed ? 2 : 0), 1);
  body.writeUInt16LE(principal.byteLength, 2);
  body.writeUInt32LE(0, 4);
  body.writeBigUInt64LE(BigInt(ticket.epoch), 8);
  body.writeBigUInt64LE(BigInt(ticket.sessionId), 16);
  body.writeBigUInt64LE(BigInt(ticket.issuedAtMs), 24);
  body.writeBigUInt64LE(BigInt(ticket.expiresAtMs), 32);
  principal.copy(body, FIXED_BYTES);
  const mac = key.mac('ticket', body);
  return new Uint8Array(Buffer.concat([body, mac])); // tidy: allow (once per session)
}

function refused(why: string): PmqError {
  return new PmqError('PMQ_ERR_TICKET_INVALID', `session ticket refused: ${why}`);
}

function safeNumber(bytes: Buffer, at: number, what: string): number {
  const value = bytes.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw refused(`${what} out of range`);
  return Number(value);
}

/**
 * Checks a ticket a peer presented: format, MAC (constant time), expiry against `nowMs` (with
 * TICKET_CLOCK_SKEW_MS of slack). The caller checks the epoch against its own.
 */
export function verifyTicket(key: ClusterKey, bytes: Uint8Array, nowMs: number): Ticket {
  if (bytes.byteLength < FIXED_BYTES + MAC_BYTES || bytes.byteLength > TICKET_BYTES_MAX) {
    throw refused(`${bytes.byteLength} bytes is not a ticket`);
  }
  const all = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (all.readUInt8(0) !== TICKET_VERSION) throw refused(`version ${all.readUInt8(0)} unknown`);
  const principalBytes = all.readUInt16LE(2);
  if (all.byteLength !== FIXED_BYTES + principalBytes + MAC_BYTES) {
    throw refused('length does not match its principal');
  }
  const body = all.subarray(0, FIXED_BYTES + principalBytes);
  if (!key.verify('ticket', all.subarray(body.byteLength), body)) {
    throw refused('not signed with this cluster\'s key');
  }
  const flags = all.readUInt8(1);
  const ticket: Ticket = {
    epoch: safeNumber(all, 8, 'epoch'),
    sessionId: safeNumber(all, 16, 'session id'),
    issuedAtMs: safeNumber(all, 24, 'issue time'),
    expiresAtMs: safeNumber(all, 32, 'expiry'),
    principal: all.toString('utf8', FIXED_BYTES, FIXED_BYTES + principalBytes),
    authenticated: (flags & 1) !== 0,
    directAllowed: (flags & 2) !== 0,
  };
  if (nowMs > ticket.expiresAtMs + TICKET_CLOCK_SKEW_MS) {
    throw new PmqError('PMQ_ERR_TICKET_EXPIRED', `session ticket expired at ` +
      `${new Date(ticket.expiresAtMs).toISOString()}: ask the broker for a new one ` +
      '(ticketRefresh); if it was just issued, the broker\'s and this node\'s clocks differ',
    { retriable: true });
  }
  if (ticket.issuedAtMs > nowMs + TICKET_CLOCK_SKEW_MS) {
    throw refused('issued in the future: the broker\'s and this node\'s clocks differ by more ' +
      `than ${TICKET_CLOCK_SKEW_MS / 1000} s`);
  }
  return ticket;
}
