// JS glue for the transport: converts arguments (TS validated them: here they are asserted),
// maps failures to NativeError, and hands queued events to JS after progress has returned.
//
// Handles: a process may open several transports. transportOpen returns a handle, a small
// integer (1, 2, ...; never reused by this thread), and every other function takes it first.
// The handle names a State in this thread's registry; a handle of a closed transport is no
// longer there (asserted: transport.ts only passes handles of open transports), so a stale one
// can never reach freed memory. A plain number rather than an N-API external: nothing to
// garbage-collect, and the same shape as endpoint ids.
//
// Events reach the JS function given to that transport's open, onEvent(kind, ep, id, status,
// code, text, header, payload), called with MakeCallback semantics (its own HandleScope and
// async context; microtasks run after each call). Each State has its own callback, async
// context and placed arrays: events of one transport never reach another. For a `place` event
// the return value is the destination Uint8Array (or undefined: a fresh Buffer is allocated
// here); that array stays referenced until the data has landed and the `message` event has
// handed it back.
#include <napi.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <unordered_map>

#include "assert.h"
#include "errors.h"
#include "transport.h"

namespace pmq {

namespace {

using transport::Transport;

struct Placed {
  Napi::Reference<Napi::Uint8Array> destination;
  Napi::Reference<Napi::Uint8Array> header;
};

// The JS side of one open transport.
struct State {
  uint32_t id = 0;
  Transport* transport = nullptr;
  napi_env env = nullptr;
  Napi::FunctionReference on_event;
  // napi_async_init holds a resource object given to it only weakly: keep ours alive, or a
  // garbage-collected resource crashes MakeCallback (seen as SIGSEGV in push_async_context).
  Napi::ObjectReference resource;
  std::unique_ptr<Napi::AsyncContext> context;
  Napi::Reference<Napi::Uint8Array> memory;
  // The region whose mapping is the exposed memory (attachRegion), detached at close.
  Napi::Reference<Napi::Value> region;
  // One empty payload for every message that has none (all fixed-layout ones): a new array
  // per message was most of what the broker's event callbacks allocated (issue 11).
  Napi::Reference<Napi::Uint8Array> empty;
  // sharedHeaders: eager messages' headers are copied into one buffer and handed to JS as a
  // view of their length (one per length, made once) instead of a new Buffer per message.
  bool shared_headers = false;
  Napi::Reference<Napi::ArrayBuffer> header_buffer;
  uint8_t* header_data = nullptr;
  std::vector<Napi::Reference<Napi::Uint8Array>> header_views;
  // sharedPayloadBytesMax: eager payloads up to this many bytes likewise (a storage node's
  // 32-byte persisted reply, one per batch at the broker, was a new external Buffer with a
  // finalizer each: issue 11). 0: every payload is its own Buffer.
  uint32_t shared_payload_max = 0;
  Napi::Reference<Napi::ArrayBuffer> payload_buffer;
  uint8_t* payload_data = nullptr;
  std::vector<Napi::Reference<Napi::Uint8Array>> payload_views;
  std::unordered_map<uint64_t, Placed> placed;
  bool dispatching = false;  // dispatch_events is handing its events to JS right now
  bool closed = false;       // closed by a callback while dispatching: freed when that ends
};

// The open transports of this thread by handle. Per thread because an env (the main thread's
// or a worker's) only ever calls in on its own thread, and its handles mean nothing elsewhere;
// heap-allocated and never destroyed, so no napi reference is released after its env is gone.
struct Registry {
  std::unordered_map<uint32_t, std::unique_ptr<State>> open;
  uint32_t next_id = 1;
};

Registry& registry() {
  thread_local Registry* registry = new Registry();
  return *registry;
}

uint64_t to_u64(const Napi::Value& value) {
  PMQ_ASSERT(value.IsNumber());
  double number = value.As<Napi::Number>().DoubleValue();
  PMQ_ASSERT(number >= 0 && number <= 9007199254740991.0 && std::floor(number) == number);
  return static_cast<uint64_t>(number);
}

uint32_t to_ep(const Napi::Value& value) {
  uint64_t ep = to_u64(value);
  PMQ_ASSERT(ep > 0 && ep <= UINT32_MAX);  // it may have closed since JS last heard
  return static_cast<uint32_t>(ep);
}

uint8_t* to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length) {
  PMQ_ASSERT(value.IsTypedArray());
  auto array = value.As<Napi::Uint8Array>();
  PMQ_ASSERT(array.TypedArrayType() == napi_uint8_array);
  PMQ_ASSERT(offset <= array.ByteLength() && length <= array.ByteLength() - offset);
  return array.Data() + offset;
}

// The State a handle names; asserted open (transport.ts checks before calling in).
State* state_of(const Napi::Value& handle) {
  uint64_t id = to_u64(handle);
  PMQ_ASSERT(id > 0 && id <= UINT32_MAX);
  auto& open = registry().open;
  auto found = open.find(static_cast<uint32_t>(id));
  PMQ_ASSERT(found != open.end());
  PMQ_ASSERT(!found->second->closed && !found->second->transport->closed());
  return found->second.get();
}

Transport* transport_of(const Napi::Value& handle) { return state_of(handle)->transport; }

Napi::Value make_uint8(Napi::Env env, State& state, uint8_t* owned, uint64_t length) {
  if (length == 0) {
    std::free(owned);
    if (state.empty.IsEmpty()) state.empty = Napi::Persistent(Napi::Uint8Array::New(env, 0));
    return state.empty.Value();
  }
  auto buffer = Napi::Buffer<uint8_t>::New(env, owned, length,
                                           [](Napi::Env, uint8_t* data) { std::free(data); });
  return buffer;
}

// An eager message's header in the shared buffer, valid until the next event (see State).
Napi::Value shared_header(Napi::Env env, State& state, const std::vector<uint8_t>& header) {
  const size_t length = header.size();
  PMQ_ASSERT(length <= transport::kUserHeaderBytesMax);  // the AM handler drops larger ones
  if (state.header_data == nullptr) {
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, transport::kUserHeaderBytesMax);
    state.header_buffer = Napi::Persistent(buffer);
    state.header_data = static_cast<uint8_t*>(buffer.Data());
    state.header_views.resize(transport::kUserHeaderBytesMax + 1);
  }
  Napi::Reference<Napi::Uint8Array>& view = state.header_views[length];
  if (view.IsEmpty()) {
    view = Napi::Persistent(Napi::Uint8Array::New(env, length, state.header_buffer.Value(), 0));
  }
  if (length > 0) std::memcpy(state.header_data, header.data(), length);
  return view.Value();
}

