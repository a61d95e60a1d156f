// The only pybind11 file: converts NumPy arrays and DLPack capsules into msrt::TensorView,
// validates arguments, and calls msrt::cpu::<op> or msrt::cuda::<op>.
// One section per op, in the same order as csrc/ops/*.h and medsam_agent_rt/ops/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <tuple>
#include <string>
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


// ---------------------------------------------------------------- generic argument helpers
// Used by every op section: an array argument is a NumPy array (host) or a DLPack capsule made by
// the Python side with `x.__dlpack__(stream=stream)` (CUDA; CPU tensors work too).

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
  MSRT_CHECK(!cuda, first->name, " is a CUDA tensor but medsam_agent_rt._C was built without "
             "CUDA; rebuild with a CUDA compiler on PATH (MSRT_CUDA=ON to insist)");
#endif
  return cuda;
}

// An output argument: the exact shape and dtype, C-contiguous and writable.
void check_output(const Arg& a, std::vector<int64_t> shape, DType dtype, const char* expected) {
  msrt::check_shape(a.v, a.name, std::move(shape), expected);
  msrt::check_dtype(a.v, a.name, dtype);
  msrt::check_contiguous(a.v, a.name);
  msrt::check_writable(a.v, a.name);
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  size_t i = 0;
  for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + ")";
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

// ================================================================ op: mask metrics
// mask_counts(pred, target, out, threshold, stream): pred (N, H, W) or (H, W), target (H, W) or
// (N, H, W) (a 2-D or length-1 operand broadcasts), out (N, 3) int64 <- intersection, pred area,
// target area. Float operands are binarised as value > threshold in their own precision.
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
  Arg p(pred, "pred", stream), t(target, "target", stream), o(out, "out", stream);
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
  check_output(o, {s.n, 3}, DType::Int64, (shape_str({s.n, 3}) + " int64").c_str());
  if (on_cuda({&p, &t, &o})) {
#ifdef MSRT_WITH_CUDA
    msrt::cuda::mask_counts(po, to, s, o.v.ptr<int64_t>(), p.v.device_id, p.v.stream);
#endif
    return;
  }
  py::gil_scoped_release release;
  msrt::cpu::mask_counts(po, to, s, o.v.ptr<int64_t>(), threads);
}

// iou_dice(counts, out): host (N, 3) int64 counts -> out (N, 2) float64 IoU, Dice with the
// float64 arithmetic of reference.iou_dice_from_counts (I / max(U, 1), 2I / max(|P| + |R|, 1);
// both empty -> 1.0): bit-identical, without NumPy's per-ufunc overhead on tiny arrays.
void iou_dice(const py::handle& counts, const py::handle& out) {
  Arg c(counts, "counts"), o(out, "out");
  MSRT_CHECK(c.v.device == msrt::Device::CPU && c.v.ndim() == 2 && c.v.shape[1] == 3,
             "counts must be a host (N, 3) array, got ", c.v.describe());
  msrt::check_dtype(c.v, "counts", DType::Int64);
  msrt::check_contiguous(c.v, "counts");
  const int64_t n = c.v.shape[0];
  check_output(o, {n, 2}, DType::Float64, (shape_str({n, 2}) + " float64").c_str());
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

// ================================================================ op: prompt-embedding fusion
// encode_sparse_prompts(coords, labels, gaussian, label_embed, input_h, input_w, out, error_flag,
// stream): coords (S, 2) float32, labels (S,) int32/int64, gaussian (2, C/2) and label_embed
// (5, C) float32 contiguous, out (slots >= S, C) float32. error_flag: (1,) int32, required on
// CUDA (a bad label sets it to 1 and NaNs its row), optional on the host (bad labels raise).
void encode_sparse_prompts(const py::handle& coords, const py::handle& labels,
                           const py::handle& gaussian, const py::handle& label_embed,
                           double input_h, double input_w, const py::handle& out,
                           const py::handle& error_flag, std::uintptr_t stream) {
  Arg c(coords, "coords", stream), l(labels, "labels", stream), g(gaussian, "gaussian", stream),
      e(label_embed, "label_embed", stream), o(out, "out", stream);
  MSRT_CHECK(c.v.ndim() == 2 && c.v.shape[1] == 2, "coords must be (S, 2), got ", c.v.describe());
  msrt::check_dtype(c.v, "coords", DType::Float32);
  const int64_t s = c.v.shape[0];
  MSRT_CHECK(l.v.ndim() == 1 && l.v.shape[0] == s, "labels must be (", s,
             ",) to match coords, got ", l.v.describe());
  msrt::check_ndim(e.v, "label_embed", 2, 2);
  const int64_t dim = e.v.shape[1];
  MSRT_CHECK(e.v.shape[0] == 5 && dim % 2 == 0 && dim > 0,
             "label_embed must be (5, C) with C even, got ", e.v.describe());
  msrt::check_dtype(e.v, "label_embed", DType::Float32);
  msrt::check_contiguous(e.v, "label_embed");
  const std::string g_shape = "(2, " + std::to_string(dim / 2) + ")";
  msrt::check_shape(g.v, "gaussian", {2, dim / 2}, g_shape.c_str());
  msrt::check_dtype(g.v, "gaussian", DType::Float32);
  msrt::check_contiguous(g.v, "gaussian");
  MSRT_CHECK(o.v.ndim() == 2 && o.v.shape[1] == dim && o.v.shape[0] >= s, "out must be (slots >= ",
             s, ", ", dim, "), got ", o.v.describe());
  check_output(o, o.v.shape, DType::Float32, "(slots, C) float32");
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
    Arg f(error_flag, "error_flag", stream);
    msrt::check_same_device(c.v, "coords", f.v, "error_flag");
    check_output(f, {1}, DType::Int32, "(1,) int32");
    msrt::with_label_type(a.labels_dtype, [](auto) {});
    msrt::cuda::encode_sparse_prompts(a, f.v.ptr<int32_t>(), c.v.device_id, c.v.stream);
#endif
    return;
  }
  msrt::cpu::encode_sparse_prompts(a);  // tiny: keeps the GIL (releasing costs more)
  if (!error_flag.is_none()) {  // same contract on both devices: 0 after a successful call
    Arg f(error_flag, "error_flag", stream);
    check_output(f, {1}, DType::Int32, "(1,) int32");
    MSRT_CHECK(f.v.device == msrt::Device::CPU, "error_flag must be on the host like coords");
    *f.v.ptr<int32_t>() = 0;
  }
}

