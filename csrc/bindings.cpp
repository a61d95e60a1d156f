// The only pybind11 file: turns NumPy arrays and DLPack capsules into msrt::TensorView, checks
// the arguments, and calls msrt::cpu::<op> or msrt::cuda::<op>. One section per op, in the order
// of csrc/ops/*.h; each ends with its register_<op>().
//
// Conventions (every section):
// - An array argument is a NumPy array (host) or a DLPack capsule that the Python side made with
//   `x.__dlpack__(stream=stream)` (CUDA; CPU tensors work too): `Arg`. `stream` is the cudaStream_t
//   of the producer's current stream, as an integer (1 = legacy default stream, DLPack's value).
// - Ops with fixed-size outputs take them from the caller (`out` arguments, checked by
//   check_output) and run where their arguments live (on_cuda). Components and distance have
//   `_cpu` entry points that return new NumPy arrays (a label count is known only after labelling)
//   and `_cuda` entry points with caller-allocated outputs and scratch (require_cuda).
// - CPU kernels take `threads` (0: csrc/cpu/parallel.h's default) and run without the GIL, which
//   is released after the arguments are read and taken again before they are released (a DLPack
//   deleter may call into Python).
// - Bad arguments raise msrt::ArgumentError (Python ValueError) naming the argument, what was
//   expected and what arrived, before any output is written.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "common/device.h"
#include "common/dlpack.h"
#include "common/tensor.h"
#include "cpu/parallel.h"
#include "ops/components.h"
#include "ops/distance.h"
#include "ops/mask_metrics.h"
#include "ops/overlay.h"
#include "ops/postprocess.h"
#include "ops/prompt_fusion.h"

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
    case 'i':
    case 'l':
    case 'q':
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

