/**
 * Kept for the tests that import it first: native/index.ts now switches UCX's memory hooks
 * off itself before it loads the addon (see the comment there).
 */
export { UCX_HOOKS_OFF } from '../../native/index.js';
