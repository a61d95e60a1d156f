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
// Every map is computed on the bounding box of its region only (the rest is 0): outside the box
// every pixel is a zero, so the box's sides act as zero rows/columns (edt_columns.h: Grid), as
// does the click simulator's 1-px zero border: the sweeps start from 0 and the sites -1 and W
// exist with g = 0. Strips are shared among threads by parallel_for (cpu/parallel.h).
#include "ops/distance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/edt_columns.h"
#include "cpu/edt_rows.h"
#include "cpu/mask_bits.h"
#include "cpu/parallel.h"

namespace msrt::cpu {
namespace {

using edt::Box;
using edt::ColumnSweep;
using edt::Envelope;
using edt::for_each_run_d2;
using edt::Grid;
using edt::Region;
using edt::root;
using edt::roots;
using edt::RowScratch;

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

// Region distance map of a grid into `out` ((h, w) float32, rows `ld` apart), using `out` itself
// for the forward sweep (background g = 0 has the bit pattern of 0.0f and is never rewritten).
// Returns false when the grid has no zero pixel and no zero side: the caller fills +inf.
template <Region R>
bool distance_map(const Grid& gr, float* out, int64_t ld, const Plan& plan) {
  const int threads = plan.threads;
  ColumnSweep<R> sweep(gr, reinterpret_cast<int32_t*>(out), ld, plan.strips);
  if (!sweep_forward(sweep, threads) && !gr.any_zero_side()) return false;
  const bool small = (gr.h + 1) * (gr.h + 1) + (gr.w + 1) * (gr.w + 1) < (int64_t(1) << 24);
  parallel_for(sweep.strips(), threads, [&](int64_t t) {
    RowScratch rs(gr.w);
    sweep.backward(int(t), rs.next_zero.data(), rs.g.data(), [&](int64_t y, const int32_t* g) {
      float* oy = out + y * ld;
      for_each_run_d2<R>(
          gr, g, y, rs.env, rs.d2.data(),
          [&](int64_t s, int64_t e, const int32_t* d) { roots(d, oy + s, e - s, small); });
    });
  });
  return true;
}

// Bounding boxes of one or two regions over the whole image, rows shared among threads.
template <Region R1, Region R2>
void image_boxes(const Mask2D& a, const Mask2D& b, int threads, Box* b1, Box* b2) {
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(4 * int64_t(threads), a.height / 16));
  std::vector<Box> part1(static_cast<size_t>(n)), part2(static_cast<size_t>(n));
  parallel_for(n, threads, [&](int64_t t) {
    edt::region_boxes<R1, R2>(a, b, a.height * t / n, a.height * (t + 1) / n, &part1[t],
                              b2 ? &part2[t] : nullptr);
  });
  for (int64_t t = 0; t < n; ++t) {
    b1->merge(part1[t]);
    if (b2) b2->merge(part2[t]);
  }
}

// Zeroes the (H, W) float32 image `out` outside `box` (all of it when the box is empty).
void zero_outside(float* out, int64_t h, int64_t w, const Box& box) {
  if (box.empty()) {
    std::fill(out, out + h * w, 0.0f);
    return;
  }
  std::fill(out, out + box.y0 * w, 0.0f);
  for (int64_t y = box.y0; y <= box.y1; ++y) {
    std::fill(out + y * w, out + y * w + box.x0, 0.0f);
    std::fill(out + y * w + box.x1 + 1, out + (y + 1) * w, 0.0f);
  }
  std::fill(out + (box.y1 + 1) * w, out + h * w, 0.0f);
}

// The map of region R of an image (padded: with the click simulator's zero border), computed on
// the region's bounding box only. Returns false when the image has no zero pixel at all.
template <Region R>
bool image_map(const Mask2D& a, const Mask2D& b, const Box& box, bool padded, float* out,
               int num_threads) {
  zero_outside(out, a.height, a.width, box);
  if (box.empty()) return true;
  const Grid gr = edt::crop_grid(a, b, box, padded);
  return distance_map<R>(gr, out + box.y0 * a.width + box.x0, a.width, Plan(num_threads, gr));
}

int resolved(int num_threads) { return num_threads > 0 ? num_threads : default_threads(); }

}  // namespace

void distance_transform(const Mask2D& mask, float* out, int num_threads) {
  Box box;
  image_boxes<Region::Set, Region::Set>(mask, mask, resolved(num_threads), &box, nullptr);
  if (!image_map<Region::Set>(mask, mask, box, false, out, num_threads))
    std::fill(out, out + mask.height * mask.width, std::numeric_limits<float>::infinity());
}

