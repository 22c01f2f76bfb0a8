#!/usr/bin/env node
// `npm pack`'s prepack: what the tarball ships is built fresh (README, "Install").
// dist/ is rebuilt from scratch (no stale module of an older tree ships), with type
// declarations (tsconfig.build.json); the addon this checkout built is copied to
// prebuilds/<platform>-<arch>/ (built first when missing), the prebuilt binary the package
// loads when no local build exists (native/index.ts, scripts/install-native.mjs).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (script) => execFileSync(npm, ['run', '--silent', script], { cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'] });

rmSync(join(root, 'dist'), { recursive: true, force: true });
run('build:ts');
const addon = join(root, 'build', 'Release', 'pmq_native.node');
if (!existsSync(addon)) run('build:native');
const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
mkdirSync(target, { recursive: true });
copyFileSync(addon, join(target, 'pmq_native.node'));
