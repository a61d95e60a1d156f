// Exact Euclidean distance transform on the CPU (separable, linear time):
//
// 1. Columns: g(y, x) = distance along the column to the nearest zero pixel (INF when the column
//    has none), a vectorised forward sweep per row strip, and a backward sweep fused with 2.
// 2. Rows: d2(y, x) = min over sites i of (x - i)^2 + g(y, i)^2, by Felzenszwalb-Huttenlocher's
//    lower envelope of parabolas with the intersections kept as exact integer fractions.
//    Only pixels of the region are evaluated: a run [s, e) of region pixels is bounded by zero
//    pixels at s - 1 and e (or the image edge), and no site beyond them can be nearer, so each
//    run is an independent envelope over sites s - 1 .. e.
// 3. float32 = sqrt(d2) in float64 rounded once (float32 sqrt is the same number while
//    d2 < 2^24: double rounding of sqrt is innocuous from 53 to 24 bits).
// With a zero border (the click simulator's padding) the sweeps start from 0 and the sites -1
// and W exist with g = 0. Strips are shared among threads by parallel_for (cpu/parallel.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/edt_columns.h"
#include "cpu/mask_bits.h"
#include "cpu/parallel.h"
#include "ops/distance.h"


namespace msrt::cpu {
namespace {

using edt::ColumnSweep;
using edt::Grid;
using edt::Region;
using edt::region_bits;

// ------------------------------------------------------------------ pass 2: rows

// Per-thread envelope storage: sites v with f = g^2, and the exact start of each parabola's
// reign z = zn / zd (zd > 0).
struct Envelope {
  std::vector<int64_t> v, f, zn, zd;
  explicit Envelope(int64_t w) : v(w + 2), f(w + 2), zn(w + 2), zd(w + 2) {}
};

// Squared distances of the pixels [s, e) of one region run into d2[0 .. e - s), from the sites
// s - 1 .. e of the row's g (sites -1 and W exist when border_zero).
inline void run_envelope(const int32_t* g, int64_t w, int64_t s, int64_t e, const Grid& gr,
                         Envelope& env, int32_t* d2) {
  int64_t* v = env.v.data();
  int64_t* f = env.f.data();
  int64_t* zn = env.zn.data();
  int64_t* zd = env.zd.data();
  int64_t k = -1;
  auto push = [&](int64_t q, int64_t fq) {
    while (k >= 0) {
      const int64_t n = (fq + q * q) - (f[k] + v[k] * v[k]);
      const int64_t d = 2 * (q - v[k]);
      if (k > 0 && n * zd[k] <= zn[k] * d) {  // q undercuts v[k] before v[k]'s reign starts
        --k;
        continue;
      }
      ++k;
      v[k] = q, f[k] = fq, zn[k] = n, zd[k] = d;
      return;
    }
    k = 0;
    v[0] = q, f[0] = fq;
  };
  if (s > 0 || gr.border_zero) push(s - 1, 0);
  for (int64_t i = s; i < e; ++i) {
    const int64_t gi = g[i];
    if (gi < gr.inf) push(i, gi * gi);  // an INF column never wins: some site is finite
  }
  if (e < w || gr.border_zero) push(e, 0);
  int64_t j = 0;
  for (int64_t x = s; x < e; ++x) {
    while (j < k && zn[j + 1] <= x * zd[j + 1]) ++j;
    const int64_t dx = x - v[j];
    d2[x - s] = int32_t(dx * dx + f[j]);
  }
}

// Calls fn(s, e, d2) for every region run [s, e) of row y, gy the row's column distances.
template <Region R, typename Fn>
inline void for_each_run_d2(const Grid& gr, const int32_t* gy, int64_t y, Envelope& env,
                            int32_t* d2, Fn&& fn) {
  const uint8_t* ra = gr.a.data + y * gr.a.stride_y;
  const uint8_t* rb = R == Region::Set ? ra : gr.b.data + y * gr.b.stride_y;
  bits::for_each_run(
      int32_t(gr.w),
      [&](int32_t x0, int n) { return region_bits<R>(ra + x0, rb + x0, n); },
      [&](int32_t s, int32_t e) {
        run_envelope(gy, gr.w, s, e, gr, env, d2);
        fn(s, e, d2);
      });
}

// Per-thread row buffers of the backward sweep and the row pass.
struct RowScratch {
  Envelope env;
  std::vector<int32_t> d2, next_zero, g;
  explicit RowScratch(int64_t w) : env(w), d2(size_t(w)), next_zero(size_t(w)), g(size_t(w)) {}
};

// Runs forward() of every strip in parallel, then combine(). Returns combine()'s answer.
template <Region R>
bool sweep_forward(ColumnSweep<R>& sweep, int threads) {
  parallel_for(sweep.strips(), threads, [&](int64_t t) { sweep.forward(int(t)); });
  return sweep.combine();
}

// Threads and strips for a call. More strips than threads balance the row pass when the region
// sits in part of the image; by default a strip has at least 32 K pixels, while an explicit
// thread count always cuts 4 strips per thread (tests cut small masks into strips this way).
struct Plan {
  int threads = 1, strips = 1;
  Plan(int num_threads, const Grid& gr) {
    threads = num_threads > 0 ? num_threads : default_threads();
    int64_t n = threads > 1 ? 4 * int64_t(threads) : 1;
    if (num_threads <= 0) n = std::min<int64_t>(n, (gr.h * gr.w) >> 15);
    strips = int(std::max<int64_t>(1, std::min<int64_t>(n, gr.h)));
  }
};

inline float root(int32_t d2) { return float(std::sqrt(double(d2))); }

// out[0 .. n) = float32(sqrt(d2)), exact as root().
inline void roots(const int32_t* d2, float* out, int64_t n, bool small) {
  int64_t i = 0;
#if defined(__SSE2__)
  if (small) {  // every d2 < 2^24: int -> float is exact and sqrtps is correctly rounded
    for (; i + 4 <= n; i += 4) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d2 + i));
      _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_cvtepi32_ps(v)));
    }
  }
