// Connected components on the GPU: union-find over pixels, then ranks of the roots.
//
// 1. cc_local: each 32x32 tile unites its pixels in shared memory (atomicMin links towards the
//    smaller index) and writes, per pixel, the global index of its tile-local root.
// 2. cc_merge: pixels on a tile border unite with their backward neighbours in other tiles,
//    directly in the label buffer (same atomicMin union).
// 3. cc_flatten: every pixel points at its root. Links only ever go to smaller indices, so a
//    component's root is its smallest linear index: its first pixel in raster order.
// 4. cc_count_roots / cc_scan_counts / cc_rank_roots: the roots' ranks in raster order (1..K),
//    then cc_relabel maps every pixel to its root's rank: labels equal the CPU kernel's.
// Stats: one warp per 32 pixels of a row groups lanes by label (__match_any_sync); the group
// leader adds the area and widens the box with 64-bit atomics.
#include <climits>

#include "common/cuda_utils.cuh"
#include "cuda/union_find.cuh"
#include "ops/components.h"

namespace msrt::cuda {
namespace {

using detail::argmax_index;
using detail::argmax_key;
using detail::block_exclusive_scan;
using detail::find_root;
using detail::grid_blocks;
using detail::unite;
using detail::warp_atomic_max;

constexpr int kTile = 32;     // tile side in pixels
constexpr int kTileRows = 8;  // blockDim (32, 8): each thread covers 4 rows of its tile
constexpr int kChunk = 1024;  // pixels per block when ranking roots
constexpr int kThreads = detail::kScanThreads;  // 1-D kernels (the scan needs 256)
constexpr unsigned kFull = 0xffffffffu;

__global__ void cc_local(Mask2D m, bool invert, bool conn8, int* labels, int64_t tiles_x,
                         int64_t n_tiles) {
  __shared__ int s[kTile * kTile];
  const int tx = threadIdx.x;
  const int64_t h = m.height, w = m.width;
  for (int64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
    const int64_t x0 = (tile % tiles_x) * kTile, y0 = (tile / tiles_x) * kTile;
    const int64_t x = x0 + tx;
    for (int ty = threadIdx.y; ty < kTile; ty += kTileRows) {
      const int64_t y = y0 + ty;
      const bool set = x < w && y < h && mask_at(m, y, x) != invert;
      s[ty * kTile + tx] = set ? ty * kTile + tx : -1;
    }
    __syncthreads();
    for (int ty = threadIdx.y; ty < kTile; ty += kTileRows) {
      const int l = ty * kTile + tx;
      if (s[l] < 0) continue;  // the sign of an entry never changes
      if (tx > 0 && s[l - 1] >= 0) unite(s, l, l - 1);
      if (ty > 0) {
        if (s[l - kTile] >= 0) unite(s, l, l - kTile);
        if (conn8 && tx > 0 && s[l - kTile - 1] >= 0) unite(s, l, l - kTile - 1);
        if (conn8 && tx < kTile - 1 && s[l - kTile + 1] >= 0) unite(s, l, l - kTile + 1);
      }
    }
    __syncthreads();
    for (int ty = threadIdx.y; ty < kTile; ty += kTileRows) {
      const int64_t y = y0 + ty;
      if (x >= w || y >= h) continue;
      const int l = ty * kTile + tx;
      const int r = s[l] < 0 ? -1 : find_root(s, l);
      // tile-local order is raster order, so the local root is the piece's smallest index
      labels[y * w + x] = r < 0 ? -1 : int((y0 + r / kTile) * w + x0 + r % kTile);
    }
    __syncthreads();  // s is reused by the block's next tile
  }
}

__global__ void cc_merge(int64_t h, int64_t w, bool conn8, int* labels) {
  const int64_t n = h * w;
  MSRT_GRID_STRIDE_LOOP(i, n) {
    const int64_t y = i / w, x = i % w;
    const int lx = int(x % kTile), ly = int(y % kTile);
    if (lx != 0 && ly != 0 && lx != kTile - 1) continue;  // every backward neighbour is in-tile
    if (labels[i] < 0) continue;
    const int me = int(i);
    if (x > 0 && lx == 0 && labels[i - 1] >= 0) unite(labels, me, me - 1);
    if (y == 0) continue;
    const int up = int(i - w);
    if (ly == 0 && labels[up] >= 0) unite(labels, me, up);
    if (conn8 && x > 0 && (ly == 0 || lx == 0) && labels[up - 1] >= 0) unite(labels, me, up - 1);
    if (conn8 && x + 1 < w && (ly == 0 || lx == kTile - 1) && labels[up + 1] >= 0)
      unite(labels, me, up + 1);
  }
}

__global__ void cc_flatten(int64_t n, int* labels) {
  MSRT_GRID_STRIDE_LOOP(i, n) {
    const int v = labels[i];
    if (v >= 0 && v != int(i)) labels[i] = find_root(labels, v);
  }
}

// ------------------------------------------------------------------ ranking the roots

// Roots among the 4 pixels i0 .. i0 + 3 (bit j set: pixel i0 + j is a root).
__device__ __forceinline__ int root_bits(const int* labels, int64_t n, int64_t i0) {
  int bits = 0;
  for (int j = 0; j < 4; ++j) {
    const int64_t i = i0 + j;
    if (i < n && labels[i] == int(i)) bits |= 1 << j;
  }
  return bits;
}

__global__ void cc_count_roots(int64_t n, const int* labels, int* counts, int64_t n_chunks) {
  for (int64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const int bits = root_bits(labels, n, c * kChunk + threadIdx.x * 4);
    int total;
    block_exclusive_scan(__popc(bits), &total);
    if (threadIdx.x == 0) counts[c] = total;
  }
}

// One block: counts -> exclusive offsets in place; *k = number of roots.
__global__ void cc_scan_counts(int64_t n_chunks, int* counts, int* k) {
  int carry = 0;
  for (int64_t base = 0; base < n_chunks; base += kThreads) {
    const int64_t c = base + threadIdx.x;
    const int v = c < n_chunks ? counts[c] : 0;
    int total;
    const int ex = block_exclusive_scan(v, &total);
    if (c < n_chunks) counts[c] = carry + ex;
    carry += total;
  }
  if (threadIdx.x == 0) *k = carry;
}

__global__ void cc_rank_roots(int64_t n, const int* labels, const int* offsets, int* rank,
                              int64_t n_chunks) {
  for (int64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const int64_t i0 = c * kChunk + threadIdx.x * 4;
    const int bits = root_bits(labels, n, i0);
    int total;
    int r = offsets[c] + block_exclusive_scan(__popc(bits), &total);
    for (int j = 0; j < 4; ++j)
      if (bits & (1 << j)) rank[i0 + j] = ++r;  // labels start at 1
  }
}

__global__ void cc_relabel(int64_t n, int* labels, const int* rank) {
  MSRT_GRID_STRIDE_LOOP(i, n) {
    const int v = labels[i];
    labels[i] = v < 0 ? 0 : rank[v];
  }
}

// ------------------------------------------------------------------ stats, keep-largest, holes

__global__ void cc_stats_init(int64_t k, int64_t* areas, int64_t* boxes) {
  MSRT_GRID_STRIDE_LOOP(j, k) {
    areas[j] = 0;
    boxes[4 * j] = boxes[4 * j + 1] = LLONG_MAX;
    boxes[4 * j + 2] = boxes[4 * j + 3] = -1;
  }
}

// Warp-uniform loop: warp `wid` takes pixels [32 s, 32 s + 32) of row y.
__global__ void cc_stats(const int* labels, int64_t h, int64_t w, int64_t* areas, int64_t* boxes) {
  const int lane = threadIdx.x & 31;
  const int64_t segs = (w + 31) / 32, n_warps = h * segs;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t wid = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; wid < n_warps;
       wid += stride) {
    const int64_t y = wid / segs, x = (wid % segs) * 32 + lane;
    const int l = x < w ? labels[y * w + x] : 0;
    const unsigned group = __match_any_sync(kFull, l);
    if (l > 0 && lane == __ffs(group) - 1) {  // the group's leader has its smallest x
      const int64_t j = l - 1;
      const int64_t x1 = x + (31 - __clz(group)) - lane;
      atomicAdd(reinterpret_cast<unsigned long long*>(areas + j),
                static_cast<unsigned long long>(__popc(group)));
      atomicMin(reinterpret_cast<long long*>(boxes + 4 * j), static_cast<long long>(x));
      atomicMin(reinterpret_cast<long long*>(boxes + 4 * j + 1), static_cast<long long>(y));
      atomicMax(reinterpret_cast<long long*>(boxes + 4 * j + 2), static_cast<long long>(x1));
      atomicMax(reinterpret_cast<long long*>(boxes + 4 * j + 3), static_cast<long long>(y));
    }
  }
}

// *best = argmax_key of the largest area: ties to the lowest label.
__global__ void cc_argmax_area(int64_t k, const int64_t* areas, unsigned long long* best) {
  unsigned long long key = 0;
  MSRT_GRID_STRIDE_LOOP(j, k) {
    const unsigned long long kj = argmax_key(uint64_t(areas[j]), j);
    key = kj > key ? kj : key;
  }
  warp_atomic_max(key, best);
}

__global__ void cc_select(int64_t n, const int* labels, const unsigned long long* best,
                          uint8_t* out) {
  const int label = int(argmax_index(*best)) + 1;
  MSRT_GRID_STRIDE_LOOP(i, n) {
    out[i] = labels[i] == label;
  }
}

__global__ void cc_fill(Mask2D m, const int* bg, const int64_t* areas, const int64_t* boxes,
                        int64_t max_area, uint8_t* out) {
  const int64_t h = m.height, w = m.width, n = h * w;
  MSRT_GRID_STRIDE_LOOP(i, n) {
    const int64_t y = i / w, x = i % w;
    bool v = mask_at(m, y, x);
    const int l = bg[i];
    if (!v && l > 0) {
      const int64_t* b = boxes + 4 * int64_t(l - 1);
      const bool border = b[0] == 0 || b[1] == 0 || b[2] == w - 1 || b[3] == h - 1;
      v = !border && (max_area < 0 || areas[l - 1] <= max_area);
    }
    out[i] = v;
  }
}

int64_t n_chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Offset (int32 elements, even) of the 8-byte slot after the rank and count arrays.
int64_t key_offset(int64_t n) { return (n + n_chunks_of(n) + 1 + 1) & ~int64_t(1); }

}  // namespace

