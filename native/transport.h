// UCX transport: one context and one worker per Transport, endpoints, a listener, two-sided
// messages, and the storage side's grant table with the validated data path. A process may
// open several (a storage node, a broker and clients in one process): nothing here is global,
// every endpoint id, request, event, grant and libuv handle belongs to one instance.
//
// Lifecycle: Transport::open() creates the context and worker; close() closes endpoints and the
// listener, unmaps every registration, then destroys the worker and the context (ucp_cleanup
// aborts if memory is still mapped). Concurrency: single-threaded. Everything runs on the JS
// thread; ucp_worker_progress is called only from progress.cc's drain loop, never re-entrantly.
// UCX callbacks never call JS: they push Events, and progress.cc hands the events to
// transport_napi.cc after ucp_worker_progress has returned.
// This file knows no JS types (the napi layer keeps JS references keyed by request id).
#pragma once

#include <ucp/api/ucp.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "spin_policy.h"

namespace pmq::region {
struct Region;
}

namespace pmq::transport {

// Wire: every active message carries one of these kinds in byte 1 of its header; byte 0 is the
// wire version (docs/wire-protocol.md, "Native data path"). Host byte order (little endian).
constexpr uint8_t kWireVersion = 3;
constexpr uint16_t kAmId = 17;
enum class Kind : uint8_t {
  hello = 1, hello_ack = 2, keepalive = 3, bye = 4, message = 5,
  write_request = 6, read_request = 7, reply = 8,
  direct_key = 9,  // never sent as a message: marks exported direct keys
  read_data = 10,  // storage → client: a ReplyHeader (status ok), payload = the bytes read
};

struct PrefixHeader {  // hello, hello_ack, keepalive, bye, message (then the user header)
  uint8_t version;
  uint8_t kind;
  uint16_t reserved;
  uint32_t user_header_bytes;
};
static_assert(sizeof(PrefixHeader) == 8);

struct AccessHeader {  // write_request (payload = the bytes), read_request (header only)
  uint8_t version;
  uint8_t kind;
  uint16_t reserved;
  uint32_t rkey_bytes;  // 0 (wire version 1 carried the client's rkey here)
  uint64_t request_id;
  uint64_t grant_id;
  uint64_t epoch;
  uint64_t address;  // byte in the storage side's exposed memory
  uint64_t length;
  uint64_t grant_key;  // the grant's secret (wire version 3; version 2 sent 0 here)
};
static_assert(sizeof(AccessHeader) == 56);

struct ReplyHeader {
  uint8_t version;
  uint8_t kind;
  uint8_t status;  // Status below
  uint8_t reserved[5];
  uint64_t request_id;
};
static_assert(sizeof(ReplyHeader) == 16);

// Reply status codes on the wire; native/transport.ts maps them to PMQ_ERR_* codes.
enum class Status : uint8_t {
  ok = 0, grant_unknown = 1, out_of_range = 2, direction = 3, revoked = 4, stale_epoch = 5,
  malformed = 6, transfer_failed = 7, no_region = 8,
};

enum class EventKind : uint8_t {
  accepted = 1, connected = 2, closed = 3, error = 4, message = 5, place = 6,
  send_done = 7, reply = 8, revoke_done = 9,
};

struct Event {
  EventKind kind;
  uint32_t ep = 0;
  uint64_t id = 0;           // request id, grant id or receive id
  uint32_t status = 0;       // Status for replies; ucs_status_t (negated) for errors
  std::string code;          // PMQ_ERR_* for closed/error/send_done
  std::string text;          // remote address, reason
  std::vector<uint8_t> header;
  uint8_t* payload = nullptr;  // malloc'd eager payload handed to JS (message)
  uint64_t length = 0;
};

struct Options {
  std::string tls;          // "" = UCX default
  std::string net_devices;  // "" = UCX default
  bool busy_poll = false;
  // Sleeping mode: the most an adaptive spin polls after the last activity before sleeping.
  uint32_t spin_us = 0;
  uint32_t keepalive_ms = 1000;
  uint32_t peer_timeout_ms = 5000;
  bool direct = false;
  uint64_t request_bytes_max = 16u << 20;
  // Largest payload of a two-sided message (kind `message`): a larger one is rejected
  // (rendezvous) or dropped (eager) before JS sees it, so a peer cannot make JS allocate it.
  uint64_t message_bytes_max = 9u << 20;
  // Print UCX's own lines about traffic (peer errors, timeouts) on stderr: the process logs at
  // debug or trace (native/ucx_log.h).
  bool ucx_log_verbose = false;
};

// Largest user header of a two-sided message (transport.ts refuses larger ones to send).
constexpr uint32_t kUserHeaderBytesMax = 4096;

// send_raw (attack and fuzz tests speak as a hostile peer with it): which AM protocol to force.
enum class RawMode : uint8_t { automatic = 0, eager = 1, rndv = 2 };

enum class EpState : uint8_t { connecting, open, closing };

struct Endpoint {
  uint32_t id;
  ucp_ep_h handle;
  EpState state;
  bool bye_received = false;
  bool failed = false;
  bool detached = false;  // closed for JS; UCX's flush of it may still be waiting on the peer
  bool hello_answered = false;  // one hello_ack per endpoint: a hello flood costs us nothing
  // Operations in flight on it (all but its close). UCX 1.13 aborts (ucp_ep.c
  // `ucs_hlist_is_empty(proto_reqs)`) when an endpoint closed by flush is destroyed with a
  // rendezvous receive or send still in flight, so start_close waits for them: close_waiting
  // until they have ended.
  uint32_t in_flight = 0;
  bool close_waiting = false;
  uint64_t session = 0;  // bind_session: the client session it speaks for; 0 = unbound
  // set_persist_owner: the broker instance that owns the node's epoch speaks on it, so its
  // persist frames may be served natively (persist_native.cc).
  bool persist_owner = false;
  uint64_t last_rx_ms;
  uint64_t last_tx_ms;
  std::string remote;
  std::string close_code;    // "" = a graceful close
  std::string close_reason;
};

enum class Direction : uint8_t { read = 0, write = 1 };
enum class GrantResult : uint8_t {
  ok = 0, in_flight = 1, was_revoked = 2, was_revoked_in_flight = 3, unknown = 4, exists = 5,
  limit = 6, direction = 7, range = 8,
};
constexpr uint32_t kNoSegment = 0xffffffffu;

// The native persist path (persist_native.cc, docs/wire-protocol.md "Persist frames"): where
// the segment table lives and the per-segment state shared with JS (storage-node/
// native-persist.ts), a Float64Array of segment_count × kPersistFields numbers.
constexpr uint32_t kPersistFields = 10;
enum PersistField : uint32_t {
  kPfOwner = 0,       // 1: native may persist the segment; 0: JS holds it (JS writes)
  kPfGeneration = 1,  // the winning entry's generation (native writes after a persist)
  kPfPosition = 2,    // its durable watermark
  kPfOffsetLast = 3,
  kPfEpoch = 4,       // its epoch
  kPfReserved = 5,    // 0
  kPfPersisted = 6,   // persists served natively (a counter, for stats and tests)
  kPfDeclined = 7,    // persist frames handed to JS
  kPfAddress = 8,     // the segment's region address and size (its entry's; 0 while free)
  kPfSize = 9,
};
struct PersistConfig {
  const region::Region* region = nullptr;
  uint64_t table_address = 0;
  uint64_t data_address = 0;
  uint64_t data_end = 0;  // segments lie in [data_address, data_end), each its own size
  uint32_t segment_count = 0;
  double* state = nullptr;  // kept alive by the napi layer's reference
};

struct Grant {
  uint64_t id;
  uint64_t epoch;
  uint64_t address;
  uint64_t length;
  Direction direction;
  uint64_t session = 0;  // only endpoints bound to this session may use it (never 0)
  uint64_t key = 0;      // the grant's secret: every request names it (AccessHeader.grant_key)
  uint64_t readable = 0;  // read grants: reads stay inside [address, address + readable)
  uint64_t floor = 0;     // write grants: writes start at or above address + floor
  bool revoked = false;
  uint32_t in_flight = 0;
  uint32_t segment = kNoSegment;  // the segment it points into (the native persist path's index)
  // Direct mode: the registration of exactly [address, address+length), made on the first
  // export and unmapped on revocation, on a rise of the epoch above the grant's, and on close.
  ucp_mem_h direct_memh = nullptr;
};

// Direct mode, the key a storage node exports (docs/native-transport.md, "Direct mode"):
// this header, then UCX's packed rkey. remote_va is the virtual address, in the storage
// process, of the grant's first byte (`address` in the exposed memory).
struct DirectKeyHeader {
  uint8_t version;
  uint8_t kind;  // Kind::direct_key
  uint16_t reserved;
  uint32_t rkey_bytes;
  uint64_t grant_id;
  uint64_t epoch;
  uint64_t address;
  uint64_t length;
  uint64_t remote_va;
};
static_assert(sizeof(DirectKeyHeader) == 48);

// Direct mode, client side: an unpacked key, usable on its endpoint only; destroyed when the
// endpoint's close has completed, on release, and on close.
struct DirectKey {
  uint32_t ep;
  ucp_rkey_h rkey;
  uint64_t address;    // the key's first byte in the storage side's exposed memory
  uint64_t remote_va;  // its virtual address in the storage process
};

// A UCX request's user data: what to do when it completes.
class Transport;

enum class OpKind : uint8_t {
  send, control, landing, receive, read_send, read_landing, ep_close, read_request,
  direct,  // put, get or flush of direct mode: completes like a send
};
struct Op {
  OpKind kind;
  uint32_t ep = 0;
  uint64_t id = 0;           // request id (JS), grant id, or receive id
  uint64_t grant_id = 0;
  std::vector<uint8_t> header;  // must outlive the send (UCX 1.13 has no COPY_HEADER)
  std::vector<ucp_dt_iov_t> iov;  // write_validated_iov's pieces: UCX reads them until done
  Transport* owner = nullptr;
  // Set by op_param (the op is in ops_ from then on) until track() has seen the UCX call
  // return: a completion during the call (UCX may complete inside it, e.g. a rendezvous receive
  // whose endpoint is gone) only records its status here, and track() finishes the op.
  bool issuing = false;
  bool completed = false;
  ucs_status_t status = UCS_OK;
};

class Transport {
 public:
  // Returns "" or the failing call's reason. `id` is the handle JS names it by (the napi
  // layer's registry, transport_napi.cc): dispatch_events finds the instance's JS side by it.
  static std::string open(const Options& options, uv_loop_t* loop, uint32_t id,
                          Transport** transport_p);
  void close();
  uint32_t id() const { return id_; }