bool host_little_endian() {
  const uint16_t one = 1;
  uint8_t first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// A NumPy array (any object with the buffer protocol) as a borrowed view. `arr` must outlive it.
TensorView view_numpy(const py::array& arr, const char* name) {
  py::buffer_info info = arr.request();
  TensorView v;
  v.data = info.ptr;
  v.device = msrt::Device::CPU;
  v.writable = !info.readonly;
  v.dtype = dtype_from_numpy(info);
  MSRT_CHECK(v.dtype != DType::Other, name, " has unsupported dtype '", info.format, "'");
  const char order = info.format.empty() ? '=' : info.format.front();
  const bool little = host_little_endian();
  MSRT_CHECK(!(order == '>' || order == '!') || !little, name,
             " must be in native byte order, got dtype '", info.format, "'");
  MSRT_CHECK(order != '<' || little, name, " must be in native byte order, got dtype '",
             info.format, "'");
  for (py::ssize_t i = 0; i < info.ndim; ++i) {
    v.shape.push_back(info.shape[i]);
    MSRT_CHECK(info.strides[i] % info.itemsize == 0, name,
               " has strides that are not a multiple of its item size");
    v.strides.push_back(info.strides[i] / info.itemsize);
  }
  return v;
}

// Owns a consumed DLPack capsule for the duration of one call (the deleter runs on scope exit;
// kernels are enqueued on the producer's stream, so the memory stays valid for them).
struct DLPackHold {
  DLManagedTensor* managed = nullptr;
  DLPackHold() = default;
  DLPackHold(const DLPackHold&) = delete;
  DLPackHold& operator=(const DLPackHold&) = delete;
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
             " must live in CPU or CUDA device memory (DLPack device type ", t.device.device_type,
             ")");
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
// ---------------------------------------------------------------- argument helpers

// One array argument as a borrowed TensorView; a consumed capsule is released when this dies.
class Arg {
 public:
  Arg(const py::handle& obj, const char* name, std::uintptr_t stream = 0) : name(name) {
    if (PyCapsule_CheckExact(obj.ptr())) {
      v = view_dlpack(py::reinterpret_borrow<py::capsule>(obj), name, stream, hold_);
    } else if (py::isinstance<py::array>(obj)) {
      v = view_numpy(py::reinterpret_borrow<py::array>(obj), name);
    } else {
      msrt::fail(name, " must be a NumPy array or a DLPack capsule, got ",
                 py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
    }
  }
  TensorView v;
  const char* name;

 private:
  DLPackHold hold_;
};

// True when the arguments live on a CUDA device (all on the same one), false for host memory;
// raises naming the first argument that disagrees with the first one.
bool on_cuda(std::initializer_list<const Arg*> args) {
  const Arg* first = *args.begin();
  for (const Arg* a : args) msrt::check_same_device(first->v, first->name, a->v, a->name);
  const bool cuda = first->v.device == msrt::Device::CUDA;
#ifndef MSRT_WITH_CUDA
  MSRT_CHECK(!cuda, first->name,
             " is a CUDA tensor but medsam_agent_rt._C was built without "
             "CUDA; rebuild with a CUDA compiler on PATH (MSRT_CUDA=ON to insist)");
#endif
  return cuda;
}

// For the `_cpu` / `_cuda` entry points: every argument in host memory / on one CUDA device.
void require_host(std::initializer_list<const Arg*> args) {
  MSRT_CHECK(!on_cuda(args), (*args.begin())->name, " must be in host memory for this call, got ",
             (*args.begin())->v.describe());
}
#ifdef MSRT_WITH_CUDA
void require_cuda(std::initializer_list<const Arg*> args) {
  MSRT_CHECK(on_cuda(args), (*args.begin())->name, " must be a CUDA tensor for this call, got ",
             (*args.begin())->v.describe());
}
#endif

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// An array a kernel reads or writes whole through its pointer: exactly `shape` and `dtype`,
// C-contiguous.
void check_dense(const Arg& a, const std::vector<int64_t>& shape, DType dtype) {
  const std::string expected = shape_str(shape) + " " + msrt::dtype_name(dtype);
  msrt::check_shape(a.v, a.name, shape, expected.c_str());
  msrt::check_dtype(a.v, a.name, dtype);
  msrt::check_contiguous(a.v, a.name);
}

// An output argument: check_dense, and writable.
void check_output(const Arg& a, const std::vector<int64_t>& shape, DType dtype) {
  check_dense(a, shape, dtype);
  msrt::check_writable(a.v, a.name);
}

#ifdef MSRT_WITH_CUDA
// A CUDA scratch buffer: (elems,) int32, contiguous, 8-byte aligned (kernels keep 64-bit
// counters in it; a sliced tensor could start mid-word and fault on the atomics).
void check_scratch(const Arg& a, int64_t elems) {
  check_output(a, {elems}, DType::Int32);
  MSRT_CHECK(reinterpret_cast<std::uintptr_t>(a.v.data) % 8 == 0, a.name,
             " must start on an 8-byte boundary, got an offset view (", a.v.describe(), ")");
}
#endif

// A (H, W) bool/uint8 mask as msrt::Mask2D (non-zero = set, strides in bytes). The CPU kernels
// need unit column stride (the Python layer copies other layouts).
msrt::Mask2D mask_view(const Arg& a, bool unit_column_stride) {
  const TensorView& v = a.v;
  MSRT_CHECK(v.ndim() == 2, a.name, " must be 2-D, got ", v.describe());
  MSRT_CHECK(v.dtype == DType::Bool || v.dtype == DType::UInt8, a.name,
             " must be bool or uint8, got ", v.describe());
  MSRT_CHECK(v.shape[0] > 0 && v.shape[1] > 0, a.name, " must not be empty, got ", v.describe());
  msrt::Mask2D m;
  m.data = v.ptr<const uint8_t>();
  m.height = v.shape[0];
  m.width = v.shape[1];
  m.stride_y = v.strides[0];
  m.stride_x = v.shape[1] == 1 ? 1 : v.strides[1];
  MSRT_CHECK(!unit_column_stride || m.stride_x == 1, a.name,
             " must have unit column stride on the CPU (copy it with np.ascontiguousarray), got ",
             v.describe());
  return m;
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
  d["cpu_threads"] = msrt::cpu::default_threads();
  return d;
}

// ================================================================ op: connected components
// Host: label_components_cpu(mask, connectivity, threads) -> (labels (H, W) int32, areas (K,)
// int64, boxes (K, 4) int64); count / keep-largest / fill-holes likewise return new arrays.
// CUDA: label_components_cuda writes labels and returns K (synchronises the stream);
// component_stats_cuda, keep_largest_component_cuda and fill_holes_cuda then run on its labels.

// Masks of the labelling kernels: int32 pixel indices.
msrt::Mask2D label_mask(const Arg& a, bool unit_column_stride) {
  const msrt::Mask2D m = mask_view(a, unit_column_stride);
  MSRT_CHECK(m.height * m.width < (int64_t(1) << 31), a.name,
             " must have fewer than 2**31 pixels, got ", a.v.describe());
  return m;
}

void check_connectivity(int connectivity) {
  MSRT_CHECK(connectivity == 4 || connectivity == 8, "connectivity must be 4 or 8, got ",
             connectivity);
}

// The host mask of a `_cpu` entry point.
msrt::Mask2D host_label_mask(const Arg& a, int connectivity) {
  require_host({&a});
  check_connectivity(connectivity);
  return label_mask(a, true);
}

py::tuple label_components_cpu(const py::handle& mask, int connectivity, int threads) {
  const Arg a(mask, "mask");
  const msrt::Mask2D m = host_label_mask(a, connectivity);
  py::array_t<int32_t> labels({py::ssize_t(m.height), py::ssize_t(m.width)});
  int32_t* out = labels.mutable_data();
  msrt::ComponentStats stats;
  {
    py::gil_scoped_release nogil;
    msrt::cpu::label_components(m, connectivity, out, &stats, threads);
  }
  const py::ssize_t k = py::ssize_t(stats.areas.size());
  py::array_t<int64_t> areas(k);
  py::array_t<int64_t> boxes({k, py::ssize_t(4)});
  std::copy(stats.areas.begin(), stats.areas.end(), areas.mutable_data());
  std::copy(stats.boxes.begin(), stats.boxes.end(), boxes.mutable_data());
  return py::make_tuple(labels, areas, boxes);
}

int64_t count_components_cpu(const py::handle& mask, int connectivity, int threads) {
  const Arg a(mask, "mask");
  const msrt::Mask2D m = host_label_mask(a, connectivity);
  py::gil_scoped_release nogil;
  return msrt::cpu::count_components(m, connectivity, threads);
}

// A new (H, W) bool array written by kernel(mask, out) without the GIL.
template <typename Kernel>
py::array bool_image_cpu(const py::handle& mask, int connectivity, Kernel&& kernel) {
  const Arg a(mask, "mask");
  const msrt::Mask2D m = host_label_mask(a, connectivity);
  py::array out(py::dtype("?"),
                std::vector<py::ssize_t>{py::ssize_t(m.height), py::ssize_t(m.width)});
  auto* o = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    kernel(m, o);
  }
  return out;
}

py::array keep_largest_component_cpu(const py::handle& mask, int connectivity, int threads) {
  return bool_image_cpu(mask, connectivity, [&](const msrt::Mask2D& m, uint8_t* o) {
    msrt::cpu::keep_largest_component(m, connectivity, o, threads);
  });
}

py::array fill_holes_cpu(const py::handle& mask, int connectivity, int64_t max_area, int threads) {
  return bool_image_cpu(mask, connectivity, [&](const msrt::Mask2D& m, uint8_t* o) {
    msrt::cpu::fill_holes(m, connectivity, max_area, o, threads);
  });
}

#ifdef MSRT_WITH_CUDA
int64_t label_components_cuda(const py::handle& mask, const py::handle& labels,
                              const py::handle& scratch, int connectivity, bool invert,
                              std::uintptr_t stream) {
  const Arg a(mask, "mask", stream), l(labels, "labels", stream), s(scratch, "scratch", stream);
  require_cuda({&a, &l, &s});
  const msrt::Mask2D m = label_mask(a, false);
  check_connectivity(connectivity);
  check_output(l, {m.height, m.width}, DType::Int32);
  check_scratch(s, msrt::cuda::label_scratch_elems(m.height, m.width));
  py::gil_scoped_release nogil;
  return msrt::cuda::label_components(m, connectivity, invert, l.v.ptr<int32_t>(),
                                      s.v.ptr<int32_t>(), a.v.device_id, a.v.stream);
}

void component_stats_cuda(const py::handle& labels, const py::handle& areas,
                          const py::handle& boxes, std::uintptr_t stream) {
  const Arg l(labels, "labels", stream), a(areas, "areas", stream), b(boxes, "boxes", stream);
  require_cuda({&l, &a, &b});
  msrt::check_ndim(l.v, "labels", 2, 2);
  check_dense(l, l.v.shape, DType::Int32);
  msrt::check_ndim(a.v, "areas", 1, 1);
  const int64_t k = a.v.shape[0];
  check_output(a, {k}, DType::Int64);
  check_output(b, {k, 4}, DType::Int64);
  py::gil_scoped_release nogil;
  msrt::cuda::component_stats(l.v.ptr<int32_t>(), l.v.shape[0], l.v.shape[1], k, a.v.ptr<int64_t>(),
                              b.v.ptr<int64_t>(), l.v.device_id, l.v.stream);
}

void keep_largest_component_cuda(const py::handle& labels, const py::handle& areas,
                                 const py::handle& scratch, const py::handle& out,
                                 std::uintptr_t stream) {
  const Arg l(labels, "labels", stream), a(areas, "areas", stream), s(scratch, "scratch", stream),
      o(out, "out", stream);
  require_cuda({&l, &a, &s, &o});
  msrt::check_ndim(l.v, "labels", 2, 2);
  msrt::check_ndim(a.v, "areas", 1, 1);
  const int64_t h = l.v.shape[0], w = l.v.shape[1];
  check_dense(l, {h, w}, DType::Int32);
  check_dense(a, a.v.shape, DType::Int64);
  check_scratch(s, msrt::cuda::label_scratch_elems(h, w));
  check_output(o, {h, w}, DType::Bool);
  py::gil_scoped_release nogil;
  msrt::cuda::keep_largest_component(l.v.ptr<int32_t>(), h, w, a.v.ptr<int64_t>(), a.v.shape[0],
                                     s.v.ptr<int32_t>(), o.v.ptr<uint8_t>(), l.v.device_id,
                                     l.v.stream);
}

void fill_holes_cuda(const py::handle& mask, const py::handle& bg_labels, const py::handle& areas,
                     const py::handle& boxes, int64_t max_area, const py::handle& out,
                     std::uintptr_t stream) {
  const Arg m(mask, "mask", stream), l(bg_labels, "bg_labels", stream), a(areas, "areas", stream),
      b(boxes, "boxes", stream), o(out, "out", stream);
  require_cuda({&m, &l, &a, &b, &o});
  const msrt::Mask2D mk = label_mask(m, false);
  msrt::check_ndim(a.v, "areas", 1, 1);
  const int64_t k = a.v.shape[0];
  check_dense(l, {mk.height, mk.width}, DType::Int32);
  check_dense(a, {k}, DType::Int64);
  check_dense(b, {k, 4}, DType::Int64);
  check_output(o, {mk.height, mk.width}, DType::Bool);
  py::gil_scoped_release nogil;
  msrt::cuda::fill_holes(mk, l.v.ptr<int32_t>(), a.v.ptr<int64_t>(), b.v.ptr<int64_t>(), max_area,
                         o.v.ptr<uint8_t>(), m.v.device_id, m.v.stream);
}
#endif

void register_components(py::module_& m) {
  m.def("label_components_cpu", &label_components_cpu, py::arg("mask"), py::arg("connectivity") = 8,
        py::arg("threads") = 0,
        "(H, W) bool/uint8 -> (labels (H, W) int32, areas (K,) int64, boxes (K, 4) int64).");
  m.def("count_components_cpu", &count_components_cpu, py::arg("mask"), py::arg("connectivity") = 8,
        py::arg("threads") = 0);
  m.def("keep_largest_component_cpu", &keep_largest_component_cpu, py::arg("mask"),
        py::arg("connectivity") = 8, py::arg("threads") = 0);
  m.def("fill_holes_cpu", &fill_holes_cpu, py::arg("mask"), py::arg("connectivity") = 8,
        py::arg("max_area") = -1, py::arg("threads") = 0, "max_area < 0: fill every hole.");
#ifdef MSRT_WITH_CUDA
  m.def("label_scratch_elems", &msrt::cuda::label_scratch_elems, py::arg("height"),
        py::arg("width"), "int32 elements of scratch label_components_cuda needs.");
  m.def("label_components_cuda", &label_components_cuda, py::arg("mask"), py::arg("labels"),
        py::arg("scratch"), py::arg("connectivity"), py::arg("invert"), py::arg("stream"),
        "DLPack capsules; writes labels, returns K (synchronises the stream).");
  m.def("component_stats_cuda", &component_stats_cuda, py::arg("labels"), py::arg("areas"),
        py::arg("boxes"), py::arg("stream"));
  m.def("keep_largest_component_cuda", &keep_largest_component_cuda, py::arg("labels"),
        py::arg("areas"), py::arg("scratch"), py::arg("out"), py::arg("stream"));
  m.def("fill_holes_cuda", &fill_holes_cuda, py::arg("mask"), py::arg("bg_labels"),
        py::arg("areas"), py::arg("boxes"), py::arg("max_area"), py::arg("out"), py::arg("stream"));
#endif
}

// ================================================================ op: distance transform + click
// Host: distance_transform_cpu / error_regions_cpu return new float32 arrays, next_click_cpu a
// tuple or None. CUDA: caller-allocated outputs and scratch (sizes from dt_scratch_elems /
// click_scratch_elems). Exclusions are a host (K, 2) int64 array of (x, y) pixels; entries
// outside the image are ignored.

// Masks of the distance kernels: int32 squared distances, INF = H + W + 2 with INF^2 + W^2 < 2^31.
msrt::Mask2D distance_mask(const Arg& a, bool unit_column_stride) {
  const msrt::Mask2D m = label_mask(a, unit_column_stride);
  const int64_t inf = m.height + m.width + 2;
  MSRT_CHECK(inf * inf + m.width * m.width < (int64_t(1) << 31), a.name,
             " is too large for the distance transform (H + W must stay below ~30000), got ",
             a.v.describe());
  return m;
}

// The (pred, gt) pair of the click simulator: same H x W.
std::pair<msrt::Mask2D, msrt::Mask2D> mask_pair(const Arg& pred, const Arg& gt,
                                                bool unit_column_stride) {
  const msrt::Mask2D p = distance_mask(pred, unit_column_stride);
  const msrt::Mask2D g = distance_mask(gt, unit_column_stride);
  MSRT_CHECK(p.height == g.height && p.width == g.width,
             "pred and gt must have the same H x W, got ", pred.v.describe(), " and ",
             gt.v.describe());
  return {p, g};
}

py::array_t<int64_t> exclusions(const py::object& exclude) {
  if (exclude.is_none()) return py::array_t<int64_t>(std::vector<py::ssize_t>{0, 2});
  auto ex = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(exclude);
  MSRT_CHECK(ex && (ex.size() == 0 || (ex.ndim() == 2 && ex.shape(1) == 2)),
             "exclude must be a (K, 2) integer array of (x, y) pixels");
  return ex;
}

py::object click_result(const msrt::ClickResult& r) {
  if (!r.found) return py::none();
  return py::make_tuple(r.x, r.y, r.positive, double(r.distance));
}

py::array_t<float> distance_transform_cpu(const py::handle& mask, int threads) {
  const Arg a(mask, "mask");
  require_host({&a});
  const msrt::Mask2D m = distance_mask(a, true);
  py::array_t<float> out({py::ssize_t(m.height), py::ssize_t(m.width)});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    msrt::cpu::distance_transform(m, o, threads);
  }
  return out;
}

