// Native failures become instances of the TS class NativeError (common/errors.ts), which the
// TS side hands over once through init(). Each carries a stable pmq code and the library's own
// reason (ucs_status_string, pmem2_errormsg, strerror).
#pragma once

#include <napi.h>
#include <string>

namespace pmq {

// Stores the constructor given by JS; called once from init().
void set_error_class(Napi::Env env, Napi::Function error_class);

// Sets a pending JS exception: new NativeError(code, message, reason). Returns undefined so
// napi entry points can `return throw_native_error(...)`.
Napi::Value throw_native_error(Napi::Env env, const char* code, const std::string& message,
                               const std::string& reason);

// Builds (does not throw) the same error object, for asynchronous completions.
Napi::Value make_native_error(Napi::Env env, const char* code, const std::string& message,
                              const std::string& reason);

}  // namespace pmq
