/** A child process's exit code and output, collected (no native module: every test may use it). */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface PmqRun { code: number | null; stdout: string; stderr: string }

/** A child's exit code and everything it printed, once it closed (stdout, stderr: pipes). */
export async function collectRun(child: ChildProcess): Promise<PmqRun> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += String(chunk); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += String(chunk); });
  const [code] = await once(child, 'close');
  return { code: code as number | null, stdout, stderr };
}