// An eager message's small payload in the shared payload buffer, valid until the next event;
// `owned` (the AM handler's copy) is freed.
Napi::Value shared_payload(Napi::Env env, State& state, uint8_t* owned, uint64_t length) {
  PMQ_ASSERT(length > 0 && length <= state.shared_payload_max);
  if (state.payload_data == nullptr) {
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, state.shared_payload_max);
    state.payload_buffer = Napi::Persistent(buffer);
    state.payload_data = static_cast<uint8_t*>(buffer.Data());
    state.payload_views.resize(state.shared_payload_max + 1);
  }
  Napi::Reference<Napi::Uint8Array>& view = state.payload_views[length];
  if (view.IsEmpty()) {
    view = Napi::Persistent(Napi::Uint8Array::New(env, length, state.payload_buffer.Value(), 0));
  }
  std::memcpy(state.payload_data, owned, length);
  std::free(owned);
  return view.Value();
}

Napi::Value event_payload(Napi::Env env, State& state, transport::Event& event,
                          Napi::Value* header_p) {
  if (event.kind == transport::EventKind::place) {
    *header_p = Napi::Buffer<uint8_t>::Copy(env, event.header.data(), event.header.size());
    return Napi::Number::New(env, static_cast<double>(event.length));
  }
  if (event.kind != transport::EventKind::message) return env.Undefined();
  if (event.id == 0) {  // eager: the copy made in the AM handler becomes the JS buffer
    *header_p = state.shared_headers
                    ? shared_header(env, state, event.header)
                    : Napi::Buffer<uint8_t>::Copy(env, event.header.data(), event.header.size());
    Napi::Value payload = event.length > 0 && event.length <= state.shared_payload_max
                              ? shared_payload(env, state, event.payload, event.length)
                              : make_uint8(env, state, event.payload, event.length);
    event.payload = nullptr;
    return payload;
  }
  auto found = state.placed.find(event.id);  // rendezvous: the array JS placed
  PMQ_ASSERT(found != state.placed.end());
  *header_p = found->second.header.Value();
  Napi::Value payload = found->second.destination.Value();
  state.placed.erase(found);
  return payload;
}

