// Context, worker, listener and endpoint lifecycle; keepalive; lane report.
// The data path (active messages, grants, validated access) is in transport_am.cc.
#include "transport.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "assert.h"
#include "ucx_log.h"

namespace pmq::transport {

namespace {

ucs_status_t am_trampoline(void* arg, const void* header, size_t header_bytes, void* data,
                           size_t length, const ucp_am_recv_param_t* param) {
  return static_cast<Transport*>(arg)->on_am(header, header_bytes, data, length, param);
}

void conn_trampoline(ucp_conn_request_h request, void* arg) {
  static_cast<Transport*>(arg)->on_conn_request(request);
}

struct EpErrorArg {
  Transport* transport;
  uint32_t ep;
};

void ep_error_trampoline(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* error_arg = static_cast<EpErrorArg*>(arg);
  error_arg->transport->on_ep_error(error_arg->ep, status);
}

// Endpoint error callbacks need a stable argument; these live as long as the process (a few
// bytes per endpoint ever opened), because UCX may call back until the endpoint is destroyed.
EpErrorArg* error_arg(Transport* transport, uint32_t ep) {
  return new EpErrorArg{transport, ep};
}

bool has_shared_memory(const std::string& tls) {
  if (tls.empty()) return true;  // UCX default includes sm
  for (const char* name : {"sm", "shm", "sysv", "posix", "cma", "knem", "xpmem", "all"}) {
    size_t at = 0;
    while ((at = tls.find(name, at)) != std::string::npos) {
      bool start = at == 0 || tls[at - 1] == ',' || tls[at - 1] == '^';
      size_t end = at + std::strlen(name);
      if (start && (end == tls.size() || tls[end] == ',')) return true;
      at = end;
    }
  }
  return false;
}

// The TLS setting UCX will use, wherever it came from (our option, UCX_TLS in the
// environment, a ucx.conf): ucp_config_print's "UCX_TLS=..." line. "" when not found.
std::string effective_tls(const ucp_config_t* config) {
  char* text = nullptr;
  size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  if (stream == nullptr) return "";
  ucp_config_print(config, stream, nullptr, UCS_CONFIG_PRINT_CONFIG);
  std::fclose(stream);
  std::string printed = "\n" + std::string(text, length);  // every line starts after a \n
  std::free(text);
  const std::string key = "\nUCX_TLS=";
  size_t at = printed.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = printed.find('\n', at);
  return printed.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::string sockaddr_text(const struct sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

std::string resolve(const std::string& host, uint16_t port, sockaddr_storage* address_p,
                    socklen_t* length_p) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) return std::string("getaddrinfo: ") + gai_strerror(rc);
  PMQ_ASSERT(found->ai_addrlen <= sizeof *address_p);
  std::memcpy(address_p, found->ai_addr, found->ai_addrlen);
  *length_p = found->ai_addrlen;  // the real length: UCX copies what it is told
  freeaddrinfo(found);
  return "";
}

}  // namespace

uint64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string status_reason(const char* what, ucs_status_t status) {
  return std::string(what) + ": " + ucs_status_string(status);
}

std::string Transport::open(const Options& options, uv_loop_t* loop, uint32_t id,
                            Transport** transport_p) {
  PMQ_ASSERT(id > 0);
  auto* transport = new Transport();
  transport->options_ = options;
  transport->id_ = id;
  transport->spin_ = AdaptiveSpin(options.busy_poll ? 0 : options.spin_us);
  std::string failure = transport->create_worker(options);
  if (failure.empty()) failure = transport->start_progress(loop);
  if (!failure.empty()) {
    bool handles = transport->owned_by_handles();
    transport->close();
    if (!handles) delete transport;
    return failure;
  }
  *transport_p = transport;
  return "";
}

std::string Transport::create_worker(const Options& options) {
  ucx_log::install();
  ucx_log::set_verbose(options.ucx_log_verbose);
  ucx_log::OpeningScope opening;  // UCX's lines meanwhile are about its configuration
  ucp_config_t* config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK) return status_reason("ucp_config_read", status);
  struct Setting { const char* name; std::string value; };
  std::vector<Setting> settings;
  if (!options.tls.empty()) settings.push_back({"TLS", options.tls});
  if (!options.net_devices.empty()) settings.push_back({"NET_DEVICES", options.net_devices});
  // Direct mode: registrations must really go away on revocation (DESIGN.md's table), so the
  // IB memory domain registers without its cache (UCX_IB_REG_METHODS=direct). UCX 1.13 hands
  // keys it does not know to each UCT config under their name *within* the component's table,
  // without the component's prefix: "IB_REG_METHODS" matches nothing there (UCX then warns
  // "invalid configuration") while "REG_METHODS" reaches the IB md (measured in the VM,
  // docs/native-transport.md).
  if (options.direct) settings.push_back({"REG_METHODS", "direct"});
  // Without it UCX 1.13 names the sender's endpoint in a message by its raw pointer whenever
  // the endpoints have no error handling (our shared-memory mode): a message arriving for an
  // endpoint we already destroyed then dereferences freed memory (seen as the assertion
  // `(*ep_p)->worker == worker` in ucp_am_handler_reply on sm). With indirect ids UCX looks ids
  // up in a table and drops stale ones (cost: docs/native-transport.md, "Configuration").
  settings.push_back({"PROTO_INDIRECT_ID", "on"});
  for (const Setting& setting : settings) {
    status = ucp_config_modify(config, setting.name, setting.value.c_str());
    if (status != UCS_OK) {
      ucp_config_release(config);
      return status_reason((std::string("ucp_config_modify ") + setting.name).c_str(), status);
    }
  }
  // UCP_ERR_HANDLING_MODE_PEER drops every shared-memory transport in UCX 1.13: use it only
  // when the transport list has none; keepalives bound detection either way. Both ends of a
  // connection must choose the same mode (else "Endpoint timeout"), so the choice follows the
  // list UCX will use, not only our option: a peer told `tcp` by UCX_TLS and one told by
  // --transports agree.
  std::string tls = effective_tls(config);
  peer_err_mode_ = !has_shared_memory(tls.empty() ? options.tls : tls);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  status = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (status != UCS_OK) return status_reason("ucp_init", status);
  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  status = ucp_worker_create(context_, &worker_params, &worker_);
  if (status != UCS_OK) return status_reason("ucp_worker_create", status);
  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = kAmId;
  handler.cb = am_trampoline;
  handler.arg = this;
  status = ucp_worker_set_am_recv_handler(worker_, &handler);
  if (status != UCS_OK) return status_reason("ucp_worker_set_am_recv_handler", status);
  return "";
}

