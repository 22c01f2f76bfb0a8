// UCX log lines to stderr, filtered (ucx_log.h says why).
#include "ucx_log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <ucs/debug/log_def.h>

namespace pmq::ucx_log {

namespace {

// UCX may log from its own async thread, hence atomics.
std::atomic<bool> installed{false};
std::atomic<bool> verbose{false};
std::atomic<int> opening{0};
// The user asked UCX for its lines (UCX_LOG_LEVEL in the environment): print all it gives us.
bool asked = false;

// pino's numbers for UCX's levels (fatal 60, error 50, warn 40, info 30, debug 20, trace 10).
int pino_level(ucs_log_level_t level) {
  switch (level) {
    case UCS_LOG_LEVEL_FATAL: return 60;
    case UCS_LOG_LEVEL_ERROR: return 50;
    case UCS_LOG_LEVEL_WARN: return 40;
    case UCS_LOG_LEVEL_DIAG:
    case UCS_LOG_LEVEL_INFO: return 30;
    case UCS_LOG_LEVEL_DEBUG: return 20;
    default: return 10;
  }
}

void append_json_string(std::string* out, const char* text) {
  out->push_back('"');
  for (const char* c = text; *c != '\0'; ++c) {
    auto byte = static_cast<unsigned char>(*c);
    if (byte == '"' || byte == '\\') {
      out->push_back('\\');
      out->push_back(*c);
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      out->append(escaped);
    } else {
      out->push_back(*c);
    }
  }
  out->push_back('"');
}

const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

void write_line(ucs_log_level_t level, const char* file, unsigned line, const char* text) {
  std::string out;
  char source[256];
  std::snprintf(source, sizeof source, "%s:%u", base_name(file), line);
  if (isatty(STDERR_FILENO)) {
    out = std::string("UCX ") + ucs_log_level_names[level] + " " + source + " " + text + "\n";
  } else {
    timeval now{};
    gettimeofday(&now, nullptr);
    char head[128];
    std::snprintf(head, sizeof head, "{\"level\":%d,\"time\":%lld,\"pid\":%d,", pino_level(level),
                  static_cast<long long>(now.tv_sec) * 1000 + now.tv_usec / 1000,
                  static_cast<int>(getpid()));
    out = head;
    out += "\"component\":\"ucx\",\"ucxLevel\":";
    append_json_string(&out, ucs_log_level_names[level]);
    out += ",\"source\":";
    append_json_string(&out, source);
    out += ",\"msg\":";
    append_json_string(&out, text);
    out += "}\n";
  }
  // One write per line: lines from several threads or processes sharing stderr stay whole.
  ssize_t written = ::write(STDERR_FILENO, out.data(), out.size());
  (void)written;  // nothing better to do when stderr is gone
}

ucs_log_func_rc_t handler(const char* file, unsigned line, const char* function,
                          ucs_log_level_t level, const ucs_log_component_config_t* component,
                          const char* format, va_list ap) {
  bool print = asked || level == UCS_LOG_LEVEL_FATAL || opening.load() > 0 || verbose.load();
  if (print) {
    char text[1024];
    std::vsnprintf(text, sizeof text, format, ap);
    write_line(level, file, line, text);
  }
  // Stop: UCX's default handler would print the line again, on stdout.
  return UCS_LOG_FUNC_RC_STOP;
}

}  // namespace

void install() {
  if (installed.exchange(true)) return;
  const char* level = std::getenv("UCX_LOG_LEVEL");
  asked = level != nullptr && level[0] != '\0';
  ucs_log_push_handler(handler);
}

void set_verbose(bool value) { verbose.store(value); }

OpeningScope::OpeningScope() { opening.fetch_add(1); }
OpeningScope::~OpeningScope() { opening.fetch_sub(1); }

}  // namespace pmq::ucx_log
