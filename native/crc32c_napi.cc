// JS glue for native/crc32c: reads the caller's Uint8Array in place (zero copy). TS
// (native/crc32c.ts) validated the arguments; the checks here are pair checks and abort.
#include <napi.h>

#include <cmath>

#include "assert.h"
#include "batch_check.h"
#include "crc32c.h"

namespace pmq {

namespace {

constexpr double kSafeIntegerMax = 9007199254740991.0;  // 2^53 - 1

uint64_t to_index(const Napi::Value& value) {
  PMQ_ASSERT(value.IsNumber());
  const double number = value.As<Napi::Number>().DoubleValue();
  PMQ_ASSERT(number >= 0 && number <= kSafeIntegerMax && std::floor(number) == number);
  return static_cast<uint64_t>(number);
}

using Compute = uint32_t (*)(const uint8_t*, size_t, uint32_t);

// (data: Uint8Array, offset, length, seed) -> uint32
Napi::Value checksum(const Napi::CallbackInfo& info, Compute compute) {
  PMQ_ASSERT(info.Length() == 4 && info[0].IsTypedArray());
  PMQ_ASSERT(info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array);
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  const uint64_t offset = to_index(info[1]);
  const uint64_t length = to_index(info[2]);
  const uint64_t seed = to_index(info[3]);
  PMQ_ASSERT(offset <= data.ByteLength() && length <= data.ByteLength() - offset);
  PMQ_ASSERT(seed <= 0xFFFFFFFFull);
  const uint8_t* start = length == 0 ? nullptr : data.Data() + offset;
  const uint32_t crc = compute(start, length, static_cast<uint32_t>(seed));
  return Napi::Number::New(info.Env(), static_cast<double>(crc));
}

Napi::Value crc32c_js(const Napi::CallbackInfo& info) {
  return checksum(info, crc32c::compute);
}

Napi::Value crc32c_software_js(const Napi::CallbackInfo& info) {
  return checksum(info, crc32c::compute_software);
}

Napi::Value crc32c_implementation_js(const Napi::CallbackInfo& info) {
  const bool sse42 = crc32c::active_implementation() == crc32c::Implementation::sse42;
  return Napi::String::New(info.Env(), sse42 ? "sse4.2" : "software");
}

// (data, offset, length, records) -> whether the storage node's native persist path accepts
// the batch at data[offset, +length) as one whole RecordBatch v2 of `records` records.
Napi::Value record_batch_check_js(const Napi::CallbackInfo& info) {
  PMQ_ASSERT(info.Length() == 4 && info[0].IsTypedArray());
  PMQ_ASSERT(info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array);
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  const uint64_t offset = to_index(info[1]);
  const uint64_t length = to_index(info[2]);
  const uint64_t records = to_index(info[3]);
  PMQ_ASSERT(offset <= data.ByteLength() && length <= data.ByteLength() - offset);
  const bool ok = length >= batch::kHeaderSizeBytes &&
                  batch::check(data.Data() + offset, length, records);
  return Napi::Boolean::New(info.Env(), ok);
}

}  // namespace

void register_crc32c(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, crc32c_js, "crc32c"));
  exports.Set("crc32cSoftware", Napi::Function::New(env, crc32c_software_js, "crc32cSoftware"));
  exports.Set("recordBatchCheck",
              Napi::Function::New(env, record_batch_check_js, "recordBatchCheck"));
  exports.Set("crc32cImplementation",
              Napi::Function::New(env, crc32c_implementation_js, "crc32cImplementation"));
}

}  // namespace pmq
