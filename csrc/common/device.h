// CUDA runtime queries that must work (and say "no") on machines without a GPU or driver.
#pragma once

namespace msrt {
bool cuda_compiled();
int cuda_device_count();     // 0 when no driver / no device; never throws
int cuda_runtime_version();  // e.g. 13000; 0 without CUDA
}  // namespace msrt
