// JS glue for native/region: converts arguments, maps region::Status to NativeError, and owns
// the handle objects. TS (native/region.ts) validated every argument already; the checks here
// are the second half of each pair and abort on failure (PMQ_ASSERT).
//
// A handle is a type-tagged Napi::External owning a RegionState. The mapping lives until
// regionClose(), which detaches every ArrayBuffer given out by regionView(): JS code holding
// one afterwards sees a zero-length buffer instead of unmapped memory. No buffer covers the
// whole mapping (V8 caps one at 4 GiB on Node 20): a view covers a bounded range, and the
// transport reaches the whole mapping through the handle (napi_region_attach). A handle
// collected while still open is a leak: the finalizer says so on stderr and leaves mapping and
// lock in place until the process exits (a live ArrayBuffer may still point into the mapping).
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "assert.h"
#include "errors.h"
#include "region.h"
#include "region_shadow.h"

namespace pmq {

namespace {

struct RegionState {
  region::Region region;
  // Every view given out (regionView), detached at close. Region.view (native/region.ts) caches
  // them per window, so there are at most a few per GiB of region.
  std::vector<Napi::Reference<Napi::ArrayBuffer>> views;
  uint32_t persists_in_flight = 0;
  // Transports whose exposed memory is this mapping (napi_region_attach): close refuses while
  // any is attached, as a peer's write could otherwise land in unmapped memory.
  uint32_t attachments = 0;
  // Set by regionClose: a prefault running on a worker stops at its next step.
  std::atomic<bool> prefault_cancel{false};
};

constexpr napi_type_tag kRegionTag = {0x706d715f72656769ull, 0x6f6e5f68616e646cull};
constexpr double kSafeIntegerMax = 9007199254740991.0;  // 2^53 - 1
// V8's cap on one ArrayBuffer on Node 20 (buffer.constants.MAX_LENGTH): a view is at most this.
constexpr uint64_t kViewBytesMax = uint64_t{1} << 32;

void finalize_region(Napi::Env, RegionState* state) {
  if (state->region.open) {
    std::fprintf(stderr,
                 "pmq: region %s was garbage-collected without regionClose(); its mapping and "
                 "lock stay until the process exits\n",
                 state->region.path.c_str());
    for (auto& view : state->views) view.Reset();
    state->views.clear();
    return;  // Deliberately leaked: the mapping must outlive any ArrayBuffer still pointing in.
  }
  delete state;
}

uint64_t to_index(const Napi::Value& value) {
  PMQ_ASSERT(value.IsNumber());
  const double number = value.As<Napi::Number>().DoubleValue();
  PMQ_ASSERT(number >= 0 && number <= kSafeIntegerMax && std::floor(number) == number);
  return static_cast<uint64_t>(number);
}

RegionState* unwrap(const Napi::Value& value) {
  PMQ_ASSERT(value.IsExternal());
  Napi::External<RegionState> external = value.As<Napi::External<RegionState>>();
  PMQ_ASSERT(external.CheckTypeTag(&kRegionTag));
  RegionState* state = external.Data();
  PMQ_ASSERT(state != nullptr);
  return state;
}

// Unwraps a handle that must be open; throws PMQ_ERR_REGION_CLOSED (returns null) otherwise.
RegionState* unwrap_open(Napi::Env env, const Napi::Value& value) {
  RegionState* state = unwrap(value);
  if (!state->region.open) {
    throw_native_error(env, "PMQ_ERR_REGION_CLOSED",
                       "region " + state->region.path + " is closed: open it again", "closed");
    return nullptr;
  }
  return state;
}

// Pair check for [address, address + size_bytes): TS checked the same bounds before the call.
void assert_range(const RegionState& state, uint64_t address, uint64_t size_bytes) {
  PMQ_ASSERT(address <= state.region.size_bytes);
  PMQ_ASSERT(size_bytes <= state.region.size_bytes - address);
}

Napi::Value throw_status(Napi::Env env, const region::Status& status) {
  PMQ_ASSERT(!status.ok());
  return throw_native_error(env, status.code, status.message, status.reason);
}

region::Mode to_mode(const Napi::Value& value) {
  PMQ_ASSERT(value.IsString());
  const std::string mode = value.As<Napi::String>().Utf8Value();
  if (mode == "create") return region::Mode::create;
  if (mode == "open") return region::Mode::open;
  PMQ_ASSERT(mode == "create-new");
  return region::Mode::create_new;
}

Napi::Value region_open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 4 && info[0].IsString() && info[3].IsBoolean());
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const uint64_t size_bytes = to_index(info[1]);
  const region::Mode mode = to_mode(info[2]);
  const bool sparse = info[3].As<Napi::Boolean>().Value();
  PMQ_ASSERT(size_bytes % region::page_size_bytes() == 0);
  PMQ_ASSERT(size_bytes > 0 || mode == region::Mode::open);
  auto* state = new RegionState();
  const region::Status status = region::open_region(path, size_bytes, mode, sparse,
                                                          &state->region);
  if (!status.ok()) {
    delete state;
    return throw_status(env, status);
  }
  PMQ_ASSERT(state->region.open && state->region.size_bytes > 0);
  Napi::External<RegionState> handle = Napi::External<RegionState>::New(env, state,
                                                                        finalize_region);
  handle.TypeTag(&kRegionTag);
  return handle;
}

