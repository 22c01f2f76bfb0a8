/**
 * Prints the top frames by self time of V8 CPU profiles (`node --cpu-prof`), one table per
 * file, with the role of the process guessed from the scripts it ran. What a benchmark's
 * closing note quotes for "what bounds it".
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/cli/pmq.js bench --count 1000000 --no-machine
 *   node --import tsx tools/cpuprofile-top.ts [--top 25] /tmp/prof/*.cpuprofile
 *
 * (`pmq bench` starts its children with the same node flags, so every process writes a
 * profile.) Self time of a frame includes native code it called (the addon's functions show
 * as the JS function that called them); `(idle)` is the JS thread outside JavaScript: waiting
 * in the event loop, but also the kernel and UCX work of wake-ups and the transport's spin
 * before sleeping. A process whose CPU time (pmq bench's cpu s/GB) is far above its non-idle
 * JS time spends it there: profile it with `perf record -g -p <pid>` instead.
 */
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; hitCount?: number }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

// `pmq` loads every subcommand's modules, so a role is told by where its samples fall (a worker
// script by being loaded at all).
const ROLES: [RegExp, string][] = [
  [/bench\/producer-worker/, 'producer'], [/bench\/consumer-worker/, 'consumer'],
  [/\/storage-node\//, 'storage'], [/\/broker-node\//, 'broker'],
  [/\/bench\/(run|cluster|processes)\./, 'bench coordinator'],
];

function frameName(frame: CallFrame): string {
  const where = frame.url === '' ? '' :
    ` ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`;
  return `${frame.functionName === '' ? '(anonymous)' : frame.functionName}${where}`;
}

function role(profile: CpuProfile): string {
  const urls = profile.nodes.map((node) => node.callFrame.url);
  for (const [pattern, name] of ROLES.slice(0, 2)) {
    if (urls.some((url) => pattern.test(url))) return name;
  }
  const hits = ROLES.slice(2).map(([pattern, name]) => [name, profile.nodes
    .filter((node) => pattern.test(node.callFrame.url))
    .reduce((sum, node) => sum + (node.hitCount ?? 0), 0)] as const);
  const [name, count] = hits.reduce((best, next) => (next[1] > best[1] ? next : best));
  return count > 0 ? name : 'unknown';
}

function summarise(path: string, top: number): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    const deltaUs = profile.timeDeltas[index] ?? 0;
    totalUs += deltaUs;
    const name = frameName(byId.get(id)!.callFrame);
    selfUs.set(name, (selfUs.get(name) ?? 0) + deltaUs);
  });
  const busyUs = totalUs - (selfUs.get('(idle)') ?? 0);
  const rows = [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) =>
    `${(us / 1000).toFixed(0).padStart(8)} ms ${(100 * us / totalUs).toFixed(1).padStart(5)}%` +
    `  ${name}`);
  return [`== ${path}: ${role(profile)}, ${(totalUs / 1e6).toFixed(2)} s profiled, ` +
    `${(busyUs / 1e6).toFixed(2)} s not idle`, ...rows, ''].join('\n');
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
if (args.length === 0 || !Number.isInteger(top) || top < 1) {
  process.stderr.write('usage: cpuprofile-top.ts [--top N] <file.cpuprofile>...\n');
  process.exit(2);
}
for (const path of args) process.stdout.write(`${summarise(path, top)}\n`);
