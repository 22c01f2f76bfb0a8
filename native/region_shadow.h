// Test mode of the region: the durable shadow (docs/native-region.md, "Durable shadow").
//
// When the environment variable PMQ_REGION_DURABLE_SHADOW names a file at open, the region
// keeps a second mapping of the same size in that file: the bytes a power cut would keep for
// sure. It starts as a copy of the region (whatever was there at open counts as durable) and
// every persist path of the region copies the whole 64-byte lines it covers from the mapping
// into it: persist_range and copy_persist at once, flush_range and copy_persist without drain
// when drain() runs (lines staged until then). Stores never persisted stay only in the
// region, so after SIGKILL the two files tell persisted from merely stored
// (test/crash/power-cut-node.ts builds power-cut images from them).
//
// The model is ADR persistent memory with cache-line granularity, whatever the real backing:
// strictest of the three, so a range persisted on /dev/shm or with msync counts only for its
// own lines, not for the rest of their pages.
//
// Off (a null pointer, one branch per persist) unless the variable is set in the storage
// process's own environment: nothing a peer sends can turn it on. Threads: the copy may run on
// the libuv worker of persistAsync; staging and drain run on the owner thread only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "region.h"

namespace pmq::region {

inline constexpr const char* kShadowEnv = "PMQ_REGION_DURABLE_SHADOW";
inline constexpr uint64_t kShadowLineBytes = 64;
// Flushed, not yet drained ranges kept at most (RegionStore never flushes; more is a bug in the
// caller's use of flush/drain, asserted).
inline constexpr size_t kShadowStagedMax = 1 << 16;

struct Shadow {
  std::string path;
  int fd = -1;
  uint8_t* base = nullptr;
  uint64_t size_bytes = 0;
  std::vector<std::pair<uint64_t, uint64_t>> staged;  // [address, size) flushed, not drained
};

// Opens the shadow named by PMQ_REGION_DURABLE_SHADOW for a region mapped at `base`; leaves
// *shadow_p null when the variable is unset or empty.
Status shadow_open(const std::string& region_path, const uint8_t* base, uint64_t size_bytes,
                   Shadow** shadow_p);

// Copies the lines covering [address, address + size_bytes) from `base` into the shadow.
void shadow_copy(Shadow* shadow, const uint8_t* base, uint64_t address, uint64_t size_bytes);

// flush: remembers the range; drain: copies every remembered range, then forgets them.
void shadow_stage(Shadow* shadow, uint64_t address, uint64_t size_bytes);
void shadow_drain(Shadow* shadow, const uint8_t* base);

void shadow_close(Shadow** shadow_p);

}  // namespace pmq::region
