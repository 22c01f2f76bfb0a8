// The adaptive spin of the sleeping mode: how long progress.cc keeps polling the worker after
// the last activity before it arms the worker and the process sleeps in epoll. Plain C++ that
// sees only durations (no UCX, no clock): progress.cc measures, this decides.
//
// Why adaptive (docs/native-transport.md, "Adaptive spin"): a spin pays when the next message
// arrives within it — we skip an epoll wake-up and the sender skips UCX's wake-up signal, ~30 µs
// each on a VM — and is pure waste when the next message comes later. How long is worth it
// depends on the traffic, so it is learned, within [0, max] (max = spinUs / PMQ_SPIN_US):
// - The window of an idle period (from the last activity) is budget = min(max, want).
// - A spin rewarded g after the activity: want = max(2g, want × 7/8) — twice the gap for
//   jitter, and a window far above the gaps that pay drifts down to them (each waste costs the
//   whole window). `want` may exceed max (up to 2 max): gaps near max keep the window at max
//   while shorter ones decay it. Never below kFloorNs.
// - A message found after the window with g ≤ max (sleeping: a longer spin would have caught
//   it): want ≥ 2g.
// - A spin that ran out its window: if fewer than 1 in 4 recent spins paid (an average over
//   about the last 8), the window halves; below kFloorNs it is 0 (sleep at once). Spins that often
//   pay keep their window although some do not: a broker between a producer and a storage node
//   sees short gaps inside each request and a long one after it, and halving on every long gap
//   lost the short ones (two W3-like runs: ack p50 at 1 000 records/s 0.7-0.9 -> 1.2-1.4 ms).
// - At budget 0, every kProbeEvery-th idle period spins max once (a probe): a sleeper sees a
//   gap only after its own wake-up (~30 µs here), which can hide a gap a spin would catch.
// So a stream with short gaps keeps spinning (as the fixed spin did, for about twice the gaps),
// gaps that a spin rarely catches cost a probe's max / kProbeEvery per idle period instead of
// max, and an idle process decays to sleeping at once.
#pragma once

#include <algorithm>
#include <cstdint>

namespace pmq::transport {

class AdaptiveSpin {
 public:
  static constexpr uint64_t kFloorNs = 2'000;  // shorter spins catch almost nothing: 0 instead
  static constexpr uint32_t kProbeEvery = 16;  // idle periods per probe at budget 0
  static constexpr uint64_t kHeadroom = 2;     // wanted window = gap × this
  static constexpr uint64_t kRewardDecay = 8;  // a rewarded spin keeps 7/8 of the wanted window
  static constexpr uint32_t kPaidOne = 1024;   // paid_: 1024 = every recent spin paid
  static constexpr uint32_t kPaidKeep = kPaidOne / 4;  // below it, a wasted spin halves
  static constexpr uint32_t kPaidWeight = 8;   // paid_ averages over ~this many spins

  struct Counters {
    uint64_t rewarded = 0;  // spins that found work
    uint64_t wasted = 0;    // spins that ran out their window
    uint64_t probes = 0;    // idle periods spun at max while the budget was 0
  };

  // Starts at max: a new process behaves as the fixed spin did until it has seen its traffic.
  explicit AdaptiveSpin(uint32_t max_us)
      : max_ns_(uint64_t{max_us} * 1000), want_ns_(max_ns_) {}

  // An idle period begins (the last activity just ended): how long to spin, in ns; 0 = sleep.
  uint64_t start_idle() {
    if (max_ns_ == 0) return 0;
    if (want_ns_ > 0) return budget_ns();
    idle_at_zero_ += 1;
    if (idle_at_zero_ < kProbeEvery) return 0;
    idle_at_zero_ = 0;
    counters_.probes += 1;
    return max_ns_;
  }

  // The spin found work `gap_ns` after the activity that started its idle period.
  void rewarded(uint64_t gap_ns) {
    counters_.rewarded += 1;
    paid(true);
    want_ns_ -= want_ns_ / kRewardDecay;
    cover(gap_ns);
  }

  // The spin ran out its window without finding work.
  void wasted() {
    counters_.wasted += 1;
    paid(false);
    if (paid_ >= kPaidKeep) return;
    want_ns_ = std::min(want_ns_, max_ns_) / 2;
    if (want_ns_ < kFloorNs) want_ns_ = 0;
  }

  // Work was found `gap_ns` after the last activity, after the window had been spent (or with
  // no window): a spin of that length would have caught it, if max allows one.
  void arrived_late(uint64_t gap_ns) {
    if (gap_ns <= max_ns_) cover(gap_ns);
  }

  // The window of the next idle period: what the traffic wants, within max.
  uint64_t budget_ns() const { return std::min(want_ns_, max_ns_); }
  uint64_t max_ns() const { return max_ns_; }
  const Counters& counters() const { return counters_; }

 private:
  void paid(bool hit) {  // a moving average: paid_ / kPaidOne of the recent spins paid
    paid_ = paid_ - paid_ / kPaidWeight + (hit ? kPaidOne / kPaidWeight : 0);
  }

  // Wants at least twice the gap. Kept above max when gaps near it were seen (at most 2 max),
  // so the decay of rewards at shorter gaps does not cut the window below them at once.
  void cover(uint64_t gap_ns) {
    want_ns_ = std::max({want_ns_, kFloorNs, std::min(gap_ns, max_ns_) * kHeadroom});
  }

  uint64_t max_ns_;
  uint64_t want_ns_;  // twice the recent gaps that paid (decaying); the window is min(max, it)
  uint32_t idle_at_zero_ = 0;
  uint32_t paid_ = kPaidOne;
  Counters counters_;
};

}  // namespace pmq::transport
