/**
 * A --listen address another process holds is refused before a server creates anything (a
 * region file, a data directory lock), with the words a user searches for: UCX itself reports
 * it as "ucp_listener_create: Device is busy". The probe binds a plain TCP socket as UCX's tcp
 * connection manager does (SO_REUSEADDR, as UCX_TCP_CM_REUSEADDR=y: a dead process's lingering
 * connections do not count) and closes it at once; a port taken in between still fails at
 * listen, as before.
 */
import { createServer } from 'node:net';

import { PmqError } from '../common/errors.js';

export async function checkListenAddressFree(host: string, port: number, flag: string):
  Promise<void> {
  if (port === 0) return;  // any free port
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EADDRINUSE') {
        resolve();  // not ours to judge (e.g. an address of another host): listen will say
        return;
      }
      reject(new PmqError('PMQ_ERR_TRANSPORT', `address ${host}:${port} is already in use ` +
        `(another process listens there: a pmq node still running?): stop it, or pass ` +
        `${flag} host:port with another port (port 0 picks a free one)`));
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}