// pmq inspect's door: an O_RDONLY descriptor with a shared lock; JS reads it with
// positional reads and closes it (fs.closeSync), which releases the lock.
Napi::Value region_open_read_only(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 1 && info[0].IsString());
  region::ReadOnlyFile file;
  const region::Status status =
      region::open_read_only(info[0].As<Napi::String>().Utf8Value(), &file);
  if (!status.ok()) return throw_status(env, status);
  PMQ_ASSERT(file.fd >= 0);
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, file.fd));
  result.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(file.size_bytes)));
  result.Set("granularity", region::granularity_name(file.granularity));
  result.Set("backing", region::backing_name(file.backing));
  result.Set("durability", region::durability_name(file.durability));
  return result;
}

Napi::Value region_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 1);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  const region::Region& region = state->region;
  Napi::Object result = Napi::Object::New(env);
  result.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(region.size_bytes)));
  result.Set("granularity", region::granularity_name(region.granularity));
  result.Set("backing", region::backing_name(region.backing));
  result.Set("durability", region::durability_name(region.durability));
  // Test mode only (region_shadow.h): the shadow's path, else null.
  if (region.shadow == nullptr) result.Set("durableShadow", env.Null());
  else result.Set("durableShadow", region.shadow->path);
  return result;
}

// The one place that wraps part of the mapping as an external ArrayBuffer (zero copy):
// [address, address + size_bytes), at most kViewBytesMax. Runtimes with a V8 memory cage (some
// Electron builds) refuse external buffers: that is a clear error here.
Napi::Value region_view(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 3);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  const uint64_t address = to_index(info[1]);
  const uint64_t size_bytes = to_index(info[2]);
  assert_range(*state, address, size_bytes);
  PMQ_ASSERT(size_bytes > 0 && size_bytes <= kViewBytesMax);  // pair: Region.view
  napi_value buffer = nullptr;
  const napi_status status = napi_create_external_arraybuffer(
      env, state->region.base + address, size_bytes, nullptr, nullptr, &buffer);
  if (status == napi_no_external_buffers_allowed) {
    return throw_native_error(env, "PMQ_ERR_REGION_EXTERNAL_BUFFER",
                              "this JS runtime refuses external ArrayBuffers, so the region " +
                                  state->region.path + " cannot be shared without copying: " +
                                  "run pmq on Node.js",
                              "napi_no_external_buffers_allowed");
  }
  if (status != napi_ok) {
    std::string reason = "napi status " + std::to_string(static_cast<int>(status));
    if (env.IsExceptionPending()) reason = env.GetAndClearPendingException().Message();
    return throw_native_error(env, "PMQ_ERR_REGION_EXTERNAL_BUFFER",
                              "cannot view " + std::to_string(size_bytes) + " bytes at " +
                                  std::to_string(address) + " of region " + state->region.path +
                                  " as an ArrayBuffer on this runtime",
                              reason);
  }
  Napi::ArrayBuffer result(env, buffer);
  PMQ_ASSERT(result.ByteLength() == size_bytes);
  state->views.push_back(Napi::Persistent(result));
  return result;
}

// persist and flush: (handle, address, sizeBytes) → the range operation, its failure thrown.
using RangeOperation = region::Status (*)(const region::Region&, uint64_t, uint64_t);

