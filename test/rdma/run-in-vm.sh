#!/usr/bin/env bash
# npm run test:rdma — runs pmq's RDMA tests for real, over UCX rc_verbs on a soft-RoCE device,
# inside the qemu VM of ../shared/tools/rxe-vm (this machine has no RDMA card).
#
# The project directory is shared into the guest at the same path; the guest has UCX and
# libpmem2 but no Node, so the host's node binary is copied into build/vm/. The VM image is
# built once (~1-2 min, needs root) and cached in ~/.cache/rxe-vm (RXE_VM_CACHE).
#   PMQ_RXE_VM=path/to/rxe-vm.sh   where the tool is (default: ../shared/tools/rxe-vm/rxe-vm.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
project=$(pwd)

rxe_vm=${PMQ_RXE_VM:-$project/../shared/tools/rxe-vm/rxe-vm.sh}
if [ ! -x "$rxe_vm" ]; then
  echo "test:rdma: the soft-RoCE VM tool is not at $rxe_vm; set PMQ_RXE_VM to its path" >&2
  exit 1
fi
# The guest needs libpmem2 to load the addon; the package list is part of the image's cache key.
export RXE_VM_EXTRA_PKGS="libpmem2"
export RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-900}

if [ "$(id -u)" = 0 ]; then
  PMQ_SETUP_RDMA_VM=1 bash scripts/setup-system.sh
  "$rxe_vm" build
else
  echo "test:rdma: not root; assuming the VM image is already built (rxe-vm.sh build)" >&2
fi

[ -f build/Release/pmq_native.node ] || npm run --silent build:native
# The cluster suite runs `pmq storage` / `pmq broker` from dist/ (as users do): keep it current.
npm run --silent build:ts
# The guest has no tsx worth using (transpiling under an emulated CPU took ~45 s per process):
# the suite and its peer fixture are compiled to plain JS under build/vm/js, next to a copy of
# the addon where native/index.js looks for it.
rm -rf build/vm/js
mkdir -p build/vm/js/build/Release
npx tsc -p test/rdma/tsconfig.json
cp build/Release/pmq_native.node build/vm/js/build/Release/
cp "$(command -v node)" build/vm/node

echo "test:rdma: booting the soft-RoCE VM (emulated CPU: expect a few minutes)" >&2
started=$(date +%s)
status=0
# One boot, two suites: the transport's grants and direct keys (rdma-suite), then a storage
# node + broker with consumers reading in direct mode (cluster-suite). Both always run.
"$rxe_vm" run -d "$project" -c 'export PMQ_RDMA_VM=1 UCX_TLS=rc_verbs; s=0
  build/vm/node build/vm/js/test/rdma/rdma-suite.js || s=1
  build/vm/node build/vm/js/test/rdma/cluster-suite.js || s=1
  exit $s' || status=$?
echo "test:rdma: VM run (boot + suites) took $(( $(date +%s) - started )) s, exit $status" >&2
exit $status
