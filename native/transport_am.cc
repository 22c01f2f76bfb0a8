// The data path: one active-message handler for every kind (transport.h's Kind), two-sided
// messages, and the validated access path. On the storage side no JavaScript runs per request:
// the handler checks the request against the grant table and only then lands the payload at
// the checked address (rendezvous: ucp_am_recv_data_nbx straight into the exposed memory;
// eager: one memcpy), or puts the bytes into the client's registered buffer. Rejected requests
// leave the memory untouched and get a reply with a Status.
#include <cstdlib>
#include <cstring>

#include "assert.h"
#include "transport.h"

namespace pmq::transport {

namespace {

void op_trampoline(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<Op*>(user_data);
  op->owner->on_op_done(op, status);
  ucp_request_free(request);
}

void recv_trampoline(void* request, ucs_status_t status, size_t, void* user_data) {
  op_trampoline(request, status, user_data);
}

bool inside(uint64_t address, uint64_t length, uint64_t base, uint64_t base_length) {
  return address >= base && length <= base_length && address - base <= base_length - length;
}

}  // namespace

ucp_request_param_t Transport::op_param(Op* op) {
  op->owner = this;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  if (op->kind == OpKind::landing || op->kind == OpKind::receive ||
      op->kind == OpKind::read_landing) {
    param.cb.recv_am = recv_trampoline;
  } else {
    param.cb.send = op_trampoline;
  }
  param.user_data = op;
  return param;
}

// Every operation goes through here: completed at once → handled now; else tracked until
// its callback. Keeps the loop referenced while anything is in flight.
void* Transport::track(Op* op, ucs_status_ptr_t request) {
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    ops_.insert(op);
    on_op_done(op, UCS_PTR_STATUS(request));
    return nullptr;
  }
  ops_.insert(op);
  mark_needs_progress();
  update_loop_ref();
  return request;
}

// An endpoint can start closing (peer failure, bye) between two events of one dispatch batch,
// before JS has heard of it: requests on it then complete with PMQ_ERR_ENDPOINT_CLOSED.
Endpoint* Transport::usable_endpoint(uint32_t ep_id, uint64_t request_id) {
  auto found = endpoints_.find(ep_id);
  if (found != endpoints_.end() && found->second->state != EpState::closing) {
    return found->second.get();
  }
  events.push_back(Event{EventKind::send_done, ep_id, request_id,
                         static_cast<uint32_t>(-UCS_ERR_NOT_CONNECTED), "PMQ_ERR_ENDPOINT_CLOSED",
                         "endpoint closed"});
  mark_needs_progress();
  return nullptr;
}

void Transport::send_control(Endpoint* ep, Kind kind) {
  auto* op = new Op{OpKind::control, ep->id};
  PrefixHeader header{kWireVersion, static_cast<uint8_t>(kind), 0, 0};
  op->header.assign(reinterpret_cast<uint8_t*>(&header),
                    reinterpret_cast<uint8_t*>(&header) + sizeof header);
  ucp_request_param_t param = op_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ep->last_tx_ms = now_ms();
  track(op, ucp_am_send_nbx(ep->handle, kAmId, op->header.data(), op->header.size(), nullptr, 0,
                            &param));
}

void Transport::send(uint32_t ep_id, uint64_t request_id, const uint8_t* header,
                     size_t header_bytes, const uint8_t* payload, size_t payload_bytes) {
  Endpoint* ep = usable_endpoint(ep_id, request_id);
  if (ep == nullptr) return;
  auto* op = new Op{OpKind::send, ep_id, request_id};
  PrefixHeader prefix{kWireVersion, static_cast<uint8_t>(Kind::message), 0,
                      static_cast<uint32_t>(header_bytes)};
  op->header.resize(sizeof prefix + header_bytes);
  std::memcpy(op->header.data(), &prefix, sizeof prefix);
  if (header_bytes > 0) std::memcpy(op->header.data() + sizeof prefix, header, header_bytes);
  ucp_request_param_t param = op_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_AM_SEND_FLAG_REPLY;
  ep->last_tx_ms = now_ms();
  track(op, ucp_am_send_nbx(ep->handle, kAmId, op->header.data(), op->header.size(), payload,
                            payload_bytes, &param));
}

void Transport::send_reply(uint32_t ep_id, uint64_t request_id, Status status) {
  ReplyHeader reply{kWireVersion, static_cast<uint8_t>(Kind::reply),
                    static_cast<uint8_t>(status), {0}, request_id};
  deferred_replies_.push_back({ep_id, reply});  // sent after progress returns
}