py::tuple error_regions_cpu(const py::handle& pred, const py::handle& gt, const py::object& exclude,
                            int threads) {
  const Arg p(pred, "pred"), g(gt, "gt");
  require_host({&p, &g});
  const auto [pm, gm] = mask_pair(p, g, true);
  const auto ex = exclusions(exclude);
  const py::ssize_t h = py::ssize_t(pm.height), w = py::ssize_t(pm.width);
  py::array_t<float> fn({h, w}), fp({h, w});
  float* a = fn.mutable_data();
  float* b = fp.mutable_data();
  {
    py::gil_scoped_release nogil;
    msrt::cpu::error_regions(pm, gm, ex.data(), ex.size() / 2, a, b, threads);
  }
  return py::make_tuple(fn, fp);
}

py::object next_click_cpu(const py::handle& pred, const py::handle& gt, const py::object& exclude,
                          int threads) {
  const Arg p(pred, "pred"), g(gt, "gt");
  require_host({&p, &g});
  const auto [pm, gm] = mask_pair(p, g, true);
  const auto ex = exclusions(exclude);
  msrt::ClickResult r;
  {
    py::gil_scoped_release nogil;
    r = msrt::cpu::next_click(pm, gm, ex.data(), ex.size() / 2, threads);
  }
  return click_result(r);
}