  std::string listen(const std::string& host, uint16_t port, std::string* bound_p);
  std::string connect(const std::string& host, uint16_t port, uint32_t* ep_p);
  void close_endpoint(uint32_t ep);
  std::string lanes(uint32_t ep, std::vector<std::string>* lanes_p);
  bool has_endpoint(uint32_t ep) const {
    auto found = endpoints_.find(ep);
    return found != endpoints_.end() && !found->second->detached;
  }
  bool ep_usable(uint32_t ep) const {
    auto found = endpoints_.find(ep);
    return found != endpoints_.end() && found->second->state != EpState::closing;
  }

  void send(uint32_t ep, uint64_t request_id, const uint8_t* header, size_t header_bytes,
            const uint8_t* payload, size_t payload_bytes);
  // One active message with exactly these header bytes (no prefix): for attack/fuzz tests.
  void send_raw(uint32_t ep, uint64_t request_id, const uint8_t* header, size_t header_bytes,
                const uint8_t* payload, size_t payload_bytes, RawMode mode);
  // The client session `ep` speaks for (JS decided it may); ignored if the endpoint is gone.
  void bind_session(uint32_t ep, uint64_t session);
  // Receives a rendezvous message into dst (the napi layer chose it after a place event).
  void receive_into(uint64_t receive_id, uint8_t* dst);

