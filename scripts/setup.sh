#!/usr/bin/env bash
# Sets up whatever is missing for pmq on this machine, idempotently:
# system packages, npm dependencies, the native addon and the compiled TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-system.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "pmq setup: installing npm dependencies" >&2
  # npm install (not ci): npm 11 rejects its own lockfile when an optional platform package
  # (msgpackr-extract for other OSes) is not in the registry; install still honours the lock.
  npm install --no-audit --no-fund --loglevel=error
fi

npm run --silent build
