#include <napi.h>
namespace pmq {
void register_transport(Napi::Env env, Napi::Object exports) {}
}  // namespace pmq