  void attach_memory(uint8_t* base, uint64_t length);

  // The grant table (grant_table.cc): the one record of every grant, checked by every access
  // and asked by the storage node's JS (storage-node/grant-registry.ts) and the native persist
  // path by segment. Results are GrantResult; a peer's id never trips an assertion here.
  GrantResult grant_create(const Grant& grant);  // ok, exists (id used, or at or below a
                                                 // forgotten one), limit (live_max live)
  // ok (revoked, nothing in flight), in_flight (revoke_done follows), was_revoked(_in_flight),
  // unknown.
  GrantResult grant_revoke(uint64_t grant_id);
  // Revokes the live grants of `segment` (kNoSegment: of every segment) of `direction` (-1:
  // both) that end at or below `end_max` and were made under an epoch below `epoch_below`;
  // appends the ids whose accesses are still in flight (each gets revoke_done).
  void grants_revoke_where(uint32_t segment, int direction, uint64_t end_max,
                           uint64_t epoch_below, std::vector<uint64_t>* in_flight);
  // The segment's durable watermark now ends at `address_end`: its live write grants (direction
  // write) get their floor there, its read grants (direction read) may read up to there.
  void grants_raise(uint32_t segment, Direction direction, uint64_t address_end);
  // Drops a revoked grant with nothing in flight from the table (false otherwise). Grant ids
  // only rise, so a later request naming any forgotten id is still told `revoked`.
  GrantResult grant_forget(uint64_t grant_id);
  // Raises a read grant's readable prefix / a write grant's floor (the larger value wins: the
  // native persist path may have raised it before): ok, unknown, direction, range.
  GrantResult grant_set_readable(uint64_t grant_id, uint64_t readable);
  GrantResult grant_set_floor(uint64_t grant_id, uint64_t floor);
  const Grant* grant_find(uint64_t grant_id) const;
  // Live grants at most (grant_create answers limit beyond); revoked grants remembered at most
  // (the oldest completed revocations are forgotten beyond).
  void set_grant_limits(uint64_t live_max, uint64_t remembered_max);
  uint64_t live_grants() const { return live_grants_; }
  size_t remembered_grants() const { return grants_.size(); }
  void live_grant_ids(std::vector<uint64_t>* ids) const;
  void epoch_raise(uint64_t epoch);
  uint64_t epoch() const { return epoch_; }

