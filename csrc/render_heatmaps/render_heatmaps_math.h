// Per-element math of render_heatmaps shared by the C++ CPU loops and the CUDA kernels.
//
// Convention: keypoints[n, t, m, v] = (x, y) in pixels, scores[n, t, m, v]; pixel (i, j) of an
// H x W map has centre (x, y) = (j, i); output[n, c, t, i, j] with c a joint (keypoint mode) or
// a limb (limbs[c] = (a, b), limb mode). Each (frame, channel, person) draws one primitive:
//   point   (a keypoint, or a limb shorter than one pixel, |b - a|^2 < 1, drawn at a):
//             value = peak * exp(-e), e = |p - a|^2 / (2 sigma^2)
//   segment (a limb): c = clamp(((p - a) . u) / |u|^2, 0, 1), u = b - a, r = p - a - c u,
//             e = |r|^2 / (2 sigma^2), value = peak * exp(-e), peak = min(s_a, s_b) (s_a on ties)
// and the map is max(0, values of the persons). A keypoint is valid when x, y and its score are
// finite and the score is >= 1e-3; a primitive needs all its end points valid. Full mode: the
// value is 0 where e > 104; pyskl_window mode: 0 outside pyskl's window
// [max(int(lo - 3 sigma), 0), min(int(hi + 3 sigma) + 1, extent)) on each axis (lo / hi the
// primitive's coordinate range, int truncating toward zero, coordinates clamped to +-2^24 first)
// and the plain Gaussian inside it. See skelops/reference/render_heatmaps.py.
//
// Every primitive carries the box of pixels that may be nonzero (the window, or the bounding box
// of the e <= 104 region widened by a rounding margin), so the kernels visit only that box.
// Point values are computed separably, exp(-e_y) * (peak * exp(-e_x)) with e_x = dx^2 / (2
// sigma^2), e_y = dy^2 / (2 sigma^2), and the cut-off tests e_x + e_y <= 104: within ~2 ulp of
// exp(-(dx^2 + dy^2) / (2 sigma^2)), and it lets the CPU loop take one exp per row and column.
#pragma once

#include <skelops/common.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace skelops::render_heatmaps {

constexpr double kScoreThreshold = 1e-3;  // pyskl's EPS
constexpr double kExponentCutoff = 104.0;  // exp(-104) < 2^-149: zero in float32
constexpr double kWindowClamp = 16777216.0;  // 2^24: window bounds of huge coordinates

enum PrimitiveKind : int32_t { kNothing = 0, kPoint = 1, kSegment = 2 };

// One (frame, channel, person)'s Gaussian. Boxes are half-open pixel ranges inside the canvas,
// [x0, x1) x [y0, y1), both empty (0, 0) when nothing is drawn.
template <typename acc_t>
struct Primitive {
  acc_t ax, ay;     // the point, or the segment's start a
  acc_t ux, uy;     // b - a (segments)
  acc_t length2;    // |u|^2 (segments)
  acc_t peak;       // the value at distance 0
  int32_t x0, x1, y0, y1;
  int32_t kind;       // PrimitiveKind
  int32_t peak_from;  // which end point's score is the peak: 0 = a, 1 = b
};

// Constants of one call, in the accumulation dtype (float32; float64 for float64 keypoints).
template <typename acc_t>
struct Params {
  acc_t two_sigma2;   // 2 sigma^2, the reference's divisor
  acc_t three_sigma;  // half-width of pyskl's window
  acc_t inv_sigma2;   // 1 / sigma^2, for d value / d position
  double reach;       // sigma * sqrt(2 * 104): no pixel farther than this is nonzero (full mode)
  int32_t height, width;
  bool window;        // pyskl_window
};

