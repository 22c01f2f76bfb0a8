// The UCX worker's progress, driven by libuv on the JS thread.
//
// Sleeping mode (default): the worker has UCP_FEATURE_WAKEUP; a uv_poll_t watches its event
// fd. drain() progresses until ucp_worker_arm() returns UCS_OK (UCS_ERR_BUSY means more work
// arrived: progress again), so a wake-up is never lost and an idle process uses no CPU. Before
// arming it spins for an adaptive window after the last activity (spin_policy.h).
// Operations started from JS mark the worker as needing progress; a uv_prepare_t runs drain()
// before the loop next blocks. Busy-poll mode (opt-in) adds a uv_idle_t that progresses every
// loop turn while anything is active: lowest latency, one core spinning (yielding to other
// runnable threads when a turn found nothing).
// ucp_worker_progress never runs JS: callbacks queue events, dispatched after it returns.
// Loop liveness: the poll (and idle) handles are referenced only while a listener, an endpoint,
// an operation in flight or a message waiting to be placed exists; the keepalive timer and the
// prepare handle are never referenced, so an idle process can exit.
//
// Several transports in one thread (a storage node, a broker and clients in one process) each
// have their own handles and drain loop. One thread runs one worker at a time, though, so a
// transport that waits on its worker would starve a sibling that is often its own peer: a
// spinning drain stops as soon as a sibling has work (sibling_waiting), and close()'s bounded
// wait for its endpoints' closes progresses the siblings too (progress_siblings), since an
// in-process peer acknowledges our flush only when its worker runs.
#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "assert.h"
#include "transport.h"

namespace pmq::transport {

struct Transport::Handles {
  uv_poll_t poll;
  uv_prepare_t prepare;
  uv_idle_t idle;  // busy-poll turns; in sleeping mode one turn after request_drain()
  uv_timer_t timer;
  Transport* owner;
  int fd;  // the worker's event fd (ucp_worker_get_efd)
  int open_handles;
  bool busy;
};

struct ProgressAccess {
  static Transport* owner(uv_handle_t* handle) {
    return static_cast<Transport::Handles*>(handle->data)->owner;
  }
  // Busy-poll mode: every loop turn while anything is active. Sleeping mode: the one turn
  // that request_drain() asked for, without blocking in epoll first.
  static void on_idle(uv_idle_t* idle) {
    auto* handles = static_cast<Transport::Handles*>(idle->data);
    if (!handles->owner->closed()) handles->owner->drain();
    if (!handles->busy) uv_idle_stop(idle);  // busy mode: update_loop_ref decides
  }
  static void on_closed(uv_handle_t* handle) {
    auto* handles = static_cast<Transport::Handles*>(handle->data);
    handles->open_handles -= 1;
    if (handles->open_handles == 0) {
      delete handles->owner;  // the transport outlived close() until now (see close())
      delete handles;
    }
  }
};

namespace {

// The transports whose progress handles run on this thread's loop (start_progress until
// stop_progress), in opening order. Per thread: a loop belongs to one thread.
thread_local std::vector<Transport*> t_transports;

void on_poll(uv_poll_t* poll, int status, int events) {
  Transport* transport = ProgressAccess::owner(reinterpret_cast<uv_handle_t*>(poll));
  if (!transport->closed()) transport->drain();
}

void on_prepare(uv_prepare_t* prepare) {
  Transport* transport = ProgressAccess::owner(reinterpret_cast<uv_handle_t*>(prepare));
  if (!transport->closed()) transport->drain();
}

void on_idle(uv_idle_t* idle) { ProgressAccess::on_idle(idle); }

void on_timer(uv_timer_t* timer) {
  Transport* transport = ProgressAccess::owner(reinterpret_cast<uv_handle_t*>(timer));
  if (transport->closed()) return;
  transport->on_keepalive_tick();
  transport->drain();
}

}  // namespace

std::string Transport::start_progress(uv_loop_t* loop) {
  int fd = -1;
  ucs_status_t status = ucp_worker_get_efd(worker_, &fd);
  if (status != UCS_OK) return status_reason("ucp_worker_get_efd", status);
  auto* handles = new Handles{};
  handles->owner = this;
  handles->fd = fd;
  handles->busy = options_.busy_poll;
  if (uv_poll_init(loop, &handles->poll, fd) != 0) {
    delete handles;
    return "uv_poll_init failed";
  }
  handles->poll.data = handles;
  uv_prepare_init(loop, &handles->prepare);
  handles->prepare.data = handles;
  uv_idle_init(loop, &handles->idle);
  handles->idle.data = handles;
  uv_timer_init(loop, &handles->timer);
  handles->timer.data = handles;
  handles->open_handles = 4;
  handles_ = handles;
  t_transports.push_back(this);
  uv_poll_start(&handles->poll, UV_READABLE, on_poll);
  uv_prepare_start(&handles->prepare, on_prepare);
  uv_unref(reinterpret_cast<uv_handle_t*>(&handles->prepare));
  uint64_t tick = std::min(options_.keepalive_ms, options_.peer_timeout_ms) / 2;
  tick = std::max<uint64_t>(tick, 10);
  uv_timer_start(&handles->timer, on_timer, tick, tick);
  uv_unref(reinterpret_cast<uv_handle_t*>(&handles->timer));
  update_loop_ref();
  mark_needs_progress();
  return "";
}

void Transport::stop_progress() {
  if (handles_ == nullptr) {
    return;
  }
  t_transports.erase(std::find(t_transports.begin(), t_transports.end(), this));
  uv_poll_stop(&handles_->poll);  // removes the fd from epoll before the worker closes it
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), ProgressAccess::on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->prepare), ProgressAccess::on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->idle), ProgressAccess::on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), ProgressAccess::on_closed);
  handles_ = nullptr;
}

