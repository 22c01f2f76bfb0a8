/**
 * The pino factory. One root logger per process, built by the CLI and passed down (no global
 * singleton); components take children: `log.child({ component: 'storage', nodeId })`.
 * Message text is a stable lower-case event name; values go in fields.
 */
import { isatty } from 'node:tty';

import { pino, type Logger, type LevelWithSilent } from 'pino';
import PinoPretty from 'pino-pretty';

import { setFatalSink } from './invariant.js';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] =
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LogOptions {
  level: LevelWithSilent;
  /** Defaults to 2 (stderr) so stdout stays free for a command's own output. */
  fd?: number;
}

/** JSON lines when the destination is not a terminal; readable lines (pino-pretty) when it is. */
export function createLogger(opts: LogOptions): Logger {
  const fd = opts.fd ?? 2;
  if (isatty(fd)) {
    const pretty = PinoPretty({ destination: fd, sync: true, colorize: true,
      translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
    const logger = pino({ level: opts.level }, pretty);
    setFatalSink((fields, message) => logger.fatal(fields, message));
    return logger;
  }
  const destination = pino.destination({ fd, sync: false });
  const logger = pino({ level: opts.level, base: { pid: process.pid } }, destination);
  setFatalSink((fields, message) => {
    logger.fatal(fields, message);
    destination.flushSync();
  });
  return logger;
}
