// JS glue for the validated data path: the storage side's exposed memory and grant table, and
// the client side's validated write and read. Arguments were validated by native/transport.ts.
// Every function takes the transport's handle first (transport_napi.cc) and acts on that
// transport only: its grant table, its memory, its endpoints.
#include <napi.h>

#include <iterator>
#include <vector>

#include "assert.h"
#include "region.h"
#include "transport.h"

namespace pmq {

transport::Transport* napi_transport(const Napi::Value& handle);
uint64_t napi_to_u64(const Napi::Value& value);
const region::Region* napi_region(const Napi::Value& handle);  // region_napi.cc
const region::Region* napi_region_attach(Napi::Env env, const Napi::Value& handle);
uint32_t napi_to_ep(const Napi::Value& value);
uint8_t* napi_to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length);
void napi_keep_memory(const Napi::Value& handle, const Napi::Uint8Array& memory);
void napi_keep_region(const Napi::Value& handle, const Napi::Value& region);

namespace {

Napi::Value attach_memory(const Napi::CallbackInfo& info) {
  auto memory = info[1].As<Napi::Uint8Array>();
  uint8_t* base = napi_to_bytes(memory, 0, memory.ByteLength());
  napi_transport(info[0])->attach_memory(base, memory.ByteLength());
  napi_keep_memory(info[0], memory);
  return info.Env().Undefined();
}

// (handle, regionHandle): the whole mapping, by the region's native handle (no ArrayBuffer,
// so no 4 GiB cap); the region counts the transport as attached until the transport closes.
Napi::Value attach_region(const Napi::CallbackInfo& info) {
  const region::Region* region = napi_region_attach(info.Env(), info[1]);
  if (region == nullptr) return info.Env().Undefined();  // closed: PMQ_ERR_REGION_CLOSED thrown
  PMQ_ASSERT(region->open && region->base != nullptr && region->size_bytes > 0);
  napi_transport(info[0])->attach_memory(region->base, region->size_bytes);
  napi_keep_region(info[0], info[1]);
  return info.Env().Undefined();
}

Napi::Value result_of(const Napi::CallbackInfo& info, transport::GrantResult result) {
  return Napi::Number::New(info.Env(), static_cast<double>(result));
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
  const uint64_t segment = napi_to_u64(info[9]);  // kNoSegment: none (tests' bare grants)
  PMQ_ASSERT(segment <= transport::kNoSegment);
  grant.segment = static_cast<uint32_t>(segment);
  return result_of(info, napi_transport(info[0])->grant_create(grant));
}

Napi::Value grant_set_readable(const Napi::CallbackInfo& info) {
  return result_of(info, napi_transport(info[0])->grant_set_readable(napi_to_u64(info[1]),
                                                                      napi_to_u64(info[2])));
}

Napi::Value grant_set_floor(const Napi::CallbackInfo& info) {
  return result_of(info, napi_transport(info[0])->grant_set_floor(napi_to_u64(info[1]),
                                                                   napi_to_u64(info[2])));
}

Napi::Value grant_revoke(const Napi::CallbackInfo& info) {
  return result_of(info, napi_transport(info[0])->grant_revoke(napi_to_u64(info[1])));
}

Napi::Value grant_forget(const Napi::CallbackInfo& info) {
  return result_of(info, napi_transport(info[0])->grant_forget(napi_to_u64(info[1])));
}

uint32_t to_segment(const Napi::Value& value) {
  const uint64_t segment = napi_to_u64(value);
  PMQ_ASSERT(segment <= transport::kNoSegment);
  return static_cast<uint32_t>(segment);
}

// (handle, segment (kNoSegment: all), direction (0 read, 1 write, 2 both), endMax, epochBelow)
// -> the ids still in flight (revokeDone follows for each), or undefined for none.
Napi::Value grants_revoke_where(const Napi::CallbackInfo& info) {
  const uint64_t direction = napi_to_u64(info[2]);
  PMQ_ASSERT(direction <= 2);
  std::vector<uint64_t> in_flight;
  napi_transport(info[0])->grants_revoke_where(to_segment(info[1]),
                                               direction == 2 ? -1 : static_cast<int>(direction),
                                               napi_to_u64(info[3]), napi_to_u64(info[4]),
                                               &in_flight);
  if (in_flight.empty()) return info.Env().Undefined();
  Napi::Array ids = Napi::Array::New(info.Env(), in_flight.size());
  for (size_t i = 0; i < in_flight.size(); i += 1) {
    ids.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(),
                                                        static_cast<double>(in_flight[i])));
  }
  return ids;
}

// (handle, segment, direction 0 read / 1 write, addressEnd)
Napi::Value grants_raise(const Napi::CallbackInfo& info) {
  const uint64_t direction = napi_to_u64(info[2]);
  PMQ_ASSERT(direction <= 1);
  napi_transport(info[0])->grants_raise(to_segment(info[1]),
                                        static_cast<transport::Direction>(direction),
                                        napi_to_u64(info[3]));
  return info.Env().Undefined();
}

