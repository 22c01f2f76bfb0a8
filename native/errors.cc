#include "errors.h"

#include "assert.h"

namespace pmq {

namespace {
struct ErrorState {
  Napi::FunctionReference error_class;
};
}  // namespace

void set_error_class(Napi::Env env, Napi::Function error_class) {
  ErrorState* state = env.GetInstanceData<ErrorState>();
  if (state == nullptr) {
    state = new ErrorState();
    env.SetInstanceData<ErrorState>(state);
  }
  state->error_class = Napi::Persistent(error_class);
}

Napi::Value make_native_error(Napi::Env env, const char* code, const std::string& message,
                              const std::string& reason) {
  ErrorState* state = env.GetInstanceData<ErrorState>();
  if (state == nullptr || state->error_class.IsEmpty()) {
    // init() not called yet: fall back to a plain Error so the reason is not lost.
    Napi::Error plain = Napi::Error::New(env, std::string(code) + ": " + message + ": " + reason);
    return plain.Value();
  }
  return state->error_class.New({Napi::String::New(env, code), Napi::String::New(env, message),
                                 Napi::String::New(env, reason)});
}

Napi::Value throw_native_error(Napi::Env env, const char* code, const std::string& message,
                               const std::string& reason) {
  Napi::Value error = make_native_error(env, code, message, reason);
  if (!env.IsExceptionPending()) {
    napi_throw(env, error);
  }
  return env.Undefined();
}

}  // namespace pmq
