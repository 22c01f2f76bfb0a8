// JS glue for the transport: converts arguments (TS validated them: here they are asserted),
// maps failures to NativeError, and hands queued events to JS after progress has returned.
//
// Events reach one JS function, onEvent(kind, ep, id, status, code, text, header, payload),
// called with MakeCallback semantics (its own HandleScope and async context; microtasks run
// after each call). For a `place` event its return value is the destination Uint8Array (or
// undefined: a fresh Buffer is allocated here); that array stays referenced until the data
// has landed and the `message` event has handed it back.
#include <napi.h>

#include <cmath>
#include <cstdlib>
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

struct State {
  Transport* transport = nullptr;
  napi_env env = nullptr;
  Napi::FunctionReference on_event;
  // napi_async_init holds a resource object given to it only weakly: keep ours alive, or a
  // garbage-collected resource crashes MakeCallback (seen as SIGSEGV in push_async_context).
  Napi::ObjectReference resource;
  Napi::AsyncContext* context = nullptr;
  Napi::Reference<Napi::Uint8Array> memory;
  std::unordered_map<uint64_t, Placed> placed;
};

State* g_state = nullptr;
State* g_dispatching = nullptr;  // the state whose events are being handed to JS right now

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

Transport* open_transport() {
  PMQ_ASSERT(g_state != nullptr && !g_state->transport->closed());
  return g_state->transport;
}

Napi::Value make_uint8(Napi::Env env, uint8_t* owned, uint64_t length) {
  if (length == 0) return Napi::Uint8Array::New(env, 0);
  auto buffer = Napi::Buffer<uint8_t>::New(env, owned, length,
                                           [](Napi::Env, uint8_t* data) { std::free(data); });
  return buffer;
}

Napi::Value event_payload(Napi::Env env, transport::Event& event, Napi::Value* header_p) {
  if (event.kind == transport::EventKind::place) {
    *header_p = Napi::Buffer<uint8_t>::Copy(env, event.header.data(), event.header.size());
    return Napi::Number::New(env, static_cast<double>(event.length));
  }
  if (event.kind != transport::EventKind::message) return env.Undefined();
  if (event.id == 0) {  // eager: the copy made in the AM handler becomes the JS buffer
    *header_p = Napi::Buffer<uint8_t>::Copy(env, event.header.data(), event.header.size());
    Napi::Value payload = make_uint8(env, event.payload, event.length);
    event.payload = nullptr;
    return payload;
  }
  auto found = g_state->placed.find(event.id);  // rendezvous: the array JS placed
  PMQ_ASSERT(found != g_state->placed.end());
  *header_p = found->second.header.Value();
  Napi::Value payload = found->second.destination.Value();
  g_state->placed.erase(found);
  return payload;
}

void place(Napi::Env env, const transport::Event& event, Napi::Value header, Napi::Value chosen) {
  Napi::Uint8Array destination;
  if (chosen.IsTypedArray() && chosen.As<Napi::TypedArray>().TypedArrayType() ==
                                   napi_uint8_array) {
    destination = chosen.As<Napi::Uint8Array>();
    PMQ_ASSERT(destination.ByteLength() == event.length);  // transport.ts checked it
  } else {
    destination = Napi::Buffer<uint8_t>::New(env, event.length);
  }
  Placed placed{Napi::Persistent(destination), Napi::Persistent(header.As<Napi::Uint8Array>())};
  g_state->placed.emplace(event.id, std::move(placed));
  g_state->transport->receive_into(event.id, destination.Data());
}

void call_js(Napi::Env env, transport::Event& event) {
  Napi::HandleScope scope(env);
  Napi::Value header = env.Undefined();
  Napi::Value payload = event_payload(env, event, &header);
  std::vector<napi_value> args = {
      Napi::Number::New(env, static_cast<double>(event.kind)),
      Napi::Number::New(env, event.ep),
      Napi::Number::New(env, static_cast<double>(event.id)),
      Napi::Number::New(env, event.status),
      Napi::String::New(env, event.code),
      Napi::String::New(env, event.text),
      header,
      payload};
  Napi::Value result = g_state->on_event.MakeCallback(env.Global(), args, *g_state->context);
  if (env.IsExceptionPending()) {
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());  // like an uncaught exception in a callback
    return;
  }
  if (event.kind == transport::EventKind::place && g_state != nullptr) {
    place(env, event, header, result);
  }
}

}  // namespace

namespace transport {

bool dispatch_events(Transport* transport) {
  PMQ_ASSERT(g_state != nullptr && g_state->transport == transport);
  if (transport->events.empty()) return false;
  Napi::Env env(g_state->env);
  State* state = g_state;
  g_dispatching = state;
  while (!transport->events.empty() && !transport->closed()) {  // JS may close() in a callback
    Event event = std::move(transport->events.front());
    transport->events.pop_front();
    call_js(env, event);
    if (event.payload != nullptr) std::free(event.payload);
  }
  g_dispatching = nullptr;
  if (state != g_state) {  // closed by a callback: its async context outlived that callback
    delete state->context;
    delete state;
  }
  return true;
}

}  // namespace transport

void register_transport_data(Napi::Env env, Napi::Object exports);
void register_transport_direct(Napi::Env env, Napi::Object exports);

namespace {

Napi::Value transport_open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PMQ_ASSERT(g_state == nullptr);  // transport.ts refuses a second open
  Napi::Object given = info[0].As<Napi::Object>();
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
  uv_loop_t* loop = nullptr;
  PMQ_ASSERT(napi_get_uv_event_loop(env, &loop) == napi_ok);
  Transport* transport = nullptr;
  std::string failure = Transport::open(options, loop, &transport);
  if (!failure.empty()) {
    return throw_native_error(env, "PMQ_ERR_TRANSPORT", "transport open failed", failure);
  }
  g_state = new State();
  g_state->transport = transport;
  g_state->env = env;
  g_state->on_event = Napi::Persistent(info[1].As<Napi::Function>());
  Napi::Object resource = Napi::Object::New(env);
  g_state->resource = Napi::Persistent(resource);
  g_state->context = new Napi::AsyncContext(env, "pmq:transport", resource);
  return env.Undefined();
}