#else
  (void)small;
#endif
  for (; i < n; ++i) out[i] = root(d2[i]);
}

// Region distance map into `out` (H, W) float32, using `out` itself for the forward sweep
// (background g = 0 has the bit pattern of 0.0f and is never rewritten). Returns false when the
// region has no zero pixel (and no zero border): the caller fills +inf.
template <Region R>
bool distance_map(const Grid& gr, float* out, const Plan& plan) {
  const int threads = plan.threads;
  ColumnSweep<R> sweep(gr, reinterpret_cast<int32_t*>(out), plan.strips);
  if (!sweep_forward(sweep, threads) && !gr.border_zero) return false;
  const bool small = (gr.h + 1) * (gr.h + 1) + (gr.w + 1) * (gr.w + 1) < (int64_t(1) << 24);
  parallel_for(sweep.strips(), threads, [&](int64_t t) {
    RowScratch rs(gr.w);
    sweep.backward(int(t), rs.next_zero.data(), rs.g.data(), [&](int64_t y, const int32_t* g) {
      float* oy = out + y * gr.w;
      for_each_run_d2<R>(gr, g, y, rs.env, rs.d2.data(),
                         [&](int64_t s, int64_t e, const int32_t* d) {
                           roots(d, oy + s, e - s, small);
                         });
    });
  });
  return true;
}

Grid make_grid(const Mask2D& a, const Mask2D& b, bool border_zero) {
  Grid gr{a, b, a.height, a.width, border_zero, int32_t(a.height + a.width + 2)};
  return gr;
}

// In-image exclusions as sorted unique linear indices.
std::vector<int64_t> exclusion_index(const int64_t* xy, int64_t n, int64_t h, int64_t w) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x = xy[2 * i], y = xy[2 * i + 1];
    if (x >= 0 && x < w && y >= 0 && y < h) idx.push_back(y * w + x);
  }
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}

}  // namespace

void distance_transform(const Mask2D& mask, float* out, int num_threads) {
  const Grid gr = make_grid(mask, mask, false);
  if (!distance_map<Region::Set>(gr, out, Plan(num_threads, gr)))
    std::fill(out, out + gr.h * gr.w, std::numeric_limits<float>::infinity());
}

void error_regions(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                   int64_t n_exclude, float* dist_fn, float* dist_fp, int num_threads) {
  const Grid gr = make_grid(pred, gt, true);
  const Plan plan(num_threads, gr);
  distance_map<Region::FalseNegative>(gr, dist_fn, plan);
  distance_map<Region::FalsePositive>(gr, dist_fp, plan);
  for (int64_t i : exclusion_index(exclude, n_exclude, gr.h, gr.w)) dist_fn[i] = dist_fp[i] = 0;
}

