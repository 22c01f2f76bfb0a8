// The storage node's native check of a producer's RecordBatch v2 before it persists: the same
// rules as common/record-batch/decode.ts's validateRecordBatch (docs/record-batch.md), applied
// by the native persist path (persist_native.cc) so that no JavaScript runs per batch.
//
// Conservative by contract: `true` only for a batch validateRecordBatch accepts with exactly
// `records` records in exactly `size_bytes` bytes. Where the TS rules need more than this check
// does cheaply (a varlong beyond 49 bits, a header key that is not ASCII), it answers `false`
// and the persist goes to the JavaScript path, which decides. A `false` is never an error by
// itself; test/unit/batch-check.test.ts holds the two checks against each other on random and
// mutated batches.
// Pure: reads only [batch, batch + size_bytes), allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pmq::batch {

constexpr size_t kHeaderSizeBytes = 61;  // RECORD_BATCH_HEADER_SIZE_BYTES

bool check(const uint8_t* batch, uint64_t size_bytes, uint64_t records);

// Writes baseOffset (int64 big endian, the batch's first 8 bytes; the CRC does not cover it).
void write_base_offset(uint8_t* batch, uint64_t base_offset);

}  // namespace pmq::batch
