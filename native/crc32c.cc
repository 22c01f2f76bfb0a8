#include "crc32c.h"

#include <array>
#include <cstring>
#include <nmmintrin.h>

#include "assert.h"

namespace pmq::crc32c {

namespace {

constexpr uint32_t kPolynomialReflected = 0x82F63B78u;
constexpr size_t kSlices = 8;

using Tables = std::array<std::array<uint32_t, 256>, kSlices>;

// tables[0] is the classic byte-at-a-time table; tables[k][b] advances tables[k-1][b] by one
// more zero byte, so eight lookups consume eight input bytes at once.
constexpr Tables make_tables() {
  Tables tables{};
  for (uint32_t byte = 0; byte < 256; byte += 1) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; bit += 1) {
      crc = (crc & 1u) != 0 ? (crc >> 1) ^ kPolynomialReflected : crc >> 1;
    }
    tables[0][byte] = crc;
  }
  for (size_t slice = 1; slice < kSlices; slice += 1) {
    for (uint32_t byte = 0; byte < 256; byte += 1) {
      const uint32_t previous = tables[slice - 1][byte];
      tables[slice][byte] = (previous >> 8) ^ tables[0][previous & 0xFFu];
    }
  }
  return tables;
}

constexpr Tables kTables = make_tables();
static_assert(kTables[0][1] == 0xF26B8303u, "CRC32C table entry 1 (reflected Castagnoli)");
static_assert(kTables[0][128] == kPolynomialReflected, "CRC32C table entry 128 is the polynomial");

uint32_t update_software(uint32_t crc, const uint8_t* data, size_t size_bytes) {
  while (size_bytes >= kSlices) {
    uint64_t word = 0;
    std::memcpy(&word, data, sizeof(word));  // unaligned-safe; x86 and aarch64 are little-endian
    word ^= crc;
    crc = kTables[7][word & 0xFFu] ^ kTables[6][(word >> 8) & 0xFFu] ^
          kTables[5][(word >> 16) & 0xFFu] ^ kTables[4][(word >> 24) & 0xFFu] ^
          kTables[3][(word >> 32) & 0xFFu] ^ kTables[2][(word >> 40) & 0xFFu] ^
          kTables[1][(word >> 48) & 0xFFu] ^ kTables[0][word >> 56];
    data += kSlices;
    size_bytes -= kSlices;
  }
  while (size_bytes > 0) {
    crc = (crc >> 8) ^ kTables[0][(crc ^ *data) & 0xFFu];
    data += 1;
    size_bytes -= 1;
  }
  return crc;
}

// Three lanes at once. The crc32 instruction has a latency of three cycles and a throughput of
// one per cycle, so a single dependent chain uses a third of the unit. A block of 3 × L bytes is
// split into three lanes computed side by side (the first from the running register, the other
// two from 0) and joined: the register after A ‖ B is shift_L(register after A) ^ (B from 0),
// where shift_L runs a register over L zero bytes. shift_L is linear in the register, so four
// tables of 256 entries (one per register byte) apply it with four lookups.
struct ShiftTables {
  std::array<std::array<uint32_t, 256>, 4> byte_at;
};

__attribute__((target("sse4.2"))) uint32_t run_over_zeros(uint32_t crc, size_t zero_bytes) {
  uint64_t crc64 = crc;
  for (size_t i = 0; i < zero_bytes; i += 8) crc64 = _mm_crc32_u64(crc64, 0);
  return static_cast<uint32_t>(crc64);
}

ShiftTables make_shift_tables(size_t zero_bytes) {
  PMQ_ASSERT(zero_bytes % 8 == 0);
  ShiftTables tables{};
  for (uint32_t position = 0; position < 4; position += 1) {
    for (uint32_t byte = 0; byte < 256; byte += 1) {
      tables.byte_at[position][byte] = run_over_zeros(byte << (8 * position), zero_bytes);
    }
  }
  return tables;
}

inline uint32_t shift(const ShiftTables& tables, uint32_t crc) {
  return tables.byte_at[0][crc & 0xFFu] ^ tables.byte_at[1][(crc >> 8) & 0xFFu] ^
         tables.byte_at[2][(crc >> 16) & 0xFFu] ^ tables.byte_at[3][crc >> 24];
}

// Lane lengths: long lanes for large buffers, short ones for what is left (a record batch of a
// few KiB). Both multiples of 8; the tables are built once, at first use (about 0.2 ms).
constexpr size_t kLaneLong = 4096;
constexpr size_t kLaneShort = 256;

template <size_t kLane>
__attribute__((target("sse4.2"))) uint64_t update_three_lanes(uint64_t crc64, const uint8_t*& data,
                                                              size_t& size_bytes,
                                                              const ShiftTables& tables) {
  while (size_bytes >= 3 * kLane) {
    uint64_t a = crc64;
    uint64_t b = 0;
    uint64_t c = 0;
    for (size_t i = 0; i < kLane; i += 8) {
      uint64_t word_a = 0;
      uint64_t word_b = 0;
      uint64_t word_c = 0;
      std::memcpy(&word_a, data + i, 8);
      std::memcpy(&word_b, data + kLane + i, 8);
      std::memcpy(&word_c, data + 2 * kLane + i, 8);
      a = _mm_crc32_u64(a, word_a);
      b = _mm_crc32_u64(b, word_b);
      c = _mm_crc32_u64(c, word_c);
    }
    const uint32_t ab = shift(tables, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b);
    crc64 = shift(tables, ab) ^ static_cast<uint32_t>(c);
    data += 3 * kLane;
    size_bytes -= 3 * kLane;
  }
  return crc64;
}

__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t crc, const uint8_t* data,
                                                         size_t size_bytes) {
  while (size_bytes > 0 && (reinterpret_cast<uintptr_t>(data) & 7u) != 0) {
    crc = _mm_crc32_u8(crc, *data);
    data += 1;
    size_bytes -= 1;
  }
  uint64_t crc64 = crc;
  if (size_bytes >= 3 * kLaneShort) {
    static const ShiftTables long_tables = make_shift_tables(kLaneLong);
    static const ShiftTables short_tables = make_shift_tables(kLaneShort);
    crc64 = update_three_lanes<kLaneLong>(crc64, data, size_bytes, long_tables);
    crc64 = update_three_lanes<kLaneShort>(crc64, data, size_bytes, short_tables);
  }
  while (size_bytes >= 8) {
    uint64_t word = 0;
    std::memcpy(&word, data, sizeof(word));
    crc64 = _mm_crc32_u64(crc64, word);
    data += 8;
    size_bytes -= 8;
  }
  crc = static_cast<uint32_t>(crc64);
  while (size_bytes > 0) {
    crc = _mm_crc32_u8(crc, *data);
    data += 1;
    size_bytes -= 1;
  }
  return crc;
}

Implementation detect() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") ? Implementation::sse42 : Implementation::software;
}

}  // namespace

Implementation active_implementation() {
  static const Implementation implementation = detect();
  return implementation;
}

uint32_t compute(const uint8_t* data, size_t size_bytes, uint32_t seed) {
  PMQ_ASSERT(data != nullptr || size_bytes == 0);
  if (active_implementation() == Implementation::sse42) {
    return ~update_sse42(~seed, data, size_bytes);
  }
  return ~update_software(~seed, data, size_bytes);
}

uint32_t compute_software(const uint8_t* data, size_t size_bytes, uint32_t seed) {
  PMQ_ASSERT(data != nullptr || size_bytes == 0);
  return ~update_software(~seed, data, size_bytes);
}

}  // namespace pmq::crc32c
