/**
 * Prints the frames that allocated most in V8 sampling heap profiles (tools/alloc-sample.ts,
 * or `node --heap-prof`): by self size (what the frame itself allocated) and inclusive (with
 * everything it called), one table per file.
 *
 *   node --import tsx tools/heapprofile-top.ts [--top 25] /tmp/alloc/*.heapprofile
 *
 * A frame `next`, `entries` or `values` with no file is an iterator (a for…of or a spread);
 * `(V8 API)` is allocation by native code (the addon's Buffers).
 */
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface HeapNode { callFrame: CallFrame; selfSize: number; children: HeapNode[] }

function frameName(frame: CallFrame): string {
  const file = frame.url.split('/').slice(-2).join('/');
  return `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ` +
    `${file}:${frame.lineNumber + 1}`;
}

function tally(node: HeapNode, stack: string[], self: Map<string, number>,
  inclusive: Map<string, number>): number {
  const name = frameName(node.callFrame);
  self.set(name, (self.get(name) ?? 0) + node.selfSize);
  let sum = node.selfSize;
  for (const child of node.children) sum += tally(child, [...stack, name], self, inclusive);
  // Recursion counts a frame once per path.
  if (!stack.includes(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + sum);
  return sum;
}

function table(title: string, sizes: Map<string, number>, top: number): string {
  const rows = [...sizes].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, bytes]) => `${(bytes / 1e6).toFixed(1).padStart(9)}  ${name}`);
  return `${title}\n${rows.join('\n')}\n`;
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
for (const path of args) {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { head: HeapNode };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const total = tally(profile.head, [], self, inclusive);
  process.stdout.write(`${path}: ${(total / 1e6).toFixed(1)} MB sampled\n` +
    table('       MB  self', self, top) + table('       MB  inclusive', inclusive, top) + '\n');
}
