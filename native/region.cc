#include "region.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "assert.h"
#include "region_shadow.h"

namespace pmq::region {

namespace {

Status failure(const char* code, std::string message, std::string reason) {
  Status status;
  status.code = code;
  status.message = std::move(message);
  status.reason = std::move(reason);
  return status;
}

Status errno_failure(const char* code, std::string message, int error) {
  return failure(code, std::move(message), std::strerror(error));
}

Status pmem2_failure(const char* code, std::string message) {
  return failure(code, std::move(message), pmem2_errormsg());
}

bool in_bounds(const Region& region, uint64_t address, uint64_t size_bytes) {
  return address <= region.size_bytes && size_bytes <= region.size_bytes - address;
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status check_directory(const std::string& path) {
  const std::string directory = parent_directory(path);
  struct stat info {};
  if (stat(directory.c_str(), &info) != 0) {
    return errno_failure("PMQ_ERR_REGION_NO_DIR",
                         "directory " + directory + " of region " + path +
                             " is missing or unreadable: create it first",
                         errno);
  }
  if (!S_ISDIR(info.st_mode)) {
    return failure("PMQ_ERR_REGION_NO_DIR",
                   directory + " (parent of region " + path + ") is not a directory",
                   std::strerror(ENOTDIR));
  }
  return Status{};
}

Status open_errno_failure(const std::string& path, int error) {
  if (error == EEXIST) {
    return errno_failure("PMQ_ERR_REGION_EXISTS",
                         "region " + path + " already exists: open it instead, or remove it",
                         error);
  }
  if (error == ENOENT) {
    return errno_failure("PMQ_ERR_REGION_NOT_FOUND",
                         "region " + path + " does not exist: create it with a size", error);
  }
  if (error == EISDIR) {
    return errno_failure("PMQ_ERR_REGION_IS_DIR",
                         "region path " + path + " is a directory: name a file", error);
  }
  return errno_failure("PMQ_ERR_REGION_OPEN",
                       "cannot open region " + path + ": check its permissions", error);
}

// Opens (or creates) the file; created_p tells whether this call created it.
Status open_file(const std::string& path, Mode mode, int* fd_p, bool* created_p) {
  const int flags = O_RDWR | O_CLOEXEC;
  *created_p = false;
  int fd = -1;
  if (mode == Mode::create || mode == Mode::create_new) {
    fd = open(path.c_str(), flags | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) *created_p = true;
  }
  if (fd < 0 && mode != Mode::create_new && (mode == Mode::open || errno == EEXIST)) {
    fd = open(path.c_str(), flags);
  }
  if (fd < 0) return open_errno_failure(path, errno);
  *fd_p = fd;
  return Status{};
}

Status lock_file(const std::string& path, int fd) {
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) return Status{};
  const int error = errno;
  if (error == EWOULDBLOCK) {
    return errno_failure("PMQ_ERR_REGION_LOCKED",
                         "region " + path + " is held by another live process (or another " +
                             "handle in this one): stop it or use another region file",
                         error);
  }
  return errno_failure("PMQ_ERR_REGION_OPEN", "cannot lock region " + path, error);
}

// The size and the free space (for an unprivileged writer) of the file system holding fd.
Status file_system_space(const std::string& path, int fd, uint64_t* total_p, uint64_t* free_p) {
  struct statfs info {};
  if (fstatfs(fd, &info) != 0) {
    return errno_failure("PMQ_ERR_REGION_OPEN", "cannot statfs region " + path, errno);
  }
  *total_p = static_cast<uint64_t>(info.f_blocks) * static_cast<uint64_t>(info.f_frsize);
  *free_p = static_cast<uint64_t>(info.f_bavail) * static_cast<uint64_t>(info.f_frsize);
  return Status{};
}

Status no_space(std::string message, const char* reason) {
  return failure("PMQ_ERR_REGION_NO_SPACE", std::move(message), reason);
}

// A new file: sized now. Allocated block by block (posix_fallocate), so that a full device
// fails here with ENOSPC instead of with SIGBUS on a later store; or, sparse, only ftruncated,
// which is refused unless the file system has the whole size free now (a later shortage still
// means SIGBUS: sparse is for tests and thin-provisioned disks).
Status size_new_file(const std::string& path, int fd, uint64_t size_bytes, bool sparse) {
  uint64_t total = 0;
  uint64_t free = 0;
  Status status = file_system_space(path, fd, &total, &free);
  if (!status.ok()) return status;
  const std::string asked = std::to_string(size_bytes) + " bytes";
  if (total < size_bytes) {
    return no_space("the file system holding region " + path + " has " +
                        std::to_string(total) + " bytes in all, less than the " + asked +
                        " asked for: ask for less or use a larger device",
                    "device smaller than the region");
  }
  if (sparse) {
    if (free < size_bytes) {
      return no_space("a sparse region of " + asked + " at " + path + " needs that much free " +
                          "space, and its file system has " + std::to_string(free) + " free: " +
                          "a store into a page it cannot allocate would kill the node (SIGBUS)" +
                          "; free space or ask for less",
                      "sparse file larger than the free space");
    }
    if (ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
      return errno_failure("PMQ_ERR_REGION_OPEN", "cannot size region " + path, errno);
    }
    return Status{};
  }
  const int error = posix_fallocate(fd, 0, static_cast<off_t>(size_bytes));
  if (error == ENOSPC || error == EFBIG || error == EDQUOT) {
    return errno_failure("PMQ_ERR_REGION_NO_SPACE", "no space for a region of " + asked + " at " +
                             path + ": free space or ask for less",
                         error);
  }
  if (error != 0) {
    return errno_failure("PMQ_ERR_REGION_OPEN", "cannot allocate region " + path, error);
  }
  return Status{};
}

// An existing file with holes (made sparse, or by truncate) is refused when its file system
// could not allocate them all: a store into a hole would then be SIGBUS, not an error.
Status check_holes(const std::string& path, int fd, const struct stat& info) {
  const uint64_t size_file = static_cast<uint64_t>(info.st_size);
  const uint64_t allocated = static_cast<uint64_t>(info.st_blocks) * 512;
  if (allocated >= size_file) return Status{};
  uint64_t total = 0;
  uint64_t free = 0;
  Status status = file_system_space(path, fd, &total, &free);
  if (!status.ok()) return status;
  const uint64_t holes = size_file - allocated;
  if (holes <= free) return Status{};
  return no_space("region " + path + " is sparse: " + std::to_string(holes) + " of its bytes " +
                      "are not allocated and its file system has " + std::to_string(free) +
                      " free, so a store into a hole could kill the node (SIGBUS): free space, " +
                      "then allocate it (fallocate -l " + std::to_string(size_file) + " " + path +
                      ")",
                  "sparse file larger than the free space");
}

// Gives a file this call created its size (size_new_file), or checks an existing one's.
Status settle_size(const std::string& path, int fd, bool created, bool may_grow, bool sparse,
                   uint64_t* size_bytes_p) {
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    return errno_failure("PMQ_ERR_REGION_OPEN", "cannot stat region " + path, errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return failure("PMQ_ERR_REGION_OPEN", "region " + path + " is not a regular file",
                   "not a regular file");
  }
  const uint64_t size_file = static_cast<uint64_t>(info.st_size);
  // An empty file in create mode is one whose creator died before allocating: finish the job.
  const bool fresh = created || (may_grow && size_file == 0);
  if (fresh) return size_new_file(path, fd, *size_bytes_p, sparse);
  if (size_file == 0 || size_file % page_size_bytes() != 0) {
    return failure("PMQ_ERR_REGION_SIZE_MISMATCH",
                   "region " + path + " has " + std::to_string(size_file) +
                       " bytes, not a positive multiple of the page size: it is not a region",
                   "bad file size");
  }
  if (*size_bytes_p != 0 && *size_bytes_p != size_file) {
    return failure("PMQ_ERR_REGION_SIZE_MISMATCH",
                   "region " + path + " has " + std::to_string(size_file) + " bytes, not the " +
                       std::to_string(*size_bytes_p) + " asked for: open it without a size, " +
                       "or use another file",
                   "size mismatch");
  }
  *size_bytes_p = size_file;
  return check_holes(path, fd, info);
}

Granularity granularity_of(pmem2_granularity granularity) {
  switch (granularity) {
    case PMEM2_GRANULARITY_BYTE: return Granularity::byte;
    case PMEM2_GRANULARITY_CACHE_LINE: return Granularity::cache_line;
    case PMEM2_GRANULARITY_PAGE: return Granularity::page;
  }
  PMQ_ASSERT(false && "unknown pmem2 granularity");
  return Granularity::page;
}

Status map_file(Region* region_p) {
  Region& region = *region_p;
  pmem2_config* config = nullptr;
  if (pmem2_config_new(&config) != 0) {
    return pmem2_failure("PMQ_ERR_REGION_MAP", "cannot configure mapping of " + region.path);
  }
  int result = pmem2_config_set_required_store_granularity(config, PMEM2_GRANULARITY_PAGE);
  if (result == 0) result = pmem2_source_from_fd(&region.source, region.fd);
  if (result == 0) result = pmem2_map_new(&region.map, config, region.source);
  Status status;
  if (result != 0) {
    status = pmem2_failure("PMQ_ERR_REGION_MAP", "cannot map region " + region.path);
  }
  pmem2_config_delete(&config);
  if (!status.ok()) return status;
  region.base = static_cast<uint8_t*>(pmem2_map_get_address(region.map));
  PMQ_ASSERT(region.base != nullptr);
  PMQ_ASSERT(pmem2_map_get_size(region.map) == region.size_bytes);
  region.granularity = granularity_of(pmem2_map_get_store_granularity(region.map));
  region.persist_fn = pmem2_get_persist_fn(region.map);
  region.flush_fn = pmem2_get_flush_fn(region.map);
  region.drain_fn = pmem2_get_drain_fn(region.map);
  region.memmove_fn = pmem2_get_memmove_fn(region.map);
  return Status{};
}

// Backing from the file system type (statfs) and the granularity libpmem2 found.
Status classify(Region* region_p) {
  Region& region = *region_p;
  struct statfs info {};
  if (fstatfs(region.fd, &info) != 0) {
    return errno_failure("PMQ_ERR_REGION_OPEN", "cannot statfs region " + region.path, errno);
  }
  if (static_cast<uint64_t>(info.f_type) == TMPFS_MAGIC) {
    region.backing = Backing::shm;
    region.durability = Durability::process_crash;
  } else if (region.granularity != Granularity::page) {
    region.backing = Backing::dax;
    region.durability = Durability::power_fail;
  } else {
    region.backing = Backing::file;
    region.durability = Durability::msync;
  }
  return Status{};
}

void release(Region* region_p) {
  Region& region = *region_p;
  shadow_close(&region.shadow);
  if (region.map != nullptr) pmem2_map_delete(&region.map);
  if (region.source != nullptr) pmem2_source_delete(&region.source);
  if (region.fd >= 0) close(region.fd);
  region.fd = -1;
  region.base = nullptr;
  region.open = false;
}

Status msync_range(const Region& region, uint64_t address, uint64_t size_bytes) {
  const uint64_t page = page_size_bytes();
  const uint64_t start = address - address % page;
  const uint64_t end = address + size_bytes;
  if (msync(region.base + start, end - start, MS_SYNC) != 0) {
    return errno_failure("PMQ_ERR_REGION_PERSIST",
                         "msync of region " + region.path + " failed: data may not be durable",
                         errno);
  }
  return Status{};
}

// The granularity a mapping of fd would have, from a read-only probe mapping: page (the
// weakest claim) when it cannot map, since only the report depends on it.
Granularity probe_granularity(int fd) {
  Granularity granularity = Granularity::page;
  pmem2_config* config = nullptr;
  if (pmem2_config_new(&config) != 0) return granularity;
  pmem2_source* source = nullptr;
  if (pmem2_config_set_required_store_granularity(config, PMEM2_GRANULARITY_PAGE) == 0 &&
      pmem2_config_set_protection(config, PMEM2_PROT_READ) == 0 &&
      pmem2_source_from_fd(&source, fd) == 0) {
    pmem2_map* map = nullptr;
    if (pmem2_map_new(&map, config, source) == 0) {
      granularity = granularity_of(pmem2_map_get_store_granularity(map));
      pmem2_map_delete(&map);
    }
    pmem2_source_delete(&source);
  }
  pmem2_config_delete(&config);
  return granularity;
}

Status lock_shared(const std::string& path, int fd) {
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) return Status{};
  const int error = errno;
  if (error == EWOULDBLOCK) {
    return errno_failure("PMQ_ERR_REGION_LOCKED",
                         "region " + path + " is held by a live storage node: stop it first " +
                             "(inspect reads a region no node holds)",
                         error);
  }
  return errno_failure("PMQ_ERR_REGION_OPEN", "cannot lock region " + path, error);
}

}  // namespace

