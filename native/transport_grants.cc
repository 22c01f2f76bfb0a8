// Completions, work deferred until ucp_worker_progress has returned, attached memory and the
// table's epoch (the grant table itself: grant_table.cc).
#include <algorithm>
#include <cstring>

#include "assert.h"
#include "transport.h"

namespace pmq::transport {

namespace {

const char* code_of(ucs_status_t status) {
  return status == UCS_OK ? "" : "PMQ_ERR_TRANSPORT";
}

}  // namespace

void Transport::on_op_done(Op* op, ucs_status_t status) {
  if (op->issuing) {  // completed inside its UCX call: track() finishes it after the call
    PMQ_ASSERT(!op->completed);
    op->completed = true;
    op->status = status;
    return;
  }
  PMQ_ASSERT(ops_.erase(op) == 1);
  if (op->kind != OpKind::ep_close) {
    auto found = endpoints_.find(op->ep);
    if (found != endpoints_.end()) {
      Endpoint* ep = found->second.get();
      PMQ_ASSERT(ep->in_flight > 0);
      ep->in_flight -= 1;
      if (ep->in_flight == 0 && ep->close_waiting) {
        ready_closes_.push_back(ep->id);  // closed after progress returns (run_deferred)
        mark_needs_progress();
      }
    }
  }
  switch (op->kind) {
    case OpKind::send:
    case OpKind::read_request:
      if (op->kind == OpKind::read_request && status != UCS_OK) {
        auto read = reads_.find(op->id);  // a landing one ends with its receive's completion
        if (read != reads_.end() && !read->second.landing) reads_.erase(read);
      }
      events.push_back(Event{EventKind::send_done, op->ep, op->id,
                             static_cast<uint32_t>(-status), code_of(status),
                             status == UCS_OK ? "" : status_reason("send", status)});
      break;
    case OpKind::direct:  // reason: UCX's own words (the TS error's `reason`)
      events.push_back(Event{EventKind::send_done, op->ep, op->id,
                             static_cast<uint32_t>(-status),
                             status == UCS_OK ? "" : "PMQ_ERR_DIRECT_FAILED",
                             status == UCS_OK ? "" : ucs_status_string(status)});
      break;
    case OpKind::control:
      break;  // a failed control message shows up as an endpoint error
    case OpKind::landing:
      landing_done(op, status);
      break;
    case OpKind::receive: {
      Event event{EventKind::message, op->ep, op->id, static_cast<uint32_t>(-status),
                  code_of(status), status == UCS_OK ? "" : status_reason("receive", status)};
      event.length = op->grant_id;
      events.push_back(std::move(event));
      break;
    }
    case OpKind::read_send:  // storage side: the client has the bytes (or never will)
      release_grant_flight(op->grant_id);
      break;
    case OpKind::read_landing:
      read_landing_done(op, status);
      break;
    case OpKind::ep_close:
      finish_close(op->ep);
      break;
  }
  delete op;
  update_loop_ref();
}

void Transport::landing_done(Op* op, ucs_status_t status) {
  send_reply(op->ep, op->id, status == UCS_OK ? Status::ok : Status::transfer_failed);
  release_grant_flight(op->grant_id);
}

void Transport::read_landing_done(Op* op, ucs_status_t status) {
  read_done(op->id, status == UCS_OK ? Status::ok : Status::transfer_failed);
}

void Transport::read_done(uint64_t request_id, Status status) {
  auto found = reads_.find(request_id);
  PMQ_ASSERT(found != reads_.end());
  uint32_t ep = found->second.ep;
  reads_.erase(found);  // the read's JS promise settles on this event
  events.push_back(Event{EventKind::reply, ep, request_id, static_cast<uint32_t>(status)});
}

void Transport::release_grant_flight(uint64_t grant_id) {
  auto found = grants_.find(grant_id);
  PMQ_ASSERT(found != grants_.end());
  Grant& grant = found->second;
  PMQ_ASSERT(grant.in_flight > 0);
  grant.in_flight -= 1;
  if (grant.revoked && grant.in_flight == 0) {
    events.push_back(Event{EventKind::revoke_done, 0, grant_id});
    revocation_complete(grant_id);
  }
}

void Transport::run_deferred() {
  PMQ_ASSERT(!in_progress_);
  while (!deferred_replies_.empty()) {
    auto [ep_id, reply] = deferred_replies_.front();
    deferred_replies_.pop_front();
    auto found = endpoints_.find(ep_id);
    if (found == endpoints_.end() || found->second->state == EpState::closing) continue;
    auto* op = new Op{OpKind::control, ep_id};
    op->header.assign(reinterpret_cast<uint8_t*>(&reply),
                      reinterpret_cast<uint8_t*>(&reply) + sizeof reply);
    ucp_request_param_t param = op_param(op);
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
    found->second->last_tx_ms = now_ms();
    track(op, ucp_am_send_nbx(found->second->handle, kAmId, op->header.data(),
                              op->header.size(), nullptr, 0, &param));
  }
  while (!deferred_reads_.empty()) {
    DeferredRead read = deferred_reads_.front();
    deferred_reads_.pop_front();
    auto found = endpoints_.find(read.ep);
    if (found == endpoints_.end() || found->second->state == EpState::closing) {
      release_grant_flight(read.grant_id);
      continue;
    }
    auto* op = new Op{OpKind::read_send, read.ep, read.request_id, read.grant_id};
    ReplyHeader header{kWireVersion, static_cast<uint8_t>(Kind::read_data),
                       static_cast<uint8_t>(Status::ok), {0}, read.request_id};
    op->header.assign(reinterpret_cast<uint8_t*>(&header),
                      reinterpret_cast<uint8_t*>(&header) + sizeof header);
    ucp_request_param_t param = op_param(op);
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_AM_SEND_FLAG_REPLY;
    found->second->last_tx_ms = now_ms();
    track(op, ucp_am_send_nbx(found->second->handle, kAmId, op->header.data(),
                              op->header.size(), memory_ + read.address, read.length, &param));
  }
  while (!deferred_messages_.empty()) {
    auto [ep_id, message] = std::move(deferred_messages_.front());
    deferred_messages_.pop_front();
    auto found = endpoints_.find(ep_id);
    if (found == endpoints_.end() || found->second->state == EpState::closing) continue;
    auto* op = new Op{OpKind::control, ep_id};
    op->header = std::move(message.first);
    const size_t header_bytes = message.second;
    ucp_request_param_t param = op_param(op);
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
    found->second->last_tx_ms = now_ms();
    track(op, ucp_am_send_nbx(found->second->handle, kAmId, op->header.data(), header_bytes,
                              op->header.data() + header_bytes,
                              op->header.size() - header_bytes, &param));
  }
  run_ready_closes();
  while (!deferred_closes_.empty()) {
    uint32_t ep_id = deferred_closes_.front();
    deferred_closes_.pop_front();
    auto found = endpoints_.find(ep_id);
    if (found != endpoints_.end() && found->second->state != EpState::closing) {
      start_close(found->second.get());
    }
  }
}

void Transport::attach_memory(uint8_t* base, uint64_t length) {
  PMQ_ASSERT(memory_ == nullptr);
  PMQ_ASSERT(base != nullptr && length > 0);
  memory_ = base;
  memory_bytes_ = length;
}

void Transport::epoch_raise(uint64_t epoch) {
  PMQ_ASSERT(epoch > epoch_);  // epochs only rise
  epoch_ = epoch;
  for (auto& entry : grants_) {  // stale grants' direct keys stop working with the epoch
    if (entry.second.epoch < epoch_) direct_unmap(&entry.second);
  }
}

}  // namespace pmq::transport
