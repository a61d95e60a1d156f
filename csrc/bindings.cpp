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
#include "ops/components.h"
#include "ops/distance.h"

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
// CPU: NumPy in, NumPy out (allocated here), the GIL released while the kernel runs.
// CUDA: DLPack capsules in, outputs allocated by the caller with the input's framework.

// A 2-D bool/uint8 view as msrt::Mask2D; CPU kernels need unit column stride.
msrt::Mask2D cc_mask(const TensorView& v, const char* name, bool unit_column_stride) {
  MSRT_CHECK(v.ndim() == 2, name, " must be 2-D, got ", v.describe());
  MSRT_CHECK(v.dtype == DType::Bool || v.dtype == DType::UInt8, name,
             " must be bool or uint8, got ", v.describe());
  MSRT_CHECK(v.shape[0] > 0 && v.shape[1] > 0, name, " must not be empty, got ", v.describe());
  MSRT_CHECK(v.numel() < (int64_t(1) << 31), name, " must have fewer than 2**31 pixels, got ",
             v.describe());
  msrt::Mask2D m;
  m.data = static_cast<const uint8_t*>(v.data);
  m.height = v.shape[0];
  m.width = v.shape[1];
  m.stride_y = v.strides[0];
  m.stride_x = v.shape[1] == 1 ? 1 : v.strides[1];
  MSRT_CHECK(!unit_column_stride || m.stride_x == 1, name,
             " must have unit column stride on the CPU (copy it with np.ascontiguousarray), got ",
             v.describe());
  return m;
}

void cc_check_connectivity(int connectivity) {
  MSRT_CHECK(connectivity == 4 || connectivity == 8, "connectivity must be 4 or 8, got ",
             connectivity);
}

py::array cc_bool_array(int64_t h, int64_t w) {
  return py::array(py::dtype("?"), std::vector<py::ssize_t>{py::ssize_t(h), py::ssize_t(w)});
}

py::tuple label_components_cpu(const py::array& mask, int connectivity, int threads) {
  const msrt::Mask2D m = cc_mask(view_numpy(mask, "mask"), "mask", true);
  cc_check_connectivity(connectivity);
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

int64_t count_components_cpu(const py::array& mask, int connectivity, int threads) {
  const msrt::Mask2D m = cc_mask(view_numpy(mask, "mask"), "mask", true);
  cc_check_connectivity(connectivity);
  py::gil_scoped_release nogil;
  return msrt::cpu::count_components(m, connectivity, threads);
}

py::array keep_largest_component_cpu(const py::array& mask, int connectivity, int threads) {
  const msrt::Mask2D m = cc_mask(view_numpy(mask, "mask"), "mask", true);
  cc_check_connectivity(connectivity);
  py::array out = cc_bool_array(m.height, m.width);
  auto* o = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    msrt::cpu::keep_largest_component(m, connectivity, o, threads);
  }
  return out;
}

py::array fill_holes_cpu(const py::array& mask, int connectivity, int64_t max_area,
                         int threads) {
  const msrt::Mask2D m = cc_mask(view_numpy(mask, "mask"), "mask", true);
  cc_check_connectivity(connectivity);
  py::array out = cc_bool_array(m.height, m.width);
  auto* o = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    msrt::cpu::fill_holes(m, connectivity, max_area, o, threads);
  }
  return out;
}

#ifdef MSRT_WITH_CUDA
// A DLPack capsule that must hold a CUDA tensor; `hold` owns it for the call.
TensorView cc_cuda_view(const py::capsule& cap, const char* name, std::uintptr_t stream,
                        DLPackHold& hold) {
  TensorView v = view_dlpack(cap, name, stream, hold);
  MSRT_CHECK(v.device == msrt::Device::CUDA, name, " must be a CUDA tensor, got ", v.describe());
  return v;
}

// A caller-allocated CUDA output: dtype, shape and C-contiguity as the kernels expect.
void cc_cuda_out(const TensorView& v, const char* name, DType dtype,
                 const std::vector<int64_t>& shape) {
  check_dtype(v, name, dtype);
  MSRT_CHECK(v.shape == shape, name, " has the wrong shape: ", v.describe());
  check_contiguous(v, name);
}