const char* granularity_name(Granularity granularity) {
  switch (granularity) {
    case Granularity::byte: return "byte";
    case Granularity::cache_line: return "cache-line";
    case Granularity::page: return "page";
  }
  return "unknown";
}

const char* backing_name(Backing backing) {
  switch (backing) {
    case Backing::dax: return "dax";
    case Backing::shm: return "shm";
    case Backing::file: return "file";
  }
  return "unknown";
}

const char* durability_name(Durability durability) {
  switch (durability) {
    case Durability::power_fail: return "power-fail";
    case Durability::process_crash: return "process-crash";
    case Durability::msync: return "msync";
  }
  return "unknown";
}

uint64_t page_size_bytes() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}

Status open_region(const std::string& path, uint64_t size_bytes, Mode mode, bool sparse,
                   Region* region_p) {
  PMQ_ASSERT(size_bytes % page_size_bytes() == 0);
  PMQ_ASSERT(size_bytes > 0 || mode == Mode::open);
  PMQ_ASSERT(!region_p->open);
  Region& region = *region_p;
  region.path = path;
  Status status = check_directory(path);
  bool created = false;
  if (status.ok()) status = open_file(path, mode, &region.fd, &created);
  if (status.ok()) status = lock_file(path, region.fd);
  const bool may_grow = mode == Mode::create;
  if (status.ok()) status = settle_size(path, region.fd, created, may_grow, sparse,
                                             &size_bytes);
  if (status.ok()) {
    region.size_bytes = size_bytes;
    status = map_file(region_p);
  }
  if (status.ok()) status = classify(region_p);
  if (status.ok()) status = shadow_open(path, region.base, region.size_bytes, &region.shadow);
  if (!status.ok()) {
    // Nothing half-made stays behind: a file this call created goes (unlinked while locked).
    if (created) unlink(path.c_str());
    release(region_p);
    return status;
  }
  region.open = true;
  return status;
}