Napi::Value run_range_operation(const Napi::CallbackInfo& info, RangeOperation operation) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 3);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  const uint64_t address = to_index(info[1]);
  const uint64_t size_bytes = to_index(info[2]);
  assert_range(*state, address, size_bytes);
  const region::Status status = operation(state->region, address, size_bytes);
  if (!status.ok()) return throw_status(env, status);
  return env.Undefined();
}

Napi::Value region_persist(const Napi::CallbackInfo& info) {
  return run_range_operation(info, region::persist_range);
}

Napi::Value region_flush(const Napi::CallbackInfo& info) {
  return run_range_operation(info, region::flush_range);
}

Napi::Value region_drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 1);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  region::drain(state->region);
  return env.Undefined();
}

Napi::Value region_copy_persist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 6 && info[2].IsTypedArray() && info[5].IsBoolean());
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  const uint64_t address = to_index(info[1]);
  Napi::TypedArray typed = info[2].As<Napi::TypedArray>();
  PMQ_ASSERT(typed.TypedArrayType() == napi_uint8_array);
  Napi::Uint8Array source = info[2].As<Napi::Uint8Array>();
  const uint64_t source_offset = to_index(info[3]);
  const uint64_t size_bytes = to_index(info[4]);
  PMQ_ASSERT(source_offset <= source.ByteLength());
  PMQ_ASSERT(size_bytes <= source.ByteLength() - source_offset);
  assert_range(*state, address, size_bytes);
  const region::Status status =
      region::copy_persist(state->region, address, source.Data() + source_offset, size_bytes,
                           info[5].As<Napi::Boolean>().Value());
  if (!status.ok()) return throw_status(env, status);
  return env.Undefined();
}

Napi::Value region_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 1);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  if (state->persists_in_flight > 0) {
    return throw_native_error(env, "PMQ_ERR_REGION_BUSY",
                              "region " + state->region.path + " has " +
                                  std::to_string(state->persists_in_flight) +
                                  " persistAsync call(s) in flight: await them, then close",
                              "busy");
  }
  if (state->attachments > 0) {
    return throw_native_error(env, "PMQ_ERR_REGION_BUSY",
                              "region " + state->region.path + " is the exposed memory of " +
                                  std::to_string(state->attachments) +
                                  " open transport(s): close them, then the region",
                              "attached");
  }
  state->prefault_cancel.store(true);
  for (auto& view : state->views) {
    const napi_status detached = napi_detach_arraybuffer(env, view.Value());
    PMQ_ASSERT(detached == napi_ok);
    view.Reset();
  }
  state->views.clear();
  const region::Status status = region::close_region(&state->region);
  PMQ_ASSERT(!state->region.open);
  if (!status.ok()) return throw_status(env, status);
  return env.Undefined();
}

// A region operation on a libuv worker: it holds a reference to the handle (no collection
// meanwhile) and settles a promise with the operation's Status (rejected as a NativeError).
class RegionWorker : public Napi::AsyncWorker {
 public:
  // Queues the worker (AsyncWorker deletes itself after OnOK) and returns its promise.
  static Napi::Promise queue(RegionWorker* worker) {
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 protected:
  RegionWorker(Napi::Env env, const char* name, Napi::Object handle, RegionState* state)
      : Napi::AsyncWorker(env, name),
        state_(state),
        deferred_(Napi::Promise::Deferred::New(env)),
        handle_(Napi::Persistent(handle)) {}

  // The value resolved once status_ is ok.
  virtual Napi::Value result(Napi::Env env) = 0;

  void settle() {
    Napi::Env env = Env();
    if (status_.ok()) {
      deferred_.Resolve(result(env));
    } else {
      deferred_.Reject(make_native_error(env, status_.code, status_.message, status_.reason));
    }
  }

  RegionState* state_;
  region::Status status_;

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference handle_;
};

// persistAsync: the same persist_range() on a libuv worker, for msync on ordinary files. The
// worker counts itself in flight (close refuses while any runs), so the mapping outlives the
// msync.
class PersistWorker : public RegionWorker {
 public:
  PersistWorker(Napi::Env env, Napi::Object handle, RegionState* state, uint64_t address,
                uint64_t size_bytes)
      : RegionWorker(env, "pmq:regionPersistAsync", handle, state),
        address_(address),
        size_bytes_(size_bytes) {
    state_->persists_in_flight += 1;
  }