template <typename acc_t>
inline Params<acc_t> make_params(double sigma, int64_t height, int64_t width, bool window) {
  Params<acc_t> q{};
  q.two_sigma2 = static_cast<acc_t>(2.0 * sigma * sigma);
  q.three_sigma = static_cast<acc_t>(3.0 * sigma);
  q.inv_sigma2 = static_cast<acc_t>(1.0 / (sigma * sigma));
  q.reach = sigma * std::sqrt(2.0 * kExponentCutoff);
  q.height = static_cast<int32_t>(height);
  q.width = static_cast<int32_t>(width);
  q.window = window;
  return q;
}

SKELOPS_HD float bits_to_float(int32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
#endif
}

// exp(-e) for e >= 0. float32: Cephes' expf reduction and polynomial (about 1.5 ulp),
// branch-free so that the CPU loops vectorise and CUDA needs no special function unit; below
// float32's normal range (e > 87, exp(-e) < 1.7e-38) and for a NaN it returns 0, as CUDA's
// flush-to-zero does: subnormal operands cost the CPU a microcode assist per instruction, and
// they change no value by more than 1.7e-38 times the peak. float64: exp.
SKELOPS_HD float exp_neg(float e) {
  constexpr float kLastNormal = 87.0f;
  const float x = -(e < kLastNormal ? e : kLastNormal);  // NaN -> 87
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |n| < 2^22); n in [-126, 0].
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;  // ln 2 in two parts: n * 0.693359375 is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float result = p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
  return e <= kLastNormal ? result : 0.0f;
}

SKELOPS_HD double exp_neg(double e) { return exp(-e); }

SKELOPS_HD bool is_finite_value(float v) { return v - v == 0.0f; }
SKELOPS_HD bool is_finite_value(double v) { return v - v == 0.0; }

template <typename acc_t>
SKELOPS_HD bool valid_keypoint(acc_t x, acc_t y, acc_t s) {
  return is_finite_value(x) && is_finite_value(y) && is_finite_value(s) &&
         s >= static_cast<acc_t>(kScoreThreshold);
}

// pyskl's window on one axis for the coordinate range [lo, hi], as [begin, end) inside
// [0, extent) (0, 0 when empty).
template <typename acc_t>
SKELOPS_HD void window_axis(acc_t lo, acc_t hi, acc_t three_sigma, int32_t extent,
                            int32_t* begin, int32_t* end) {
  const acc_t limit = static_cast<acc_t>(kWindowClamp);
  acc_t b = lo - three_sigma, e = hi + three_sigma;
  b = b < -limit ? -limit : (b > limit ? limit : b);
  e = e < -limit ? -limit : (e > limit ? limit : e);
  int64_t bi = static_cast<int64_t>(b);  // truncation toward zero, as int() / torch.trunc
  int64_t ei = static_cast<int64_t>(e) + 1;
  bi = bi < 0 ? 0 : bi;
  ei = ei > extent ? extent : ei;
  if (bi >= ei) bi = ei = 0;
  *begin = static_cast<int32_t>(bi);
  *end = static_cast<int32_t>(ei);
}

// The pixels within `reach` of the coordinate range [lo, hi] on one axis (full mode), widened
// by a margin for the rounding of the float32 distance and exponent, as [begin, end).
SKELOPS_HD void reach_axis(double lo, double hi, double reach, int32_t extent, int32_t* begin,
                           int32_t* end) {
  const double margin = 1e-3 * (reach + 1.0) + (fabs(lo) + fabs(hi) + extent) * 2.5e-7;
  double b = ceil(lo - reach - margin), e = floor(hi + reach + margin) + 1.0;
  b = b < 0.0 ? 0.0 : b;
  e = e > extent ? static_cast<double>(extent) : e;
  if (!(b < e)) b = e = 0.0;
  *begin = static_cast<int32_t>(b);
  *end = static_cast<int32_t>(e);
}