void place(Napi::Env env, State& state, const transport::Event& event, Napi::Value header,
           Napi::Value chosen) {
  Napi::Uint8Array destination;
  if (chosen.IsTypedArray() && chosen.As<Napi::TypedArray>().TypedArrayType() ==
                                   napi_uint8_array) {
    destination = chosen.As<Napi::Uint8Array>();
    PMQ_ASSERT(destination.ByteLength() == event.length);  // transport.ts checked it
  } else {
    destination = Napi::Buffer<uint8_t>::New(env, event.length);
  }
  Placed placed{Napi::Persistent(destination), Napi::Persistent(header.As<Napi::Uint8Array>())};
  state.placed.emplace(event.id, std::move(placed));
  state.transport->receive_into(event.id, destination.Data());
}

void call_js(Napi::Env env, State& state, transport::Event& event) {
  Napi::HandleScope scope(env);
  Napi::Value header = env.Undefined();
  Napi::Value payload = event_payload(env, state, event, &header);
  std::vector<napi_value> args = {
      Napi::Number::New(env, static_cast<double>(event.kind)),
      Napi::Number::New(env, event.ep),
      Napi::Number::New(env, static_cast<double>(event.id)),
      Napi::Number::New(env, event.status),
      Napi::String::New(env, event.code),
      Napi::String::New(env, event.text),
      header,
      payload};
  Napi::Value result = state.on_event.MakeCallback(env.Global(), args, *state.context);
  if (env.IsExceptionPending()) {
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());  // like an uncaught exception in a callback
    return;
  }
  if (event.kind == transport::EventKind::place && !state.closed) {  // JS may have closed it
    place(env, state, event, header, result);
  }
}

}  // namespace

namespace transport {

bool dispatch_events(Transport* transport) {
  auto& open = registry().open;
  auto found = open.find(transport->id());
  PMQ_ASSERT(found != open.end() && found->second->transport == transport);
  if (transport->events.empty()) return false;
  State* state = found->second.get();
  PMQ_ASSERT(!state->dispatching);  // progress is not re-entrant (progress.cc)
  state->dispatching = true;
  Napi::Env env(state->env);
  while (!transport->events.empty() && !state->closed) {  // JS may close() in a callback
    Event event = std::move(transport->events.front());
    transport->events.pop_front();
    call_js(env, *state, event);
    if (event.payload != nullptr) std::free(event.payload);
  }
  state->dispatching = false;
  // Closed by a callback: transport_close left the State to us, as its async context had to
  // outlive that callback.
  if (state->closed) delete state;
  return true;
}

}  // namespace transport

void register_transport_data(Napi::Env env, Napi::Object exports);
void napi_region_detach(const Napi::Value& handle);  // region_napi.cc
void register_transport_direct(Napi::Env env, Napi::Object exports);