void Transport::close() {
  PMQ_ASSERT(!in_progress_);
  if (closed_) return;
  closed_ = true;
  if (worker_ != nullptr) {
    std::vector<uint32_t> open_ids;
    for (auto& entry : endpoints_) {
      if (entry.second->state != EpState::closing) open_ids.push_back(entry.first);
    }
    for (uint32_t id : open_ids) {  // start_close may finish (and erase) at once
      auto found = endpoints_.find(id);
      if (found == endpoints_.end()) continue;
      found->second->close_code = "PMQ_ERR_TRANSPORT_CLOSED";
      found->second->close_reason = "transport closed";
      if (!found->second->failed) send_control(found->second.get(), Kind::bye);
      start_close(found->second.get());
    }
    uint64_t deadline = now_ms() + 2000;  // a hung peer must not hang close()
    while (!ops_.empty() && now_ms() < deadline) {
      in_progress_ = true;
      ucp_worker_progress(worker_);
      in_progress_ = false;
      // A peer in this process (another transport on this thread) acknowledges our flush only
      // if its worker runs, and nothing else runs it while we wait here.
      progress_siblings();
      run_ready_closes();
    }
    if (listener_ != nullptr) ucp_listener_destroy(listener_);
    for (auto& entry : receives_) ucp_am_data_release(worker_, entry.second.desc);
    direct_keys_destroy(0, true);
    for (auto& entry : grants_) direct_unmap(&entry.second);  // ucp_cleanup aborts otherwise
  }
  stop_progress();
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);  // after every ucp_mem_unmap
  for (Op* op : ops_) delete op;
  ops_.clear();
  receives_.clear();
  reads_.clear();
  endpoints_.clear();
  ep_ids_.clear();
  events.clear();
  worker_ = nullptr;
  context_ = nullptr;
  listener_ = nullptr;
  // `this` is freed by progress.cc once libuv has closed the handles (stop_progress).
}

