// Connected components on the CPU: union-find over runs.
//
// 1. Rows are split into strips (a few per thread). Each strip extracts the runs of set pixels of
//    its rows (64 pixels per SIMD step) and unites every run with the runs it touches in the row
//    above, in a strip-local forest whose roots are always the smallest run index.
// 2. The forests are concatenated (runs stay in raster order) and the first row of each strip is
//    united with the last row of the strip before it.
// 3. One sequential pass over the runs gives labels 1..K: a run whose parent is itself is the
//    first run of its component in raster order (roots are minimal), so labels follow the raster
//    order of each component's first pixel whatever the number of threads; stats come from runs.
// 4. The strips write their rows of the output in parallel.
// Strips are shared among threads by parallel_for (cpu/parallel.h).
// Memory traffic: the mask is read once and the output written once.
#include "ops/components.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/mask_bits.h"
#include "cpu/parallel.h"

namespace msrt::cpu {
namespace {

struct Strip {
  int64_t y0 = 0, y1 = 0;
  std::vector<int32_t> xs;         // run j covers [xs[2j], xs[2j + 1])
  std::vector<int32_t> row_begin;  // rows + 1 local run offsets
  std::vector<int32_t> parent;     // strip-local forest, parent[j] <= j
  int64_t offset = 0;              // global index of the strip's first run
};

inline int32_t find_root(int32_t* parent, int32_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];  // path halving keeps parent[j] <= j
    x = parent[x];
  }
  return x;
}

inline void unite(int32_t* parent, int32_t a, int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b)
    parent[b] = a;
  else if (b < a)
    parent[a] = b;
}

// Unites the runs of a row (cur, cn runs, forest index cid..) with the touching runs of the row
// above it (prev, pn runs, forest index pid..). d = 1 for 8-connectivity (diagonals touch),
// 0 for 4.
void link_rows(const int32_t* prev, int32_t pn, int32_t pid, const int32_t* cur, int32_t cn,
               int32_t cid, int d, int32_t* parent) {
  int32_t j = 0;
  for (int32_t r = 0; r < cn; ++r) {
    const int32_t s = cur[2 * r], e = cur[2 * r + 1];
    while (j < pn && prev[2 * j + 1] + d <= s) ++j;
    for (int32_t k = j; k < pn && prev[2 * k] < e + d; ++k) unite(parent, cid + r, pid + k);
  }
}