ucs_status_t Transport::on_am(const void* header, size_t header_bytes, void* data,
                              size_t length, const ucp_am_recv_param_t* param) {
  PMQ_ASSERT(in_progress_);
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  Endpoint* ep = nullptr;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) ep = endpoint_of(param->reply_ep);
  const auto* bytes = static_cast<const uint8_t*>(header);
  if (ep == nullptr || header_bytes < sizeof(PrefixHeader) || bytes[0] != kWireVersion) {
    return rndv ? UCS_ERR_REJECTED : UCS_OK;  // unknown sender or version: dropped
  }
  ep->last_rx_ms = now_ms();
  switch (static_cast<Kind>(bytes[1])) {
    case Kind::hello:
      send_control(ep, Kind::hello_ack);
      return UCS_OK;
    case Kind::hello_ack:
      if (ep->state == EpState::connecting) {
        ep->state = EpState::open;
        events.push_back(Event{EventKind::connected, ep->id});
      }
      return UCS_OK;
    case Kind::keepalive:
      return UCS_OK;
    case Kind::bye:
      ep->bye_received = true;
      defer_close(ep, "", "closed by peer");
      return UCS_OK;
    case Kind::message:
      return on_message(ep, header, header_bytes, data, length, rndv);
    case Kind::write_request:
      return on_write_request(ep, header, header_bytes, data, length, rndv);
    case Kind::read_request:
      return on_read_request(ep, header, header_bytes);
    case Kind::reply:
      on_reply(header, header_bytes);
      return UCS_OK;
    case Kind::read_data:
      return on_read_data(header, header_bytes, data, length, rndv);
    case Kind::direct_key:
      break;  // a key, never a message
  }
  return rndv ? UCS_ERR_REJECTED : UCS_OK;  // unknown kind from a newer peer: dropped
}

ucs_status_t Transport::on_message(Endpoint* ep, const void* header, size_t header_bytes,
                                   void* data, size_t length, bool rndv) {
  PrefixHeader prefix;
  std::memcpy(&prefix, header, sizeof prefix);
  if (prefix.user_header_bytes != header_bytes - sizeof prefix) {
    return rndv ? UCS_ERR_REJECTED : UCS_OK;
  }
  Event event{EventKind::message, ep->id};
  const auto* user = static_cast<const uint8_t*>(header) + sizeof prefix;
  event.header.assign(user, user + prefix.user_header_bytes);
  event.length = length;
  if (rndv) {  // JS chooses the destination after progress returns (a place event)
    event.kind = EventKind::place;
    event.id = next_receive_id_++;
    receives_[event.id] = Pending{ep->id, data, length};
    events.push_back(std::move(event));
    return UCS_INPROGRESS;
  }
  if (length > 0) {  // eager: copied once, into memory handed to JS as an external buffer
    event.payload = static_cast<uint8_t*>(std::malloc(length));
    PMQ_ASSERT(event.payload != nullptr);
    std::memcpy(event.payload, data, length);
  }
  events.push_back(std::move(event));
  return UCS_OK;
}

void Transport::receive_into(uint64_t receive_id, uint8_t* dst) {
  auto found = receives_.find(receive_id);
  PMQ_ASSERT(found != receives_.end());
  Pending pending = found->second;
  receives_.erase(found);
  auto* op = new Op{OpKind::receive, pending.ep, receive_id};
  op->grant_id = pending.length;
  ucp_request_param_t param = op_param(op);
  track(op, ucp_am_recv_data_nbx(worker_, pending.desc, dst, pending.length, &param));
}

Status Transport::check_access(const AccessHeader& request, Direction direction,
                               size_t data_bytes) {
  if (memory_ == nullptr) return Status::no_region;
  if (request.length == 0 || request.length > options_.request_bytes_max) {
    return Status::malformed;
  }
  if (direction == Direction::write && request.length != data_bytes) return Status::malformed;
  auto found = grants_.find(request.grant_id);
  if (found == grants_.end()) {
    return request.grant_id <= forgotten_max_id_ ? Status::revoked : Status::grant_unknown;
  }
  const Grant& grant = found->second;
  if (grant.revoked) return Status::revoked;
  if (request.epoch != grant.epoch || grant.epoch < epoch_) return Status::stale_epoch;
  // A write grant does not allow reading, nor a read grant writing (docs/native-transport.md).
  if (grant.direction != direction) return Status::direction;
  if (!inside(request.address, request.length, grant.address, grant.length)) {
    return Status::out_of_range;
  }
  PMQ_ASSERT(inside(request.address, request.length, 0, memory_bytes_));  // pair: grant_create
  return Status::ok;
}

ucs_status_t Transport::on_write_request(Endpoint* ep, const void* header, size_t header_bytes,
                                         void* data, size_t length, bool rndv) {
  if (header_bytes != sizeof(AccessHeader)) return rndv ? UCS_ERR_REJECTED : UCS_OK;
  AccessHeader request;
  std::memcpy(&request, header, sizeof request);
  Status status = check_access(request, Direction::write, length);
  if (status != Status::ok) {
    send_reply(ep->id, request.request_id, status);
    return rndv ? UCS_ERR_REJECTED : UCS_OK;  // the target bytes stay unchanged
  }
  Grant& grant = grants_[request.grant_id];
  uint8_t* dst = memory_ + request.address;
  if (!rndv) {
    std::memcpy(dst, data, length);
    send_reply(ep->id, request.request_id, Status::ok);
    return UCS_OK;
  }
  grant.in_flight += 1;  // revocation waits for this landing
  auto* op = new Op{OpKind::landing, ep->id, request.request_id, request.grant_id};
  ucp_request_param_t param = op_param(op);
  track(op, ucp_am_recv_data_nbx(worker_, data, dst, length, &param));
  return UCS_INPROGRESS;
}

