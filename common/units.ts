/** Parsing of human sizes and listen addresses given on the command line. No I/O. */
import { ArgumentError } from './errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/** "64MiB", "1g", "4096" → bytes. Rejects fractions of a byte and anything above 2^53. */
export function parseSizeBytes(text: string, what = 'size'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = SIZE_UNITS[(match?.[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) {
    throw new ArgumentError(`${what} "${text}" is not a size: use e.g. 4096, 64MiB, 1GiB`);
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new ArgumentError(`${what} "${text}" must be a positive whole number of bytes`);
  }
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
    value /= 1024;
    unit += 1;
  }
  return `${value} ${units[unit]}`;
}

export interface HostPort { host: string; port: number }

/** "127.0.0.1:7000", ":7000" (all interfaces), "7000", "[::1]:7000". Port 0 = pick a free one. */
export function parseHostPort(text: string, defaultHost = '127.0.0.1'): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$|^(\d+)$/.exec(text.trim());
  if (match === null) {
    throw new ArgumentError(`address "${text}" is not host:port (e.g. 127.0.0.1:7000)`);
  }
  const port = Number(match[3] ?? match[4]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ArgumentError(`port in "${text}" must be 0..65535`);
  }
  const host = match[1] ?? (match[2] === undefined || match[2] === '' ? defaultHost : match[2]);
  return { host: match[2] === '' ? '0.0.0.0' : host, port };
}
