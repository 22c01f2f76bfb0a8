// JS glue for direct mode (native/transport_direct.cc): key export on the storage side, key
// import, put, get and flush on the client side. native/transport.ts validated the arguments
// (direct mode enabled, RDMA lanes, grant state, ranges, buffers): here they are asserted.
// Every function takes the transport's handle first (transport_napi.cc); key ids are per
// transport.
#include <napi.h>

#include "assert.h"
#include "errors.h"
#include "transport.h"

namespace pmq {

transport::Transport* napi_transport(const Napi::Value& handle);
uint64_t napi_to_u64(const Napi::Value& value);
uint32_t napi_to_ep(const Napi::Value& value);
uint8_t* napi_to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length);

namespace {

Napi::Value direct_export(const Napi::CallbackInfo& info) {
  // (handle, ep, grantId, grantKey) → the key's bytes
  std::vector<uint8_t> key;
  const char* code = "";
  std::string failure = napi_transport(info[0])->direct_export(
      napi_to_ep(info[1]), napi_to_u64(info[2]), napi_to_u64(info[3]), &key, &code);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), code, "direct key export refused", failure);
  }
  return Napi::Buffer<uint8_t>::Copy(info.Env(), key.data(), key.size());
}

Napi::Value direct_import(const Napi::CallbackInfo& info) {
  // (handle, ep, keyBytes) → key id
  auto key = info[2].As<Napi::Uint8Array>();
  uint64_t key_id = 0;
  const char* code = "";
  std::string failure = napi_transport(info[0])->direct_import(
      napi_to_ep(info[1]), napi_to_bytes(key, 0, key.ByteLength()), key.ByteLength(), &key_id,
      &code);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), code, "direct key import failed", failure);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(key_id));
}

Napi::Value direct_release(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->direct_release(napi_to_u64(info[1]));
  return info.Env().Undefined();
}

Napi::Value direct_transfer(const Napi::CallbackInfo& info) {
  // (handle, requestId, keyId, write 0/1, address, buffer, offset, length)
  uint64_t write = napi_to_u64(info[3]);
  PMQ_ASSERT(write <= 1);
  uint64_t length = napi_to_u64(info[7]);
  PMQ_ASSERT(length > 0);
  uint8_t* local = napi_to_bytes(info[5], napi_to_u64(info[6]), length);
  napi_transport(info[0])->direct_transfer(napi_to_u64(info[1]), napi_to_u64(info[2]),
                                           write == 1, napi_to_u64(info[4]), local, length);
  return info.Env().Undefined();
}

Napi::Value direct_flush(const Napi::CallbackInfo& info) {
  // (handle, ep, requestId)
  napi_transport(info[0])->direct_flush(napi_to_ep(info[1]), napi_to_u64(info[2]));
  return info.Env().Undefined();
}

}  // namespace

void register_transport_direct(Napi::Env env, Napi::Object exports) {
  exports.Set("transportDirectExport",
              Napi::Function::New(env, direct_export, "transportDirectExport"));
  exports.Set("transportDirectImport",
              Napi::Function::New(env, direct_import, "transportDirectImport"));
  exports.Set("transportDirectRelease",
              Napi::Function::New(env, direct_release, "transportDirectRelease"));
  exports.Set("transportDirectTransfer",
              Napi::Function::New(env, direct_transfer, "transportDirectTransfer"));
  exports.Set("transportDirectFlush",
              Napi::Function::New(env, direct_flush, "transportDirectFlush"));
}

}  // namespace pmq
