// SCRAM-SHA-256 against the RFC 7677 section 3 test vector, and the server's refusals.
import t from 'tap';

import {
  authMessage, clientFinal, saltedPassword, scramCredentials, serverSignatureMatches,
  verifyClientProof, type ScramExchange,
} from '../../common/auth/scram.js';

const b64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));
const text64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

// RFC 7677, section 3: user "user", password "pencil".
const exchange: ScramExchange = {
  user: 'user',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  nonce: 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: b64('W22ZaJ0SNY7soEsUEjb6gQ=='),
  iterations: 4096,
};
const PROOF = 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SIGNATURE = '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

t.test('AuthMessage is the RFC\'s three messages joined', async (t) => {
  t.equal(authMessage(exchange), 'n=user,r=rOprNGfwEbeRWgbNEkqO,' +
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,' +
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0');
});

t.test('the client computes the RFC 7677 proof and expects its server signature', async (t) => {
  const salted = saltedPassword('pencil', exchange.salt, exchange.iterations);
  const { proof, expectedSignature } = clientFinal(exchange, salted);
  t.equal(text64(proof), PROOF);
  t.equal(text64(expectedSignature), SIGNATURE);
  t.ok(serverSignatureMatches(expectedSignature, b64(SIGNATURE)));
  const wrong = b64(SIGNATURE);
  wrong[0] = wrong[0]! ^ 1;
  t.notOk(serverSignatureMatches(expectedSignature, wrong), 'a forged signature is refused');
});

t.test('the server verifies the RFC 7677 proof from stored keys only', async (t) => {
  const credentials = scramCredentials('pencil', exchange.salt, exchange.iterations);
  const result = verifyClientProof(exchange, credentials, b64(PROOF));
  t.ok(result.ok);
  if (result.ok) t.equal(text64(result.signature), SIGNATURE);
  const bad = b64(PROOF);
  bad[5] = bad[5]! ^ 0x40;
  t.notOk(verifyClientProof(exchange, credentials, bad).ok, 'a changed proof is refused');
  const other = scramCredentials('pencil2', exchange.salt, exchange.iterations);
  t.notOk(verifyClientProof(exchange, other, b64(PROOF)).ok, 'another password is refused');
  t.notOk(verifyClientProof({ ...exchange, nonce: `${exchange.nonce}x` }, credentials,
    b64(PROOF)).ok, 'a proof for another nonce is refused');
  t.notOk(verifyClientProof(exchange, credentials, b64(PROOF).subarray(0, 31)).ok,
    'a short proof is refused');
});

t.test('iterations below 4096 are refused', async (t) => {
  t.throws(() => saltedPassword('x', exchange.salt, 4095), { code: 'PMQ_ERR_ARGUMENT' });
});