std::string Transport::listen(const std::string& host, uint16_t port, std::string* bound_p) {
  PMQ_ASSERT(listener_ == nullptr);
  sockaddr_storage address{};
  socklen_t address_bytes = 0;
  std::string failure = resolve(host, port, &address, &address_bytes);
  if (!failure.empty()) return failure;
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address);
  params.sockaddr.addrlen = address_bytes;
  params.conn_handler.cb = conn_trampoline;
  params.conn_handler.arg = this;
  ucs_status_t status = ucp_listener_create(worker_, &params, &listener_);
  if (status != UCS_OK) {
    listener_ = nullptr;
    return status_reason("ucp_listener_create", status);
  }
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  status = ucp_listener_query(listener_, &attr);
  PMQ_ASSERT(status == UCS_OK);
  *bound_p = sockaddr_text(attr.sockaddr);
  update_loop_ref();
  return "";
}

uint32_t Transport::add_endpoint(ucp_ep_h handle, EpState state, const std::string& remote) {
  uint32_t id = next_ep_id_++;
  PMQ_ASSERT(endpoints_.count(id) == 0);
  uint64_t now = now_ms();
  auto ep = std::make_unique<Endpoint>();
  ep->id = id;
  ep->handle = handle;
  ep->state = state;
  ep->last_rx_ms = now;
  ep->last_tx_ms = now;
  ep->remote = remote;
  endpoints_[id] = std::move(ep);
  ep_ids_[handle] = id;
  return id;
}

static ucp_ep_params_t ep_params(Transport* transport, uint32_t id, bool peer_mode) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.err_mode = peer_mode ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = ep_error_trampoline;
  params.err_handler.arg = error_arg(transport, id);
  return params;
}

void Transport::on_conn_request(ucp_conn_request_h request) {
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string remote = "unknown";
  if (ucp_conn_request_query(request, &attr) == UCS_OK) remote = sockaddr_text(attr.client_address);
  uint32_t id = next_ep_id_;
  ucp_ep_params_t params = ep_params(this, id, peer_err_mode_);
  params.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = request;
  ucp_ep_h handle = nullptr;
  ucs_status_t status = ucp_ep_create(worker_, &params, &handle);
  if (status != UCS_OK) {
    events.push_back(Event{EventKind::error, 0, 0, 0, "PMQ_ERR_TRANSPORT",
                           status_reason("ucp_ep_create (accept)", status)});
    return;
  }
  PMQ_ASSERT(add_endpoint(handle, EpState::open, remote) == id);
  events.push_back(Event{EventKind::accepted, id, 0, 0, "", remote});
}

std::string Transport::connect(const std::string& host, uint16_t port, uint32_t* ep_p) {
  sockaddr_storage address{};
  socklen_t address_bytes = 0;
  std::string failure = resolve(host, port, &address, &address_bytes);
  if (!failure.empty()) return failure;
  uint32_t id = next_ep_id_;
  ucp_ep_params_t params = ep_params(this, id, peer_err_mode_);
  params.field_mask |= UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address);
  params.sockaddr.addrlen = address_bytes;
  ucp_ep_h handle = nullptr;
  ucs_status_t status = ucp_ep_create(worker_, &params, &handle);
  if (status != UCS_OK) return status_reason("ucp_ep_create", status);
  PMQ_ASSERT(add_endpoint(handle, EpState::connecting, host + ":" + std::to_string(port)) == id);
  send_control(endpoints_[id].get(), Kind::hello);  // hello_ack makes it `connected`
  *ep_p = id;
  return "";
}