namespace {

// Per-row maxima of one error map (exclusions applied), then its global maximum and the first
// pixel in row-major order whose float32 distance equals the maximum's.
template <Region R>
struct MaxSearch {
  const Grid& gr;
  const std::vector<int64_t>& excl;
  std::unique_ptr<int32_t[]> gl;  // forward sweep, uninitialised
  ColumnSweep<R> sweep;
  std::vector<int32_t> row_max, row_arg;

  MaxSearch(const Grid& grid, const std::vector<int64_t>& ex, const Plan& plan)
      : gr(grid), excl(ex), gl(new int32_t[size_t(grid.h * grid.w)]),
        sweep(grid, gl.get(), plan.strips), row_max(size_t(grid.h)),
        row_arg(size_t(grid.h)) {}

  // Calls fn(x, d2) for the region pixels of row y (column distances g), exclusions as 0.
  template <typename Fn>
  void scan_row(int64_t y, const int32_t* g, RowScratch& rs, Fn&& fn) const {
    auto lo = std::lower_bound(excl.begin(), excl.end(), y * gr.w);
    auto hi = std::lower_bound(lo, excl.end(), (y + 1) * gr.w);
    for_each_run_d2<R>(gr, g, y, rs.env, rs.d2.data(), [&](int64_t s, int64_t e, int32_t* d) {
      for (auto it = lo; it != hi; ++it) {
        const int64_t x = *it - y * gr.w;
        if (x >= s && x < e) d[x - s] = 0;
      }
      for (int64_t x = s; x < e; ++x) fn(x, d[x - s]);
    });
  }

  void run(int threads) {
    sweep_forward(sweep, threads);
    parallel_for(sweep.strips(), threads, [&](int64_t t) {
      RowScratch rs(gr.w);
      sweep.backward(int(t), rs.next_zero.data(), rs.g.data(), [&](int64_t y, const int32_t* g) {
        int32_t best = 0, arg = 0;
        scan_row(y, g, rs, [&](int64_t x, int32_t d) {
          if (d > best) best = d, arg = int32_t(x);
        });
        row_max[y] = best, row_arg[y] = arg;
      });
    });
  }

  int32_t max() const { return *std::max_element(row_max.begin(), row_max.end()); }

  // First pixel whose float32 distance equals root(max()) (usually d2 == max(); two squared
  // distances share a float32 root once distances pass ~2048 px).
  void argmax(int64_t* x, int64_t* y) const {
    const int32_t m = max();
    int32_t t = m;
    while (t > 1 && root(t - 1) == root(m)) --t;
    int64_t row = 0;
    while (row_max[row] < t) ++row;
    *y = row, *x = row_arg[row];
    if (t == m) return;
    RowScratch rs(gr.w);  // rare: sweep the row's strip again for its column distances
    int64_t first = -1;
    sweep.backward(sweep.strip_of(row), rs.next_zero.data(), rs.g.data(),
                   [&](int64_t yy, const int32_t* g) {
                     if (yy != row) return;
                     scan_row(row, g, rs, [&](int64_t xx, int32_t d) {
                       if (first < 0 && d >= t) first = xx;
                     });
                   });
    *x = first;
  }
};

}  // namespace

ClickResult next_click(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                       int64_t n_exclude, int num_threads) {
  const Grid gr = make_grid(pred, gt, true);
  const Plan plan(num_threads, gr);
  const std::vector<int64_t> excl = exclusion_index(exclude, n_exclude, gr.h, gr.w);
  MaxSearch<Region::FalseNegative> fn(gr, excl, plan);
  MaxSearch<Region::FalsePositive> fp(gr, excl, plan);
  fn.run(plan.threads);
  fp.run(plan.threads);
  const float fn_max = root(fn.max()), fp_max = root(fp.max());
  ClickResult r;
  if (fn_max == 0.0f && fp_max == 0.0f) return r;
  r.found = true;
  r.positive = fn_max > fp_max;  // ties -> negative
  if (r.positive) fn.argmax(&r.x, &r.y);
  else fp.argmax(&r.x, &r.y);
  r.distance = r.positive ? fn_max : fp_max;
  return r;
}

}  // namespace msrt::cpu
