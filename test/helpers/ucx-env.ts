/**
 * Import this FIRST (before anything that loads native/index.ts): UCX's memory hooks (libucm
 * patching malloc/mmap when libucs loads) corrupted the heap of a node process now and then
 * (measured: ~1 in 30 addon loads under tap's loaders; gdb showed glibc's main arena broken
 * inside napi_set_named_property at module init, then a deadlock in UCX's SIGSEGV handler;
 * 0 in 60 with these settings). UCM reads them only from the environment, when libucs loads,
 * so they cannot go through ucp_config_modify. See docs/native-transport.md, "Known issues".
 */
export const UCX_HOOKS_OFF = { UCX_MEM_MALLOC_HOOKS: 'no', UCX_MEM_MMAP_HOOK_MODE: 'none' };

for (const [name, value] of Object.entries(UCX_HOOKS_OFF)) process.env[name] ??= value;
