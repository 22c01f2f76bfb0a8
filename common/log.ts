/**
 * The pino factory. One root logger per process, built by the CLI and passed down (no global
 * singleton); components take children: `log.child({ component: 'storage', nodeId })`.
 * Message text is a stable lower-case event name; values go in fields.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

import { setFatalSink } from './invariant.js';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] =
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LogOptions {
  level: LevelWithSilent;
  /** Defaults to 2 (stderr) so stdout stays free for a command's own output. */
  fd?: number;
}

export function createLogger(opts: LogOptions): Logger {
  const destination = pino.destination({ fd: opts.fd ?? 2, sync: false });
  const logger = pino({ level: opts.level, base: { pid: process.pid } }, destination);
  setFatalSink((fields, message) => {
    logger.fatal(fields, message);
    destination.flushSync();
  });
  return logger;
}
