// The grant table: the storage node's one record of its grants (issue 11: no JS mirror).
//
// Invariants: every grant's range lies inside the exposed memory (checked at creation and
// again on every access); the table's epoch only rises; ids never come back (a created id, and
// every id at or below the highest forgotten one, is refused by grant_create); a revoked grant
// stays in the table (late requests are told `revoked`, not `unknown`) until its revocation has
// completed (no landing or read of it in flight) and it is among the oldest beyond
// remembered_max_, or JS forgets it; live grants are indexed by segment (live_by_segment_,
// kNoSegment for grants outside any segment), and live_grants_ counts them.
#include <algorithm>

#include "assert.h"
#include "transport.h"

namespace pmq::transport {

namespace {

bool inside(uint64_t address, uint64_t length, uint64_t base, uint64_t base_length) {
  return address >= base && length <= base_length && address - base <= base_length - length;
}

}  // namespace

GrantResult Transport::grant_create(const Grant& grant) {
  PMQ_ASSERT(memory_ != nullptr);
  if (grants_.count(grant.id) != 0 || grant.id <= forgotten_max_id_) return GrantResult::exists;
  if (live_grants_ >= live_max_) return GrantResult::limit;
  PMQ_ASSERT(grant.length > 0 && inside(grant.address, grant.length, 0, memory_bytes_));
  PMQ_ASSERT(grant.epoch >= epoch_);
  PMQ_ASSERT(!grant.revoked && grant.in_flight == 0);
  PMQ_ASSERT(grant.key > 0 && grant.session > 0);  // transport.ts checked both
  PMQ_ASSERT(grant.readable <= grant.length);
  PMQ_ASSERT(grant.direction == Direction::read || grant.readable == grant.length);
  PMQ_ASSERT(grant.floor == 0);
  grants_[grant.id] = grant;
  live_by_segment_[grant.segment].push_back(grant.id);
  live_grants_ += 1;
  return GrantResult::ok;
}

void Transport::unindex_grant(const Grant& grant) {
  auto found = live_by_segment_.find(grant.segment);
  PMQ_ASSERT(found != live_by_segment_.end());  // a live grant is indexed by its segment
  std::vector<uint64_t>& ids = found->second;
  auto at = std::find(ids.begin(), ids.end(), grant.id);
  PMQ_ASSERT(at != ids.end());
  *at = ids.back();
  ids.pop_back();
  if (ids.empty()) live_by_segment_.erase(found);
  PMQ_ASSERT(live_grants_ > 0);
  live_grants_ -= 1;
}

GrantResult Transport::revoke(Grant* grant) {
  PMQ_ASSERT(!grant->revoked);
  grant->revoked = true;  // from now on every request of this grant is refused
  // Direct mode: the NIC refuses the grant's key from now on. Nothing to wait for: an access
  // it accepted before has completed or completes; none can start after this.
  direct_unmap(grant);
  unindex_grant(*grant);
  if (grant->in_flight > 0) return GrantResult::in_flight;  // release_grant_flight completes it
  revocation_complete(grant->id);  // may forget older revoked grants, never this live one
  return GrantResult::ok;
}

void Transport::revocation_complete(uint64_t grant_id) {
  revoked_order_.push_back(grant_id);
  while (revoked_order_.size() > remembered_max_) {
    const uint64_t oldest = revoked_order_.front();
    auto found = grants_.find(oldest);
    if (found != grants_.end()) {  // JS may have forgotten it already (grant_forget)
      PMQ_ASSERT(found->second.revoked && found->second.in_flight == 0);
      grants_.erase(found);
      forgotten_max_id_ = std::max(forgotten_max_id_, oldest);
    }
    revoked_order_.pop_front();
  }
}

GrantResult Transport::grant_revoke(uint64_t grant_id) {
  auto found = grants_.find(grant_id);
  if (found == grants_.end()) return GrantResult::unknown;
  Grant& grant = found->second;
  if (grant.revoked) {
    // Revoked before: by the native persist path (JS is not told), or asked twice.
    return grant.in_flight == 0 ? GrantResult::was_revoked : GrantResult::was_revoked_in_flight;
  }
  return revoke(&grant);
}

void Transport::grants_revoke_where(uint32_t segment, int direction, uint64_t end_max,
                                    uint64_t epoch_below, std::vector<uint64_t>* in_flight) {
  std::vector<uint64_t> chosen;
  auto choose = [&](const std::vector<uint64_t>& ids) {
    for (uint64_t id : ids) {
      const Grant& grant = grants_.at(id);
      if (direction >= 0 && grant.direction != static_cast<Direction>(direction)) continue;
      if (grant.address + grant.length > end_max || grant.epoch >= epoch_below) continue;
      chosen.push_back(id);
    }
  };
  if (segment == kNoSegment) {
    for (const auto& entry : live_by_segment_) choose(entry.second);
  } else {
    auto found = live_by_segment_.find(segment);
    if (found != live_by_segment_.end()) choose(found->second);
  }
  // Revoked after the walk: revoking edits the index.
  for (uint64_t id : chosen) {
    if (revoke(&grants_.at(id)) == GrantResult::in_flight) in_flight->push_back(id);
  }
}

void Transport::grants_raise(uint32_t segment, Direction direction, uint64_t address_end) {
  auto found = live_by_segment_.find(segment);
  if (found == live_by_segment_.end()) return;
  for (uint64_t id : found->second) {
    Grant& grant = grants_.at(id);
    if (grant.direction != direction || address_end <= grant.address) continue;
    const uint64_t prefix = std::min(grant.length, address_end - grant.address);
    if (direction == Direction::read) grant.readable = std::max(grant.readable, prefix);
    else grant.floor = std::max(grant.floor, prefix);
  }
}

GrantResult Transport::grant_set_readable(uint64_t grant_id, uint64_t readable) {
  auto found = grants_.find(grant_id);
  if (found == grants_.end()) return GrantResult::unknown;
  Grant& grant = found->second;
  if (grant.direction != Direction::read) return GrantResult::direction;
  if (readable > grant.length) return GrantResult::range;
  grant.readable = std::max(grant.readable, readable);
  return GrantResult::ok;
}

GrantResult Transport::grant_set_floor(uint64_t grant_id, uint64_t floor) {
  auto found = grants_.find(grant_id);
  if (found == grants_.end()) return GrantResult::unknown;
  Grant& grant = found->second;
  if (grant.direction != Direction::write) return GrantResult::direction;
  if (floor > grant.length) return GrantResult::range;
  grant.floor = std::max(grant.floor, floor);
  return GrantResult::ok;
}

GrantResult Transport::grant_forget(uint64_t grant_id) {
  auto found = grants_.find(grant_id);
  if (found == grants_.end()) return GrantResult::unknown;
  if (!found->second.revoked) return GrantResult::direction;  // not revoked: not forgettable
  if (found->second.in_flight > 0) return GrantResult::in_flight;
  grants_.erase(found);
  forgotten_max_id_ = std::max(forgotten_max_id_, grant_id);
  return GrantResult::ok;
}

const Grant* Transport::grant_find(uint64_t grant_id) const {
  auto found = grants_.find(grant_id);
  return found == grants_.end() ? nullptr : &found->second;
}

void Transport::set_grant_limits(uint64_t live_max, uint64_t remembered_max) {
  PMQ_ASSERT(live_max > 0);
  live_max_ = live_max;
  remembered_max_ = remembered_max;
}

void Transport::live_grant_ids(std::vector<uint64_t>* ids) const {
  for (const auto& entry : live_by_segment_) {
    ids->insert(ids->end(), entry.second.begin(), entry.second.end());
  }
}

}  // namespace pmq::transport