Napi::Value transport_close(const Napi::CallbackInfo& info) {
  PMQ_ASSERT(g_state != nullptr);
  g_state->transport->close();  // freed later, once libuv has closed its handles
  if (g_dispatching != g_state) {
    delete g_state->context;
    delete g_state;
  }
  g_state = nullptr;
  return info.Env().Undefined();
}

Napi::Value transport_listen(const Napi::CallbackInfo& info) {
  std::string bound;
  std::string failure = open_transport()->listen(info[0].As<Napi::String>().Utf8Value(),
                                                 static_cast<uint16_t>(to_u64(info[1])),
                                                 &bound);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "listen failed", failure);
  }
  return Napi::String::New(info.Env(), bound);
}

Napi::Value transport_connect(const Napi::CallbackInfo& info) {
  uint32_t ep = 0;
  std::string failure = open_transport()->connect(info[0].As<Napi::String>().Utf8Value(),
                                                  static_cast<uint16_t>(to_u64(info[1])), &ep);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "connect failed", failure);
  }
  return Napi::Number::New(info.Env(), ep);
}

Napi::Value transport_endpoint_close(const Napi::CallbackInfo& info) {
  open_transport()->close_endpoint(to_ep(info[0]));
  open_transport()->mark_needs_progress();
  return info.Env().Undefined();
}

Napi::Value transport_lanes(const Napi::CallbackInfo& info) {
  std::vector<std::string> lanes;
  std::string failure = open_transport()->lanes(to_ep(info[0]), &lanes);
  if (!failure.empty()) {
    return throw_native_error(info.Env(), "PMQ_ERR_TRANSPORT", "lane query failed", failure);
  }
  Napi::Array result = Napi::Array::New(info.Env(), lanes.size());
  for (uint32_t i = 0; i < lanes.size(); i += 1) result.Set(i, lanes[i]);
  return result;
}

Napi::Value transport_send(const Napi::CallbackInfo& info) {
  // (ep, requestId, header, payload, offset, length)
  uint32_t ep = to_ep(info[0]);
  uint64_t request_id = to_u64(info[1]);
  auto header = info[2].As<Napi::Uint8Array>();
  uint64_t offset = to_u64(info[4]);
  uint64_t length = to_u64(info[5]);
  uint8_t* payload = to_bytes(info[3], offset, length);
  open_transport()->send(ep, request_id, to_bytes(header, 0, header.ByteLength()),
                         header.ByteLength(), payload, length);
  return info.Env().Undefined();
}

Napi::Value transport_send_raw(const Napi::CallbackInfo& info) {
  // (ep, requestId, header, payload, mode 0 = auto / 1 = eager / 2 = rndv)
  uint32_t ep = to_ep(info[0]);
  uint64_t request_id = to_u64(info[1]);
  auto header = info[2].As<Napi::Uint8Array>();
  auto payload = info[3].As<Napi::Uint8Array>();
  uint64_t mode = to_u64(info[4]);
  PMQ_ASSERT(mode <= 2);
  open_transport()->send_raw(ep, request_id, to_bytes(header, 0, header.ByteLength()),
                             header.ByteLength(), to_bytes(payload, 0, payload.ByteLength()),
                             payload.ByteLength(), static_cast<transport::RawMode>(mode));
  return info.Env().Undefined();
}

Napi::Value transport_bind_session(const Napi::CallbackInfo& info) {
  open_transport()->bind_session(to_ep(info[0]), to_u64(info[1]));
  return info.Env().Undefined();
}

Napi::Value transport_stats(const Napi::CallbackInfo& info) {
  Napi::Object stats = Napi::Object::New(info.Env());
  bool open = g_state != nullptr;
  stats.Set("open", open);
  stats.Set("endpoints", open ? g_state->transport->endpoint_count() : 0);
  stats.Set("pendingOps", open ? g_state->transport->pending_ops() : 0);
  stats.Set("epoch", open ? static_cast<double>(g_state->transport->epoch()) : 0);
  stats.Set("busyPoll", open && g_state->transport->busy_poll());
  // The sleeping mode's adaptive spin (spin_policy.h); zeros when closed or busy polling.
  transport::AdaptiveSpin closed_spin(0);
  const transport::AdaptiveSpin& spin = open ? g_state->transport->spin() : closed_spin;
  stats.Set("spinMaxUs", static_cast<double>(spin.max_ns()) / 1000);
  stats.Set("spinBudgetUs", static_cast<double>(spin.budget_ns()) / 1000);
  stats.Set("spinsRewarded", static_cast<double>(spin.counters().rewarded));
  stats.Set("spinsWasted", static_cast<double>(spin.counters().wasted));
  return stats;
}

}  // namespace

// Shared with transport_data_napi.cc.
transport::Transport* napi_open_transport() { return open_transport(); }
uint64_t napi_to_u64(const Napi::Value& value) { return to_u64(value); }
uint32_t napi_to_ep(const Napi::Value& value) { return to_ep(value); }
uint8_t* napi_to_bytes(const Napi::Value& value, uint64_t offset, uint64_t length) {
  return to_bytes(value, offset, length);
}
void napi_keep_memory(const Napi::Uint8Array& memory) {
  PMQ_ASSERT(g_state != nullptr && g_state->memory.IsEmpty());
  g_state->memory = Napi::Persistent(memory);  // the exposed memory lives as long as we do
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
