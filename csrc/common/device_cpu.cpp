// Fallbacks when the extension is built without CUDA.
#ifndef MSRT_WITH_CUDA
#include "common/device.h"

namespace msrt {
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
int cuda_runtime_version() { return 0; }
}  // namespace msrt
#endif
