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

__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t crc, const uint8_t* data,
                                                         size_t size_bytes) {
  while (size_bytes > 0 && (reinterpret_cast<uintptr_t>(data) & 7u) != 0) {
    crc = _mm_crc32_u8(crc, *data);
    data += 1;
    size_bytes -= 1;
  }
  uint64_t crc64 = crc;
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