#ifdef MSRT_WITH_CUDA
void distance_transform_cuda(const py::handle& mask, const py::handle& out,
                             const py::handle& scratch, std::uintptr_t stream) {
  const Arg a(mask, "mask", stream), o(out, "out", stream), s(scratch, "scratch", stream);
  require_cuda({&a, &o, &s});
  const msrt::Mask2D m = distance_mask(a, false);
  check_output(o, {m.height, m.width}, DType::Float32);
  check_scratch(s, msrt::cuda::dt_scratch_elems(0));
  py::gil_scoped_release nogil;
  msrt::cuda::distance_transform(m, o.v.ptr<float>(), s.v.ptr<int32_t>(), a.v.device_id,
                                 a.v.stream);
}

void error_regions_cuda(const py::handle& pred, const py::handle& gt, const py::object& exclude,
                        const py::handle& dist_fn, const py::handle& dist_fp,
                        const py::handle& scratch, std::uintptr_t stream) {
  const Arg p(pred, "pred", stream), g(gt, "gt", stream), fn(dist_fn, "dist_fn", stream),
      fp(dist_fp, "dist_fp", stream), s(scratch, "scratch", stream);
  require_cuda({&p, &g, &fn, &fp, &s});
  const auto [pm, gm] = mask_pair(p, g, false);
  const auto ex = exclusions(exclude);
  const int64_t n_ex = ex.size() / 2;
  check_output(fn, {pm.height, pm.width}, DType::Float32);
  check_output(fp, {pm.height, pm.width}, DType::Float32);
  check_scratch(s, msrt::cuda::dt_scratch_elems(n_ex));
  py::gil_scoped_release nogil;
  msrt::cuda::error_regions(pm, gm, ex.data(), n_ex, fn.v.ptr<float>(), fp.v.ptr<float>(),
                            s.v.ptr<int32_t>(), p.v.device_id, p.v.stream);
}