// (handle, grantId) -> [epoch, segment, address, length, direction, session, key, readable,
//  floor, revoked, inFlight] or undefined
Napi::Value grant_find(const Napi::CallbackInfo& info) {
  const transport::Grant* grant = napi_transport(info[0])->grant_find(napi_to_u64(info[1]));
  if (grant == nullptr) return info.Env().Undefined();
  const double fields[] = {
      static_cast<double>(grant->epoch), static_cast<double>(grant->segment),
      static_cast<double>(grant->address), static_cast<double>(grant->length),
      static_cast<double>(grant->direction), static_cast<double>(grant->session),
      static_cast<double>(grant->key), static_cast<double>(grant->readable),
      static_cast<double>(grant->floor), grant->revoked ? 1.0 : 0.0,
      static_cast<double>(grant->in_flight)};
  Napi::Float64Array out = Napi::Float64Array::New(info.Env(), std::size(fields));
  for (size_t i = 0; i < std::size(fields); i += 1) out[i] = fields[i];
  return out;
}

Napi::Value set_grant_limits(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->set_grant_limits(napi_to_u64(info[1]), napi_to_u64(info[2]));
  return info.Env().Undefined();
}

// (handle) -> [live, remembered, ...live ids]
Napi::Value grant_census(const Napi::CallbackInfo& info) {
  transport::Transport* transport = napi_transport(info[0]);
  std::vector<uint64_t> ids;
  transport->live_grant_ids(&ids);
  Napi::Array out = Napi::Array::New(info.Env(), ids.size() + 2);
  out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(transport->live_grants())));
  out.Set(1u, Napi::Number::New(info.Env(),
                                static_cast<double>(transport->remembered_grants())));
  for (size_t i = 0; i < ids.size(); i += 1) {
    out.Set(static_cast<uint32_t>(i + 2), Napi::Number::New(info.Env(),
                                                            static_cast<double>(ids[i])));
  }
  return out;
}

// (handle, regionHandle, tableAddress, dataAddress, dataEnd, segmentCount, state): state is
// a Float64Array of segmentCount × kPersistFields that transport.ts keeps referenced until close.
Napi::Value persist_configure(const Napi::CallbackInfo& info) {
  transport::PersistConfig config;
  config.region = napi_region(info[1]);
  config.table_address = napi_to_u64(info[2]);
  config.data_address = napi_to_u64(info[3]);
  config.data_end = napi_to_u64(info[4]);
  const uint64_t count = napi_to_u64(info[5]);
  PMQ_ASSERT(count > 0 && count < transport::kNoSegment);
  config.segment_count = static_cast<uint32_t>(count);
  PMQ_ASSERT(info[6].IsTypedArray() &&
             info[6].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array);
  auto state = info[6].As<Napi::Float64Array>();
  PMQ_ASSERT(state.ElementLength() == count * transport::kPersistFields);
  config.state = state.Data();
  napi_transport(info[0])->persist_configure(config);
  return info.Env().Undefined();
}

Napi::Value set_persist_owner(const Napi::CallbackInfo& info) {
  const uint64_t ep = napi_to_u64(info[1]);
  PMQ_ASSERT(ep <= UINT32_MAX && info[2].IsBoolean());
  napi_transport(info[0])->set_persist_owner(static_cast<uint32_t>(ep),
                                             info[2].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value clear_persist_owners(const Napi::CallbackInfo& info) {
  napi_transport(info[0])->clear_persist_owners();
  return info.Env().Undefined();
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
  exports.Set("transportAttachRegion",
              Napi::Function::New(env, attach_region, "transportAttachRegion"));
  exports.Set("transportPersistConfigure",
              Napi::Function::New(env, persist_configure, "transportPersistConfigure"));
  exports.Set("transportSetPersistOwner",
              Napi::Function::New(env, set_persist_owner, "transportSetPersistOwner"));
  exports.Set("transportClearPersistOwners",
              Napi::Function::New(env, clear_persist_owners, "transportClearPersistOwners"));
  exports.Set("transportGrantCreate",
              Napi::Function::New(env, grant_create, "transportGrantCreate"));
  exports.Set("transportGrantsRevokeWhere",
              Napi::Function::New(env, grants_revoke_where, "transportGrantsRevokeWhere"));
  exports.Set("transportGrantsRaise", Napi::Function::New(env, grants_raise,
                                                          "transportGrantsRaise"));
  exports.Set("transportGrantFind", Napi::Function::New(env, grant_find, "transportGrantFind"));
  exports.Set("transportSetGrantLimits",
              Napi::Function::New(env, set_grant_limits, "transportSetGrantLimits"));
  exports.Set("transportGrantCensus",
              Napi::Function::New(env, grant_census, "transportGrantCensus"));
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