// Runs of one set (the mask's set pixels, or its zero pixels when `invert`) with their forest.
class RunForest {
 public:
  RunForest(const Mask2D& m, int connectivity, bool invert, int num_threads)
      : m_(m), d_(connectivity == 8 ? 1 : 0), invert_(invert) {
    // An explicit thread count also fixes the number of strips (tests cut small masks into
    // strips this way); by default, up to 4 strips per thread of at least 64 K pixels each.
    threads_ = num_threads > 0 ? num_threads : default_threads();
    int64_t n = num_threads > 0
                    ? num_threads
                    : (threads_ == 1
                           ? 1
                           : std::min<int64_t>(4 * int64_t(threads_), (m.height * m.width) >> 16));
    n = std::max<int64_t>(1, std::min<int64_t>(n, m.height));
    strips_.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) {
      strips_[t].y0 = m.height * t / n;
      strips_[t].y1 = m.height * (t + 1) / n;
    }
    scan_strips();
    merge_strips();
  }

  // Number of components (roots of the forest).
  int64_t count_roots() const {
    int64_t k = 0;
    for (size_t i = 0; i < parent_.size(); ++i) k += parent_[i] == int32_t(i);
    return k;
  }

  // Replaces the forest by labels 1..K (raster order of first pixel); calls
  // visit(label, y, x0, x1_exclusive) for every run in raster order. Returns K.
  template <typename Visit>
  int64_t assign_labels(Visit&& visit) {
    int32_t k = 0;
    int32_t* lab = parent_.data();
    for (const Strip& s : strips_) {
      for (int64_t y = s.y0; y < s.y1; ++y) {
        const int64_t r = y - s.y0;
        for (int32_t j = s.row_begin[r]; j < s.row_begin[r + 1]; ++j) {
          const int64_t i = s.offset + j;
          lab[i] = lab[i] == int32_t(i) ? ++k : lab[lab[i]];  // lab[i] < i is already a label
          visit(lab[i], y, s.xs[2 * j], s.xs[2 * j + 1]);
        }
      }
    }
    return k;
  }

  // After assign_labels: calls write_row(y, runs, n_runs, labels_of_runs) for every row, the
  // strips in parallel.
  template <typename WriteRow>
  void for_each_row(WriteRow&& write_row) const {
    parallel_for(int64_t(strips_.size()), threads_, [&](int64_t t) {
      const Strip& s = strips_[t];
      for (int64_t y = s.y0; y < s.y1; ++y) {
        const int64_t r = y - s.y0;
        const int32_t j0 = s.row_begin[r], j1 = s.row_begin[r + 1];
        write_row(y, s.xs.data() + 2 * j0, j1 - j0, parent_.data() + s.offset + j0);
      }
    });
  }

 private:
  void scan_strips() {
    const int32_t w = int32_t(m_.width);
    const uint64_t flip = invert_ ? ~uint64_t(0) : 0;
    parallel_for(int64_t(strips_.size()), threads_, [&](int64_t t) {
      Strip& s = strips_[t];
      s.row_begin.assign(size_t(s.y1 - s.y0 + 1), 0);
      for (int64_t y = s.y0; y < s.y1; ++y) {
        const uint8_t* row = m_.data + y * m_.stride_y;
        const int64_t r = y - s.y0;
        const int32_t first = int32_t(s.xs.size() / 2);
        s.row_begin[r] = first;
        bits::for_each_run(
            w,
            [&](int32_t x0, int n) {
              return (bits::nonzero_bits(row + x0, n) ^ flip) & bits::valid_mask(n);
            },
            [&](int32_t a, int32_t b) {
              s.xs.push_back(a);
              s.xs.push_back(b);
              s.parent.push_back(int32_t(s.parent.size()));
            });
        const int32_t last = int32_t(s.xs.size() / 2);
        if (r > 0) {
          const int32_t p0 = s.row_begin[r - 1];
          link_rows(s.xs.data() + 2 * p0, first - p0, p0, s.xs.data() + 2 * first, last - first,
                    first, d_, s.parent.data());
        }
      }
      s.row_begin[s.y1 - s.y0] = int32_t(s.xs.size() / 2);
    });
  }

  void merge_strips() {
    int64_t total = 0;
    for (Strip& s : strips_) {
      s.offset = total;
      total += int64_t(s.parent.size());
    }
    parent_.resize(size_t(total));
    parallel_for(int64_t(strips_.size()), threads_, [&](int64_t t) {
      const Strip& s = strips_[t];
      for (size_t j = 0; j < s.parent.size(); ++j)
        parent_[s.offset + j] = int32_t(s.offset) + s.parent[j];
    });
    for (size_t t = 1; t < strips_.size(); ++t) {
      const Strip& a = strips_[t - 1];
      const Strip& b = strips_[t];
      const int64_t ra = a.y1 - a.y0 - 1;
      const int32_t a0 = a.row_begin[ra], a1 = a.row_begin[ra + 1];
      const int32_t b0 = b.row_begin[0], b1 = b.row_begin[1];
      link_rows(a.xs.data() + 2 * a0, a1 - a0, int32_t(a.offset + a0), b.xs.data() + 2 * b0,
                b1 - b0, int32_t(b.offset + b0), d_, parent_.data());
    }
  }

  const Mask2D& m_;
  int d_;
  bool invert_;
  int threads_ = 1;
  std::vector<Strip> strips_;
  std::vector<int32_t> parent_;  // global forest, then labels
};

