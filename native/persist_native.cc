// The storage node's native persist path: a broker's persist frame (docs/wire-protocol.md,
// "Persist frames") served inside the transport's message callback, so that no JavaScript runs
// on the storage node per batch in the steady state (issue 11).
//
// It serves only the plain case and hands everything else to JS unchanged (the frame goes on
// as an ordinary message; storage-node/persist-queue.ts serves it with every rule): a seal, a
// segment JS holds (an update or a persist lane of its own in flight), an endpoint JS did not
// mark as the epoch owner's, another epoch, a covered or odd watermark, pieces that do not tile
// [durable, position) with dense offsets, a batch the native check does not accept (batch_check
// .h: conservative), a write grant with an access in flight, an ordinary-file region (msync
// belongs on a worker), a persist that fails. Every check runs before anything changes; after
// the first change nothing declines.
//
// Order, as PersistQueue's: write grants that end inside the persisted range are revoked and the
// others get their floor (nothing in flight on either, checked), each batch is checked and gets
// its baseOffset, the data is persisted, then the segment entry goes into the slot that does
// not win and is persisted, then read grants may read up to the new watermark, then the reply.
// Single-threaded: runs on the JS thread inside ucp_worker_progress, as every AM handler.
#include <cstring>

#include "assert.h"
#include "batch_check.h"
#include "crc32c.h"
#include "region.h"
#include "transport.h"

