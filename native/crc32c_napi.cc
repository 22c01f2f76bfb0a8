#include <napi.h>
namespace pmq {
void register_crc32c(Napi::Env env, Napi::Object exports) {}
}  // namespace pmq