int64_t label_scratch_elems(int64_t height, int64_t width) {
  return key_offset(height * width) + 2;
}

int64_t label_components(const Mask2D& mask, int connectivity, bool invert, int32_t* labels,
                         int32_t* scratch, int device, void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  const int64_t h = mask.height, w = mask.width, n = h * w;
  const bool conn8 = connectivity == 8;
  const int64_t tiles_x = (w + kTile - 1) / kTile;
  const int64_t n_tiles = tiles_x * ((h + kTile - 1) / kTile);
  const int64_t n_chunks = n_chunks_of(n);
  int* rank = scratch;
  int* counts = scratch + n;
  int* k_dev = counts + n_chunks;
  const unsigned grid = grid_blocks(n, kThreads);
  const unsigned chunk_grid = grid_blocks(n_chunks, 1);  // a block per chunk

  cc_local<<<grid_blocks(n_tiles, 1), dim3(kTile, kTileRows), 0, s>>>(mask, invert, conn8, labels,
                                                                      tiles_x, n_tiles);
  MSRT_CUDA_CHECK_LAUNCH("cc_local kernel");
  cc_merge<<<grid, kThreads, 0, s>>>(h, w, conn8, labels);
  MSRT_CUDA_CHECK_LAUNCH("cc_merge kernel");
  cc_flatten<<<grid, kThreads, 0, s>>>(n, labels);
  MSRT_CUDA_CHECK_LAUNCH("cc_flatten kernel");
  cc_count_roots<<<chunk_grid, kThreads, 0, s>>>(n, labels, counts, n_chunks);
  MSRT_CUDA_CHECK_LAUNCH("cc_count_roots kernel");
  cc_scan_counts<<<1, kThreads, 0, s>>>(n_chunks, counts, k_dev);
  MSRT_CUDA_CHECK_LAUNCH("cc_scan_counts kernel");
  cc_rank_roots<<<chunk_grid, kThreads, 0, s>>>(n, labels, counts, rank, n_chunks);
  MSRT_CUDA_CHECK_LAUNCH("cc_rank_roots kernel");
  cc_relabel<<<grid, kThreads, 0, s>>>(n, labels, rank);
  MSRT_CUDA_CHECK_LAUNCH("cc_relabel kernel");

  int k = 0;
  MSRT_CUDA_CHECK(cudaMemcpyAsync(&k, k_dev, sizeof(int), cudaMemcpyDeviceToHost, s),
                  "cudaMemcpyAsync (component count)");
  MSRT_CUDA_CHECK(cudaStreamSynchronize(s), "connected components kernels");
  return k;
}