  // The native persist path (persist_native.cc). configure once memory is attached; owners
  // are set by JS where it decides a broker endpoint speaks for the epoch's owner.
  void persist_configure(const PersistConfig& config);
  void set_persist_owner(uint32_t ep, bool owner);
  void clear_persist_owners();
  void write_validated(uint32_t ep, const AccessHeader& request, const uint8_t* src);
  // write_validated of the pieces' concatenation as one message (a UCX iov payload): the peer
  // sees one write_request of request.length bytes. Pieces non-empty, summing to the length.
  void write_validated_iov(uint32_t ep, const AccessHeader& request,
                           std::vector<ucp_dt_iov_t> iov);
  void read_validated(uint32_t ep, AccessHeader request, uint8_t* dst);

  // Direct mode (transport_direct.cc). Failures: *code_p = PMQ_ERR_*, returns the reason.
  std::string direct_export(uint32_t ep, uint64_t grant_id, uint64_t grant_key,
                            std::vector<uint8_t>* key_p, const char** code_p);
  std::string direct_import(uint32_t ep, const uint8_t* key, size_t key_bytes,
                            uint64_t* key_id_p, const char** code_p);
  void direct_release(uint64_t key_id);
  // write: put src → remote; else get remote → dst. Completion: a send_done event.
  void direct_transfer(uint64_t request_id, uint64_t key_id, bool write, uint64_t address,
                       uint8_t* local, uint64_t length);
  void direct_flush(uint32_t ep, uint64_t request_id);