Endpoint* Transport::endpoint_of(ucp_ep_h handle) {
  auto found = ep_ids_.find(handle);
  if (found == ep_ids_.end()) return nullptr;
  return endpoints_[found->second].get();
}

void Transport::on_ep_error(uint32_t ep_id, ucs_status_t status) {
  auto found = endpoints_.find(ep_id);
  if (found == endpoints_.end()) return;
  Endpoint* ep = found->second.get();
  ep->failed = true;
  if (ep->bye_received) {
    defer_close(ep, "", "closed by peer");
    return;
  }
  if (ep->state == EpState::closing || !ep->close_reason.empty()) return;
  events.push_back(Event{EventKind::error, ep_id, 0, static_cast<uint32_t>(-status),
                         "PMQ_ERR_PEER_FAILED", status_reason("endpoint failed", status)});
  defer_close(ep, "PMQ_ERR_PEER_FAILED", status_reason("endpoint failed", status));
}

// Closing from inside a UCX callback is not allowed: run_deferred() starts it after progress.
void Transport::defer_close(Endpoint* ep, const char* code, const std::string& reason) {
  if (ep->state == EpState::closing || !ep->close_reason.empty()) return;
  ep->close_code = code;
  ep->close_reason = reason;
  deferred_closes_.push_back(ep->id);
  mark_needs_progress();
}

void Transport::close_endpoint(uint32_t ep_id) {
  if (!ep_usable(ep_id)) return;  // already closing: its closed event is on the way
  Endpoint* ep = endpoints_[ep_id].get();
  send_control(ep, Kind::bye);
  if (ep->close_reason.empty()) ep->close_reason = "closed locally";
  start_close(ep);
}

void Transport::start_close(Endpoint* ep) {
  PMQ_ASSERT(!in_progress_);
  PMQ_ASSERT(ep->state != EpState::closing);
  ep->state = EpState::closing;  // from now on its messages are dropped, its rendezvous rejected
  // A flush close with a rendezvous receive or send in flight aborts in UCX 1.13 (a peer's
  // burst of rendezvous messages and then a malformed one did it: found by the fuzz test).
  // They end on their own (done, or failed with the endpoint); the close waits for them. A
  // FORCE close purges them instead.
  if (ep->in_flight > 0 && !(peer_err_mode_ && ep->failed)) {
    ep->close_waiting = true;
    return;
  }
  issue_close(ep);
}

void Transport::issue_close(Endpoint* ep) {
  ep->close_waiting = false;
  auto* op = new Op{OpKind::ep_close, ep->id};
  ucp_request_param_t param = op_param(op);
  // FORCE is refused (UCS_ERR_INVALID_PARAM) in ERR_HANDLING_MODE_NONE: flush there instead;
  // on a failed endpoint the flush completes at once with the endpoint's error (measured).
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = peer_err_mode_ && ep->failed ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  track(op, ucp_ep_close_nbx(ep->handle, &param));
}

// Endpoints whose close waited for their receives (start_close), now that those have ended.
void Transport::run_ready_closes() {
  PMQ_ASSERT(!in_progress_);
  while (!ready_closes_.empty()) {
    uint32_t ep_id = ready_closes_.front();
    ready_closes_.pop_front();
    auto found = endpoints_.find(ep_id);
    if (found != endpoints_.end() && found->second->close_waiting) issue_close(found->second.get());
  }
}

