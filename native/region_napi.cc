#include <napi.h>
namespace pmq {
void register_region(Napi::Env env, Napi::Object exports) {}
}  // namespace pmq
