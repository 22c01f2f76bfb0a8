/**
 * `--metrics-listen host:port` (pmq broker, pmq storage, pmq dev): an HTTP endpoint that answers
 * `GET /metrics` with the node's Prometheus metrics in the text format (docs/metrics.md), and
 * 404 to anything else. Off unless the flag is given: nothing listens where not told.
 *
 * Scrapes are served from the JS thread between the node's own work; a scrape reads the
 * counters and walks the segment table and group offsets (linear in them, never per record).
 */
import { createServer, type Server } from 'node:http';

import { Option } from 'commander';

import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import { parseHostPort } from '../common/units.js';

export interface MetricsEndpoint {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export function metricsListenOption(flag = '--metrics-listen', who = 'this node'): Option {
  return new Option(`${flag} <host:port>`, `serve ${who}'s Prometheus metrics at ` +
    'http://host:port/metrics (port 0: a free one; docs/metrics.md); off by default');
}

/** Starts the endpoint; rejects with PMQ_ERR_ARGUMENT when the address cannot be bound. */
export async function serveMetrics(listen: string, metrics: Metrics, log: Logger):
  Promise<MetricsEndpoint> {
  const { host, port } = parseHostPort(listen);
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    metrics.text().then((text) => {
      response.writeHead(200, { 'content-type': metrics.contentType }).end(text);
    }, (error: unknown) => {
      log.warn({ err: String(error) }, 'metrics scrape failed');
      response.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
    });
  });
  await listenOn(server, host, port);
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  log.info({ host, port: bound }, 'metrics listening');
  return { host, port: bound, close: () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }) };
}

function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(new PmqError('PMQ_ERR_ARGUMENT', `--metrics-listen ${host}:${port}: cannot ` +
        `listen (${error.code ?? error.message}${error.code === 'EADDRINUSE' ? ': address ' +
        'in use, choose another port' : ''})`, { cause: error }));
    });
    server.listen(port, host, () => resolve());
  });
}
