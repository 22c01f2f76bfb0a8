// Session tickets and the cluster key's subkeys (common/auth): a ticket verifies only under the
// key that signed it, unchanged, within its lifetime; proofs of one purpose never verify as
// another's.
import t from 'tap';

import { ClusterKey, nonce, u64 } from '../../common/auth/keys.js';
import { issueTicket, TICKET_CLOCK_SKEW_MS, verifyTicket, type Ticket } from
  '../../common/auth/ticket.js';

const NOW = 1_800_000_000_000;
const key = ClusterKey.from(ClusterKey.generate());
const ticket: Ticket = { epoch: 7, sessionId: 2 ** 47 + 5, issuedAtMs: NOW,
  expiresAtMs: NOW + 3_600_000, principal: 'alice', authenticated: true, directAllowed: false };

t.test('a ticket round-trips under its key', async (t) => {
  t.same(verifyTicket(key, issueTicket(key, ticket), NOW + 1000), ticket);
  const anonymous = { ...ticket, principal: '', authenticated: false, directAllowed: true };
  t.same(verifyTicket(key, issueTicket(key, anonymous), NOW), anonymous);
});

t.test('every changed byte, another key, truncation and expiry are refused', async (t) => {
  const bytes = issueTicket(key, ticket);
  let refused = 0;
  for (let at = 0; at < bytes.byteLength; at += 1) {
    const changed = bytes.slice();
    changed[at] = changed[at]! ^ 0x01;
    try { verifyTicket(key, changed, NOW); } catch { refused += 1; }
  }
  t.equal(refused, bytes.byteLength, 'a flipped bit anywhere is refused');
  t.throws(() => verifyTicket(ClusterKey.from(ClusterKey.generate()), bytes, NOW),
    { code: 'PMQ_ERR_TICKET_INVALID' });
  t.throws(() => verifyTicket(key, bytes.subarray(0, bytes.byteLength - 1), NOW),
    { code: 'PMQ_ERR_TICKET_INVALID' });
  t.throws(() => verifyTicket(key, new Uint8Array(0), NOW), { code: 'PMQ_ERR_TICKET_INVALID' });
  t.throws(() => verifyTicket(key, bytes, ticket.expiresAtMs + TICKET_CLOCK_SKEW_MS + 1),
    { code: 'PMQ_ERR_TICKET_EXPIRED', retriable: true });
  t.throws(() => verifyTicket(key, bytes, NOW - TICKET_CLOCK_SKEW_MS - 1),
    { code: 'PMQ_ERR_TICKET_INVALID' }, 'issued in the future');
});

t.test('cluster keys: bad keys refused, purposes separated', async (t) => {
  t.throws(() => ClusterKey.from(new Uint8Array(31)), { code: 'PMQ_ERR_CLUSTER_KEY' });
  t.throws(() => ClusterKey.from(new Uint8Array(32)), { code: 'PMQ_ERR_CLUSTER_KEY' });
  const a = nonce();
  const b = nonce();
  const proof = key.mac('broker-proof', a, b, u64(3));
  t.ok(key.verify('broker-proof', proof, a, b, u64(3)));
  t.notOk(key.verify('storage-proof', proof, a, b, u64(3)), 'not valid for another purpose');
  t.notOk(key.verify('broker-proof', proof, b, a, u64(3)), 'nonces are ordered');
  t.notOk(key.verify('broker-proof', proof, a, b, u64(4)), 'the epoch is bound');
  t.notOk(key.verify('broker-proof', proof.subarray(1), a, b, u64(3)), 'a short MAC');
});
