// One persistent-memory region: a file mapped with libpmem2, locked against other processes.
// Pure C++: no JS types here (region_napi.cc holds the glue and maps Status to NativeError).
//
// Lifecycle: open_region() creates or opens the file, takes an exclusive flock (held until
// close_region() or process death), maps it and picks the persist functions; close_region()
// unmaps and closes (dropping the lock). Between the two, addresses are byte positions from the
// start of the mapping; callers keep every range inside [0, size_bytes) (asserted here).
//
// Durability: persist_range() returns once the range is in the mapping's persistence domain:
// power-fail safe on DAX with byte/cache-line granularity, process-crash safe on /dev/shm
// (tmpfs), and written back with msync on ordinary files (may block; the napi layer offers it
// on a libuv worker). Not thread-safe: one thread at a time per Region, except that
// persist_range() may run on a worker while the owning thread does not close the region.
#pragma once

#include <libpmem2.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace pmq::region {

struct Shadow;  // region_shadow.h: the durable shadow test mode

enum class Mode {
  create,      // create with size_bytes if missing, else open (size must match if given)
  open,        // open an existing file; size_bytes 0 takes the size from the file
  create_new,  // create with size_bytes; fail if the file exists
};

enum class Granularity { byte, cache_line, page };
enum class Backing { dax, shm, file };
enum class Durability { power_fail, process_crash, msync };

const char* granularity_name(Granularity granularity);
const char* backing_name(Backing backing);
const char* durability_name(Durability durability);

// ok() when code is nullptr; otherwise code is a stable PMQ_ERR_REGION_* string, message says
// what to do and reason holds the library's own words (strerror, pmem2_errormsg).
struct Status {
  const char* code = nullptr;
  std::string message;
  std::string reason;
  bool ok() const { return code == nullptr; }
};

struct Region {
  std::string path;
  int fd = -1;
  pmem2_source* source = nullptr;
  pmem2_map* map = nullptr;
  uint8_t* base = nullptr;
  uint64_t size_bytes = 0;
  Granularity granularity = Granularity::page;
  Backing backing = Backing::file;
  Durability durability = Durability::msync;
  pmem2_persist_fn persist_fn = nullptr;
  pmem2_flush_fn flush_fn = nullptr;
  pmem2_drain_fn drain_fn = nullptr;
  pmem2_memmove_fn memmove_fn = nullptr;
  // Null unless PMQ_REGION_DURABLE_SHADOW was set at open (test mode, region_shadow.h).
  Shadow* shadow = nullptr;
  bool open = false;
};

uint64_t page_size_bytes();

// size_bytes is a multiple of page_size_bytes(); 0 only with Mode::open (asserted). A file this
// call creates is allocated whole (posix_fallocate), or with `sparse` only ftruncated (refused
// unless the file system has size_bytes free). Fails with PMQ_ERR_REGION_NO_SPACE when the
// file system is smaller than size_bytes, or an existing file's holes exceed the free space.
Status open_region(const std::string& path, uint64_t size_bytes, Mode mode, bool sparse,
                   Region* region_p);

// An existing region opened for reading only (pmq inspect): the descriptor is O_RDONLY and
// holds a shared flock, so a live storage node (exclusive lock) refuses it and no node can
// open the region while it is held; closing fd releases it. Nothing is mapped writable.
struct ReadOnlyFile {
  int fd = -1;
  uint64_t size_bytes = 0;
  Granularity granularity = Granularity::page;
  Backing backing = Backing::file;
  Durability durability = Durability::msync;
};

// Needs only read permission on the file (a 0444 region, another user's). The granularity
// comes from a read-only probe mapping (unmapped before return; page when it cannot map).
Status open_read_only(const std::string& path, ReadOnlyFile* file_p);

// Makes [address, address + size_bytes) durable (see the header comment). On page granularity
// this is msync, whose failure (EIO) is reported instead of being ignored.
Status persist_range(const Region& region, uint64_t address, uint64_t size_bytes);

// flush_range() then drain() == persist_range() on byte/cache-line granularity; on page
// granularity flush_range() is the msync and drain() does nothing.
Status flush_range(const Region& region, uint64_t address, uint64_t size_bytes);
void drain(const Region& region);

// memmove into the region that leaves the destination durable (unless drain is false: then
// call drain() before relying on it). Overlapping ranges are allowed.
Status copy_persist(const Region& region, uint64_t address, const uint8_t* source,
                    uint64_t size_bytes, bool drain);

// Maps every page of [address, address + size_bytes) into this process's page tables, writable,
// without changing a byte (madvise MADV_POPULATE_WRITE, in steps, stopping early once `cancel`
// is set). Without it the first write to each 4 KiB page of a fresh mapping takes a page fault
// on the data path (on /dev/shm ~256 per MiB, a large share of a storage node's CPU per byte).
// Only for shm and DAX backings: on an ordinary file a write fault dirties the page cache and
// the whole region would be written back. Safe while other threads and peers write the range.
// *supported_p is false (and the status ok) where the kernel lacks MADV_POPULATE_WRITE (< 5.14)
// or the backing is an ordinary file. May run on a worker thread while the owner thread uses
// the region; close_region() may run meanwhile (the owner sets `cancel` first).
Status prefault_range(const Region& region, uint64_t address, uint64_t size_bytes,
                      const std::atomic<bool>& cancel, bool* supported_p);

// Unmaps, closes the file and so releases the lock. The Region is closed afterwards even if
// the library reports an error.
Status close_region(Region* region_p);

}  // namespace pmq::region
