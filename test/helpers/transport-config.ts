/** The transport configurations this machine has, for parameterized tests. */
import { PmqError } from '../../common/errors.js';
import type { Endpoint, Transport, TransportOptions } from '../../native/transport.js';

export const TRANSPORTS = ['tcp', 'sm,tcp'] as const;

/** Short keepalive and peer timeout so peer death is noticed within ~1 s in tests. */
export function testOptions(transports: string, extra: TransportOptions = {}): TransportOptions {
  return { transports, netDevices: 'lo', keepaliveMs: 200, peerTimeoutMs: 1000, ...extra };
}

/**
 * connect() with up to two retries of retriable failures. Observed once in ~15 suite runs on
 * tcp: a fresh client-server connection failed with UCS_ERR_NOT_CONNECTED (see
 * docs/native-transport.md, "Known issues"); callers of connect() are expected to retry.
 */
export async function connectRetrying(transport: Transport, host: string,
  port: number): Promise<Endpoint> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await transport.connect(host, port);
    } catch (error) {
      if (attempt >= 3 || !(error instanceof PmqError) || !error.retriable) throw error;
    }
  }
}