// Storage side. The bytes go back as a read_data message whose payload is the checked range of
// the exposed memory: above UCX's rendezvous threshold the client pulls them straight into its
// buffer (cma on shared memory, RDMA READ on rc_verbs), so the storage CPU copies nothing; an
// emulated put into the client's memory (what wire version 1 did) cost two copies on sm.
ucs_status_t Transport::on_read_request(Endpoint* ep, const void* header, size_t header_bytes) {
  if (header_bytes < sizeof(AccessHeader)) return UCS_OK;
  AccessHeader request;
  std::memcpy(&request, header, sizeof request);
  if (header_bytes != sizeof request || request.rkey_bytes != 0) {
    send_reply(ep->id, request.request_id, Status::malformed);
    return UCS_OK;
  }
  Status status = check_access(request, Direction::read, 0);
  if (status != Status::ok) {
    send_reply(ep->id, request.request_id, status);
    return UCS_OK;
  }
  grants_[request.grant_id].in_flight += 1;  // until the client has the bytes (send done)
  deferred_reads_.push_back(DeferredRead{ep->id, request.request_id, request.grant_id,
                                         request.address, request.length});
  return UCS_OK;
}

// Client side: the data of one of our reads. Eager: copied into the destination; rendezvous:
// received straight into it. The read completes (a reply event) once the bytes are there.
ucs_status_t Transport::on_read_data(const void* header, size_t header_bytes, void* data,
                                     size_t length, bool rndv) {
  if (header_bytes != sizeof(ReplyHeader)) return rndv ? UCS_ERR_REJECTED : UCS_OK;
  ReplyHeader reply;
  std::memcpy(&reply, header, sizeof reply);
  auto read = reads_.find(reply.request_id);
  if (read == reads_.end() || read->second.landing) {
    return rndv ? UCS_ERR_REJECTED : UCS_OK;  // not ours (any more): dropped
  }
  if (length != read->second.length) {
    read_done(reply.request_id, Status::malformed);
    return rndv ? UCS_ERR_REJECTED : UCS_OK;
  }
  if (!rndv) {
    std::memcpy(read->second.dst, data, length);
    read_done(reply.request_id, Status::ok);
    return UCS_OK;
  }
  read->second.landing = true;
  auto* op = new Op{OpKind::read_landing, read->second.ep, reply.request_id};
  ucp_request_param_t param = op_param(op);
  track(op, ucp_am_recv_data_nbx(worker_, data, read->second.dst, length, &param));
  return UCS_INPROGRESS;
}

void Transport::on_reply(const void* header, size_t header_bytes) {
  if (header_bytes != sizeof(ReplyHeader)) return;
  ReplyHeader reply;
  std::memcpy(&reply, header, sizeof reply);
  reads_.erase(reply.request_id);  // a refused read: no data will come
  Event event{EventKind::reply, 0, reply.request_id, reply.status};
  events.push_back(std::move(event));
}

void Transport::write_validated(uint32_t ep_id, const AccessHeader& request,
                                const uint8_t* src) {
  PMQ_ASSERT(request.kind == static_cast<uint8_t>(Kind::write_request));
  Endpoint* ep = usable_endpoint(ep_id, request.request_id);
  if (ep == nullptr) return;
  auto* op = new Op{OpKind::send, ep_id, request.request_id};
  op->header.assign(reinterpret_cast<const uint8_t*>(&request),
                    reinterpret_cast<const uint8_t*>(&request) + sizeof request);
  ucp_request_param_t param = op_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_AM_SEND_FLAG_REPLY;
  ep->last_tx_ms = now_ms();
  track(op, ucp_am_send_nbx(ep->handle, kAmId, op->header.data(), op->header.size(), src,
                            request.length, &param));
}

void Transport::read_validated(uint32_t ep_id, AccessHeader request, uint8_t* dst) {
  PMQ_ASSERT(reads_.count(request.request_id) == 0);
  Endpoint* ep = usable_endpoint(ep_id, request.request_id);
  if (ep == nullptr) return;
  reads_[request.request_id] = PendingRead{ep_id, dst, request.length, false};
  request.rkey_bytes = 0;
  request.remote_address = 0;
  auto* op = new Op{OpKind::read_request, ep_id, request.request_id};
  op->header.assign(reinterpret_cast<const uint8_t*>(&request),
                    reinterpret_cast<const uint8_t*>(&request) + sizeof request);
  ucp_request_param_t param = op_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ep->last_tx_ms = now_ms();
  track(op, ucp_am_send_nbx(ep->handle, kAmId, op->header.data(), op->header.size(), nullptr, 0,
                            &param));
}

}  // namespace pmq::transport