// Writes one output row: `gap` outside the runs, value_of(run) on run pixels.
template <typename T, typename Value>
inline void write_runs(T* out, int64_t width, const int32_t* xs, int32_t n, T gap,
                       Value&& value_of) {
  int32_t x = 0;
  for (int32_t j = 0; j < n; ++j) {
    const int32_t a = xs[2 * j], b = xs[2 * j + 1];
    std::fill(out + x, out + a, gap);
    std::fill(out + a, out + b, value_of(j));
    x = b;
  }
  std::fill(out + x, out + width, gap);
}

}  // namespace

int64_t label_components(const Mask2D& mask, int connectivity, int32_t* labels,
                         ComponentStats* stats, int num_threads) {
  RunForest forest(mask, connectivity, false, num_threads);
  std::vector<int64_t>& areas = stats->areas;
  std::vector<int64_t>& boxes = stats->boxes;
  areas.clear();
  boxes.clear();
  const int64_t k = forest.assign_labels([&](int32_t l, int64_t y, int32_t a, int32_t b) {
    if (size_t(l) > areas.size()) {  // first run of a new component
      areas.push_back(0);
      boxes.insert(boxes.end(), {a, y, b - 1, y});
    }
    int64_t* box = &boxes[4 * size_t(l - 1)];
    areas[l - 1] += b - a;
    box[0] = std::min<int64_t>(box[0], a);
    box[2] = std::max<int64_t>(box[2], b - 1);
    box[3] = y;  // runs arrive in raster order
  });
  const int64_t w = mask.width;
  forest.for_each_row([&](int64_t y, const int32_t* xs, int32_t n, const int32_t* lab) {
    write_runs<int32_t>(labels + y * w, w, xs, n, 0, [&](int32_t j) { return lab[j]; });
  });
  return k;
}

int64_t count_components(const Mask2D& mask, int connectivity, int num_threads) {
  return RunForest(mask, connectivity, false, num_threads).count_roots();
}

void keep_largest_component(const Mask2D& mask, int connectivity, uint8_t* out, int num_threads) {
  RunForest forest(mask, connectivity, false, num_threads);
  std::vector<int64_t> areas;
  forest.assign_labels([&](int32_t l, int64_t, int32_t a, int32_t b) {
    if (size_t(l) > areas.size()) areas.push_back(0);
    areas[l - 1] += b - a;
  });
  // max_element returns the first maximum: ties go to the lowest label. No component: best = 0
  // matches no run, so the output is all zero.
  const int32_t best =
      areas.empty() ? 0 : int32_t(std::max_element(areas.begin(), areas.end()) - areas.begin()) + 1;
  const int64_t w = mask.width;
  forest.for_each_row([&](int64_t y, const int32_t* xs, int32_t n, const int32_t* lab) {
    write_runs<uint8_t>(out + y * w, w, xs, n, 0,
                        [&](int32_t j) { return uint8_t(lab[j] == best); });
  });
}

void fill_holes(const Mask2D& mask, int connectivity, int64_t max_area, uint8_t* out,
                int num_threads) {
  // Holes are background components with the complementary connectivity.
  RunForest forest(mask, connectivity == 8 ? 4 : 8, true, num_threads);
  const int64_t h = mask.height, w = mask.width;
  std::vector<int64_t> areas;
  std::vector<uint8_t> border;
  forest.assign_labels([&](int32_t l, int64_t y, int32_t a, int32_t b) {
    if (size_t(l) > areas.size()) {
      areas.push_back(0);
      border.push_back(0);
    }
    areas[l - 1] += b - a;
    border[l - 1] |= uint8_t(y == 0 || y == h - 1 || a == 0 || b == w);
  });
  std::vector<uint8_t> fill(areas.size() + 1, 0);
  for (size_t i = 0; i < areas.size(); ++i)
    fill[i + 1] = uint8_t(!border[i] && (max_area < 0 || areas[i] <= max_area));
  forest.for_each_row([&](int64_t y, const int32_t* xs, int32_t n, const int32_t* lab) {
    write_runs<uint8_t>(out + y * w, w, xs, n, 1, [&](int32_t j) { return fill[lab[j]]; });
  });
}

}  // namespace msrt::cpu
