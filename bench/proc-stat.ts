/**
 * CPU time of a process from /proc/<pid>/stat (Linux): utime + stime, fields 14 and 15, in
 * clock ticks (sysconf(_SC_CLK_TCK), 100 on every Linux we know of; `getconf` confirms it).
 * Counts only the process itself, not its children (the benchmark spawns each role as its own
 * process and samples each one).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond !== undefined) return ticksPerSecond;
  try {
    ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  } catch {
    ticksPerSecond = 100;
  }
  if (!Number.isFinite(ticksPerSecond) || ticksPerSecond <= 0) ticksPerSecond = 100;
  return ticksPerSecond;
}

/** CPU seconds (user + system) used so far by `pid`, or null when it is gone or not Linux. */
export function cpuSecondsOf(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicks();
}

/** CPU seconds used between `start()` and `stop()` by one process. */
export class CpuMeter {
  readonly #pid: number;
  #startSeconds: number | null;
  #lastSeconds: number | null;

  constructor(pid: number) {
    this.#pid = pid;
    this.#startSeconds = cpuSecondsOf(pid);
    this.#lastSeconds = this.#startSeconds;
  }

  /** Restarts the measurement now (e.g. once a server has started up). */
  reset(): void {
    this.#startSeconds = cpuSecondsOf(this.#pid);
    this.#lastSeconds = this.#startSeconds;
  }

  /** Samples the process; call before it exits, the last sample stands after that. */
  sample(): void {
    const now = cpuSecondsOf(this.#pid);
    if (now !== null) this.#lastSeconds = now;
  }

  get seconds(): number | null {
    if (this.#startSeconds === null || this.#lastSeconds === null) return null;
    return this.#lastSeconds - this.#startSeconds;
  }
}
