/**
 * The only module that loads the native addon. Everything else imports the typed binding from
 * here (or from the wrappers region.ts, transport.ts, crc32c.ts, which validate arguments
 * before calling in: native code asserts, it never produces user-facing validation errors).
 *
 * Each family of native functions declares its own slice of the binding (binding-*.ts), with a
 * const list of its export names; test/native/binding.test.ts checks that the addon exports
 * exactly the union of those lists, so nothing drifts across the boundary unnoticed.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { NativeError, PmqError } from '../common/errors.js';
import type { Crc32cBinding } from './binding-crc32c.js';
import type { RegionBinding } from './binding-region.js';
import type { TransportBinding } from './binding-transport.js';

/** Must equal kAbiVersion in native/addon.cc. */
export const ABI_VERSION = 4;

export interface CoreBinding {
  readonly abiVersion: number;
  init(errorClass: typeof NativeError): void;
}

export const CORE_EXPORTS = ['abiVersion', 'init'] as const satisfies readonly (
  keyof CoreBinding
)[];

export interface NativeBinding
  extends CoreBinding, Crc32cBinding, RegionBinding, TransportBinding {}

/** What a package user installs so the addon loads or builds (README, "Install"). */
export const SYSTEM_LIBRARIES = 'UCX >= 1.13 and PMDK libpmem2 (Debian/Ubuntu: apt-get ' +
  'install libucx0 libpmem2-1 to run; libucx-dev libpmem2-dev pkg-config g++ make python3 to ' +
  'build)';

/**
 * The addon: a local build (build/Release, the checkout's or one `npm rebuild pmq` made)
 * wins over the prebuilt binary the package ships for this platform (prebuilds/).
 */
function findAddon(): string {
  // Works from the sources (native/index.ts) and from the compiled tree (dist/native/index.js).
  const prebuilt = join('prebuilds', `${process.platform}-${process.arch}`, 'pmq_native.node');
  for (const relative of [join('build', 'Release', 'pmq_native.node'), prebuilt]) {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let up = 0; up < 4; up += 1) {
      const candidate = join(dir, relative);
      if (existsSync(candidate)) return candidate;
      dir = dirname(dir);
    }
  }
  throw new PmqError(
    'PMQ_ERR_NATIVE_MISSING',
    'native addon not found (no build/Release/pmq_native.node, no prebuilt binary for ' +
      `${process.platform}-${process.arch}): in a checkout run \`bash scripts/setup.sh\` (or ` +
      `\`npm run build:native\`); as a package, install ${SYSTEM_LIBRARIES} and run ` +
      '`npm rebuild pmq`',
  );
}

/**
 * Loading fails when a system library the addon links is missing (dlopen: "libucp.so.0:
 * cannot open shared object file"): that is an install problem, so it says what to install.
 */
export function addonLoadError(path: string, error: unknown): PmqError {
  const reason = String((error as Error)?.message ?? error).split('\n')[0]!;
  const missingLibrary = /cannot open shared object file|undefined symbol/.test(reason);
  return new PmqError('PMQ_ERR_NATIVE_MISSING', `native addon ${path} does not load ` +
    `(${reason}): ${missingLibrary ? `install ${SYSTEM_LIBRARIES}` : 'rebuild it with ' +
    '`npm rebuild pmq` (in a checkout: `npm run build:native`)'}`, { cause: error });
}

function loadAddon(path: string): NativeBinding {
  try {
    return createRequire(import.meta.url)(path) as NativeBinding;
  } catch (error) {
    throw addonLoadError(path, error);
  }
}

/**
 * UCX's memory hooks (libucm patching malloc/mmap when libucs loads) corrupted the heap of a
 * Node process now and then (~1 in 30 addon loads; gdb: glibc's main arena broken during
 * module init, then a deadlock in UCX's SIGSEGV handler; 0 in 60 loads with them off). UCM
 * reads these only from the environment when the library loads, so they are set here, before
 * the addon (and with it libucs/libucm) is loaded. Turning them off also disables UCX's
 * registration cache, which direct mode wants anyway. docs/native-transport.md, "Known issues".
 */
export const UCX_HOOKS_OFF = { UCX_MEM_MALLOC_HOOKS: 'no', UCX_MEM_MMAP_HOOK_MODE: 'none' };
for (const [name, value] of Object.entries(UCX_HOOKS_OFF)) process.env[name] ??= value;

/**
 * Listeners bind with SO_REUSEADDR: a storage node or broker restarted on its fixed port right
 * after a crash must not fail with "Address already in use" (ucp_listener_create: Device is
 * busy) for as long as the dead process's connections linger in TIME_WAIT / FIN_WAIT2. It does
 * not let two live listeners share a port. UCX reads it when a transport is opened, so setting
 * it here is early enough; a value in the environment wins.
 */
export const UCX_LISTENER_REUSE = { UCX_TCP_CM_REUSEADDR: 'y' };
for (const [name, value] of Object.entries(UCX_LISTENER_REUSE)) process.env[name] ??= value;

const addonPath = findAddon();
export const native = loadAddon(addonPath);

if (native.abiVersion !== ABI_VERSION) {
  throw new PmqError(
    'PMQ_ERR_NATIVE_ABI',
    `native addon at ${addonPath} has ABI ${native.abiVersion}, expected ${ABI_VERSION}: ` +
      'rebuild it with `npm run build:native`',
  );
}
native.init(NativeError);
