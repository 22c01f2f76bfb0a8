/**
 * Child processes of a benchmark run: `pmq storage` and `pmq broker` (bench/cluster.ts) and the
 * producer/consumer workers. Children run the same way as this process does: from TypeScript
 * sources under tsx (`npm run bench`, `node --import tsx cli/pmq.ts bench`) or from dist/
 * after `npm run build` (`node dist/cli/pmq.js bench`). stdout lines starting with '{' are
 * parsed as JSON; stderr is kept (the last 20 kB) for error messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** '.ts' when running from sources under tsx, '.js' from dist/. */
const EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

export function modulePath(relativeToBench: string): string {
  return fileURLToPath(new URL(`${relativeToBench}${EXTENSION}`, import.meta.url));
}

export interface Child<L> {
  child: ChildProcess;
  lines: L[];
  stderr(): string;
  /** The first stdout text matching `pattern` (JSON or not). */
  waitForText(pattern: RegExp): Promise<RegExpExecArray>;
  waitFor(test: (line: L) => boolean): Promise<L>;
  tell(message: unknown): void;
  /** Every JSON line once the child exits 0; rejects otherwise. */
  done: Promise<L[]>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface SpawnOptions {
  /** Node flags of this child only (e.g. --trace-gc for a GcMeter). */
  nodeFlags?: string[];
  /** Every stdout line that is not JSON (e.g. V8's --trace-gc lines). */
  onText?: (text: string) => void;
}

export function spawnNode<L>(script: string, args: string[], env: NodeJS.ProcessEnv,
  onLine: (line: L) => void = () => undefined, options: SpawnOptions = {}): Child<L> {
  // PMQ_BENCH_NODE_FLAGS: extra node flags for every process (--cpu-prof, --trace-gc).
  const extra = (process.env.PMQ_BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
  const flags = [...process.execArgv, ...extra, ...(options.nodeFlags ?? [])];
  const child = spawn(process.execPath, [...flags, script, ...args],
    { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: L[] = [];
  const watchers: { test: (text: string) => boolean }[] = [];
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors = (errors + String(chunk)).slice(-20_000); });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (text.startsWith('{')) {
      const line = JSON.parse(text) as L;
      lines.push(line);
      onLine(line);
    } else {
      options.onText?.(text);
    }
    for (let i = watchers.length - 1; i >= 0; i -= 1) {
      if (watchers[i]!.test(text)) watchers.splice(i, 1);
    }
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const done = exited.then(([code, signal]) => {
    if (code === 0) return lines;
    throw new Error(`${script} exited with ${code ?? signal}; stderr: ${errors}`);
  });
  done.catch(() => undefined);
  function waitUntil<T>(match: (text: string) => T | null, what: string): Promise<T> {
    return Promise.race([
      new Promise<T>((resolve) => watchers.push({ test: (text) => {
        const found = match(text);
        if (found !== null) resolve(found);
        return found !== null;
      } })),
      exited.then(([code, signal]) => {
        throw new Error(`${script} ended (${code ?? signal}) before printing ${what}; ` +
          `stderr: ${errors}`);
      })]);
  }
  return {
    child, lines, done, stderr: () => errors,
    waitForText: (pattern) => waitUntil((text) => pattern.exec(text), String(pattern)),
    waitFor: (test) => {
      const seen = lines.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      // Lines are parsed and pushed before watchers run: the matching line is the last one.
      return waitUntil((text) => text.startsWith('{') && test(lines.at(-1)!) ? lines.at(-1)!
        : null, 'the line awaited');
    },
    tell(message) { child.stdin!.write(`${JSON.stringify(message)}\n`); },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}
