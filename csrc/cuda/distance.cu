// Exact Euclidean distance transform and the click simulator on the GPU, as separable passes:
//
// 1. edt_columns: a block takes 32 columns; its 32 x 32 threads split each column into 32 row
//    segments, find each segment's first and last zero row, read the nearest zero above and
//    below from the other segments (shared memory), and sweep their segment down and up:
//    g = vertical distance to the nearest zero (INF when the column has none).
// 2. edt_rows: a block per row; thread 0 builds Meijster's lower envelope of the parabolas
//    (x - i)^2 + g(i)^2 in dynamic shared memory (row_smem bytes: g of the sites, the
//    envelope's sites and start columns, its size; exact integers), then every thread finds its
//    pixel's parabola by binary search. Output: float32 sqrt (float64, rounded once), or the
//    integer squared distance in place for the click.
// 3. next click: exclusions set to 0, then the maximum of both maps as one packed 64-bit
//    atomicMax per warp (squared distance << 32 | ~index: ties go to the first pixel in
//    row-major order); the host compares the two maxima in float32 as the reference does.
#include <climits>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "cuda/edt_columns.cuh"
#include "ops/distance.h"

namespace msrt::cuda {
namespace {

using detail::grid_blocks;
using edt::edt_columns;
using edt::kCols;
using edt::kFalseNegative;
using edt::kFalsePositive;
using edt::kSegs;
using edt::kSet;

enum Output : int { kDistance = 0, kSquared = 1 };

constexpr int kThreads = 256;  // edt_rows and the 1-D kernels

// Sites k = 0 .. n_sites - 1 sit at column k - off (off = 1 with a zero border: sites -1 and W
// with g = 0). Shared memory: g of the sites, the envelope's sites and its start columns.
__device__ __forceinline__ long long parabola(long long x, long long c, long long gc) {
  return (x - c) * (x - c) + gc * gc;
}

__device__ __forceinline__ long long floor_div(long long n, long long d) {  // d > 0
  const long long q = n / d;
  return (n % d != 0 && n < 0) ? q - 1 : q;
}

template <int O>
__global__ void edt_rows(int64_t h, int64_t w, bool border_zero, int* g, float* out,
                         const int* any_zero) {
  extern __shared__ int smem[];
  const int off = border_zero ? 1 : 0;
  const int n_sites = int(w) + 2 * off;
  int* gs = smem;
  int* sv = gs + n_sites;
  int* tv = sv + n_sites;
  int& top = tv[n_sites];  // the envelope's last entry
  for (int64_t y = blockIdx.x; y < h; y += gridDim.x) {
    int* gy = g + y * w;
    for (int k = threadIdx.x; k < n_sites; k += blockDim.x) {
      const int64_t c = k - off;
      gs[k] = (c < 0 || c >= w) ? 0 : gy[c];
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // Meijster's scan over the sites, evaluation columns 0 .. W - 1
      int q = 0;
      sv[0] = 0;
      tv[0] = 0;
      for (int u = 1; u < n_sites; ++u) {
        const long long cu = u - off, gu = gs[u];
        while (q >= 0 && parabola(tv[q], sv[q] - off, gs[sv[q]]) > parabola(tv[q], cu, gu)) --q;
        if (q < 0) {
          q = 0;
          sv[0] = u;
          tv[0] = 0;
        } else {
          const long long ci = sv[q] - off, gi = gs[sv[q]];
          // last column where site sv[q] is no farther than u
          const long long sep = floor_div(cu * cu - ci * ci + gu * gu - gi * gi, 2 * (cu - ci));
          if (sep + 1 < w) {
            ++q;
            sv[q] = u;
            tv[q] = int(sep + 1);
          }
        }
      }
      top = q;
    }
    __syncthreads();
    const bool none = O == kDistance && !border_zero && *any_zero == 0;
    for (int64_t x = threadIdx.x; x < w; x += blockDim.x) {
      int lo = 0, hi = top;  // last envelope entry that starts at or before x
      while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (tv[mid] <= x)
          lo = mid;
        else
          hi = mid - 1;
      }
      const int d2 = int(parabola(x, sv[lo] - off, gs[sv[lo]]));
      if (O == kDistance)
        out[y * w + x] = none ? INFINITY : __double2float_rn(sqrt(double(d2)));
      else
        gy[x] = d2;
    }
    __syncthreads();  // shared memory is reused by the block's next row
  }
}

template <typename T>
__global__ void edt_exclude(int64_t n, const int* index, T* a, T* b) {
  MSRT_GRID_STRIDE_LOOP(j, n) {
    a[index[j]] = T(0);
    b[index[j]] = T(0);
  }
}

// keys[m] = argmax_key of map m (m = blockIdx.y): the largest d2, ties to the first pixel.
__global__ void edt_argmax(int64_t n, const int* d_fn, const int* d_fp, unsigned long long* keys) {
  const int* d = blockIdx.y ? d_fp : d_fn;
  unsigned long long key = 0;
  MSRT_GRID_STRIDE_LOOP(i, n) {
    const unsigned long long ki = detail::argmax_key(uint64_t(d[i]), i);
    key = ki > key ? ki : key;
  }
  detail::warp_atomic_max(key, keys + blockIdx.y);
}

__global__ void edt_first_at_least(int64_t n, const int* d, int t, unsigned* first) {
  MSRT_GRID_STRIDE_LOOP(i, n)
    if (d[i] >= t) atomicMin(first, unsigned(i));
}

// ------------------------------------------------------------------ host side

float root(int64_t d2) { return float(std::sqrt(double(d2))); }

int inf_of(const Mask2D& m) { return int(m.height + m.width + 2); }

// Dynamic shared memory of edt_rows (its only shared memory): 3 ints per site, plus `top`.
size_t row_smem(int64_t w, bool border_zero) {
  return (size_t(3) * size_t(w + (border_zero ? 2 : 0)) + 1) * sizeof(int);
}

int optin_smem(int device) {
  int optin = 0;
  MSRT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                  "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  return optin;
}

template <int O>
void launch_rows(int64_t h, int64_t w, bool border_zero, int* g, float* out, const int* any_zero,
                 int device, cudaStream_t s) {
  const size_t smem = row_smem(w, border_zero);
  if (smem > 48 * 1024) {
    const int optin = optin_smem(device);
    MSRT_CHECK(smem <= size_t(optin), "mask is too wide for the CUDA distance transform (W = ", w,
               ", at most ", max_width(device), " on this GPU)");
    // The device's whole opt-in, not this call's size: the attribute is per function, and a
    // concurrent caller with a narrower mask must not shrink it between our set and our launch.
    MSRT_CUDA_CHECK(
        cudaFuncSetAttribute(edt_rows<O>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
        "cudaFuncSetAttribute(edt_rows)");
  }
  edt_rows<O><<<grid_blocks(h, 1), kThreads, smem, s>>>(h, w, border_zero, g, out, any_zero);
  MSRT_CUDA_CHECK_LAUNCH("edt_rows kernel");
}

template <int R>
void launch_columns(const Mask2D& a, const Mask2D& b, bool border_zero, int* g, int* any_zero,
                    cudaStream_t s) {
  const int64_t blocks = (a.width + kCols - 1) / kCols;  // a block per 32 columns
  edt_columns<R><<<grid_blocks(blocks, 1), dim3(kCols, kSegs), 0, s>>>(a, b, border_zero, inf_of(a),
                                                                       g, any_zero);
  MSRT_CUDA_CHECK_LAUNCH("edt_columns kernel");
}

// The in-image pixels of `exclude` ((x, y) pairs, host memory) as linear indices, copied to
// device memory at `dst` (room for n entries). Returns how many.
int64_t upload_exclusions(const int64_t* exclude, int64_t n, int64_t h, int64_t w, int* dst,
                          cudaStream_t s) {
  std::vector<int> idx;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x = exclude[2 * i], y = exclude[2 * i + 1];
    if (x >= 0 && x < w && y >= 0 && y < h) idx.push_back(int(y * w + x));
  }
  if (idx.empty()) return 0;
  // Pageable source: the call returns once the data is staged, so idx may go out of scope.
  MSRT_CUDA_CHECK(
      cudaMemcpyAsync(dst, idx.data(), idx.size() * sizeof(int), cudaMemcpyHostToDevice, s),
      "cudaMemcpyAsync (exclusions)");
  return int64_t(idx.size());
}

}  // namespace