template <typename acc_t>
SKELOPS_HD void set_box(Primitive<acc_t>* p, acc_t lo_x, acc_t hi_x, acc_t lo_y, acc_t hi_y,
                        const Params<acc_t>& q) {
  if (q.window) {
    window_axis(lo_x, hi_x, q.three_sigma, q.width, &p->x0, &p->x1);
    window_axis(lo_y, hi_y, q.three_sigma, q.height, &p->y0, &p->y1);
  } else {
    reach_axis(static_cast<double>(lo_x), static_cast<double>(hi_x), q.reach, q.width, &p->x0,
               &p->x1);
    reach_axis(static_cast<double>(lo_y), static_cast<double>(hi_y), q.reach, q.height, &p->y0,
               &p->y1);
  }
  if (p->x0 >= p->x1 || p->y0 >= p->y1) p->x0 = p->x1 = p->y0 = p->y1 = 0;
}

template <typename acc_t>
SKELOPS_HD Primitive<acc_t> nothing() {
  Primitive<acc_t> p{};
  p.kind = kNothing;
  return p;
}

// Keypoint mode: the point (x, y) with score s.
template <typename acc_t>
SKELOPS_HD Primitive<acc_t> make_point(acc_t x, acc_t y, acc_t s, const Params<acc_t>& q) {
  if (!valid_keypoint(x, y, s)) return nothing<acc_t>();
  Primitive<acc_t> p{};
  p.kind = kPoint;
  p.ax = x;
  p.ay = y;
  p.peak = s;
  p.peak_from = 0;
  set_box(&p, x, x, y, y, q);
  return p;
}

// Limb mode: the limb from a = (ax, ay) (score sa) to b = (bx, by) (score sb).
template <typename acc_t>
SKELOPS_HD Primitive<acc_t> make_limb(acc_t ax, acc_t ay, acc_t sa, acc_t bx, acc_t by, acc_t sb,
                                      const Params<acc_t>& q) {
  if (!valid_keypoint(ax, ay, sa) || !valid_keypoint(bx, by, sb)) return nothing<acc_t>();
  const acc_t ux = bx - ax, uy = by - ay;
  const acc_t length2 = ux * ux + uy * uy;
  if (length2 < static_cast<acc_t>(1)) return make_point(ax, ay, sa, q);  // pyskl: a's Gaussian
  Primitive<acc_t> p{};
  p.kind = kSegment;
  p.ax = ax;
  p.ay = ay;
  p.ux = ux;
  p.uy = uy;
  p.length2 = length2;
  p.peak_from = sa <= sb ? 0 : 1;
  p.peak = sa <= sb ? sa : sb;
  set_box(&p, ax < bx ? ax : bx, ax < bx ? bx : ax, ay < by ? ay : by, ay < by ? by : ay, q);
  return p;
}

// e of a point along one axis: d^2 / (2 sigma^2), d = pixel - coordinate.
template <typename acc_t>
SKELOPS_HD acc_t axis_exponent(acc_t d, acc_t two_sigma2) {
  return d * d / two_sigma2;
}

template <typename acc_t>
SKELOPS_HD bool within_cutoff(acc_t e) {
  return e <= static_cast<acc_t>(kExponentCutoff);
}

// A point's value from its axis exponents, gy = exp(-e_y) and gx_peak = peak * exp(-e_x).
// (Both sides of the selections are computed: branch-free, so that the CPU loops vectorise.)
template <typename acc_t>
SKELOPS_HD acc_t point_value(acc_t ex, acc_t ey, acc_t gx_peak, acc_t gy, bool window) {
  const acc_t v = gy * gx_peak;
  return (window || within_cutoff(ex + ey)) ? v : static_cast<acc_t>(0);
}

// A segment at pixel (px, py): the clamped coefficient c, the residual r and the exponent.
template <typename acc_t>
struct SegmentPoint {
  acc_t along, rx, ry, e;
};