int64_t label_components_cuda(const py::capsule& mask, const py::capsule& labels,
                              const py::capsule& scratch, int connectivity, bool invert,
                              std::uintptr_t stream) {
  DLPackHold hm, hl, hs;
  const TensorView vm = cc_cuda_view(mask, "mask", stream, hm);
  const TensorView vl = cc_cuda_view(labels, "labels", stream, hl);
  const TensorView vs = cc_cuda_view(scratch, "scratch", stream, hs);
  const msrt::Mask2D m = cc_mask(vm, "mask", false);
  cc_check_connectivity(connectivity);
  cc_cuda_out(vl, "labels", DType::Int32, {m.height, m.width});
  cc_cuda_out(vs, "scratch", DType::Int32, {msrt::cuda::label_scratch_elems(m.height, m.width)});
  check_same_device(vm, "mask", vl, "labels");
  check_same_device(vm, "mask", vs, "scratch");
  py::gil_scoped_release nogil;
  return msrt::cuda::label_components(m, connectivity, invert, vl.ptr<int32_t>(),
                                      vs.ptr<int32_t>(), vm.device_id, vm.stream);
}

void component_stats_cuda(const py::capsule& labels, const py::capsule& areas,
                          const py::capsule& boxes, std::uintptr_t stream) {
  DLPackHold hl, ha, hb;
  const TensorView vl = cc_cuda_view(labels, "labels", stream, hl);
  const TensorView va = cc_cuda_view(areas, "areas", stream, ha);
  const TensorView vb = cc_cuda_view(boxes, "boxes", stream, hb);
  check_ndim(vl, "labels", 2, 2);
  cc_cuda_out(vl, "labels", DType::Int32, vl.shape);
  check_ndim(va, "areas", 1, 1);
  const int64_t k = va.shape[0];
  cc_cuda_out(va, "areas", DType::Int64, {k});
  cc_cuda_out(vb, "boxes", DType::Int64, {k, 4});
  check_same_device(vl, "labels", va, "areas");
  check_same_device(vl, "labels", vb, "boxes");
  py::gil_scoped_release nogil;
  msrt::cuda::component_stats(vl.ptr<int32_t>(), vl.shape[0], vl.shape[1], k, va.ptr<int64_t>(),
                              vb.ptr<int64_t>(), vl.device_id, vl.stream);
}

void keep_largest_component_cuda(const py::capsule& labels, const py::capsule& areas,
                                 const py::capsule& scratch, const py::capsule& out,
                                 std::uintptr_t stream) {
  DLPackHold hl, ha, hs, ho;
  const TensorView vl = cc_cuda_view(labels, "labels", stream, hl);
  const TensorView va = cc_cuda_view(areas, "areas", stream, ha);
  const TensorView vs = cc_cuda_view(scratch, "scratch", stream, hs);
  const TensorView vo = cc_cuda_view(out, "out", stream, ho);
  check_ndim(vl, "labels", 2, 2);
  check_ndim(va, "areas", 1, 1);
  const int64_t h = vl.shape[0], w = vl.shape[1];
  cc_cuda_out(vl, "labels", DType::Int32, {h, w});
  cc_cuda_out(va, "areas", DType::Int64, va.shape);
  cc_cuda_out(vs, "scratch", DType::Int32, {msrt::cuda::label_scratch_elems(h, w)});
  cc_cuda_out(vo, "out", DType::Bool, {h, w});
  for (const TensorView* t : {&va, &vs, &vo}) check_same_device(vl, "labels", *t, "outputs");
  py::gil_scoped_release nogil;
  msrt::cuda::keep_largest_component(vl.ptr<int32_t>(), h, w, va.ptr<int64_t>(), va.shape[0],
                                     vs.ptr<int32_t>(), vo.ptr<uint8_t>(), vl.device_id,
                                     vl.stream);
}

void fill_holes_cuda(const py::capsule& mask, const py::capsule& bg_labels,
                     const py::capsule& areas, const py::capsule& boxes, int64_t max_area,
                     const py::capsule& out, std::uintptr_t stream) {
  DLPackHold hm, hl, ha, hb, ho;
  const TensorView vm = cc_cuda_view(mask, "mask", stream, hm);
  const TensorView vl = cc_cuda_view(bg_labels, "bg_labels", stream, hl);
  const TensorView va = cc_cuda_view(areas, "areas", stream, ha);
  const TensorView vb = cc_cuda_view(boxes, "boxes", stream, hb);
  const TensorView vo = cc_cuda_view(out, "out", stream, ho);
  const msrt::Mask2D m = cc_mask(vm, "mask", false);
  check_ndim(va, "areas", 1, 1);
  const int64_t k = va.shape[0];
  cc_cuda_out(vl, "bg_labels", DType::Int32, {m.height, m.width});
  cc_cuda_out(va, "areas", DType::Int64, {k});
  cc_cuda_out(vb, "boxes", DType::Int64, {k, 4});
  cc_cuda_out(vo, "out", DType::Bool, {m.height, m.width});
  for (const TensorView* t : {&vl, &va, &vb, &vo}) check_same_device(vm, "mask", *t, "outputs");
  py::gil_scoped_release nogil;
  msrt::cuda::fill_holes(m, vl.ptr<int32_t>(), va.ptr<int64_t>(), vb.ptr<int64_t>(), max_area,
                         vo.ptr<uint8_t>(), vm.device_id, vm.stream);
}
#endif