bool Transport::owned_by_handles() const { return handles_ != nullptr; }

void Transport::update_loop_ref() {
  if (handles_ == nullptr || closed_) return;
  // A detached endpoint's close waits on a silent peer: it keeps one op and the endpoint.
  bool active = listener_ != nullptr || endpoints_.size() > detached_ ||
                ops_.size() > detached_ || !receives_.empty();
  auto* poll = reinterpret_cast<uv_handle_t*>(&handles_->poll);
  if (active) {
    uv_ref(poll);
  } else {
    uv_unref(poll);
  }
  if (handles_->busy) {
    bool running = uv_is_active(reinterpret_cast<uv_handle_t*>(&handles_->idle)) != 0;
    if (active && !running) {
      uv_idle_start(&handles_->idle, on_idle);
    } else if (!active && running) {
      uv_idle_stop(&handles_->idle);
    }
  }
}

void Transport::request_drain() {
  mark_needs_progress();
  if (handles_ == nullptr || closed_) return;
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&handles_->idle)) == 0) {
    uv_idle_start(&handles_->idle, on_idle);  // an active idle handle: the loop polls, no wait
  }
}

void Transport::progress_siblings() {
  PMQ_ASSERT(in_progress_ == false);
  for (Transport* sibling : t_transports) {
    if (sibling == this || sibling->closed_) continue;
    PMQ_ASSERT(!sibling->in_progress_);  // JS (our caller) never runs inside progress
    sibling->in_progress_ = true;
    const unsigned progressed = ucp_worker_progress(sibling->worker_);
    sibling->in_progress_ = false;
    // Its callbacks queued events (no JS here) and may have taken the wake-up its event fd
    // had: have it drained on the loop's next turn.
    if (progressed != 0 || !sibling->events.empty()) sibling->request_drain();
  }
}