py::object next_click_cuda(const py::handle& pred, const py::handle& gt, const py::object& exclude,
                           const py::handle& scratch, std::uintptr_t stream) {
  const Arg p(pred, "pred", stream), g(gt, "gt", stream), s(scratch, "scratch", stream);
  require_cuda({&p, &g, &s});
  const auto [pm, gm] = mask_pair(p, g, false);
  const auto ex = exclusions(exclude);
  const int64_t n_ex = ex.size() / 2;
  check_scratch(s, msrt::cuda::click_scratch_elems(pm.height, pm.width, n_ex));
  msrt::ClickResult r;
  {
    py::gil_scoped_release nogil;
    r = msrt::cuda::next_click(pm, gm, ex.data(), n_ex, s.v.ptr<int32_t>(), p.v.device_id,
                               p.v.stream);
  }
  return click_result(r);
}
#endif

void register_distance(py::module_& m) {
  m.def("distance_transform_cpu", &distance_transform_cpu, py::arg("mask"), py::arg("threads") = 0,
        "(H, W) bool/uint8 -> (H, W) float32 exact Euclidean distance.");
  m.def("error_regions_cpu", &error_regions_cpu, py::arg("pred"), py::arg("gt"),
        py::arg("exclude") = py::none(), py::arg("threads") = 0,
        "-> (dist_fn, dist_fp), each (H, W) float32 with a 1-px zero border.");
  m.def("next_click_cpu", &next_click_cpu, py::arg("pred"), py::arg("gt"),
        py::arg("exclude") = py::none(), py::arg("threads") = 0,
        "-> (x, y, positive, distance) or None when pred == gt.");
#ifdef MSRT_WITH_CUDA
  m.def("dt_scratch_elems", &msrt::cuda::dt_scratch_elems, py::arg("n_exclude"));
  m.def("click_scratch_elems", &msrt::cuda::click_scratch_elems, py::arg("height"),
        py::arg("width"), py::arg("n_exclude"));
  m.def("cuda_max_width", &msrt::cuda::max_width, py::arg("device"),
        "Widest row the CUDA distance transform takes on this device.");
  m.def("distance_transform_cuda", &distance_transform_cuda, py::arg("mask"), py::arg("out"),
        py::arg("scratch"), py::arg("stream"));
  m.def("error_regions_cuda", &error_regions_cuda, py::arg("pred"), py::arg("gt"),
        py::arg("exclude"), py::arg("dist_fn"), py::arg("dist_fp"), py::arg("scratch"),
        py::arg("stream"));
  m.def("next_click_cuda", &next_click_cuda, py::arg("pred"), py::arg("gt"), py::arg("exclude"),
        py::arg("scratch"), py::arg("stream"), "Synchronises the stream.");
#endif
}

// ================================================================ op: mask metrics
// mask_counts(pred, target, out, threshold, stream, threads): pred (N, H, W) or (H, W), target
// (H, W) or (N, H, W) (a 2-D or length-1 operand broadcasts), out (N, 3) int64 <- intersection,
// pred area, target area. Float operands are binarised as value > threshold in their own
// precision.
msrt::MaskOperand mask_operand(const Arg& a, int64_t n, double threshold) {
  msrt::check_ndim(a.v, a.name, 2, 3);
  const bool batched = a.v.ndim() == 3;
  msrt::MaskOperand op;
  op.data = a.v.data;
  op.dtype = a.v.dtype;
  op.stride_n = batched && a.v.shape[0] != 1 ? a.v.strides[0] : 0;
  op.stride_y = a.v.strides[a.v.ndim() - 2];
  op.stride_x = a.v.strides[a.v.ndim() - 1];
  op.threshold = threshold;
  MSRT_CHECK(!batched || a.v.shape[0] == n || a.v.shape[0] == 1, a.name, " must hold ", n,
             " masks (or 1 to broadcast), got ", a.v.describe());
  msrt::with_mask_type(a.v.dtype, a.name, [](auto) {});
  return op;
}