Status persist_range(const Region& region, uint64_t address, uint64_t size_bytes) {
  PMQ_ASSERT(region.open);
  PMQ_ASSERT(in_bounds(region, address, size_bytes));
  if (size_bytes == 0) return Status{};
  Status status;
  if (region.granularity == Granularity::page) status = msync_range(region, address, size_bytes);
  else region.persist_fn(region.base + address, size_bytes);
  if (region.shadow != nullptr) shadow_copy(region.shadow, region.base, address, size_bytes);
  return status;
}

Status flush_range(const Region& region, uint64_t address, uint64_t size_bytes) {
  PMQ_ASSERT(region.open);
  PMQ_ASSERT(in_bounds(region, address, size_bytes));
  if (size_bytes == 0) return Status{};
  Status status;
  if (region.granularity == Granularity::page) status = msync_range(region, address, size_bytes);
  else region.flush_fn(region.base + address, size_bytes);
  if (region.shadow != nullptr) shadow_stage(region.shadow, address, size_bytes);
  return status;
}

void drain(const Region& region) {
  PMQ_ASSERT(region.open);
  region.drain_fn();
  if (region.shadow != nullptr) shadow_drain(region.shadow, region.base);
}

Status copy_persist(const Region& region, uint64_t address, const uint8_t* source,
                    uint64_t size_bytes, bool drain) {
  PMQ_ASSERT(region.open);
  PMQ_ASSERT(in_bounds(region, address, size_bytes));
  PMQ_ASSERT(source != nullptr || size_bytes == 0);
  if (size_bytes == 0) return Status{};
  Status status;
  if (region.granularity == Granularity::page) {
    std::memmove(region.base + address, source, size_bytes);
    status = msync_range(region, address, size_bytes);
  } else {
    const unsigned flags = drain ? 0u : PMEM2_F_MEM_NODRAIN;
    region.memmove_fn(region.base + address, source, size_bytes, flags);
  }
  if (region.shadow != nullptr && drain) {
    shadow_copy(region.shadow, region.base, address, size_bytes);
  } else if (region.shadow != nullptr) {
    shadow_stage(region.shadow, address, size_bytes);
  }
  return status;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14 uapi; older headers lack the name
#endif

Status prefault_range(const Region& region, uint64_t address, uint64_t size_bytes,
                      const std::atomic<bool>& cancel, bool* supported_p) {
  PMQ_ASSERT(in_bounds(region, address, size_bytes));
  *supported_p = region.backing != Backing::file;
  if (!*supported_p) return Status{};
  constexpr uint64_t kStepBytes = 32ull << 20;  // a cancel is noticed within one step
  const uint64_t page = page_size_bytes();
  uint64_t at = address / page * page;
  const uint64_t end = address + size_bytes;
  while (at < end && !cancel.load(std::memory_order_relaxed)) {
    const uint64_t step = std::min<uint64_t>(kStepBytes, end - at);
    if (madvise(region.base + at, step, MADV_POPULATE_WRITE) != 0) {
      const int error = errno;
      if (error == EINVAL && at == address / page * page) {
        *supported_p = false;  // the kernel does not know MADV_POPULATE_WRITE
        return Status{};
      }
      if (error == EINTR || error == EAGAIN) continue;
      if (cancel.load(std::memory_order_relaxed)) break;  // unmapped under us by close
      return errno_failure("PMQ_ERR_REGION_PREFAULT",
                           "prefaulting region " + region.path + " failed at byte " +
                               std::to_string(at),
                           error);
    }
    at += step;
  }
  return Status{};
}

Status close_region(Region* region_p) {
  PMQ_ASSERT(region_p->open);
  Status status;
  if (pmem2_map_delete(&region_p->map) != 0) {
    status = pmem2_failure("PMQ_ERR_REGION_MAP", "cannot unmap region " + region_p->path);
  }
  release(region_p);
  PMQ_ASSERT(!region_p->open);
  return status;
}

Status open_read_only(const std::string& path, ReadOnlyFile* file_p) {
  PMQ_ASSERT(file_p->fd < 0);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return open_errno_failure(path, errno);
  struct stat info {};
  Status status;
  if (fstat(fd, &info) != 0) {
    status = errno_failure("PMQ_ERR_REGION_OPEN", "cannot stat region " + path, errno);
  } else if (!S_ISREG(info.st_mode)) {
    status = failure("PMQ_ERR_REGION_OPEN", "region " + path + " is not a regular file",
                     "not a regular file");
  }
  if (status.ok()) status = lock_shared(path, fd);
  Region probe;  // classify() reads only path, fd and granularity
  probe.path = path;
  probe.fd = fd;
  if (status.ok()) {
    probe.granularity = probe_granularity(fd);
    status = classify(&probe);
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  file_p->fd = fd;
  file_p->size_bytes = static_cast<uint64_t>(info.st_size);
  file_p->granularity = probe.granularity;
  file_p->backing = probe.backing;
  file_p->durability = probe.durability;
  return Status{};
}

}  // namespace pmq::region
