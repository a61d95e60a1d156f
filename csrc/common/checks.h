// Argument validation shared by every kernel. Messages name the argument, what was expected and
// what arrived, e.g. "mask must be a 2-D uint8 array, got 3-D float32".
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace msrt {

// Thrown for bad arguments; bindings.cpp maps it to Python's ValueError.
class ArgumentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Thrown when a CUDA call or kernel launch fails; pybind11 maps it to Python's RuntimeError.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Parts>
[[noreturn]] inline void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw ArgumentError(os.str());
}

#define MSRT_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::msrt::fail(__VA_ARGS__); \
  } while (0)

}  // namespace msrt