void mask_counts(const py::handle& pred, const py::handle& target, const py::handle& out,
                 double threshold, std::uintptr_t stream, int threads) {
  const Arg p(pred, "pred", stream), t(target, "target", stream), o(out, "out", stream);
  msrt::check_ndim(p.v, "pred", 2, 3);
  msrt::check_ndim(t.v, "target", 2, 3);
  const int64_t np_ = p.v.ndim() == 3 ? p.v.shape[0] : 1;
  const int64_t nt = t.v.ndim() == 3 ? t.v.shape[0] : 1;
  msrt::MaskShape s;
  s.n = std::max(np_, nt);
  s.h = p.v.shape[p.v.ndim() - 2];
  s.w = p.v.shape[p.v.ndim() - 1];
  MSRT_CHECK(t.v.shape[t.v.ndim() - 2] == s.h && t.v.shape[t.v.ndim() - 1] == s.w,
             "pred and target must have the same H x W, got ", p.v.describe(), " and ",
             t.v.describe());
  const msrt::MaskOperand po = mask_operand(p, s.n, threshold);
  const msrt::MaskOperand to = mask_operand(t, s.n, threshold);
  check_output(o, {s.n, 3}, DType::Int64);
  const bool cuda = on_cuda({&p, &t, &o});
  py::gil_scoped_release nogil;
  if (cuda) {
#ifdef MSRT_WITH_CUDA
    msrt::cuda::mask_counts(po, to, s, o.v.ptr<int64_t>(), p.v.device_id, p.v.stream);
#endif
  } else {
    msrt::cpu::mask_counts(po, to, s, o.v.ptr<int64_t>(), threads);
  }
}

// iou_dice(counts, out): host (N, 3) int64 counts -> out (N, 2) float64 IoU, Dice with the
// float64 arithmetic of reference.iou_dice_from_counts (I / max(U, 1), 2I / max(|P| + |R|, 1);
// both empty -> 1.0): bit-identical, without NumPy's per-ufunc overhead on tiny arrays.
void iou_dice(const py::handle& counts, const py::handle& out) {
  const Arg c(counts, "counts"), o(out, "out");
  require_host({&c, &o});
  MSRT_CHECK(c.v.ndim() == 2 && c.v.shape[1] == 3, "counts must be (N, 3), got ", c.v.describe());
  const int64_t n = c.v.shape[0];
  check_dense(c, {n, 3}, DType::Int64);
  check_output(o, {n, 2}, DType::Float64);
  const int64_t* k = c.v.ptr<int64_t>();
  double* s = o.v.ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t inter = k[3 * i], total = k[3 * i + 1] + k[3 * i + 2], uni = total - inter;
    s[2 * i] = uni == 0 ? 1.0 : double(inter) / double(std::max<int64_t>(uni, 1));
    s[2 * i + 1] = total == 0 ? 1.0 : double(2 * inter) / double(std::max<int64_t>(total, 1));
  }
}

void register_mask_metrics(py::module_& m) {
  m.def("mask_counts", &mask_counts, py::arg("pred"), py::arg("target"), py::arg("out"),
        py::arg("threshold") = 0.0, py::arg("stream") = 0, py::arg("threads") = 0,
        "Per-mask (intersection, pred area, target area) into out (N, 3) int64.");
  m.def("iou_dice", &iou_dice, py::arg("counts"), py::arg("out"),
        "IoU and Dice (N, 2) float64 from (N, 3) int64 counts.");
}

// ================================================================ op: overlay rendering
// render_overlay(view, mask, out, content_box, color, alpha_weight, stream, threads): view
// (Vh, Vw, 3) uint8, mask (H, W) bool/uint8, out like view (contiguous); content_box
// (x0, y0, w, h) inside the view; color 0..255 each; alpha_weight = round(256 alpha) in 0..256.
void render_overlay(const py::handle& view, const py::handle& mask, const py::handle& out,
                    std::array<int64_t, 4> box, std::array<int32_t, 3> color, int32_t alpha_weight,
                    std::uintptr_t stream, int threads) {
  const Arg v(view, "view", stream), mk(mask, "mask", stream), o(out, "out", stream);
  MSRT_CHECK(v.v.ndim() == 3 && v.v.shape[2] == 3, "view must be (V, V, 3), got ", v.v.describe());
  msrt::check_dtype(v.v, "view", DType::UInt8);
  const msrt::Mask2D m = mask_view(mk, false);
  check_output(o, v.v.shape, DType::UInt8);
  msrt::OverlayArgs a;
  a.view = v.v.ptr<uint8_t>();
  a.view_h = v.v.shape[0];
  a.view_w = v.v.shape[1];
  a.view_sy = v.v.strides[0];
  a.view_sx = v.v.strides[1];
  a.view_sc = v.v.strides[2];
  a.mask = m.data;
  a.mask_h = m.height;
  a.mask_w = m.width;
  a.mask_sy = m.stride_y;
  a.mask_sx = m.stride_x;
  a.x0 = box[0];
  a.y0 = box[1];
  a.box_w = box[2];
  a.box_h = box[3];
  MSRT_CHECK(a.box_w >= 1 && a.box_h >= 1 && a.x0 >= 0 && a.y0 >= 0 && a.x0 + a.box_w <= a.view_w &&
                 a.y0 + a.box_h <= a.view_h,
             "content_box (", a.x0, ", ", a.y0, ", ", a.box_w, ", ", a.box_h,
             ") must lie inside the view ", v.v.describe());
  for (int c = 0; c < 3; ++c) {
    MSRT_CHECK(color[c] >= 0 && color[c] <= 255, "color must be 3 values in 0..255, got ", color[0],
               ", ", color[1], ", ", color[2]);
    a.color[c] = color[c];
  }
  MSRT_CHECK(alpha_weight >= 0 && alpha_weight <= 256, "alpha_weight must be in 0..256, got ",
             alpha_weight);
  a.alpha_weight = alpha_weight;
  a.out = o.v.ptr<uint8_t>();
  const bool cuda = on_cuda({&v, &mk, &o});
  py::gil_scoped_release nogil;
  if (cuda) {
#ifdef MSRT_WITH_CUDA
    msrt::cuda::render_overlay(a, v.v.device_id, v.v.stream);
#endif
  } else {
    msrt::cpu::render_overlay(a, threads);
  }
}