void component_stats(const int32_t* labels, int64_t height, int64_t width, int64_t k,
                     int64_t* areas, int64_t* boxes, int device, void* stream) {
  if (k == 0) return;
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  cc_stats_init<<<grid_blocks(k, kThreads), kThreads, 0, s>>>(k, areas, boxes);
  MSRT_CUDA_CHECK_LAUNCH("cc_stats_init kernel");
  const int64_t warps = height * ((width + 31) / 32);
  cc_stats<<<grid_blocks(warps * 32, kThreads), kThreads, 0, s>>>(labels, height, width, areas,
                                                                  boxes);
  MSRT_CUDA_CHECK_LAUNCH("cc_stats kernel");
}

void keep_largest_component(const int32_t* labels, int64_t height, int64_t width,
                            const int64_t* areas, int64_t k, int32_t* scratch, uint8_t* out,
                            int device, void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  const int64_t n = height * width;
  if (k == 0) {
    MSRT_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(n), s), "cudaMemsetAsync");
    return;
  }
  auto* best = reinterpret_cast<unsigned long long*>(scratch + key_offset(n));
  MSRT_CUDA_CHECK(cudaMemsetAsync(best, 0, sizeof(*best), s), "cudaMemsetAsync");
  cc_argmax_area<<<grid_blocks(k, kThreads), kThreads, 0, s>>>(k, areas, best);
  MSRT_CUDA_CHECK_LAUNCH("cc_argmax_area kernel");
  cc_select<<<grid_blocks(n, kThreads), kThreads, 0, s>>>(n, labels, best, out);
  MSRT_CUDA_CHECK_LAUNCH("cc_select kernel");
}

void fill_holes(const Mask2D& mask, const int32_t* bg_labels, const int64_t* areas,
                const int64_t* boxes, int64_t max_area, uint8_t* out, int device, void* stream) {
  detail::DeviceGuard guard(device);
  const cudaStream_t s = detail::as_stream(stream);
  const int64_t n = mask.height * mask.width;
  cc_fill<<<grid_blocks(n, kThreads), kThreads, 0, s>>>(mask, bg_labels, areas, boxes, max_area,
                                                        out);
  MSRT_CUDA_CHECK_LAUNCH("cc_fill kernel");
}

}  // namespace msrt::cuda