void register_prompt_fusion(py::module_& m) {
  m.def("encode_sparse_prompts", &encode_sparse_prompts, py::arg("coords"), py::arg("labels"),
        py::arg("gaussian"), py::arg("label_embed"), py::arg("input_h"), py::arg("input_w"),
        py::arg("out"), py::arg("error_flag") = py::none(), py::arg("stream") = 0,
        "SAM sparse prompt embeddings of S tokens into out (slots, C) float32.");
}

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
// postprocess_masks(logits, input_size, crop_size, output_size, threshold, out_logits, out_masks,
// workspace, stream): logits (N, h, w) float32; out_logits (N, H, W) float32 or None; out_masks
// (N, H, W) bool; workspace (>= N*h*W,) float64, CUDA only.
void postprocess_masks(const py::handle& logits, std::pair<int64_t, int64_t> input_size,
                       std::pair<int64_t, int64_t> crop_size,
                       std::pair<int64_t, int64_t> output_size, double threshold,
                       const py::handle& out_logits, const py::handle& out_masks,
                       const py::handle& workspace, std::uintptr_t stream, int threads) {
  Arg x(logits, "low_res_logits", stream), om(out_masks, "out_masks", stream);
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
  const std::vector<int64_t> shape = {a.n, a.out_h, a.out_w};
  const std::string expected = shape_str({a.n, a.out_h, a.out_w});
  MSRT_CHECK(om.v.dtype == DType::Bool || om.v.dtype == DType::UInt8,
             "out_masks must be bool, got ", om.v.describe());
  check_output(om, shape, om.v.dtype, (expected + " bool").c_str());
  a.out_masks = om.v.ptr<uint8_t>();
  std::unique_ptr<Arg> ol;
  if (!out_logits.is_none()) {
    ol = std::make_unique<Arg>(out_logits, "out_logits", stream);
    check_output(*ol, shape, DType::Float32, (expected + " float32").c_str());
    a.out_logits = ol->v.ptr<float>();
  }
  const bool cuda = ol ? on_cuda({&x, &om, ol.get()}) : on_cuda({&x, &om});
  a.logits = x.v.ptr<float>();
  if (cuda) {
#ifdef MSRT_WITH_CUDA
    Arg ws(workspace, "workspace", stream);
    msrt::check_same_device(x.v, "low_res_logits", ws.v, "workspace");
    msrt::check_ndim(ws.v, "workspace", 1, 1);
    check_output(ws, ws.v.shape, DType::Float64, "1-D float64");
    msrt::cuda::postprocess_masks(a, ws.v.ptr<double>(), ws.v.shape[0], x.v.device_id,
                                  x.v.stream);
#endif
    return;
  }
  (void)workspace;  // CUDA only
  py::gil_scoped_release release;
  msrt::cpu::postprocess_masks(a, threads);
}