template <typename acc_t>
SKELOPS_HD SegmentPoint<acc_t> segment_at(const Primitive<acc_t>& p, acc_t px, acc_t py,
                                          acc_t two_sigma2) {
  SegmentPoint<acc_t> s;
  const acc_t wx = px - p.ax, wy = py - p.ay;
  acc_t c = (wx * p.ux + wy * p.uy) / p.length2;
  c = c < static_cast<acc_t>(0) ? static_cast<acc_t>(0)
                                : (c > static_cast<acc_t>(1) ? static_cast<acc_t>(1) : c);
  s.along = c;
  s.rx = wx - c * p.ux;
  s.ry = wy - c * p.uy;
  s.e = (s.rx * s.rx + s.ry * s.ry) / two_sigma2;
  return s;
}

// exp(-e) where the primitive is drawn (0 past the cut-off in full mode).
template <typename acc_t>
SKELOPS_HD acc_t gaussian_of(acc_t e, bool window) {
  const acc_t g = exp_neg(e);
  return (window || within_cutoff(e)) ? g : static_cast<acc_t>(0);
}

// The value of any primitive at pixel (j, i), for the CUDA kernels (the CPU loops hoist the
// same arithmetic per row and column). The caller has checked that the pixel is in the box.
template <typename acc_t>
SKELOPS_HD acc_t primitive_value(const Primitive<acc_t>& p, int32_t i, int32_t j,
                                 const Params<acc_t>& q) {
  const acc_t px = static_cast<acc_t>(j), py = static_cast<acc_t>(i);
  if (p.kind == kPoint) {
    const acc_t ex = axis_exponent(px - p.ax, q.two_sigma2);
    const acc_t ey = axis_exponent(py - p.ay, q.two_sigma2);
    return point_value(ex, ey, p.peak * exp_neg(ex), exp_neg(ey), q.window);
  }
  const SegmentPoint<acc_t> s = segment_at(p, px, py, q.two_sigma2);
  return p.peak * gaussian_of(s.e, q.window);
}

template <typename acc_t>
SKELOPS_HD bool in_box(const Primitive<acc_t>& p, int32_t i, int32_t j) {
  return j >= p.x0 && j < p.x1 && i >= p.y0 && i < p.y1;
}

// Gradient slots of one primitive (summed over its pixels, with the pixel's grad g):
//   [0, 1] d/da, [2, 3] d/db, [4] d/ds_a, [5] d/ds_b.
constexpr int kGradSlots = 6;

// Adds one pixel's contribution: value v = peak * G at the pixel, grad g.
template <typename acc_t>
SKELOPS_HD void add_point_grad(acc_t g, acc_t v, acc_t gaussian, acc_t dx, acc_t dy,
                               acc_t* sums) {
  const acc_t gv = g * v;
  sums[0] += gv * dx;
  sums[1] += gv * dy;
  sums[4] += g * gaussian;
}

template <typename acc_t>
SKELOPS_HD void add_segment_grad(acc_t g, acc_t v, acc_t gaussian, const SegmentPoint<acc_t>& s,
                                 acc_t* sums) {
  const acc_t gv = g * v;
  const acc_t to_b = gv * s.along, to_a = gv - to_b;  // gv (1 - c), gv c
  sums[0] += to_a * s.rx;
  sums[1] += to_a * s.ry;
  sums[2] += to_b * s.rx;
  sums[3] += to_b * s.ry;
  sums[4] += g * gaussian;
}

// Turns a primitive's pixel sums into its gradient slots: positions times 1 / sigma^2, the
// peak's gradient to the end point it came from.
template <typename acc_t>
SKELOPS_HD void finish_grad(const Primitive<acc_t>& p, const acc_t* sums, acc_t inv_sigma2,
                            acc_t* slots) {
  for (int k = 0; k < 4; ++k) slots[k] = sums[k] * inv_sigma2;
  slots[4] = p.peak_from == 0 ? sums[4] : static_cast<acc_t>(0);
  slots[5] = p.peak_from == 0 ? static_cast<acc_t>(0) : sums[4];
}

}  // namespace skelops::render_heatmaps