namespace {

transport::Options options_of(const Napi::Object& given) {
  transport::Options options;
  options.tls = given.Get("tls").As<Napi::String>().Utf8Value();
  options.net_devices = given.Get("netDevices").As<Napi::String>().Utf8Value();
  options.busy_poll = given.Get("busyPoll").As<Napi::Boolean>().Value();
  options.keepalive_ms = static_cast<uint32_t>(to_u64(given.Get("keepaliveMs")));
  options.peer_timeout_ms = static_cast<uint32_t>(to_u64(given.Get("peerTimeoutMs")));
  options.direct = given.Get("direct").As<Napi::Boolean>().Value();
  options.request_bytes_max = to_u64(given.Get("requestBytesMax"));
  options.message_bytes_max = to_u64(given.Get("messageBytesMax"));
  options.spin_us = static_cast<uint32_t>(to_u64(given.Get("spinUs")));
  options.ucx_log_verbose = given.Get("ucxLogVerbose").ToBoolean().Value();
  return options;
}

Napi::Value transport_open(const Napi::CallbackInfo& info) {
  // (options, onEvent) → handle
  Napi::Env env = info.Env();
  transport::Options options = options_of(info[0].As<Napi::Object>());
  uv_loop_t* loop = nullptr;
  PMQ_ASSERT(napi_get_uv_event_loop(env, &loop) == napi_ok);
  Registry& registry_ = registry();
  PMQ_ASSERT(registry_.next_id < UINT32_MAX);  // ids are never reused
  uint32_t id = registry_.next_id++;
  Transport* transport = nullptr;
  std::string failure = Transport::open(options, loop, id, &transport);
  if (!failure.empty()) {
    return throw_native_error(env, "PMQ_ERR_TRANSPORT", "transport open failed", failure);
  }
  auto state = std::make_unique<State>();
  state->id = id;
  state->transport = transport;
  state->env = env;
  state->shared_headers = info[0].As<Napi::Object>().Get("sharedHeaders").ToBoolean().Value();
  // transport.ts checked it (0..4096)
  const uint64_t shared_payload_max =
      to_u64(info[0].As<Napi::Object>().Get("sharedPayloadBytesMax"));
  PMQ_ASSERT(shared_payload_max <= 4096);
  state->shared_payload_max = static_cast<uint32_t>(shared_payload_max);
  state->on_event = Napi::Persistent(info[1].As<Napi::Function>());
  Napi::Object resource = Napi::Object::New(env);
  state->resource = Napi::Persistent(resource);
  state->context = std::make_unique<Napi::AsyncContext>(env, "pmq:transport", resource);
  PMQ_ASSERT(registry_.open.emplace(id, std::move(state)).second);
  return Napi::Number::New(env, id);
}

Napi::Value transport_close(const Napi::CallbackInfo& info) {
  // (handle): that transport only; every other one stays open
  State* state = state_of(info[0]);
  std::unique_ptr<State> owned = std::move(registry().open[state->id]);
  registry().open.erase(state->id);  // from now on its handle names nothing
  state->closed = true;
  state->transport->close();  // freed later, once libuv has closed its handles
  if (!state->region.IsEmpty()) {  // the transport no longer touches the mapping
    napi_region_detach(state->region.Value());
    state->region.Reset();
  }
  // Closed from one of its own event callbacks: dispatch_events frees it when that returns.
  if (state->dispatching) owned.release();
  return info.Env().Undefined();
}

Napi::Value transport_listen(const Napi::CallbackInfo& info) {
  std::string bound;
  std::string failure = transport_of(info[0])->listen(info[1].As<Napi::String>().Utf8Value(),
                                                      static_cast<uint16_t>(to_u64(info[2])),
                                                      &bound);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "listen failed", failure);
  }
  return Napi::String::New(info.Env(), bound);
}

Napi::Value transport_connect(const Napi::CallbackInfo& info) {
  uint32_t ep = 0;
  std::string failure = transport_of(info[0])->connect(info[1].As<Napi::String>().Utf8Value(),
                                                       static_cast<uint16_t>(to_u64(info[2])),
                                                       &ep);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "connect failed", failure);
  }
  return Napi::Number::New(info.Env(), ep);
}

Napi::Value transport_endpoint_close(const Napi::CallbackInfo& info) {
  Transport* transport = transport_of(info[0]);
  transport->close_endpoint(to_ep(info[1]));
  transport->mark_needs_progress();
  return info.Env().Undefined();
}

Napi::Value transport_lanes(const Napi::CallbackInfo& info) {
  std::vector<std::string> lanes;
  std::string failure = transport_of(info[0])->lanes(to_ep(info[1]), &lanes);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "lane query failed", failure);
  }
  Napi::Array result = Napi::Array::New(info.Env(), lanes.size());
  for (uint32_t i = 0; i < lanes.size(); i += 1) result.Set(i, lanes[i]);
  return result;
}

Napi::Value transport_send(const Napi::CallbackInfo& info) {
  // (handle, ep, requestId, header, payload, offset, length)
  Transport* transport = transport_of(info[0]);
  uint32_t ep = to_ep(info[1]);
  uint64_t request_id = to_u64(info[2]);
  auto header = info[3].As<Napi::Uint8Array>();
  uint64_t offset = to_u64(info[5]);
  uint64_t length = to_u64(info[6]);
  uint8_t* payload = to_bytes(info[4], offset, length);
  transport->send(ep, request_id, to_bytes(header, 0, header.ByteLength()),
                  header.ByteLength(), payload, length);
  return info.Env().Undefined();
}

Napi::Value transport_send_raw(const Napi::CallbackInfo& info) {
  // (handle, ep, requestId, header, payload, mode 0 = auto / 1 = eager / 2 = rndv)
  Transport* transport = transport_of(info[0]);
  uint32_t ep = to_ep(info[1]);
  uint64_t request_id = to_u64(info[2]);
  auto header = info[3].As<Napi::Uint8Array>();
  auto payload = info[4].As<Napi::Uint8Array>();
  uint64_t mode = to_u64(info[5]);
  PMQ_ASSERT(mode <= 2);
  transport->send_raw(ep, request_id, to_bytes(header, 0, header.ByteLength()),
                      header.ByteLength(), to_bytes(payload, 0, payload.ByteLength()),
                      payload.ByteLength(), static_cast<transport::RawMode>(mode));
  return info.Env().Undefined();
}

