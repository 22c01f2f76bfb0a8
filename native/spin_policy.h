// The adaptive spin of the sleeping mode: how long progress.cc keeps polling the worker after
// the last activity before it arms the worker and the process sleeps in epoll. Plain C++ that
// sees only durations (no UCX, no clock): progress.cc measures, this decides.
//
// Why adaptive (docs/native-transport.md, "Adaptive spin"): a spin pays when UCX has work for it
// within the window — a peer's message (we skip an epoll wake-up, the sender skips UCX's wake-up
// signal, ~30 µs each on a VM) or a step of our own sends — and, on a VM, by keeping the vCPU
// from halting while the process is busy: waking a halted vCPU costs every process on it tens
// of µs. On the 2-core VM a fixed 50 µs spin in the storage node and broker caught almost
// nothing (0.3-4% of spins found work) and still halved W3's ack p50 against sleeping at once.
// It is waste when the process is idle. So the window (from the last activity) is learned,
// within [0, max] (max = spinUs / PMQ_SPIN_US), as min(max, want):
// - A spin that found work g after the activity: want = max(2g, want × 15/16) — twice the gap
//   for jitter, and a window far above the gaps that pay drifts down to them.
// - Work that came after the window, g ≤ max after the activity: want ≥ 2g (a longer spin
//   would have caught it).
// - The process active again within kBusyGapNs (1 ms) of its last activity, its spin having
//   run out (or no window): busy, want doubles (from kFloorNs; at most 2 max).
// - Active again later, its spin having run out: idle. Once fewer than 1 in 8 recent idle
//   periods paid (caught work or were busy; an average over ~16), each idle one halves the
//   window; below kFloorNs it is 0 (sleep at once).
// So a busy process spins (as the fixed spin did; about twice the paying gaps when they are
// shorter), an idle one decays to sleeping at once, and its first busy activity brings the
// window back (a sleeper sees gaps only after its own wake-up, ~30 µs here: they still count).
#pragma once

#include <algorithm>
#include <cstdint>

namespace pmq::transport {

class AdaptiveSpin {
 public:
  static constexpr uint64_t kFloorNs = 2'000;  // shorter spins catch almost nothing: 0 instead
  static constexpr uint64_t kBusyGapNs = 1'000'000;  // next activity within 1 ms: busy
  static constexpr uint64_t kHeadroom = 2;     // wanted window = gap × this
  static constexpr uint64_t kRewardDecay = 16;  // a paying spin keeps 15/16 of the wanted window
  // paid_: kPaidOne = every recent idle period paid (a catch, or busy). Fine-grained: the
  // integer average stops falling at kPaidWeight - 1, far below the keep threshold.
  static constexpr uint32_t kPaidOne = 1 << 16;
  static constexpr uint32_t kPaidWeight = 16;  // paid_ averages over ~this many idle periods
  static constexpr uint32_t kPaidKeepInverse = 8;  // keep the window while ≥ 1 in 8 paid
  static constexpr uint32_t kPaidKeep = kPaidOne / kPaidKeepInverse;
  static_assert(kPaidWeight - 1 < kPaidKeep, "the average must be able to fall below keep");

  struct Counters {
    uint64_t rewarded = 0;  // spins that found work
    uint64_t wasted = 0;    // spins that ran out their window (the process busy or idle)
  };

  // Starts at max: a new process behaves as the fixed spin did until it has seen its traffic.
  explicit AdaptiveSpin(uint32_t max_us)
      : max_ns_(uint64_t{max_us} * 1000), want_ns_(max_ns_) {}

  // The window of the next idle period, in ns (0: sleep at once): what the traffic wants,
  // within max.
  uint64_t budget_ns() const { return std::min(want_ns_, max_ns_); }

  // The spin found work `gap_ns` after the activity that started its idle period.
  void rewarded(uint64_t gap_ns) {
    counters_.rewarded += 1;
    missed_ = false;
    paid(true);
    want_ns_ -= want_ns_ / kRewardDecay;
    cover(gap_ns);
  }

  // The spin ran out its window without finding work; judged at the next activity.
  void ran_out() {
    counters_.wasted += 1;
    missed_ = true;
  }

  // The process is active again `gap_ns` after the last activity (an idle period without a
  // paying spin ended), by work that came in (`arrived`: a peer's, not our own operations') or
  // that it started itself.
  void active_after(uint64_t gap_ns, bool arrived) {
    if (arrived && gap_ns <= max_ns_) cover(gap_ns);  // a longer spin would have caught it
    const bool missed = missed_;
    missed_ = false;
    if (gap_ns <= kBusyGapNs) {  // busy: spinning pays here even when it catches nothing
      paid(true);
      if (missed || want_ns_ == 0) want_ns_ = std::max(kFloorNs, want_ns_ * 2);
      want_ns_ = std::min(want_ns_, max_ns_ * kHeadroom);
      return;
    }
    if (!missed) return;  // idle, and no spin ran: nothing was spent
    paid(false);
    if (paid_ >= kPaidKeep) return;
    want_ns_ = budget_ns() / 2;
    if (want_ns_ < kFloorNs) want_ns_ = 0;
  }

  uint64_t max_ns() const { return max_ns_; }
  const Counters& counters() const { return counters_; }

 private:
  void paid(bool hit) {  // a moving average: paid_ / kPaidOne of the recent idle periods paid
    paid_ = paid_ - paid_ / kPaidWeight + (hit ? kPaidOne / kPaidWeight : 0);
  }

  // Wants at least twice the gap (at most 2 max), never less than kFloorNs.
  void cover(uint64_t gap_ns) {
    want_ns_ = std::max({want_ns_, kFloorNs, std::min(gap_ns, max_ns_) * kHeadroom});
  }

  uint64_t max_ns_;
  uint64_t want_ns_;  // the window the traffic asks for, up to 2 max; the window is min(max, it)
  uint32_t paid_ = kPaidOne;
  bool missed_ = false;  // the last spin ran out; judged at the next activity
  Counters counters_;
};

}  // namespace pmq::transport