 protected:
  void Execute() override {
    status_ = region::persist_range(state_->region, address_, size_bytes_);
  }

  void OnOK() override {
    PMQ_ASSERT(state_->persists_in_flight > 0);
    state_->persists_in_flight -= 1;
    settle();
  }

  Napi::Value result(Napi::Env env) override { return env.Undefined(); }

 private:
  uint64_t address_;
  uint64_t size_bytes_;
};

Napi::Value region_persist_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 3);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  const uint64_t address = to_index(info[1]);
  const uint64_t size_bytes = to_index(info[2]);
  assert_range(*state, address, size_bytes);
  return RegionWorker::queue(
      new PersistWorker(env, info[0].As<Napi::Object>(), state, address, size_bytes));
}

// prefault: region::prefault_range() on a libuv worker, over a copy of the Region (the owner
// thread may close the real one meanwhile: it sets prefault_cancel first, and a step that
// meets the unmapped range ends the work). Resolves { supported, cancelled }.
class PrefaultWorker : public RegionWorker {
 public:
  PrefaultWorker(Napi::Env env, Napi::Object handle, RegionState* state)
      : RegionWorker(env, "pmq:regionPrefault", handle, state), region_(state->region) {}

 protected:
  void Execute() override {
    status_ = region::prefault_range(region_, 0, region_.size_bytes, state_->prefault_cancel,
                                     &supported_);
  }

  void OnOK() override { settle(); }

  Napi::Value result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("supported", Napi::Boolean::New(env, supported_));
    result.Set("cancelled", Napi::Boolean::New(env, state_->prefault_cancel.load()));
    return result;
  }

 private:
  const region::Region region_;
  bool supported_ = false;
};

Napi::Value region_prefault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(info.Length() == 1);
  RegionState* state = unwrap_open(env, info[0]);
  if (state == nullptr) return env.Undefined();
  return RegionWorker::queue(new PrefaultWorker(env, info[0].As<Napi::Object>(), state));
}

Napi::Value region_page_size_bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(region::page_size_bytes()));
}

}  // namespace

// For the transport's native persist path (transport_data_napi.cc): the Region a handle names,
// open or not (the persist path checks `open` before each use; transport.ts keeps the handle
// referenced while the transport lives, so the state is not finalized under it).
const region::Region* napi_region(const Napi::Value& handle) { return &unwrap(handle)->region; }

// For Transport.attachRegion (transport_data_napi.cc): the open Region a handle names, counted
// as attached until napi_region_detach (the transport's close), so regionClose refuses
// meanwhile. Null (a PMQ_ERR_REGION_CLOSED thrown) when the region is closed.
const region::Region* napi_region_attach(Napi::Env env, const Napi::Value& handle) {
  RegionState* state = unwrap_open(env, handle);
  if (state == nullptr) return nullptr;
  state->attachments += 1;
  return &state->region;
}

void napi_region_detach(const Napi::Value& handle) {
  RegionState* state = unwrap(handle);
  PMQ_ASSERT(state->attachments > 0);
  state->attachments -= 1;
}

void register_region(Napi::Env env, Napi::Object exports) {
  exports.Set("regionOpen", Napi::Function::New(env, region_open, "regionOpen"));
  exports.Set("regionOpenReadOnly",
              Napi::Function::New(env, region_open_read_only, "regionOpenReadOnly"));
  exports.Set("regionInfo", Napi::Function::New(env, region_info, "regionInfo"));
  exports.Set("regionView", Napi::Function::New(env, region_view, "regionView"));
  exports.Set("regionPersist", Napi::Function::New(env, region_persist, "regionPersist"));
  exports.Set("regionPersistAsync",
              Napi::Function::New(env, region_persist_async, "regionPersistAsync"));
  exports.Set("regionFlush", Napi::Function::New(env, region_flush, "regionFlush"));
  exports.Set("regionDrain", Napi::Function::New(env, region_drain, "regionDrain"));
  exports.Set("regionCopyPersist",
              Napi::Function::New(env, region_copy_persist, "regionCopyPersist"));
  exports.Set("regionPrefault", Napi::Function::New(env, region_prefault, "regionPrefault"));
  exports.Set("regionClose", Napi::Function::New(env, region_close, "regionClose"));
  exports.Set("regionPageSizeBytes",
              Napi::Function::New(env, region_page_size_bytes, "regionPageSizeBytes"));
}

}  // namespace pmq
