// Direct mode: one-sided puts and gets by trusted clients straight into a grant's range, with
// the NIC as the only check (docs/native-transport.md, "Direct mode").
//
// Storage side: a grant's first export registers exactly [address, address+length) of the
// exposed memory (ucp_mem_map, no registration cache: the transport was opened with
// IB_REG_METHODS=direct, and UCX's memory hooks are off), refusing grants that are not page
// aligned so that no byte outside the grant shares a page with the registration. The
// registration is unmapped (ibv_dereg_mr) on revocation, when the epoch rises above the grant's,
// and on close; from then on the NIC refuses every access with the key. Nothing is waited
// for: an access the NIC has already accepted completes, every later one fails.
// Client side: keys are unpacked per endpoint; put/get/flush complete like sends (send_done).
#include <unistd.h>

#include <cstring>

#include "assert.h"
#include "transport.h"

namespace pmq::transport {

namespace {

uint64_t page_bytes() {
  static const uint64_t bytes = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return bytes;
}

}  // namespace

void Transport::direct_unmap(Grant* grant) {
  if (grant->direct_memh == nullptr) return;
  ucs_status_t status = ucp_mem_unmap(context_, grant->direct_memh);
  PMQ_ASSERT(status == UCS_OK);  // a memh we mapped and never unmapped
  grant->direct_memh = nullptr;
}

// Registers exactly the grant's range (once per grant; every endpoint gets the same key).
static std::string map_grant(ucp_context_h context, uint8_t* start, uint64_t length,
                             ucp_mem_h* memh_p) {
  ucp_mem_map_params_t map{};
  map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  map.address = start;
  map.length = length;
  ucs_status_t status = ucp_mem_map(context, &map, memh_p);
  if (status != UCS_OK) return status_reason("ucp_mem_map", status);
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  status = ucp_mem_query(*memh_p, &attr);
  if (status != UCS_OK || attr.address != start || attr.length != length) {
    ucp_mem_unmap(context, *memh_p);  // UCX widened it: refuse rather than expose more
    *memh_p = nullptr;
    return status != UCS_OK ? status_reason("ucp_mem_query", status)
                            : "UCX registered another range than the grant's";
  }
  return "";
}

std::string Transport::direct_export(uint32_t ep, uint64_t grant_id, uint64_t grant_key,
                                     std::vector<uint8_t>* key_p, const char** code_p) {
  PMQ_ASSERT(options_.direct && has_endpoint(ep));  // TS checked both, and the lanes
  auto found = grants_.find(grant_id);
  *code_p = "PMQ_ERR_GRANT_UNKNOWN";  // no oracle: another session's grant looks unknown
  if (found == grants_.end() || !grant_usable_by(found->second, *endpoints_[ep], grant_key)) {
    return "no such grant";
  }
  Grant& grant = found->second;
  *code_p = "PMQ_ERR_GRANT_REVOKED";
  if (grant.revoked) return "the grant was revoked";
  *code_p = "PMQ_ERR_GRANT_STALE_EPOCH";
  if (grant.epoch < epoch_) return "the grant is older than the storage node's epoch";
  uint8_t* start = memory_ + grant.address;
  *code_p = "PMQ_ERR_DIRECT_UNALIGNED";
  if (reinterpret_cast<uintptr_t>(start) % page_bytes() != 0 ||
      grant.length % page_bytes() != 0) {
    return "a direct grant must start and end on page boundaries (page " +
           std::to_string(page_bytes()) + " B): its key could reach the rest of the page";
  }
  *code_p = "PMQ_ERR_TRANSPORT";
  if (grant.direct_memh == nullptr) {
    std::string failure = map_grant(context_, start, grant.length, &grant.direct_memh);
    if (!failure.empty()) return failure;
  }
  void* packed = nullptr;
  size_t packed_bytes = 0;
  ucs_status_t status = ucp_rkey_pack(context_, grant.direct_memh, &packed, &packed_bytes);
  if (status != UCS_OK) return status_reason("ucp_rkey_pack", status);
  DirectKeyHeader header{kWireVersion, static_cast<uint8_t>(Kind::direct_key), 0,
                         static_cast<uint32_t>(packed_bytes), grant.id, grant.epoch,
                         grant.address, grant.length, reinterpret_cast<uint64_t>(start)};
  key_p->resize(sizeof header + packed_bytes);
  std::memcpy(key_p->data(), &header, sizeof header);
  std::memcpy(key_p->data() + sizeof header, packed, packed_bytes);
  ucp_rkey_buffer_release(packed);
  *code_p = "";
  return "";
}

std::string Transport::direct_import(uint32_t ep_id, const uint8_t* key, size_t key_bytes,
                                     uint64_t* key_id_p, const char** code_p) {
  PMQ_ASSERT(options_.direct && has_endpoint(ep_id));
  *code_p = "PMQ_ERR_DIRECT_KEY";
  DirectKeyHeader header{};
  if (key_bytes < sizeof header) return "too short for a direct key";
  std::memcpy(&header, key, sizeof header);
  if (header.version != kWireVersion || header.kind != static_cast<uint8_t>(Kind::direct_key) ||
      header.rkey_bytes == 0 || header.rkey_bytes != key_bytes - sizeof header) {
    return "not a direct key of this wire version";
  }
  ucp_rkey_h rkey = nullptr;
  ucs_status_t status = ucp_ep_rkey_unpack(endpoints_[ep_id]->handle, key + sizeof header, &rkey);
  if (status != UCS_OK) return status_reason("ucp_ep_rkey_unpack", status);
  uint64_t id = next_direct_key_++;
  direct_keys_[id] = DirectKey{ep_id, rkey, header.address, header.remote_va};
  *key_id_p = id;
  *code_p = "";
  return "";
}

void Transport::direct_release(uint64_t key_id) {
  auto found = direct_keys_.find(key_id);
  if (found == direct_keys_.end()) return;  // its endpoint's close destroyed it already
  ucp_rkey_destroy(found->second.rkey);
  direct_keys_.erase(found);
}

// After an endpoint's close has completed (no request can use its keys any more), or on close.
void Transport::direct_keys_destroy(uint32_t ep, bool all) {
  for (auto key = direct_keys_.begin(); key != direct_keys_.end();) {
    if (all || key->second.ep == ep) {
      ucp_rkey_destroy(key->second.rkey);
      key = direct_keys_.erase(key);
    } else {
      ++key;
    }
  }
}

void Transport::direct_transfer(uint64_t request_id, uint64_t key_id, bool write,
                                uint64_t address, uint8_t* local, uint64_t length) {
  auto found = direct_keys_.find(key_id);
  uint32_t ep_id = found == direct_keys_.end() ? 0 : found->second.ep;
  Endpoint* ep = usable_endpoint(ep_id, request_id);
  if (ep == nullptr) return;
  const DirectKey& key = found->second;
  // The client's range check is in TS; the NIC checks the registration (the only real bound).
  uint64_t remote = key.remote_va + (address - key.address);
  auto* op = new Op{OpKind::direct, ep_id, request_id};
  ucp_request_param_t param = op_param(op);
  ep->last_tx_ms = now_ms();
  if (write) {
    track(op, ucp_put_nbx(ep->handle, local, length, remote, key.rkey, &param));
  } else {
    track(op, ucp_get_nbx(ep->handle, local, length, remote, key.rkey, &param));
  }
}

void Transport::direct_flush(uint32_t ep_id, uint64_t request_id) {
  Endpoint* ep = usable_endpoint(ep_id, request_id);
  if (ep == nullptr) return;
  auto* op = new Op{OpKind::direct, ep_id, request_id};
  ucp_request_param_t param = op_param(op);
  track(op, ucp_ep_flush_nbx(ep->handle, &param));
}

}  // namespace pmq::transport
