#include "batch_check.h"

#include "crc32c.h"

namespace pmq::batch {
namespace {

constexpr int64_t kSafeMax = (int64_t{1} << 53) - 1;  // Number.MAX_SAFE_INTEGER
constexpr uint64_t kRecordSizeBytesMin = 7;          // RECORD_SIZE_BYTES_MIN
constexpr uint64_t kRecordBodySizeBytesMin = kRecordSizeBytesMin - 1;
constexpr uint64_t kLogOverheadBytes = 12;
constexpr int32_t kBatchLengthMin = kHeaderSizeBytes - kLogOverheadBytes;

uint32_t u32_be(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
int64_t i64_be(const uint8_t* p) {
  return static_cast<int64_t>((uint64_t{u32_be(p)} << 32) | u32_be(p + 4));
}
bool safe(int64_t value) { return value >= -kSafeMax && value <= kSafeMax; }

// A cursor over [p, end): every read stays inside; a failed read leaves ok false.
struct Reader {
  const uint8_t* p;
  const uint8_t* end;

  // Zigzag int32 varint: 1..5 bytes, minimal, the fifth byte at most 0x0f (bytes.ts varint).
  bool varint(int32_t* value) {
    uint64_t unsigned_value = 0;
    for (int group = 0; group < 5; group += 1) {
      if (p >= end) return false;
      const uint8_t byte = *p++;
      if (group == 4 && byte > 0x0f) return false;
      unsigned_value |= uint64_t{static_cast<uint8_t>(byte & 0x7f)} << (7 * group);
      if (byte < 0x80) {
        if (byte == 0 && group > 0) return false;  // overlong
        const auto u = static_cast<uint32_t>(unsigned_value);
        *value = static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1));
        return true;
      }
    }
    return false;
  }

  // Zigzag varlong of at most 7 groups (49 bits), minimal. Longer ones are legal in Kafka but
  // the TS path decides them: false.
  bool varlong(int64_t* value) {
    uint64_t unsigned_value = 0;
    for (int group = 0; group < 7; group += 1) {
      if (p >= end) return false;
      const uint8_t byte = *p++;
      unsigned_value |= uint64_t{static_cast<uint8_t>(byte & 0x7f)} << (7 * group);
      if (byte < 0x80) {
        if (byte == 0 && group > 0) return false;
        *value = (unsigned_value & 1) == 0 ? static_cast<int64_t>(unsigned_value >> 1)
                                           : -static_cast<int64_t>((unsigned_value + 1) >> 1);
        return true;
      }
    }
    return false;
  }

  bool skip(int64_t length) {
    if (length < 0 || static_cast<uint64_t>(length) > static_cast<uint64_t>(end - p)) {
      return false;
    }
    p += length;
    return true;
  }

  // A key or value: length -1 (null) or ≥ 0 bytes inside.
  bool bytes_field() {
    int32_t length = 0;
    if (!varint(&length)) return false;
    return length == -1 || skip(length);
  }
};

bool check_headers(Reader* r) {
  int32_t count = 0;
  if (!r->varint(&count)) return false;
  if (count == 0) return true;
  if (count < 0 || static_cast<uint64_t>(count) > static_cast<uint64_t>(r->end - r->p) / 2) {
    return false;
  }
  for (int32_t h = 0; h < count; h += 1) {
    int32_t key_length = 0;
    if (!r->varint(&key_length) || key_length < 0) return false;
    const uint8_t* key = r->p;
    if (!r->skip(key_length)) return false;
    // Header keys must be UTF-8; ASCII is, the rest the TS path checks.
    for (int32_t i = 0; i < key_length; i += 1) {
      if (key[i] >= 0x80) return false;
    }
    if (!r->bytes_field()) return false;
  }
  return true;
}

bool check_record(Reader* batch, int32_t index, int64_t base_timestamp) {
  int32_t body = 0;
  if (!batch->varint(&body)) return false;
  if (body < 0 || static_cast<uint64_t>(body) < kRecordBodySizeBytesMin ||
      static_cast<uint64_t>(body) > static_cast<uint64_t>(batch->end - batch->p)) {
    return false;
  }
  Reader r{batch->p, batch->p + body};
  if (r.p >= r.end || *r.p++ != 0) return false;  // record attributes: unused, 0
  int64_t timestamp_delta = 0;
  if (!r.varlong(&timestamp_delta) || !safe(timestamp_delta) ||
      !safe(base_timestamp + timestamp_delta)) {
    return false;
  }
  int32_t offset_delta = 0;
  if (!r.varint(&offset_delta) || offset_delta != index) return false;
  if (!r.bytes_field() || !r.bytes_field() || !check_headers(&r)) return false;
  if (r.p != r.end) return false;
  batch->p = r.end;
  return true;
}

}  // namespace

bool check(const uint8_t* batch, uint64_t size_bytes, uint64_t records) {
  if (size_bytes < kHeaderSizeBytes || size_bytes > 0x7fffffffull) return false;
  if (batch[16] != 2) return false;  // magic
  const auto batch_length = static_cast<int32_t>(u32_be(batch + 8));
  if (batch_length < kBatchLengthMin ||
      kLogOverheadBytes + static_cast<uint64_t>(batch_length) != size_bytes) {
    return false;
  }
  if (u32_be(batch + 17) != crc32c::compute(batch + 21, size_bytes - 21, 0)) return false;
  const int64_t base_offset = i64_be(batch);
  if (!safe(base_offset) || base_offset < 0) return false;
  const uint32_t attributes = (uint32_t{batch[21]} << 8) | batch[22];
  if ((attributes & 0x07) != 0 || (attributes & 0xffc0) != 0) return false;
  const int64_t base_timestamp = i64_be(batch + 27);
  if (!safe(base_timestamp) || !safe(i64_be(batch + 35)) || !safe(i64_be(batch + 43))) {
    return false;
  }
  const auto count = static_cast<int32_t>(u32_be(batch + 57));
  const auto last_offset_delta = static_cast<int32_t>(u32_be(batch + 23));
  if (count < 0 || static_cast<uint64_t>(count) != records ||
      static_cast<uint64_t>(count) > (size_bytes - kHeaderSizeBytes) / kRecordSizeBytesMin ||
      static_cast<int64_t>(last_offset_delta) != static_cast<int64_t>(count) - 1) {
    return false;
  }
  Reader r{batch + kHeaderSizeBytes, batch + size_bytes};
  for (int32_t i = 0; i < count; i += 1) {
    if (!check_record(&r, i, base_timestamp)) return false;
  }
  return r.p == r.end;
}

void write_base_offset(uint8_t* batch, uint64_t base_offset) {
  for (int i = 7; i >= 0; i -= 1) {
    batch[i] = static_cast<uint8_t>(base_offset & 0xff);
    base_offset >>= 8;
  }
}

}  // namespace pmq::batch