  // progress.cc
  void drain();
  bool spin_for_activity();
  void note_activity(bool arrived);
  // Work progress produced for us: events for JS, or replies, reads and closes to run. A peer's
  // keepalive or UCX's own protocol traffic progresses the worker but is none of it.
  bool has_work() const {
    return !events.empty() || !deferred_replies_.empty() || !deferred_reads_.empty() ||
           !deferred_messages_.empty() ||
           !deferred_closes_.empty() || !ready_closes_.empty();
  }
  // Work a peer's traffic produced: has_work() but the completions of our own operations
  // (sends, revocations), which UCX may report only when the next one starts.
  bool has_peer_work() const {
    return !deferred_replies_.empty() || !deferred_reads_.empty() ||
           !deferred_messages_.empty() || !deferred_closes_.empty() || !ready_closes_.empty() ||
           std::any_of(events.begin(), events.end(), [](const Event& event) {
             return event.kind != EventKind::send_done && event.kind != EventKind::revoke_done;
           });
  }
  const AdaptiveSpin& spin() const { return spin_; }
  bool busy_poll() const { return options_.busy_poll; }
  void mark_needs_progress() { needs_progress_ = true; }
  // Work was queued outside our drain (a sibling progressed our worker): drain on the loop's
  // next turn without blocking in epoll first.
  void request_drain();
  // Progresses the other transports of this thread once each, without JS (close() waits on
  // endpoints whose peer may be one of them).
  void progress_siblings();
  bool has_queued_work() const;  // events, a JS-started operation or a busy-poll turn pending
  int event_fd() const;          // the worker's event fd; only while progress handles exist
  void update_loop_ref();
  bool closed() const { return closed_; }
  bool owned_by_handles() const;  // false: close() must free the object itself
  size_t pending_ops() const { return ops_.size(); }
  size_t endpoint_count() const { return endpoints_.size() - detached_; }
  // Storage side: validated reads and writes served (checked and accepted) and refused, for
  // the storage node's metrics (docs/metrics.md); counted natively, since JS never sees them.
  struct ServedCounters {
    uint64_t reads = 0;
    uint64_t read_bytes = 0;
    uint64_t writes = 0;
    uint64_t write_bytes = 0;
    uint64_t refused = 0;
  };
  const ServedCounters& served() const { return served_; }

  std::deque<Event> events;  // drained by transport_napi.cc's dispatch_events

  // UCX callbacks (static trampolines in transport*.cc).
  ucs_status_t on_am(const void* header, size_t header_bytes, void* data, size_t length,
                     const ucp_am_recv_param_t* param);
  void on_conn_request(ucp_conn_request_h request);
  void on_ep_error(uint32_t ep, ucs_status_t status);
  void on_op_done(Op* op, ucs_status_t status);
  void on_keepalive_tick();

 private:
  Transport() = default;
  std::string create_worker(const Options& options);
  std::string start_progress(uv_loop_t* loop);
  void stop_progress();
  uint32_t add_endpoint(ucp_ep_h handle, EpState state, const std::string& remote);
  void start_close(Endpoint* ep);
  void issue_close(Endpoint* ep);
  void run_ready_closes();
  void defer_close(Endpoint* ep, const char* code, const std::string& reason);
  void finish_close(uint32_t ep_id);
  void detach(uint32_t ep_id);
  Endpoint* endpoint_of(ucp_ep_h handle);
  Endpoint* usable_endpoint(uint32_t ep_id, uint64_t request_id);
  void send_control(Endpoint* ep, Kind kind);
  void send_reply(uint32_t ep, uint64_t request_id, Status status);
  Status check_access(const Endpoint& ep, const AccessHeader& request, Direction direction,
                      size_t data_bytes);
  bool grant_usable_by(const Grant& grant, const Endpoint& ep, uint64_t key) const;
  ucs_status_t on_write_request(Endpoint* ep, const void* header, size_t header_bytes,
                                void* data, size_t length, bool rndv);
  ucs_status_t on_read_request(Endpoint* ep, const void* header, size_t header_bytes);
  ucs_status_t on_message(Endpoint* ep, const void* header, size_t header_bytes, void* data,
                          size_t length, bool rndv);
  // true: served natively (reply queued); false: JS serves it as any other message.
  bool persist_natively(Endpoint* ep, const uint8_t* user_header, size_t user_header_bytes,
                        const uint8_t* payload, size_t length);
  void unindex_grant(const Grant& grant);
  GrantResult revoke(Grant* grant);  // a live grant: revoked, unindexed, completion recorded
  void revocation_complete(uint64_t grant_id);  // no access in flight any more: forgettable
  void on_reply(Endpoint* ep, const void* header, size_t header_bytes);
  void landing_done(Op* op, ucs_status_t status);
  void read_landing_done(Op* op, ucs_status_t status);
  void read_done(uint64_t request_id, Status status);
  ucs_status_t on_read_data(Endpoint* ep, const void* header, size_t header_bytes, void* data,
                            size_t length, bool rndv);
  void progress_posted();
  void run_deferred();
  void track(Op* op, ucs_status_ptr_t request);
  ucp_request_param_t op_param(Op* op);
  void release_grant_flight(uint64_t grant_id);
  void direct_unmap(Grant* grant);
  void direct_keys_destroy(uint32_t ep, bool all);