void register_overlay(py::module_& m) {
  m.def("render_overlay", &render_overlay, py::arg("view"), py::arg("mask"), py::arg("out"),
        py::arg("content_box"), py::arg("color"), py::arg("alpha_weight"), py::arg("stream") = 0,
        py::arg("threads") = 0,
        "Nearest-neighbour mask into content_box of the view, blended with color; into out.");
}

// ================================================================ op: mask post-processing
// postprocess_masks(logits, input_size, crop_size, output_size, threshold, out_logits, out_masks,
// workspace, stream, threads): logits (N, h, w) float32; out_logits (N, H, W) float32 or None;
// out_masks (N, H, W) bool; workspace (>= N*h*W,) float64, CUDA only.
void postprocess_masks(const py::handle& logits, std::pair<int64_t, int64_t> input_size,
                       std::pair<int64_t, int64_t> crop_size,
                       std::pair<int64_t, int64_t> output_size, double threshold,
                       const py::handle& out_logits, const py::handle& out_masks,
                       const py::handle& workspace, std::uintptr_t stream, int threads) {
  const Arg x(logits, "low_res_logits", stream), om(out_masks, "out_masks", stream);
  msrt::check_ndim(x.v, "low_res_logits", 3, 3);
  msrt::check_dtype(x.v, "low_res_logits", DType::Float32);
  msrt::PostprocessArgs a;
  a.n = x.v.shape[0];
  a.h = x.v.shape[1];
  a.w = x.v.shape[2];
  MSRT_CHECK(a.h >= 1 && a.w >= 1, "low_res_logits must have h, w >= 1, got ", x.v.describe());
  a.stride_n = x.v.strides[0];
  a.stride_y = x.v.strides[1];
  a.stride_x = x.v.strides[2];
  std::tie(a.in_h, a.in_w) = input_size;
  std::tie(a.crop_h, a.crop_w) = crop_size;
  std::tie(a.out_h, a.out_w) = output_size;
  MSRT_CHECK(a.in_h >= 1 && a.in_w >= 1, "input_size must be >= 1, got (", a.in_h, ", ", a.in_w,
             ")");
  MSRT_CHECK(a.crop_h >= 1 && a.crop_w >= 1 && a.crop_h <= a.in_h && a.crop_w <= a.in_w,
             "resized_size must be >= 1 and fit inside input_size (", a.in_h, ", ", a.in_w,
             "), got (", a.crop_h, ", ", a.crop_w, ")");
  MSRT_CHECK(a.out_h >= 1 && a.out_w >= 1, "original_size must be >= 1, got (", a.out_h, ", ",
             a.out_w, ")");
  a.threshold = threshold;
  a.logits = x.v.ptr<float>();
  const std::vector<int64_t> shape = {a.n, a.out_h, a.out_w};
  MSRT_CHECK(om.v.dtype == DType::Bool || om.v.dtype == DType::UInt8,
             "out_masks must be bool, got ", om.v.describe());
  check_output(om, shape, om.v.dtype);
  a.out_masks = om.v.ptr<uint8_t>();
  std::optional<Arg> ol;
  if (!out_logits.is_none()) {
    ol.emplace(out_logits, "out_logits", stream);
    check_output(*ol, shape, DType::Float32);
    a.out_logits = ol->v.ptr<float>();
  }
  if (ol ? on_cuda({&x, &om, &*ol}) : on_cuda({&x, &om})) {
#ifdef MSRT_WITH_CUDA
    const Arg ws(workspace, "workspace", stream);
    require_cuda({&x, &ws});
    msrt::check_ndim(ws.v, "workspace", 1, 1);
    check_output(ws, ws.v.shape, DType::Float64);
    py::gil_scoped_release nogil;
    msrt::cuda::postprocess_masks(a, ws.v.ptr<double>(), ws.v.shape[0], x.v.device_id, x.v.stream);
#endif
    return;
  }
  (void)workspace;  // CUDA only
  py::gil_scoped_release nogil;
  msrt::cpu::postprocess_masks(a, threads);
}