namespace {

uint64_t nanoseconds(std::chrono::steady_clock::duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

// The event fds of this thread's other transports, or nothing (the usual single transport);
// `busy` when one of them has work queued or a busy-poll turn due: then we must not spin.
std::vector<pollfd> sibling_fds(const Transport* self, bool* busy_p) {
  std::vector<pollfd> fds;
  for (Transport* sibling : t_transports) {
    if (sibling == self || sibling->closed()) continue;
    if (sibling->has_queued_work()) *busy_p = true;
    fds.push_back(pollfd{sibling->event_fd(), POLLIN, 0});
  }
  return fds;
}

}  // namespace

// Activity: a drain progressed the worker or found work (has_work: events for JS, replies or
// reads to send), or JS started an operation. It ends the idle period, and tells the policy
// how long that was and whether a peer's work ended it (`arrived`).
void Transport::note_activity(bool arrived) {
  const auto now = std::chrono::steady_clock::now();
  if (idle_) spin_.active_after(nanoseconds(now - last_activity_), arrived);
  idle_ = false;
  last_activity_ = now;
}

// Sleeping mode: before arming, keep progressing until the idle period's window (the adaptive
// budget, spin_policy.h; at most spin_us) has passed since the last activity. A message
// arriving within it is handled without the cost of sleeping in epoll and being woken (tens of
// µs per wake-up on a VM), and its sender pays no signal (UCX signals only an armed peer). The
// window is anchored at the last activity, not at this call: however many loop turns an idle
// period has (each runs drain() from the prepare handle), it spins at most once. True when the
// spin found work.
//
// With other transports on this thread it stops (false) as soon as one of them has work: their
// event fd is signalled (a poll that does not wait, and takes nothing from them) or work is
// queued; spinning on would only delay them, and they are often the peer we wait for. Such a
// stop neither pays nor wastes the window: it keeps what is left of it (spin_left_), and a later
// drain in the same idle period (the next loop turn's prepare) spins on until the deadline.
bool Transport::spin_for_activity() {
  if (!idle_) {
    idle_ = true;
    const uint64_t window_ns = spin_.budget_ns();
    PMQ_ASSERT(window_ns <= spin_.max_ns());
    spin_left_ = window_ns > 0;
    spin_deadline_ = last_activity_ + std::chrono::nanoseconds(window_ns);
  }
  if (!spin_left_) return false;
  bool sibling_busy = false;
  std::vector<pollfd> siblings = sibling_fds(this, &sibling_busy);
  if (sibling_busy) return false;
  do {
    in_progress_ = true;
    const unsigned progressed = ucp_worker_progress(worker_);
    in_progress_ = false;
    // Any progress pays: a peer's message, or a step of our own sends or of UCX's protocols that
    // would otherwise wait for the next wake-up (docs/native-transport.md, "Adaptive spin").
    if (progressed != 0 || has_work()) {
      const auto now = std::chrono::steady_clock::now();
      spin_.rewarded(nanoseconds(now - last_activity_));
      idle_ = false;
      last_activity_ = now;
      return true;
    }
    if (!siblings.empty() && poll(siblings.data(), siblings.size(), 0) > 0) return false;
    sched_yield();  // a spinning process must not delay the one that will message it
  } while (std::chrono::steady_clock::now() < spin_deadline_);
  spin_left_ = false;
  spin_.ran_out();
  return false;
}

bool Transport::has_queued_work() const {
  if (closed_ || handles_ == nullptr) return false;
  bool busy_turn = handles_->busy &&
                   uv_is_active(reinterpret_cast<const uv_handle_t*>(&handles_->idle)) != 0;
  return needs_progress_ || !events.empty() || busy_turn;
}

int Transport::event_fd() const {
  PMQ_ASSERT(handles_ != nullptr);
  return handles_->fd;
}

void Transport::drain() {
  PMQ_ASSERT(!draining_);  // progress is not re-entrant; JS never runs inside it
  PMQ_ASSERT(!in_progress_);
  PMQ_ASSERT(!closed_);
  draining_ = true;
  bool worked = false;
  for (;;) {
    const bool requested = needs_progress_;
    needs_progress_ = false;
    in_progress_ = true;
    unsigned progressed = 0;
    for (unsigned n = ucp_worker_progress(worker_); n != 0; n = ucp_worker_progress(worker_)) {
      progressed += n;
    }
    in_progress_ = false;
    const bool found = progressed != 0 || has_work();
    const bool arrived = has_peer_work();
    run_deferred();
    bool dispatched = dispatch_events(this);  // JS runs here, and may call close()
    if (closed_) break;
    if (found || requested) {
      worked = true;
      // What a drain JS asked for finds may be its own operations completing: no arrival.
      note_activity(arrived && !requested);
    }
    if (dispatched || needs_progress_) continue;
    // Nothing to do at all: let any other runnable thread on this core go first. A process
    // whose loop never blocks (busy polling; a JS loop that polls with setImmediate, like the
    // bench's open-loop producer) would otherwise hold the core until preempted, and on a
    // machine with fewer cores than processes the peer that will message it may be waiting for
    // it (measured with a first adaptive policy, whose window fell to 0: ack p50 at 1 000
    // records/s 3-14 ms without this yield, the fixed spin's loop turns yielding 1-3 ms; noisy
    // runs). Costs one syscall when nothing else is runnable.
    if (!worked) sched_yield();
    if (options_.busy_poll) break;  // the idle handle comes back next loop turn
    if (spin_for_activity()) continue;
    ucs_status_t status = ucp_worker_arm(worker_);
    if (status == UCS_OK) break;
    PMQ_ASSERT(status == UCS_ERR_BUSY);
  }
  draining_ = false;
  update_loop_ref();
}

}  // namespace pmq::transport
