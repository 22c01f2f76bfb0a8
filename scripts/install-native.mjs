#!/usr/bin/env node
// pmq's npm `install` script: makes sure the native addon can load (README, "Install").
//
// 1. The package ships a prebuilt addon for linux-x64 (prebuilds/linux-x64/pmq_native.node,
//    N-API, so any Node >= 20). If it loads here, nothing is built. npm 11 skips dependencies'
//    install scripts unless the project allows them (allowScripts), so the prebuilt binary is
//    what most users run: this script is the fallback, not the main path.
// 2. Otherwise (another platform, or system libraries of another ABI) it builds from the
//    shipped sources with node-gyp, after checking with pkg-config that the headers of UCX and
//    libpmem2 are there; when they are not, it says what to install and fails.
// In a checkout of the repository it does nothing: scripts/setup.sh builds the addon.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line) => process.stderr.write(`pmq install: ${line}\n`);

const SYSTEM_PACKAGES = 'Debian/Ubuntu: apt-get install libucx-dev libpmem2-dev pkg-config ' +
  'g++ make python3 (to run a built addon only: libucx0 libpmem2-1); elsewhere UCX >= 1.13 ' +
  'and PMDK libpmem2 with their headers, and pkg-config';

function loads(path) {
  if (!existsSync(path)) return false;
  try {
    createRequire(import.meta.url)(path);
    return true;
  } catch (error) {
    say(`${path} does not load here (${error.message.split('\n')[0]})`);
    return false;
  }
}

if (existsSync(join(root, '.git')) && existsSync(join(root, 'tools', 'tidy.ts'))) {
  process.exit(0);  // a checkout: scripts/setup.sh (npm run build) builds the addon
}
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`,
  'pmq_native.node');
if (loads(prebuilt)) process.exit(0);

const pkgConfig = spawnSync('pkg-config', ['--exists', 'ucx', 'libpmem2']);
if (pkgConfig.error !== undefined || pkgConfig.status !== 0) {
  say('cannot build the native addon: pkg-config does not find UCX (ucx) and libpmem2 ' +
    `(libpmem2). Install them, then run \`npm rebuild pmq\`: ${SYSTEM_PACKAGES}`);
  process.exit(1);
}
// npm names its own node-gyp for lifecycle scripts; else one on the PATH.
const gyp = process.env.npm_config_node_gyp;
const [command, args] = gyp !== undefined && existsSync(gyp)
  ? [process.execPath, [gyp, 'rebuild', '--loglevel=warn']]
  : ['node-gyp', ['rebuild', '--loglevel=warn']];
say('building the native addon from source (about 30 s)');
const build = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  say(`node-gyp failed (exit ${build.status ?? build.error?.message}): ${SYSTEM_PACKAGES}`);
  process.exit(1);
}
