// The adaptive spin of the sleeping mode: how long progress.cc keeps polling the worker after
// the last activity before it arms the worker and the process sleeps in epoll. Plain C++ that
// sees only durations (no UCX, no clock): progress.cc measures, this decides.
//
// Why adaptive (docs/native-transport.md, "Adaptive spin"): a spin pays when the next message
// arrives within it — we skip an epoll wake-up and the sender skips UCX's wake-up signal, ~30 µs
// each on a VM — and is pure waste when the next message comes later. How long is worth it
// depends on the traffic, so it is learned, within [0, max] (max = spinUs / PMQ_SPIN_US):
// - The window of an idle period (from the last activity) is `budget`.
// - A spin rewarded g after the activity: budget = max(2g, budget × 7/8) — twice the gap for
//   jitter, and a budget far above the gaps that pay drifts down to them (each waste costs the
//   whole budget). Never below kFloorNs, never above max.
// - A message found after the window with g ≤ max (sleeping: a longer spin would have caught
//   it): budget ≥ 2g.
// - A spin that ran out its window: budget halves; below kFloorNs it is 0 (sleep at once).
// - At budget 0, every kProbeEvery-th idle period spins max once (a probe): a sleeper sees a
//   gap only after its own wake-up (~30 µs here), which can hide a gap a spin would catch.
// So a steady stream of short gaps keeps spinning (as the fixed spin did), long or irregular
// gaps cost a probe's max / kProbeEvery per idle period instead of max, and an idle process
// decays to sleeping at once.
#pragma once

#include <algorithm>
#include <cstdint>

namespace pmq::transport {

class AdaptiveSpin {
 public:
  static constexpr uint64_t kFloorNs = 2'000;  // shorter spins catch almost nothing: 0 instead
  static constexpr uint32_t kProbeEvery = 16;  // idle periods per probe at budget 0
  static constexpr uint64_t kHeadroom = 2;     // budget = gap × this
  static constexpr uint64_t kRewardDecay = 8;  // a rewarded spin keeps 7/8 of the budget

  struct Counters {
    uint64_t rewarded = 0;  // spins that found work
    uint64_t wasted = 0;    // spins that ran out their window
    uint64_t probes = 0;    // idle periods spun at max while the budget was 0
  };

  // Starts at max: a new process behaves as the fixed spin did until it has seen its traffic.
  explicit AdaptiveSpin(uint32_t max_us)
      : max_ns_(uint64_t{max_us} * 1000), budget_ns_(max_ns_) {}

  // An idle period begins (the last activity just ended): how long to spin, in ns; 0 = sleep.
  uint64_t start_idle() {
    if (max_ns_ == 0) return 0;
    if (budget_ns_ > 0) return budget_ns_;
    idle_at_zero_ += 1;
    if (idle_at_zero_ < kProbeEvery) return 0;
    idle_at_zero_ = 0;
    counters_.probes += 1;
    return max_ns_;
  }

  // The spin found work `gap_ns` after the activity that started its idle period.
  void rewarded(uint64_t gap_ns) {
    counters_.rewarded += 1;
    budget_ns_ -= budget_ns_ / kRewardDecay;
    cover(gap_ns);
  }

  // The spin ran out its window without finding work.
  void wasted() {
    counters_.wasted += 1;
    budget_ns_ /= 2;
    if (budget_ns_ < kFloorNs) budget_ns_ = 0;
  }

  // Work was found `gap_ns` after the last activity, after the window had been spent (or with
  // no window): a spin of that length would have caught it, if max allows one.
  void arrived_late(uint64_t gap_ns) {
    if (gap_ns <= max_ns_) cover(gap_ns);
  }

  uint64_t budget_ns() const { return budget_ns_; }
  uint64_t max_ns() const { return max_ns_; }
  const Counters& counters() const { return counters_; }

 private:
  void cover(uint64_t gap_ns) {
    const uint64_t wanted = std::max(kFloorNs, gap_ns * kHeadroom);
    budget_ns_ = std::min(max_ns_, std::max(budget_ns_, wanted));
  }

  uint64_t max_ns_;
  uint64_t budget_ns_;
  uint32_t idle_at_zero_ = 0;
  Counters counters_;
};

}  // namespace pmq::transport
