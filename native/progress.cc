// The UCX worker's progress, driven by libuv on the JS thread.
//
// Sleeping mode (default): the worker has UCP_FEATURE_WAKEUP; a uv_poll_t watches its event
// fd. drain() progresses until ucp_worker_arm() returns UCS_OK (UCS_ERR_BUSY means more work
// arrived: progress again), so a wake-up is never lost and an idle process uses no CPU.
// Operations started from JS mark the worker as needing progress; a uv_prepare_t runs drain()
// before the loop next blocks. Busy-poll mode (opt-in) adds a uv_idle_t that progresses every
// loop turn while anything is active: lowest latency, one core spinning.
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

// The event fds of this thread's other transports, or nothing (the usual single transport);
// `busy` when one of them has work queued or a busy-poll turn due: then we must not spin.
static std::vector<pollfd> sibling_fds(const Transport* self, bool* busy_p) {
  std::vector<pollfd> fds;
  for (Transport* sibling : t_transports) {
    if (sibling == self || sibling->closed()) continue;
    if (sibling->has_queued_work()) *busy_p = true;
    fds.push_back(pollfd{sibling->event_fd(), POLLIN, 0});
  }
  return fds;
}

// Sleeping mode with spin_us > 0: before arming, keep progressing for up to spin_us while
// nothing happens. A message arriving within that time is handled without the cost of
// sleeping in epoll and being woken (tens of µs per wake-up on a VM), and its sender pays no
// signal (UCX signals only an armed peer); an idle process spins once after its last
// activity and then sleeps. True when the spin found work. With other transports on this
// thread it stops (false) as soon as one of them has work: their event fd is signalled (a poll
// that does not wait, and takes nothing from them) or work is queued; spinning on would only
// delay them, and they are often the peer we wait for.
bool Transport::spin_for_activity() {
  if (options_.spin_us == 0) return false;
  bool sibling_busy = false;
  std::vector<pollfd> siblings = sibling_fds(this, &sibling_busy);
  if (sibling_busy) return false;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(options_.spin_us);
  do {
    in_progress_ = true;
    const unsigned progressed = ucp_worker_progress(worker_);
    in_progress_ = false;
    if (progressed != 0 || !events.empty() || needs_progress_) return true;
    if (!siblings.empty() && poll(siblings.data(), siblings.size(), 0) > 0) return false;
    sched_yield();  // a spinning process must not delay the one that will message it
  } while (std::chrono::steady_clock::now() < deadline);
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
  for (;;) {
    needs_progress_ = false;
    in_progress_ = true;
    while (ucp_worker_progress(worker_) != 0) {
    }
    in_progress_ = false;
    run_deferred();
    bool dispatched = dispatch_events(this);  // JS runs here, and may call close()
    if (closed_) break;
    if (dispatched || needs_progress_) continue;
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