void register_components(py::module_& m) {
  m.def("label_components_cpu", &label_components_cpu, py::arg("mask"),
        py::arg("connectivity") = 8, py::arg("threads") = 0,
        "(H, W) bool/uint8 -> (labels (H, W) int32, areas (K,) int64, boxes (K, 4) int64).");
  m.def("count_components_cpu", &count_components_cpu, py::arg("mask"),
        py::arg("connectivity") = 8, py::arg("threads") = 0);
  m.def("keep_largest_component_cpu", &keep_largest_component_cpu, py::arg("mask"),
        py::arg("connectivity") = 8, py::arg("threads") = 0);
  m.def("fill_holes_cpu", &fill_holes_cpu, py::arg("mask"), py::arg("connectivity") = 8,
        py::arg("max_area") = -1, py::arg("threads") = 0,
        "max_area < 0: fill every hole.");
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
        py::arg("areas"), py::arg("boxes"), py::arg("max_area"), py::arg("out"),
        py::arg("stream"));
#endif
}

// ================================================================ op: distance transform + click
// Masks are checked by cc_mask (section above). Exclusions arrive as a host (K, 2) int64 array of
// (x, y) pixels; out-of-image entries are ignored.

void dt_check_size(const msrt::Mask2D& m, const char* name) {
  // INF = H + W + 2 squared, plus W^2, must stay below 2^31 (int32 squared distances).
  const int64_t inf = m.height + m.width + 2;
  MSRT_CHECK(inf * inf + m.width * m.width < (int64_t(1) << 31), name,
             " is too large for the distance transform (H + W must stay below ~30000), got ",
             m.height, "x", m.width);
}

std::pair<const msrt::Mask2D, const msrt::Mask2D> dt_pair(const py::array& pred,
                                                          const py::array& gt) {
  const msrt::Mask2D p = cc_mask(view_numpy(pred, "pred"), "pred", true);
  const msrt::Mask2D g = cc_mask(view_numpy(gt, "gt"), "gt", true);
  MSRT_CHECK(p.height == g.height && p.width == g.width,
             "pred and gt must have the same H x W, got ", p.height, "x", p.width, " and ",
             g.height, "x", g.width);
  dt_check_size(p, "pred");
  return {p, g};
}

py::array_t<int64_t> dt_exclude(const py::object& exclude) {
  if (exclude.is_none()) return py::array_t<int64_t>(std::vector<py::ssize_t>{0, 2});
  auto ex = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(exclude);
  MSRT_CHECK(ex && (ex.size() == 0 || (ex.ndim() == 2 && ex.shape(1) == 2)),
             "exclude must be a (K, 2) integer array of (x, y) pixels");
  return ex;
}

py::array_t<float> distance_transform_cpu(const py::array& mask, int threads) {
  const msrt::Mask2D m = cc_mask(view_numpy(mask, "mask"), "mask", true);
  dt_check_size(m, "mask");
  py::array_t<float> out({py::ssize_t(m.height), py::ssize_t(m.width)});
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  msrt::cpu::distance_transform(m, o, threads);
  return out;
}

py::tuple error_regions_cpu(const py::array& pred, const py::array& gt,
                            const py::object& exclude, int threads) {
  const auto [p, g] = dt_pair(pred, gt);
  const auto ex = dt_exclude(exclude);
  const py::ssize_t h = py::ssize_t(p.height), w = py::ssize_t(p.width);
  py::array_t<float> fn({h, w}), fp({h, w});
  float* a = fn.mutable_data();
  float* b = fp.mutable_data();
  {
    py::gil_scoped_release nogil;
    msrt::cpu::error_regions(p, g, ex.data(), ex.size() / 2, a, b, threads);
  }
  return py::make_tuple(fn, fp);
}

py::object click_result(const msrt::ClickResult& r) {
  if (!r.found) return py::none();
  return py::make_tuple(r.x, r.y, r.positive, double(r.distance));
}

py::object next_click_cpu(const py::array& pred, const py::array& gt, const py::object& exclude,
                          int threads) {
  const auto [p, g] = dt_pair(pred, gt);
  const auto ex = dt_exclude(exclude);
  msrt::ClickResult r;
  {
    py::gil_scoped_release nogil;
    r = msrt::cpu::next_click(p, g, ex.data(), ex.size() / 2, threads);
  }
  return click_result(r);
}

