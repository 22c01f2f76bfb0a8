// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of Kafka RecordBatch v2
// and of pmq's on-media structures. Pure C++: no JS types here (crc32c_napi.cc holds the glue).
//
// Two implementations compute the same function: SSE4.2 (the crc32 instruction, chosen at run
// time with __builtin_cpu_supports, never with -march flags; three interleaved lanes on blocks
// of 3 × 4 KiB and 3 × 256 B) and portable slicing-by-8.
// Chaining: crc32c(b, crc32c(a, 0)) == crc32c(a ‖ b, 0); a seed is a previous finished CRC.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pmq::crc32c {

enum class Implementation { sse42, software };

// The implementation that compute() uses on this CPU; decided once, at first use.
Implementation active_implementation();

// CRC32C of [data, data + size_bytes), continuing from seed (0 starts a new checksum).
uint32_t compute(const uint8_t* data, size_t size_bytes, uint32_t seed);

// Same result as compute(), always through the slicing-by-8 tables (tests compare both).
uint32_t compute_software(const uint8_t* data, size_t size_bytes, uint32_t seed);

}  // namespace pmq::crc32c