int64_t max_width(int device) {
  // widest w with row_smem(w, true) <= opt-in: 3 (w + 2) + 1 ints
  return (int64_t(optin_smem(device)) / int64_t(sizeof(int)) - 1) / 3 - 2;
}

int64_t dt_scratch_elems(int64_t n_exclude) { return 2 + n_exclude; }

void distance_transform(const Mask2D& mask, float* out, int32_t* scratch, int device,
                        void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  int* any_zero = scratch;
  int* g = reinterpret_cast<int*>(out);  // the column pass lives in the output
  MSRT_CUDA_CHECK(cudaMemsetAsync(any_zero, 0, sizeof(int), s), "cudaMemsetAsync");
  launch_columns<kSet>(mask, mask, false, g, any_zero, s);
  launch_rows<kDistance>(mask.height, mask.width, false, g, out, any_zero, device, s);
}

void error_regions(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude, int64_t n_exclude,
                   float* dist_fn, float* dist_fp, int32_t* scratch, int device, void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  const int64_t h = pred.height, w = pred.width;
  int* unused_flag = scratch;
  int* excl = scratch + 2;
  const int64_t n_ex = upload_exclusions(exclude, n_exclude, h, w, excl, s);
  int* gfn = reinterpret_cast<int*>(dist_fn);
  int* gfp = reinterpret_cast<int*>(dist_fp);
  launch_columns<kFalseNegative>(pred, gt, true, gfn, unused_flag, s);
  launch_columns<kFalsePositive>(pred, gt, true, gfp, unused_flag, s);
  launch_rows<kDistance>(h, w, true, gfn, dist_fn, unused_flag, device, s);
  launch_rows<kDistance>(h, w, true, gfp, dist_fp, unused_flag, device, s);
  if (n_ex > 0) {
    edt_exclude<float>
        <<<grid_blocks(n_ex, kThreads), kThreads, 0, s>>>(n_ex, excl, dist_fn, dist_fp);
    MSRT_CUDA_CHECK_LAUNCH("edt_exclude kernel");
  }
}