Napi::Value transport_bind_session(const Napi::CallbackInfo& info) {
  transport_of(info[0])->bind_session(to_ep(info[1]), to_u64(info[2]));
  return info.Env().Undefined();
}

Napi::Value transport_stats(const Napi::CallbackInfo& info) {
  // (handle): a closed transport's handle is allowed here and reads as closed
  uint64_t id = to_u64(info[0]);
  auto& open = registry().open;
  auto found = id <= UINT32_MAX ? open.find(static_cast<uint32_t>(id)) : open.end();
  Transport* transport = found == open.end() ? nullptr : found->second->transport;
  Napi::Object stats = Napi::Object::New(info.Env());
  stats.Set("open", transport != nullptr);
  stats.Set("endpoints", transport != nullptr ? transport->endpoint_count() : 0);
  stats.Set("pendingOps", transport != nullptr ? transport->pending_ops() : 0);
  stats.Set("epoch", transport != nullptr ? static_cast<double>(transport->epoch()) : 0);
  stats.Set("busyPoll", transport != nullptr && transport->busy_poll());
  // The sleeping mode's adaptive spin (spin_policy.h); zeros when closed or busy polling.
  const transport::AdaptiveSpin closed_spin(0);
  const transport::AdaptiveSpin& spin = transport != nullptr ? transport->spin() : closed_spin;
  stats.Set("spinMaxUs", static_cast<double>(spin.max_ns()) / 1000);
  stats.Set("spinBudgetUs", static_cast<double>(spin.budget_ns()) / 1000);
  stats.Set("spinsRewarded", static_cast<double>(spin.counters().rewarded));
  stats.Set("spinsWasted", static_cast<double>(spin.counters().wasted));
  // Storage side: validated reads and writes served and refused (zeros when closed).
  const transport::Transport::ServedCounters none;
  const auto& served = transport != nullptr ? transport->served() : none;
  stats.Set("readsServed", static_cast<double>(served.reads));
  stats.Set("readBytesServed", static_cast<double>(served.read_bytes));
  stats.Set("writesServed", static_cast<double>(served.writes));
  stats.Set("writeBytesServed", static_cast<double>(served.write_bytes));
  stats.Set("accessRefused", static_cast<double>(served.refused));
  return stats;
}

}  // namespace

// Shared with transport_data_napi.cc and transport_direct_napi.cc.
transport::Transport* napi_transport(const Napi::Value& handle) { return transport_of(handle); }
uint64_t napi_to_u64(const Napi::Value& value) { return to_u64(value); }
uint32_t napi_to_ep(const Napi::Value& value) { return to_ep(value); }
uint8_t* napi_to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length) {
  return to_bytes(value, offset, length);
}
void napi_keep_memory(const Napi::Value& handle, const Napi::Uint8Array& memory) {
  State* state = state_of(handle);
  PMQ_ASSERT(state->memory.IsEmpty());
  state->memory = Napi::Persistent(memory);  // the exposed memory lives as long as its transport
}

void napi_keep_region(const Napi::Value& handle, const Napi::Value& region) {
  State* state = state_of(handle);
  PMQ_ASSERT(state->memory.IsEmpty() && state->region.IsEmpty());
  state->region = Napi::Persistent(region);  // the mapping stays open as long as its transport
}

void register_transport(Napi::Env env, Napi::Object exports) {
  exports.Set("transportOpen", Napi::Function::New(env, transport_open, "transportOpen"));
  exports.Set("transportClose", Napi::Function::New(env, transport_close, "transportClose"));
  exports.Set("transportListen", Napi::Function::New(env, transport_listen, "transportListen"));
  exports.Set("transportConnect",
              Napi::Function::New(env, transport_connect, "transportConnect"));
  exports.Set("transportEndpointClose",
              Napi::Function::New(env, transport_endpoint_close, "transportEndpointClose"));
  exports.Set("transportLanes", Napi::Function::New(env, transport_lanes, "transportLanes"));
  exports.Set("transportSend", Napi::Function::New(env, transport_send, "transportSend"));
  exports.Set("transportSendRaw",
              Napi::Function::New(env, transport_send_raw, "transportSendRaw"));
  exports.Set("transportBindSession",
              Napi::Function::New(env, transport_bind_session, "transportBindSession"));
  exports.Set("transportStats", Napi::Function::New(env, transport_stats, "transportStats"));
  register_transport_data(env, exports);
  register_transport_direct(env, exports);
}

}  // namespace pmq
