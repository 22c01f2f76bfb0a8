// JS glue for the validated data path: the storage side's exposed memory and grant table, and
// the client side's validated write and read. Arguments were validated by native/transport.ts.
// Every function takes the transport's handle first (transport_napi.cc) and acts on that
// transport only: its grant table, its memory, its endpoints.
#include <napi.h>

#include "assert.h"
#include "transport.h"

namespace pmq {

transport::Transport* napi_transport(const Napi::Value& handle);
uint64_t napi_to_u64(const Napi::Value& value);
uint32_t napi_to_ep(const Napi::Value& value);
uint8_t* napi_to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length);
void napi_keep_memory(const Napi::Value& handle, const Napi::Uint8Array& memory);

namespace {

Napi::Value attach_memory(const Napi::CallbackInfo& info) {
  auto memory = info[1].As<Napi::Uint8Array>();
  uint8_t* base = napi_to_bytes(memory, 0, memory.ByteLength());
  napi_transport(info[0])->attach_memory(base, memory.ByteLength());
  napi_keep_memory(info[0], memory);
  return info.Env().Undefined();
}

Napi::Value grant_create(const Napi::CallbackInfo& info) {
  // (handle, grantId, epoch, address, length, direction 0 = read / 1 = write, session, key,
  //  readable)
  transport::Grant grant{};
  grant.id = napi_to_u64(info[1]);
  grant.epoch = napi_to_u64(info[2]);
  grant.address = napi_to_u64(info[3]);
  grant.length = napi_to_u64(info[4]);
  uint64_t direction = napi_to_u64(info[5]);
  PMQ_ASSERT(direction <= 1);
  grant.direction = static_cast<transport::Direction>(direction);
  grant.session = napi_to_u64(info[6]);
  grant.key = napi_to_u64(info[7]);
  grant.readable = napi_to_u64(info[8]);
  napi_transport(info[0])->grant_create(grant);
  return info.Env().Undefined();
}

Napi::Value grant_set_readable(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->grant_set_readable(napi_to_u64(info[1]), napi_to_u64(info[2]));
  return info.Env().Undefined();
}

Napi::Value grant_set_floor(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->grant_set_floor(napi_to_u64(info[1]), napi_to_u64(info[2]));
  return info.Env().Undefined();
}

Napi::Value grant_revoke(const Napi::CallbackInfo& info) {
  bool done = napi_transport(info[0])->grant_revoke(napi_to_u64(info[1]));
  return Napi::Boolean::New(info.Env(), done);
}

Napi::Value grant_forget(const Napi::CallbackInfo& info) {
  bool forgotten = napi_transport(info[0])->grant_forget(napi_to_u64(info[1]));
  return Napi::Boolean::New(info.Env(), forgotten);
}

Napi::Value epoch_raise(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->epoch_raise(napi_to_u64(info[1]));
  return info.Env().Undefined();
}

transport::AccessHeader access_header(const Napi::CallbackInfo& info, transport::Kind kind) {
  // (handle, ep, requestId, grantId, epoch, grantKey, address, buffer, offset, length)
  transport::AccessHeader request{};
  request.version = transport::kWireVersion;
  request.kind = static_cast<uint8_t>(kind);
  request.request_id = napi_to_u64(info[2]);
  request.grant_id = napi_to_u64(info[3]);
  request.epoch = napi_to_u64(info[4]);
  request.grant_key = napi_to_u64(info[5]);
  request.address = napi_to_u64(info[6]);
  request.length = napi_to_u64(info[9]);
  PMQ_ASSERT(request.length > 0);
  return request;
}

Napi::Value write_validated(const Napi::CallbackInfo& info) {
  uint32_t ep = napi_to_ep(info[1]);
  transport::AccessHeader request = access_header(info, transport::Kind::write_request);
  uint8_t* src = napi_to_bytes(info[7], napi_to_u64(info[8]), request.length);
  napi_transport(info[0])->write_validated(ep, request, src);
  return info.Env().Undefined();
}

Napi::Value write_validated_iov(const Napi::CallbackInfo& info) {
  // (handle, ep, requestId, grantId, epoch, grantKey, address, pieces: Uint8Array[], 0, length)
  uint32_t ep = napi_to_ep(info[1]);
  transport::AccessHeader request = access_header(info, transport::Kind::write_request);
  PMQ_ASSERT(info[7].IsArray());
  auto pieces = info[7].As<Napi::Array>();
  std::vector<ucp_dt_iov_t> iov(pieces.Length());
  for (uint32_t i = 0; i < pieces.Length(); i += 1) {
    Napi::Value piece = pieces.Get(i);
    PMQ_ASSERT(piece.IsTypedArray());
    uint64_t length = piece.As<Napi::Uint8Array>().ByteLength();
    iov[i].buffer = napi_to_bytes(piece, 0, length);
    iov[i].length = length;
  }
  napi_transport(info[0])->write_validated_iov(ep, request, std::move(iov));
  return info.Env().Undefined();
}

Napi::Value read_validated(const Napi::CallbackInfo& info) {
  uint32_t ep = napi_to_ep(info[1]);
  transport::AccessHeader request = access_header(info, transport::Kind::read_request);
  uint8_t* dst = napi_to_bytes(info[7], napi_to_u64(info[8]), request.length);
  napi_transport(info[0])->read_validated(ep, request, dst);
  return info.Env().Undefined();
}

}  // namespace

void register_transport_data(Napi::Env env, Napi::Object exports) {
  exports.Set("transportAttachMemory",
              Napi::Function::New(env, attach_memory, "transportAttachMemory"));
  exports.Set("transportGrantCreate",
              Napi::Function::New(env, grant_create, "transportGrantCreate"));
  exports.Set("transportGrantRevoke",
              Napi::Function::New(env, grant_revoke, "transportGrantRevoke"));
  exports.Set("transportGrantForget",
              Napi::Function::New(env, grant_forget, "transportGrantForget"));
  exports.Set("transportGrantSetReadable",
              Napi::Function::New(env, grant_set_readable, "transportGrantSetReadable"));
  exports.Set("transportGrantSetFloor",
              Napi::Function::New(env, grant_set_floor, "transportGrantSetFloor"));
  exports.Set("transportEpochRaise", Napi::Function::New(env, epoch_raise, "transportEpochRaise"));
  exports.Set("transportWriteValidated",
              Napi::Function::New(env, write_validated, "transportWriteValidated"));
  exports.Set("transportWriteValidatedIov",
              Napi::Function::New(env, write_validated_iov, "transportWriteValidatedIov"));
  exports.Set("transportReadValidated",
              Napi::Function::New(env, read_validated, "transportReadValidated"));
}

}  // namespace pmq