void register_postprocess(py::module_& m) {
  m.def("postprocess_masks", &postprocess_masks, py::arg("logits"), py::arg("input_size"),
        py::arg("crop_size"), py::arg("output_size"), py::arg("threshold"),
        py::arg("out_logits"), py::arg("out_masks"), py::arg("workspace") = py::none(),
        py::arg("stream") = 0, py::arg("threads") = 0,
        "Low-res logits -> bilinear x2 with crop -> logits (optional) and thresholded masks.");
}

// ================================================================ op: overlay rendering
// render_overlay(view, mask, out, content_box, color, alpha_weight, stream): view (Vh, Vw, 3)
// uint8, mask (H, W) bool/uint8, out like view (contiguous); content_box (x0, y0, w, h) inside
// the view; color 0..255 each; alpha_weight = round(256 alpha) in 0..256.
void render_overlay(const py::handle& view, const py::handle& mask, const py::handle& out,
                    std::array<int64_t, 4> box, std::array<int32_t, 3> color,
                    int32_t alpha_weight, std::uintptr_t stream, int threads) {
  Arg v(view, "view", stream), mk(mask, "mask", stream), o(out, "out", stream);
  MSRT_CHECK(v.v.ndim() == 3 && v.v.shape[2] == 3, "view must be (V, V, 3), got ",
             v.v.describe());
  msrt::check_dtype(v.v, "view", DType::UInt8);
  msrt::check_ndim(mk.v, "mask", 2, 2);
  MSRT_CHECK(mk.v.dtype == DType::Bool || mk.v.dtype == DType::UInt8,
             "mask must be bool or uint8, got ", mk.v.describe());
  check_output(o, v.v.shape, DType::UInt8,
               (shape_str({v.v.shape[0], v.v.shape[1], 3}) + " uint8").c_str());
  msrt::OverlayArgs a;
  a.view = v.v.ptr<uint8_t>();
  a.view_h = v.v.shape[0];
  a.view_w = v.v.shape[1];
  a.view_sy = v.v.strides[0];
  a.view_sx = v.v.strides[1];
  a.view_sc = v.v.strides[2];
  a.mask = mk.v.ptr<uint8_t>();
  a.mask_h = mk.v.shape[0];
  a.mask_w = mk.v.shape[1];
  a.mask_sy = mk.v.strides[0];
  a.mask_sx = mk.v.strides[1];
  a.x0 = box[0];
  a.y0 = box[1];
  a.box_w = box[2];
  a.box_h = box[3];
  MSRT_CHECK(a.box_w >= 1 && a.box_h >= 1 && a.x0 >= 0 && a.y0 >= 0 &&
                 a.x0 + a.box_w <= a.view_w && a.y0 + a.box_h <= a.view_h,
             "content_box (", a.x0, ", ", a.y0, ", ", a.box_w, ", ", a.box_h,
             ") must lie inside the view ", v.v.describe());
  MSRT_CHECK(a.mask_h >= 1 && a.mask_w >= 1, "mask must not be empty, got ", mk.v.describe());
  for (int c = 0; c < 3; ++c) {
    MSRT_CHECK(color[c] >= 0 && color[c] <= 255, "color must be 3 values in 0..255, got ",
               color[0], ", ", color[1], ", ", color[2]);
    a.color[c] = color[c];
  }
  MSRT_CHECK(alpha_weight >= 0 && alpha_weight <= 256, "alpha_weight must be in 0..256, got ",
             alpha_weight);
  a.alpha_weight = alpha_weight;
  a.out = o.v.ptr<uint8_t>();
  if (on_cuda({&v, &mk, &o})) {
#ifdef MSRT_WITH_CUDA
    msrt::cuda::render_overlay(a, v.v.device_id, v.v.stream);
#endif
    return;
  }
  py::gil_scoped_release release;
  msrt::cpu::render_overlay(a, threads);
}

void register_overlay(py::module_& m) {
  m.def("render_overlay", &render_overlay, py::arg("view"), py::arg("mask"), py::arg("out"),
        py::arg("content_box"), py::arg("color"), py::arg("alpha_weight"), py::arg("stream") = 0,
        py::arg("threads") = 0,
        "Nearest-neighbour mask into content_box of the view, blended with color; into out.");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "medsam_agent_rt native kernels (CPU, and CUDA when compiled with it)";
  py::register_exception<msrt::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  m.def("build_info", &build_info, "Build facts: version, compiler, CUDA, archs; the CPU kernels' default thread count.");
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