void Transport::finish_close(uint32_t ep_id) {
  auto found = endpoints_.find(ep_id);
  PMQ_ASSERT(found != endpoints_.end());
  Endpoint* ep = found->second.get();
  for (auto read = reads_.begin(); read != reads_.end();) {
    if (read->second.ep == ep_id && !read->second.landing) {
      read = reads_.erase(read);  // a landing one ends with its receive's completion
    } else {
      ++read;
    }
  }
  direct_keys_destroy(ep_id, false);  // no request of the endpoint is left to use them
  if (!closed_ && !ep->detached) {
    events.push_back(Event{EventKind::closed, ep_id, 0, 0, ep->close_code, ep->close_reason});
  }
  if (ep->detached) detached_ -= 1;
  ep_ids_.erase(ep->handle);
  endpoints_.erase(found);
  update_loop_ref();
}

void Transport::detach(uint32_t ep_id) {
  auto found = endpoints_.find(ep_id);
  if (found == endpoints_.end()) return;  // the close finished at once
  Endpoint* ep = found->second.get();
  PMQ_ASSERT(!ep->detached);
  ep->detached = true;
  detached_ += 1;
  events.push_back(Event{EventKind::closed, ep->id, 0, 0, ep->close_code, ep->close_reason});
  update_loop_ref();
}

void Transport::on_keepalive_tick() {
  if (closed_) return;
  uint64_t now = now_ms();
  std::vector<uint32_t> silent;
  for (auto& entry : endpoints_) {
    Endpoint* ep = entry.second.get();
    if (ep->state == EpState::closing) continue;
    if (now - ep->last_rx_ms > options_.peer_timeout_ms) {
      silent.push_back(ep->id);
    } else if (now - ep->last_tx_ms >= options_.keepalive_ms) {
      send_control(ep, Kind::keepalive);
    }
  }
  for (uint32_t id : silent) {  // start_close may finish (and erase) the endpoint at once
    Endpoint* ep = endpoints_[id].get();
    std::string reason = "no traffic from the peer for " +
                         std::to_string(now - ep->last_rx_ms) + " ms";
    ep->failed = true;
    events.push_back(Event{EventKind::error, id, 0, 0, "PMQ_ERR_PEER_TIMEOUT", reason});
    ep->close_code = "PMQ_ERR_PEER_TIMEOUT";
    ep->close_reason = reason;
    // A silent peer never acknowledges the flush of an ERR_HANDLING_MODE_NONE close (sm):
    // the endpoint is closed for JS now and its UCX close finishes in the background.
    start_close(ep);
    detach(id);
  }
  mark_needs_progress();
}

std::string Transport::lanes(uint32_t ep_id, std::vector<std::string>* lanes_p) {
  // UCX 1.13 has no endpoint transport query; ucp_ep_print_info writes lines such as
  // "#  lane[1]:  0:tcp/lo.0 md[0] -> ..." (the cm lane reads "lane[0]: cm rdmacm").
  if (!has_endpoint(ep_id)) return "";
  Endpoint* ep = endpoints_[ep_id].get();
  char* text = nullptr;
  size_t text_bytes = 0;
  FILE* stream = open_memstream(&text, &text_bytes);
  if (stream == nullptr) return "open_memstream failed";
  ucp_ep_print_info(ep->handle, stream);
  std::fclose(stream);
  std::string all(text, text_bytes);
  std::free(text);
  size_t at = 0;
  while ((at = all.find("lane[", at)) != std::string::npos) {
    size_t colon = all.find("]:", at);
    size_t end = all.find('\n', at);
    at = end;
    if (colon == std::string::npos || colon > end) continue;
    std::string rest = all.substr(colon + 2, end - colon - 2);
    size_t start = rest.find_first_not_of(' ');
    if (start == std::string::npos || rest.compare(start, 3, "cm ") == 0) continue;
    size_t name_at = rest.find(':', start);
    size_t slash = rest.find('/', start);
    if (name_at == std::string::npos || slash == std::string::npos || slash < name_at) continue;
    std::string name = rest.substr(name_at + 1, slash - name_at - 1);
    bool seen = false;
    for (const std::string& lane : *lanes_p) seen = seen || lane == name;
    if (!seen) lanes_p->push_back(name);
  }
  return "";
}

}  // namespace pmq::transport