int64_t click_scratch_elems(int64_t height, int64_t width, int64_t n_exclude) {
  return 2 * height * width + 8 + n_exclude;
}

ClickResult next_click(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                       int64_t n_exclude, int32_t* scratch, int device, void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  const int64_t h = pred.height, w = pred.width, n = h * w;
  int* dfn = scratch;
  int* dfp = scratch + n;
  auto* keys = reinterpret_cast<unsigned long long*>(scratch + 2 * n);  // 8-byte aligned
  auto* first = reinterpret_cast<unsigned*>(scratch + 2 * n + 4);
  int* unused_flag = scratch + 2 * n + 5;
  int* excl = scratch + 2 * n + 8;
  const int64_t n_ex = upload_exclusions(exclude, n_exclude, h, w, excl, s);
  launch_columns<kFalseNegative>(pred, gt, true, dfn, unused_flag, s);
  launch_columns<kFalsePositive>(pred, gt, true, dfp, unused_flag, s);
  launch_rows<kSquared>(h, w, true, dfn, nullptr, unused_flag, device, s);
  launch_rows<kSquared>(h, w, true, dfp, nullptr, unused_flag, device, s);
  if (n_ex > 0) {
    edt_exclude<int><<<grid_blocks(n_ex, kThreads), kThreads, 0, s>>>(n_ex, excl, dfn, dfp);
    MSRT_CUDA_CHECK_LAUNCH("edt_exclude kernel");
  }
  MSRT_CUDA_CHECK(cudaMemsetAsync(keys, 0, 2 * sizeof(*keys), s), "cudaMemsetAsync");
  edt_argmax<<<dim3(grid_blocks(n, kThreads), 2), kThreads, 0, s>>>(n, dfn, dfp, keys);
  MSRT_CUDA_CHECK_LAUNCH("edt_argmax kernel");
  unsigned long long host_keys[2] = {0, 0};
  MSRT_CUDA_CHECK(cudaMemcpyAsync(host_keys, keys, sizeof(host_keys), cudaMemcpyDeviceToHost, s),
                  "cudaMemcpyAsync (click maxima)");
  MSRT_CUDA_CHECK(cudaStreamSynchronize(s), "next_click kernels");

  ClickResult r;
  const int64_t m_fn = detail::argmax_value(host_keys[0]);
  const int64_t m_fp = detail::argmax_value(host_keys[1]);
  const float fn_max = root(m_fn), fp_max = root(m_fp);
  if (fn_max == 0.0f && fp_max == 0.0f) return r;
  r.found = true;
  r.positive = fn_max > fp_max;  // ties -> negative
  const int64_t m = r.positive ? m_fn : m_fp;
  int64_t idx = detail::argmax_index(host_keys[r.positive ? 0 : 1]);
  int64_t t = m;  // smallest squared distance with the same float32 root as the maximum
  while (t > 1 && root(t - 1) == root(m)) --t;
  if (t < m) {  // rare (distances beyond ~2048 px): the first pixel at or above t
    MSRT_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned), s), "cudaMemsetAsync");
    edt_first_at_least<<<grid_blocks(n, kThreads), kThreads, 0, s>>>(n, r.positive ? dfn : dfp,
                                                                     int(t), first);
    MSRT_CUDA_CHECK_LAUNCH("edt_first_at_least kernel");
    unsigned host_first = 0;
    MSRT_CUDA_CHECK(
        cudaMemcpyAsync(&host_first, first, sizeof(unsigned), cudaMemcpyDeviceToHost, s),
        "cudaMemcpyAsync (click index)");
    MSRT_CUDA_CHECK(cudaStreamSynchronize(s), "edt_first_at_least");
    idx = int64_t(host_first);
  }
  r.y = idx / w;
  r.x = idx % w;
  r.distance = r.positive ? fn_max : fp_max;
  return r;
}

}  // namespace msrt::cuda
