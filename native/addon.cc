// Module init: registers every native export and receives the TS error class.
// Each object family registers its own functions (region_napi.cc, transport_napi.cc,
// crc32c_napi.cc); this file only wires them together and exports the ABI version.
#include <napi.h>

#include "errors.h"

namespace pmq {
void register_crc32c(Napi::Env env, Napi::Object exports);
void register_region(Napi::Env env, Napi::Object exports);
void register_transport(Napi::Env env, Napi::Object exports);
}  // namespace pmq

namespace {

// Bumped whenever a native function's signature or a shared layout constant changes;
// native/index.ts refuses to run against a different build.
constexpr int32_t kAbiVersion = 4;

Napi::Value init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsFunction()) {
    return pmq::throw_native_error(env, "PMQ_ERR_ARGUMENT", "init(errorClass) needs a class",
                                   "bad argument");
  }
  pmq::set_error_class(env, info[0].As<Napi::Function>());
  return env.Undefined();
}

Napi::Object module_init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, kAbiVersion));
  exports.Set("init", Napi::Function::New(env, init, "init"));
  pmq::register_crc32c(env, exports);
  pmq::register_region(env, exports);
  pmq::register_transport(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pmq_native, module_init)