  Options options_;
  uint32_t id_ = 0;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_listener_h listener_ = nullptr;
  bool peer_err_mode_ = false;
  bool closed_ = false;
  bool in_progress_ = false;
  bool draining_ = false;
  bool needs_progress_ = false;
  // Sleeping mode's adaptive spin (progress.cc): the policy, when activity last ended, and
  // whether the idle period since then has started (idle_) and still has spin time left.
  AdaptiveSpin spin_{0};
  ServedCounters served_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point spin_deadline_;
  bool idle_ = false;
  bool spin_left_ = false;
  uint32_t next_ep_id_ = 1;
  size_t detached_ = 0;  // endpoints whose close waits on a silent peer (not keeping us alive)
  uint64_t next_receive_id_ = 1;
  std::unordered_map<uint32_t, std::unique_ptr<Endpoint>> endpoints_;
  std::unordered_map<ucp_ep_h, uint32_t> ep_ids_;
  std::unordered_set<Op*> ops_;
  struct Pending {  // a rendezvous message waiting for JS to place it
    uint32_t ep;
    void* desc;
    uint64_t length;
  };
  std::unordered_map<uint64_t, Pending> receives_;
  struct PendingRead {  // a client's read destination, until its data or a refusal arrives
    uint32_t ep;
    uint8_t* dst;
    uint64_t length;
    bool landing;  // the bytes are being received into dst (rendezvous)
  };
  std::unordered_map<uint64_t, PendingRead> reads_;
  std::unordered_map<uint64_t, DirectKey> direct_keys_;  // client side: imported keys
  uint64_t next_direct_key_ = 1;
  struct DeferredRead {  // storage side: a checked read, sent after progress returns
    uint32_t ep;
    uint64_t request_id;
    uint64_t grant_id;
    uint64_t address;
    uint64_t length;
  };
  std::deque<DeferredRead> deferred_reads_;
  std::deque<std::pair<uint32_t, ReplyHeader>> deferred_replies_;
  // Messages the native persist path answers with: prefix + user header + payload, sent after
  // progress returns (the second of the pair is where the payload starts).
  std::deque<std::pair<uint32_t, std::pair<std::vector<uint8_t>, size_t>>> deferred_messages_;
  std::deque<uint32_t> deferred_closes_;
  std::deque<uint32_t> ready_closes_;  // close_waiting endpoints whose operations have ended
  std::unordered_map<uint64_t, Grant> grants_;
  std::unordered_map<uint32_t, std::vector<uint64_t>> live_by_segment_;  // unrevoked grant ids
  std::deque<uint64_t> revoked_order_;  // completed revocations, oldest first
  uint64_t live_grants_ = 0;
  uint64_t live_max_ = UINT64_MAX;
  uint64_t remembered_max_ = UINT64_MAX;
  PersistConfig persist_;
  uint64_t forgotten_max_id_ = 0;  // the highest grant id forgotten (grant_forget)
  uint64_t epoch_ = 0;
  uint8_t* memory_ = nullptr;
  uint64_t memory_bytes_ = 0;
  // progress.cc: libuv handles, heap-allocated so they outlive close() until uv_close's callback.
  struct Handles;
  Handles* handles_ = nullptr;

  friend struct ProgressAccess;
};

// Implemented in transport_napi.cc: hands queued events to JS; returns true if any were given.
bool dispatch_events(Transport* transport);
uint64_t now_ms();
std::string status_reason(const char* what, ucs_status_t status);

}  // namespace pmq::transport