void error_regions(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude, int64_t n_exclude,
                   float* dist_fn, float* dist_fp, int num_threads) {
  Box fn, fp;
  image_boxes<Region::FalseNegative, Region::FalsePositive>(pred, gt, resolved(num_threads), &fn,
                                                            &fp);
  image_map<Region::FalseNegative>(pred, gt, fn, true, dist_fn, num_threads);
  image_map<Region::FalsePositive>(pred, gt, fp, true, dist_fp, num_threads);
  const int64_t h = pred.height, w = pred.width;
  for (int64_t i = 0; i < n_exclude; ++i) {
    const int64_t x = exclude[2 * i], y = exclude[2 * i + 1];
    if (x >= 0 && x < w && y >= 0 && y < h) dist_fn[y * w + x] = dist_fp[y * w + x] = 0.0f;
  }
}

namespace {

// In-box exclusions as sorted unique linear indices of the box.
std::vector<int64_t> exclusion_index(const int64_t* xy, int64_t n, const Box& box) {
  std::vector<int64_t> idx;
  const int64_t w = box.x1 - box.x0 + 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x = xy[2 * i], y = xy[2 * i + 1];
    if (x >= box.x0 && x <= box.x1 && y >= box.y0 && y <= box.y1)
      idx.push_back((y - box.y0) * w + (x - box.x0));
  }
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}

// Per-row maxima of one error map on its bounding box (exclusions applied), then its global
// maximum and the first pixel in row-major order whose float32 distance equals the maximum's.
template <Region R>
struct MaxSearch {
  Box box;
  Grid gr;
  std::vector<int64_t> excl;
  std::unique_ptr<int32_t[]> gl;  // forward sweep, uninitialised
  std::unique_ptr<ColumnSweep<R>> sweep;
  std::vector<int32_t> row_max, row_arg;

  MaxSearch(const Mask2D& pred, const Mask2D& gt, const Box& b, const int64_t* exclude,
            int64_t n_exclude)
      : box(b) {
    if (box.empty()) return;
    gr = edt::crop_grid(pred, gt, box, true);
    excl = exclusion_index(exclude, n_exclude, box);
    gl.reset(new int32_t[size_t(gr.h * gr.w)]);
    row_max.assign(size_t(gr.h), 0);
    row_arg.assign(size_t(gr.h), 0);
  }

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

  void run(int num_threads) {
    if (box.empty()) return;
    const Plan plan(num_threads, gr);
    sweep.reset(new ColumnSweep<R>(gr, gl.get(), gr.w, plan.strips));
    sweep_forward(*sweep, plan.threads);
    parallel_for(sweep->strips(), plan.threads, [&](int64_t t) {
      RowScratch rs(gr.w);
      sweep->backward(int(t), rs.next_zero.data(), rs.g.data(), [&](int64_t y, const int32_t* g) {
        int32_t best = 0, arg = 0;
        scan_row(y, g, rs, [&](int64_t x, int32_t d) {
          if (d > best) best = d, arg = int32_t(x);
        });
        row_max[y] = best, row_arg[y] = arg;
      });
    });
  }

  int32_t max() const {
    return row_max.empty() ? 0 : *std::max_element(row_max.begin(), row_max.end());
  }

  // First pixel (image coordinates) whose float32 distance equals root(max()) (usually
  // d2 == max(); two squared distances share a float32 root once distances pass ~2048 px).
  void argmax(int64_t* x, int64_t* y) const {
    const int32_t m = max();
    int32_t t = m;
    while (t > 1 && root(t - 1) == root(m)) --t;
    int64_t row = 0;
    while (row_max[row] < t) ++row;
    int64_t col = row_arg[row];
    if (t < m) {  // rare: sweep the row's strip again for its column distances
      RowScratch rs(gr.w);
      int64_t first = -1;
      sweep->backward(sweep->strip_of(row), rs.next_zero.data(), rs.g.data(),
                      [&](int64_t yy, const int32_t* g) {
                        if (yy != row) return;
                        scan_row(row, g, rs, [&](int64_t xx, int32_t d) {
                          if (first < 0 && d >= t) first = xx;
                        });
                      });
      col = first;
    }
    *y = box.y0 + row, *x = box.x0 + col;
  }
};

}  // namespace

ClickResult next_click(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                       int64_t n_exclude, int num_threads) {
  // Each map is computed on its region's bounding box: the 1-px zero border of the simulator and
  // the non-region pixels around the box are the box's zero sides.
  Box fn_box, fp_box;
  image_boxes<Region::FalseNegative, Region::FalsePositive>(pred, gt, resolved(num_threads),
                                                            &fn_box, &fp_box);
  MaxSearch<Region::FalseNegative> fn(pred, gt, fn_box, exclude, n_exclude);
  MaxSearch<Region::FalsePositive> fp(pred, gt, fp_box, exclude, n_exclude);
  fn.run(num_threads);
  fp.run(num_threads);
  const float fn_max = root(fn.max()), fp_max = root(fp.max());
  ClickResult r;
  if (fn_max == 0.0f && fp_max == 0.0f) return r;
  r.found = true;
  r.positive = fn_max > fp_max;  // ties -> negative
  if (r.positive)
    fn.argmax(&r.x, &r.y);
  else
    fp.argmax(&r.x, &r.y);
  r.distance = r.positive ? fn_max : fp_max;
  return r;
}

}  // namespace msrt::cpu
