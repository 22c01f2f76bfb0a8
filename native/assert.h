// Always-on invariant checks for native code. A broken invariant means our own state is wrong
// (TS validated the arguments already), so the process stops loudly instead of writing bad data.
#pragma once

#include <cstdio>
#include <cstdlib>

#define PMQ_ASSERT(expr)                                                              \
  do {                                                                                \
    if (!(expr)) {                                                                    \
      std::fprintf(stderr, "pmq native invariant failed: %s at %s:%d\n", #expr,      \
                   __FILE__, __LINE__);                                               \
      std::fflush(stderr);                                                            \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