namespace pmq::transport {
namespace {

// Frame: user header "PN", layout version 1, 0; payload as below (little endian).
constexpr uint8_t kFrameMagic0 = 0x50;  // 'P'
constexpr uint8_t kFrameMagic1 = 0x4e;  // 'N'
constexpr uint8_t kFrameVersion = 1;
constexpr uint8_t kFramePersist = 1;
constexpr uint8_t kFramePersisted = 2;
constexpr size_t kPersistBytes = 40;
constexpr size_t kPieceBytes = 24;
constexpr size_t kPersistedBytes = 32;
constexpr uint32_t kPiecesMax = 4096;
constexpr uint8_t kFlagSeal = 1;

// Segment entry (common/layout.ts, SEGMENT_ENTRY_FIELD_AT; docs/region-format.md).
constexpr size_t kEntryBytes = 512;
constexpr size_t kEntrySlots = 2;
constexpr size_t kEntryState = 2;
constexpr size_t kEntrySegmentIndex = 4;
constexpr size_t kEntryGeneration = 8;
constexpr size_t kEntryEpoch = 16;
constexpr size_t kEntryPosition = 40;
constexpr size_t kEntryOffsetLast = 48;
constexpr size_t kEntryCrc = 508;
constexpr uint8_t kStateActive = 1;
constexpr uint16_t kEntryVersion = 2;
constexpr size_t kEntryAddress = 312;
constexpr size_t kEntrySize = 320;
constexpr double kSafeMax = 9007199254740991.0;

template <typename T>
T load(const uint8_t* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
template <typename T>
void store(uint8_t* at, T value) {
  std::memcpy(at, &value, sizeof value);
}

struct Piece {
  uint64_t position;
  int64_t base_offset;
  uint32_t bytes;
  uint32_t records;
};

struct Request {
  uint32_t id;
  uint64_t epoch;
  uint32_t segment;
  uint64_t position;
  int64_t offset_last;
  uint32_t piece_count;
  const uint8_t* pieces;
};

Piece piece_at(const Request& request, uint32_t i) {
  const uint8_t* at = request.pieces + size_t{i} * kPieceBytes;
  return Piece{load<uint64_t>(at), load<int64_t>(at + 8), load<uint32_t>(at + 16),
               load<uint32_t>(at + 20)};
}

bool parse(const uint8_t* payload, size_t length, Request* request) {
  if (length < kPersistBytes || payload[0] != kFramePersist) return false;
  if ((payload[1] & kFlagSeal) != 0 || payload[1] != 0 || load<uint16_t>(payload + 2) != 0) {
    return false;  // a seal (or a flag this build does not know): JS
  }
  request->id = load<uint32_t>(payload + 4);
  request->epoch = load<uint64_t>(payload + 8);
  request->segment = load<uint32_t>(payload + 16);
  request->piece_count = load<uint32_t>(payload + 20);
  request->position = load<uint64_t>(payload + 24);
  request->offset_last = load<int64_t>(payload + 32);
  request->pieces = payload + kPersistBytes;
  return request->id != 0 && request->piece_count <= kPiecesMax &&
         length == kPersistBytes + size_t{request->piece_count} * kPieceBytes;
}

}  // namespace

void Transport::persist_configure(const PersistConfig& config) {
  PMQ_ASSERT(persist_.region == nullptr && config.region != nullptr);
  PMQ_ASSERT(config.state != nullptr && config.segment_count > 0);
  PMQ_ASSERT(memory_ != nullptr);
  PMQ_ASSERT(config.table_address + uint64_t{config.segment_count} * kEntrySlots * kEntryBytes <=
             config.data_address);
  PMQ_ASSERT(config.data_address < config.data_end && config.data_end <= memory_bytes_);
  persist_ = config;
}

void Transport::set_persist_owner(uint32_t ep, bool owner) {
  auto found = endpoints_.find(ep);
  if (found != endpoints_.end()) found->second->persist_owner = owner;
}

void Transport::clear_persist_owners() {
  for (auto& entry : endpoints_) entry.second->persist_owner = false;
}

bool Transport::persist_natively(Endpoint* ep, const uint8_t* user_header,
                                 size_t user_header_bytes, const uint8_t* payload,
                                 size_t length) {
  if (user_header_bytes != 4 || user_header[0] != kFrameMagic0 ||
      user_header[1] != kFrameMagic1 || user_header[2] != kFrameVersion) {
    return false;  // not a persist frame
  }
  if (!ep->persist_owner || persist_.region == nullptr || !persist_.region->open ||
      persist_.region->backing == region::Backing::file) {
    return false;
  }
  Request request;
  if (!parse(payload, length, &request) || request.epoch != epoch_ ||
      request.segment >= persist_.segment_count) {
    return false;
  }
  double* state = persist_.state + size_t{request.segment} * kPersistFields;
  auto decline = [state]() {
    state[kPfDeclined] += 1;
    return false;
  };
  if (state[kPfOwner] != 1) return decline();
  const auto generation = static_cast<uint64_t>(state[kPfGeneration]);
  const auto durable = static_cast<uint64_t>(state[kPfPosition]);
  const auto durable_last = static_cast<int64_t>(state[kPfOffsetLast]);
  // Segments are sized to need (docs/region-format.md): each one's range is its entry's, which
  // JS publishes in the state; checked against the data area here and against the winning
  // entry below, before anything is written.
  const auto segment_address = static_cast<uint64_t>(state[kPfAddress]);
  const auto segment_bytes = static_cast<uint64_t>(state[kPfSize]);
  if (segment_bytes == 0 || segment_address < persist_.data_address ||
      segment_address > persist_.data_end || segment_bytes > persist_.data_end - segment_address) {
    return decline();
  }
  if (request.position <= durable || request.position > segment_bytes ||
      request.offset_last <= durable_last || static_cast<double>(request.offset_last) > kSafeMax) {
    return decline();  // covered, a retry, or wrong: PersistQueue answers it
  }
  const uint64_t end_address = segment_address + request.position;

  // 1. The pieces tile [durable, position) with dense offsets, each one whole good batch.
  uint64_t next_position = durable;
  int64_t next_offset = durable_last + 1;
  for (uint32_t i = 0; i < request.piece_count; i += 1) {
    const Piece piece = piece_at(request, i);
    if (piece.position < durable && piece.position + piece.bytes <= durable) continue;  // repeat
    if (piece.position != next_position || piece.base_offset != next_offset ||
        piece.bytes < batch::kHeaderSizeBytes || piece.records == 0 ||
        piece.bytes > request.position - piece.position ||
        !batch::check(memory_ + segment_address + piece.position, piece.bytes, piece.records)) {
      return decline();
    }
    next_position += piece.bytes;
    next_offset += piece.records;
  }
  if (next_position != request.position || next_offset - 1 != request.offset_last) {
    return decline();
  }
  // 2. No access in flight on the segment's write grants (PersistQueue waits for those).
  auto live = live_by_segment_.find(request.segment);
  if (live != live_by_segment_.end()) {
    for (uint64_t id : live->second) {
      const Grant& grant = grants_.at(id);
      if (grant.direction == Direction::write && grant.in_flight > 0) return decline();
    }
  }
  // 3. The winning entry is the one JS handed over: active, this segment, this generation.
  // An entry of generation g lives in slot g % 2 of its segment (segment-table.ts).
  auto entry_address = [&](uint64_t of_generation) {
    return persist_.table_address + request.segment * kEntrySlots * kEntryBytes +
           (of_generation % kEntrySlots) * kEntryBytes;
  };
  uint8_t* winner = memory_ + entry_address(generation);
  if (load<uint16_t>(winner) != kEntryVersion || winner[kEntryState] != kStateActive ||
      load<uint32_t>(winner + kEntrySegmentIndex) != request.segment ||
      load<uint64_t>(winner + kEntryGeneration) != generation ||
      load<uint64_t>(winner + kEntryPosition) != durable ||
      load<uint64_t>(winner + kEntryAddress) != segment_address ||
      load<uint64_t>(winner + kEntrySize) != segment_bytes ||
      load<uint32_t>(winner + kEntryCrc) != crc32c::compute(winner, kEntryCrc, 0)) {
    return decline();
  }

  // From here on nothing declines. 4. Grants: the range is about to become durable. Those
  // ending inside it are revoked (nothing in flight, checked above), the rest get a floor.
  std::vector<uint64_t> in_flight;
  grants_revoke_where(request.segment, static_cast<int>(Direction::write), end_address,
                      UINT64_MAX, &in_flight);
  PMQ_ASSERT(in_flight.empty());
  grants_raise(request.segment, Direction::write, end_address);
  // 5. baseOffsets, then the data.
  for (uint32_t i = 0; i < request.piece_count; i += 1) {
    const Piece piece = piece_at(request, i);
    if (piece.position < durable) continue;
    batch::write_base_offset(memory_ + segment_address + piece.position,
                             static_cast<uint64_t>(piece.base_offset));
  }
  const region::Region& region = *persist_.region;
  PMQ_ASSERT(region.base == memory_);  // the attached memory is the region's mapping
  region::Status status =
      region::persist_range(region, segment_address + durable, request.position - durable);
  // Shared memory and DAX persist without a system call that could fail (no msync: file
  // regions were declined above); a failure here is our bug, not the peer's.
  PMQ_ASSERT(status.ok());
  // 6. The entry, into the slot that does not win.
  uint8_t entry[kEntryBytes];
  std::memcpy(entry, winner, kEntryBytes);
  store<uint64_t>(entry + kEntryGeneration, generation + 1);
  store<uint64_t>(entry + kEntryEpoch, request.epoch);
  store<uint64_t>(entry + kEntryPosition, request.position);
  store<int64_t>(entry + kEntryOffsetLast, request.offset_last);
  store<uint32_t>(entry + kEntryCrc, crc32c::compute(entry, kEntryCrc, 0));
  std::memcpy(memory_ + entry_address(generation + 1), entry, kEntryBytes);
  status = region::persist_range(region, entry_address(generation + 1), kEntryBytes);
  PMQ_ASSERT(status.ok());
  state[kPfGeneration] = static_cast<double>(generation + 1);
  state[kPfPosition] = static_cast<double>(request.position);
  state[kPfOffsetLast] = static_cast<double>(request.offset_last);
  state[kPfEpoch] = static_cast<double>(request.epoch);
  state[kPfPersisted] += 1;
  // 7. Reads may reach the new watermark.
  grants_raise(request.segment, Direction::read, end_address);
  // 8. The reply: prefix, "PN" header, persisted.
  std::vector<uint8_t> message(sizeof(PrefixHeader) + 4 + kPersistedBytes, 0);
  PrefixHeader prefix{kWireVersion, static_cast<uint8_t>(Kind::message), 0, 4};
  std::memcpy(message.data(), &prefix, sizeof prefix);
  uint8_t* out = message.data() + sizeof prefix;
  out[0] = kFrameMagic0;
  out[1] = kFrameMagic1;
  out[2] = kFrameVersion;
  out += 4;
  out[0] = kFramePersisted;
  store<uint32_t>(out + 4, request.id);
  store<uint32_t>(out + 8, request.segment);
  store<uint64_t>(out + 16, request.position);
  store<int64_t>(out + 24, request.offset_last);
  deferred_messages_.emplace_back(ep->id, std::make_pair(std::move(message),
                                                         sizeof(PrefixHeader) + 4));
  return true;
}

}  // namespace pmq::transport