void register_postprocess(py::module_& m) {
  m.def("postprocess_masks", &postprocess_masks, py::arg("logits"), py::arg("input_size"),
        py::arg("crop_size"), py::arg("output_size"), py::arg("threshold"), py::arg("out_logits"),
        py::arg("out_masks"), py::arg("workspace") = py::none(), py::arg("stream") = 0,
        py::arg("threads") = 0,
        "Low-res logits -> bilinear x2 with crop -> logits (optional) and thresholded masks.");
}

// ================================================================ op: prompt-embedding fusion
// encode_sparse_prompts(coords, labels, gaussian, label_embed, input_h, input_w, out, error_flag,
// stream): coords (S, 2) float32, labels (S,) int32/int64, gaussian (2, C/2) and label_embed
// (5, C) float32 contiguous, out (slots >= S, C) float32. error_flag: (1,) int32, required on
// CUDA (a bad label sets it to 1 and NaNs its row), optional on the host (bad labels raise).
// Single-threaded and run with the GIL held: a call is a few microseconds (releasing costs more).
void encode_sparse_prompts(const py::handle& coords, const py::handle& labels,
                           const py::handle& gaussian, const py::handle& label_embed,
                           double input_h, double input_w, const py::handle& out,
                           const py::handle& error_flag, std::uintptr_t stream) {
  const Arg c(coords, "coords", stream), l(labels, "labels", stream),
      g(gaussian, "gaussian", stream), e(label_embed, "label_embed", stream), o(out, "out", stream);
  MSRT_CHECK(c.v.ndim() == 2 && c.v.shape[1] == 2, "coords must be (S, 2), got ", c.v.describe());
  msrt::check_dtype(c.v, "coords", DType::Float32);
  const int64_t s = c.v.shape[0];
  MSRT_CHECK(l.v.ndim() == 1 && l.v.shape[0] == s, "labels must be (", s,
             ",) to match coords, got ", l.v.describe());
  msrt::with_label_type(l.v.dtype, [](auto) {});
  msrt::check_ndim(e.v, "label_embed", 2, 2);
  const int64_t dim = e.v.shape[1];
  MSRT_CHECK(e.v.shape[0] == 5 && dim % 2 == 0 && dim > 0,
             "label_embed must be (5, C) with C even, got ", e.v.describe());
  check_dense(e, {5, dim}, DType::Float32);
  check_dense(g, {2, dim / 2}, DType::Float32);
  MSRT_CHECK(o.v.ndim() == 2 && o.v.shape[1] == dim && o.v.shape[0] >= s,
             "out must be (slots >= ", s, ", ", dim, "), got ", o.v.describe());
  check_output(o, o.v.shape, DType::Float32);
  MSRT_CHECK(input_h > 0 && input_w > 0, "input_size must be positive, got (", input_h, ", ",
             input_w, ")");
  msrt::PromptFusionArgs a;
  a.coords = c.v.ptr<float>();
  a.coords_stride_s = c.v.strides[0];
  a.coords_stride_c = c.v.strides[1];
  a.labels = l.v.data;
  a.labels_dtype = l.v.dtype;
  a.labels_stride = l.v.strides[0];
  a.gaussian = g.v.ptr<float>();
  a.label_embed = e.v.ptr<float>();
  a.num_tokens = s;
  a.num_slots = o.v.shape[0];
  a.embed_dim = dim;
  a.input_h = input_h;
  a.input_w = input_w;
  a.out = o.v.ptr<float>();
  if (on_cuda({&c, &l, &g, &e, &o})) {
#ifdef MSRT_WITH_CUDA
    const Arg f(error_flag, "error_flag", stream);
    require_cuda({&c, &f});
    check_output(f, {1}, DType::Int32);
    msrt::cuda::encode_sparse_prompts(a, f.v.ptr<int32_t>(), c.v.device_id, c.v.stream);
#endif
    return;
  }
  std::optional<Arg> f;  // same contract on both devices: 0 after a successful call
  if (!error_flag.is_none()) {
    f.emplace(error_flag, "error_flag", stream);
    require_host({&c, &*f});
    check_output(*f, {1}, DType::Int32);
  }
  msrt::cpu::encode_sparse_prompts(a);
  if (f) *f->v.ptr<int32_t>() = 0;
}

void register_prompt_fusion(py::module_& m) {
  m.def("encode_sparse_prompts", &encode_sparse_prompts, py::arg("coords"), py::arg("labels"),
        py::arg("gaussian"), py::arg("label_embed"), py::arg("input_h"), py::arg("input_w"),
        py::arg("out"), py::arg("error_flag") = py::none(), py::arg("stream") = 0,
        "SAM sparse prompt embeddings of S tokens into out (slots, C) float32.");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "medsam_agent_rt native kernels (CPU, and CUDA when compiled with it)";
  py::register_exception<msrt::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  m.def("build_info", &build_info,
        "Build facts: version, compiler, CUDA, archs; the CPU kernels' default thread count.");
  m.def("cuda_device_count", &msrt::cuda_device_count,
        "Number of visible CUDA devices (0 without a driver or a CUDA build).");
  m.def("cuda_runtime_version", &msrt::cuda_runtime_version);

  register_components(m);  // the order of csrc/ops/*.h
  register_distance(m);
  register_mask_metrics(m);
  register_overlay(m);
  register_postprocess(m);
  register_prompt_fusion(m);
}
