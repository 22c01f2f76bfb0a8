#include "region_shadow.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "assert.h"

namespace pmq::region {

namespace {

Status shadow_failure(const std::string& path, const std::string& what, int error) {
  Status status;
  status.code = "PMQ_ERR_REGION_OPEN";
  status.message = std::string("cannot ") + what + " durable shadow " + path + " (" +
                   kShadowEnv + "): fix the path or unset the variable";
  status.reason = std::strerror(error);
  return status;
}

// Opens, locks, sizes and maps the shadow file; on failure nothing stays open.
Status map_shadow(Shadow* shadow) {
  const char* step = "open";
  shadow->fd = open(shadow->path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  bool ok = shadow->fd >= 0;
  if (ok) {
    step = "lock";
    ok = flock(shadow->fd, LOCK_EX | LOCK_NB) == 0;
  }
  if (ok) {
    step = "size";
    ok = ftruncate(shadow->fd, static_cast<off_t>(shadow->size_bytes)) == 0;
  }
  void* mapped = MAP_FAILED;
  if (ok) {
    step = "map";
    mapped = mmap(nullptr, shadow->size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shadow->fd, 0);
    ok = mapped != MAP_FAILED;
  }
  if (!ok) {
    const int error = errno;
    if (shadow->fd >= 0) close(shadow->fd);
    shadow->fd = -1;
    return shadow_failure(shadow->path, step, error);
  }
  shadow->base = static_cast<uint8_t*>(mapped);
  return Status{};
}

}  // namespace

Status shadow_open(const std::string& region_path, const uint8_t* base, uint64_t size_bytes,
                   Shadow** shadow_p) {
  PMQ_ASSERT(*shadow_p == nullptr);
  PMQ_ASSERT(size_bytes % kShadowLineBytes == 0);
  const char* path = std::getenv(kShadowEnv);
  if (path == nullptr || path[0] == '\0') return Status{};
  struct stat region_info {};
  struct stat shadow_info {};
  if (stat(region_path.c_str(), &region_info) == 0 && stat(path, &shadow_info) == 0 &&
      region_info.st_dev == shadow_info.st_dev && region_info.st_ino == shadow_info.st_ino) {
    return shadow_failure(path, "use the region itself as", EINVAL);
  }
  auto* shadow = new Shadow();
  shadow->path = path;
  shadow->size_bytes = size_bytes;
  const Status status = map_shadow(shadow);
  if (!status.ok()) {
    delete shadow;
    return status;
  }
  std::memcpy(shadow->base, base, size_bytes);  // what the region holds at open is durable
  *shadow_p = shadow;
  return Status{};
}

void shadow_copy(Shadow* shadow, const uint8_t* base, uint64_t address, uint64_t size_bytes) {
  PMQ_ASSERT(shadow != nullptr && shadow->base != nullptr);
  PMQ_ASSERT(address <= shadow->size_bytes && size_bytes <= shadow->size_bytes - address);
  if (size_bytes == 0) return;
  const uint64_t start = address - address % kShadowLineBytes;
  const uint64_t end_unaligned = address + size_bytes;
  const uint64_t end = (end_unaligned + kShadowLineBytes - 1) / kShadowLineBytes *
                       kShadowLineBytes;
  PMQ_ASSERT(end <= shadow->size_bytes);  // the size is a whole number of pages, so of lines
  std::memcpy(shadow->base + start, base + start, end - start);
}

void shadow_stage(Shadow* shadow, uint64_t address, uint64_t size_bytes) {
  PMQ_ASSERT(shadow != nullptr);
  PMQ_ASSERT(shadow->staged.size() < kShadowStagedMax);
  if (size_bytes > 0) shadow->staged.emplace_back(address, size_bytes);
}

void shadow_drain(Shadow* shadow, const uint8_t* base) {
  PMQ_ASSERT(shadow != nullptr);
  for (const auto& [address, size_bytes] : shadow->staged) {
    shadow_copy(shadow, base, address, size_bytes);
  }
  shadow->staged.clear();
}

void shadow_close(Shadow** shadow_p) {
  Shadow* shadow = *shadow_p;
  if (shadow == nullptr) return;
  if (shadow->base != nullptr) munmap(shadow->base, shadow->size_bytes);
  if (shadow->fd >= 0) close(shadow->fd);  // drops the lock
  delete shadow;
  *shadow_p = nullptr;
}

}  // namespace pmq::region