#ifdef MSRT_WITH_CUDA
void distance_transform_cuda(const py::capsule& mask, const py::capsule& out,
                             const py::capsule& scratch, std::uintptr_t stream) {
  DLPackHold hm, ho, hs;
  const TensorView vm = cc_cuda_view(mask, "mask", stream, hm);
  const TensorView vo = cc_cuda_view(out, "out", stream, ho);
  const TensorView vs = cc_cuda_view(scratch, "scratch", stream, hs);
  const msrt::Mask2D m = cc_mask(vm, "mask", false);
  dt_check_size(m, "mask");
  cc_cuda_out(vo, "out", DType::Float32, {m.height, m.width});
  cc_cuda_out(vs, "scratch", DType::Int32, {msrt::cuda::dt_scratch_elems(0)});
  check_same_device(vm, "mask", vo, "out");
  check_same_device(vm, "mask", vs, "scratch");
  py::gil_scoped_release nogil;
  msrt::cuda::distance_transform(m, vo.ptr<float>(), vs.ptr<int32_t>(), vm.device_id, vm.stream);
}

struct DtCudaPair {
  DLPackHold hp, hg;
  TensorView vp, vg;
  msrt::Mask2D p, g;
  DtCudaPair(const py::capsule& pred, const py::capsule& gt, std::uintptr_t stream) {
    vp = cc_cuda_view(pred, "pred", stream, hp);
    vg = cc_cuda_view(gt, "gt", stream, hg);
    p = cc_mask(vp, "pred", false);
    g = cc_mask(vg, "gt", false);
    MSRT_CHECK(p.height == g.height && p.width == g.width,
               "pred and gt must have the same H x W, got ", vp.describe(), " and ",
               vg.describe());
    check_same_device(vp, "pred", vg, "gt");
    dt_check_size(p, "pred");
  }
};

void error_regions_cuda(const py::capsule& pred, const py::capsule& gt,
                        const py::object& exclude, const py::capsule& dist_fn,
                        const py::capsule& dist_fp, const py::capsule& scratch,
                        std::uintptr_t stream) {
  DtCudaPair in(pred, gt, stream);
  const auto ex = dt_exclude(exclude);
  DLPackHold ha, hb, hs;
  const TensorView va = cc_cuda_view(dist_fn, "dist_fn", stream, ha);
  const TensorView vb = cc_cuda_view(dist_fp, "dist_fp", stream, hb);
  const TensorView vs = cc_cuda_view(scratch, "scratch", stream, hs);
  const int64_t n_ex = ex.size() / 2;
  cc_cuda_out(va, "dist_fn", DType::Float32, {in.p.height, in.p.width});
  cc_cuda_out(vb, "dist_fp", DType::Float32, {in.p.height, in.p.width});
  cc_cuda_out(vs, "scratch", DType::Int32, {msrt::cuda::dt_scratch_elems(n_ex)});
  for (const TensorView* t : {&va, &vb, &vs}) check_same_device(in.vp, "pred", *t, "outputs");
  py::gil_scoped_release nogil;
  msrt::cuda::error_regions(in.p, in.g, ex.data(), n_ex, va.ptr<float>(), vb.ptr<float>(),
                            vs.ptr<int32_t>(), in.vp.device_id, in.vp.stream);
}

py::object next_click_cuda(const py::capsule& pred, const py::capsule& gt,
                           const py::object& exclude, const py::capsule& scratch,
                           std::uintptr_t stream) {
  DtCudaPair in(pred, gt, stream);
  const auto ex = dt_exclude(exclude);
  DLPackHold hs;
  const TensorView vs = cc_cuda_view(scratch, "scratch", stream, hs);
  const int64_t n_ex = ex.size() / 2;
  cc_cuda_out(vs, "scratch", DType::Int32,
              {msrt::cuda::click_scratch_elems(in.p.height, in.p.width, n_ex)});
  check_same_device(in.vp, "pred", vs, "scratch");
  msrt::ClickResult r;
  {
    py::gil_scoped_release nogil;
    r = msrt::cuda::next_click(in.p, in.g, ex.data(), n_ex, vs.ptr<int32_t>(), in.vp.device_id,
                               in.vp.stream);
  }
  return click_result(r);
}
#endif

void register_distance(py::module_& m) {
  m.def("distance_transform_cpu", &distance_transform_cpu, py::arg("mask"),
        py::arg("threads") = 0, "(H, W) bool/uint8 -> (H, W) float32 exact Euclidean distance.");
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
