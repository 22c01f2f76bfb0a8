// Where UCX's own log lines go. UCX prints them on stdout by default, into a command's data
// (`pmq consume t > file`), and prints several ERROR lines for every ordinary peer
// disconnect ("error during flush: Endpoint timeout"). pmq learns of every such failure from
// the status UCX returns and reports it itself, with context; so after a transport is open,
// UCX's lines are printed only when the process logs at debug (or UCX_LOG_LEVEL is set).
// Lines UCX prints while a transport opens (configuration problems) and fatal ones are always
// printed. Everything goes to stderr: a JSON line as pino writes them, or a plain line on a
// terminal.
#pragma once

namespace pmq::ucx_log {

// Installs the handler (once per process; later calls do nothing). Call before ucp_init.
void install();

// Whether UCX's lines about traffic (endpoint errors, timeouts) are printed: the process's
// log level is debug or trace. Process-wide; the last transport opened sets it.
void set_verbose(bool verbose);

// Marks a transport's opening: UCX's lines meanwhile are about its configuration.
class OpeningScope {
 public:
  OpeningScope();
  ~OpeningScope();
  OpeningScope(const OpeningScope&) = delete;
  OpeningScope& operator=(const OpeningScope&) = delete;
};

}  // namespace pmq::ucx_log
