// The only pybind11 file: converts NumPy arrays and DLPack capsules into msrt::TensorView,
// validates arguments, and calls msrt::cpu::<op> or msrt::cuda::<op>.
// One section per op, in the same order as csrc/ops/*.h and medsam_agent_rt/ops/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/device.h"
#include "common/dlpack.h"
#include "common/tensor.h"

namespace py = pybind11;
using msrt::DType;
using msrt::TensorView;

#ifndef MSRT_VERSION
#define MSRT_VERSION "dev"
#endif
#ifndef MSRT_CXX_COMPILER
#define MSRT_CXX_COMPILER "unknown"
#endif

namespace {

// ---------------------------------------------------------------- array conversion

DType dtype_from_numpy(const py::buffer_info& info) {
  const std::string& f = info.format;
  const char c = f.empty() ? '\0' : f.back();  // strip byte-order prefixes such as '<' or '='
  switch (c) {
    case '?': return DType::Bool;
    case 'B': return DType::UInt8;
    case 'e': return DType::Float16;
    case 'f': return DType::Float32;
    case 'd': return DType::Float64;
    case 'i': case 'l': case 'q':
      return info.itemsize == 4 ? DType::Int32 : info.itemsize == 8 ? DType::Int64 : DType::Other;
    default: return DType::Other;
  }
}

DType dtype_from_dlpack(DLDataType t) {
  if (t.lanes != 1) return DType::Other;
  if (t.code == kDLBool && t.bits == 8) return DType::Bool;
  if (t.code == kDLUInt && t.bits == 8) return DType::UInt8;
  if (t.code == kDLInt && t.bits == 32) return DType::Int32;
  if (t.code == kDLInt && t.bits == 64) return DType::Int64;
  if (t.code == kDLFloat && t.bits == 16) return DType::Float16;
  if (t.code == kDLFloat && t.bits == 32) return DType::Float32;
  if (t.code == kDLFloat && t.bits == 64) return DType::Float64;
  return DType::Other;
}

// A NumPy array (any object with the buffer protocol) as a borrowed view. `arr` must outlive it.
TensorView view_numpy(const py::array& arr, const char* name) {
  py::buffer_info info = arr.request();
  TensorView v;
  v.data = info.ptr;
  v.device = msrt::Device::CPU;
  v.dtype = dtype_from_numpy(info);
  MSRT_CHECK(v.dtype != DType::Other, name, " has unsupported dtype '", info.format, "'");
  for (py::ssize_t i = 0; i < info.ndim; ++i) {
    v.shape.push_back(info.shape[i]);
    MSRT_CHECK(info.strides[i] % info.itemsize == 0, name, " has strides that are not a multiple "
               "of its item size");
    v.strides.push_back(info.strides[i] / info.itemsize);
  }
  return v;
}

// Owns a consumed DLPack capsule for the duration of one call (the deleter runs on scope exit;
// kernels are enqueued on the producer's stream, so the memory stays valid for them).
struct DLPackHold {
  DLManagedTensor* managed = nullptr;
  ~DLPackHold() {
    if (managed && managed->deleter) managed->deleter(managed);
  }
};

// A DLPack capsule (from x.__dlpack__(stream=...)) as a borrowed view. `stream` is the CUDA
// stream handle the Python side resolved for the tensor (0 = legacy default stream).
TensorView view_dlpack(const py::capsule& cap, const char* name, std::uintptr_t stream,
                       DLPackHold& hold) {
  MSRT_CHECK(std::string(cap.name() ? cap.name() : "") == "dltensor", name,
             " must be an unconsumed DLPack capsule named 'dltensor'");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  MSRT_CHECK(managed != nullptr, name, ": invalid DLPack capsule");
  PyCapsule_SetName(cap.ptr(), "used_dltensor");
  hold.managed = managed;
  const DLTensor& t = managed->dl_tensor;
  TensorView v;
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  MSRT_CHECK(t.device.device_type == kDLCUDA || t.device.device_type == kDLCPU, name,
             " must live in CPU or CUDA device memory (DLPack device type ",
             t.device.device_type, ")");
  v.device = t.device.device_type == kDLCUDA ? msrt::Device::CUDA : msrt::Device::CPU;
  v.device_id = t.device.device_id;
  v.dtype = dtype_from_dlpack(t.dtype);
  MSRT_CHECK(v.dtype != DType::Other, name, " has an unsupported DLPack dtype (code ",
             int(t.dtype.code), ", bits ", int(t.dtype.bits), ")");
  v.stream = reinterpret_cast<void*>(stream);
  int64_t expected = 1;
  std::vector<int64_t> compact(t.ndim);
  for (int i = t.ndim - 1; i >= 0; --i) {
    compact[i] = expected;
    expected *= t.shape[i];
  }
  for (int i = 0; i < t.ndim; ++i) {
    v.shape.push_back(t.shape[i]);
    v.strides.push_back(t.strides ? t.strides[i] : compact[i]);
  }
  return v;
}

py::dict build_info() {
  py::dict d;
  d["version"] = MSRT_VERSION;
  d["compiler"] = MSRT_CXX_COMPILER;
  d["cuda"] = msrt::cuda_compiled();
#ifdef MSRT_WITH_CUDA
  d["cuda_version"] = MSRT_CUDA_VERSION;
  d["cuda_archs"] = MSRT_CUDA_ARCHS;
#else
  d["cuda_version"] = py::none();
  d["cuda_archs"] = py::none();
#endif
#ifdef MSRT_WITH_OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  return d;
}

// ================================================================ op: mask metrics
void register_mask_metrics(py::module_& m) { (void)m; }

// ================================================================ op: prompt-embedding fusion
void register_prompt_fusion(py::module_& m) { (void)m; }

// ================================================================ op: connected components
void register_components(py::module_& m) { (void)m; }

// ================================================================ op: distance transform + click
void register_distance(py::module_& m) { (void)m; }

// ================================================================ op: mask post-processing
void register_postprocess(py::module_& m) { (void)m; }

// ================================================================ op: overlay rendering
void register_overlay(py::module_& m) { (void)m; }

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "medsam_agent_rt native kernels (CPU, and CUDA when compiled with it)";
  py::register_exception<msrt::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  m.def("build_info", &build_info, "Compile-time facts: version, compiler, CUDA, archs, OpenMP.");
  m.def("cuda_device_count", &msrt::cuda_device_count,
        "Number of visible CUDA devices (0 without a driver or a CUDA build).");
  m.def("cuda_runtime_version", &msrt::cuda_runtime_version);

  register_mask_metrics(m);
  register_prompt_fusion(m);
  register_components(m);
  register_distance(m);
  register_postprocess(m);
  register_overlay(m);
}
