// `pmq storage` / `pmq dev` as a user runs them: a real process, a real region in a temp dir,
// a real UCX connection to the printed address, a clean stop on SIGINT.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { Transport } from '../../native/transport.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];

function startPmq(args: string[]): ChildProcess {
  return spawn(process.execPath, [...PMQ, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UCX_NET_DEVICES: 'lo' },
  });
}

async function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  // Listen with 'data' (not for-await, whose early return destroys the pipe: the child's next
  // write, "stopping" on SIGINT, would then fail with EPIPE and exit 1).
  let text = '';
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors += String(chunk); });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      text += String(chunk);
      const match = pattern.exec(text);
      if (match !== null) resolve(match);
    });
    child.once('exit', () => reject(new Error(
      `process ended before printing ${pattern}; output: ${text}; stderr: ${errors}`)));
  });
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = await once(child, 'exit');
  return code as number | null;
}

t.test('pmq dev starts a storage node that accepts connections and stops on SIGINT', async (t) => {
  const dir = mkdtempSync('/dev/shm/pmq-cli-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const region = join(dir, 'region');
  const child = startPmq(['dev', '--path', region, '--size', '16MiB', '--listen', '127.0.0.1:0',
    '--segment-size', '1MiB', '--transports', 'sm,tcp', '--log-level', 'warn']);
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const match = await waitForLine(child, /listening on ([\d.]+):(\d+) \(region (\S+), 16 MiB/);
  t.equal(match[3], region);

  const transport = Transport.open({ transports: 'sm,tcp', netDevices: 'lo' });
  t.teardown(() => transport.close());
  const ep = await transport.connect(match[1]!, Number(match[2]));
  t.ok(transport.lanes(ep).length > 0, `lanes: ${transport.lanes(ep).join(',')}`);
  await transport.closeEndpoint(ep);

  child.kill('SIGINT');
  t.equal(await exitOf(child), 0, 'clean exit after SIGINT');
  t.ok(existsSync(region), 'the region file stays');
});

t.test('wrong flags and bad regions give clear errors', async (t) => {
  const dir = mkdtempSync('/dev/shm/pmq-cli-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cases: [string[], RegExp][] = [
    [['storage', '--bogus'], /unknown option '--bogus'/],
    [['storage', '--size', 'lots'], /is not a size/],
    [['storage', '--listen', 'nowhere'], /not host:port/],
    [['storage', '--path', join(dir, 'missing', 'r'), '--size', '1MiB'], /PMQ_ERR_REGION_NO_DIR/],
  ];
  for (const [args, expected] of cases) {
    const child = startPmq(args);
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
    t.equal(await exitOf(child), 1, `exit 1: ${args.join(' ')}`);
    t.match(stderr, expected);
  }
});
