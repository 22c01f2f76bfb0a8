/**
 * Runs `pmq storage` in its own process, as a user would: parses the printed address, keeps
 * its stderr (the JSON log) for assertions, and stops or SIGKILLs it. Loopback only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];

export interface StorageProcess {
  child: ChildProcess;
  host: string;
  port: number;
  /** Everything the process wrote to stderr so far (JSON log lines, error lines). */
  stderr(): string;
  /** Log lines (parsed) whose msg is `msg`. */
  logLines(msg: string): Record<string, unknown>[];
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export function spawnPmq(args: string[]): { child: ChildProcess; stderr: () => string } {
  const child = spawn(process.execPath, [...PMQ, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UCX_NET_DEVICES: 'lo' },
  });
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors += String(chunk); });
  return { child, stderr: () => errors };
}

export async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const [code] = await once(child, 'exit');
  return code as number | null;
}

/** `pmq storage` with the cluster key file `keyFile` (test/helpers/cluster-key.ts). */
export async function startStorage(keyFile: string, args: string[]): Promise<StorageProcess> {
  const { child, stderr } = spawnPmq(['storage', '--listen', '127.0.0.1:0', '--transports',
    'tcp', '--log-level', 'info', '--cluster-key-file', keyFile, ...args]);
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk) => {
      text += String(chunk);
      const found = /listening on ([\d.]+):(\d+)/.exec(text);
      if (found !== null) resolve(found);
    });
    child.once('exit', () => reject(new Error(
      `pmq storage ended before listening; stdout: ${text}; stderr: ${stderr()}`)));
  });
  return {
    child, host: match[1]!, port: Number(match[2]), stderr,
    logLines(msg) {
      return stderr().split('\n').filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((line) => line.msg === msg);
    },
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exitOf(child);
    },
  };
}
