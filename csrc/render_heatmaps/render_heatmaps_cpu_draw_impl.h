// The per-pixel loops of render_heatmaps_cpu_draw.h, defined in namespace
// skelops::render_heatmaps::SKELOPS_RENDER_HEATMAPS_ISA: included once per instruction set by
// the translation unit compiled for it (hence no include guard): render_heatmaps_cpu.cpp
// (baseline; it also uses for_each_value, the backward's visit of a box) and
// render_heatmaps_avx2_cpu.cpp (AVX2 + FMA). Everything here is torch-free and calls no library
// function, so that the AVX2 copy shares no weak symbol with the baseline one (the AVX2 unit
// also inlines render_heatmaps_math.h's functions, see there).
//
// Points are drawn separably: per box, one exp per column (times the peak) and per row, then a
// product, a cut-off test and a max per pixel, contiguous runs that vectorise. Segments take
// one (inlined, branch-free, vectorisable) exp per pixel of the box. (Trimming each box row to
// the segment's capsule, whose pixels outside are exactly 0, was measured: the per-row bounds
// and the shorter, tail-heavy rows cost what the skipped pixels saved.)
#include "render_heatmaps/render_heatmaps_cpu_draw.h"
#include "render_heatmaps/render_heatmaps_math.h"

#include <cstdint>
#include <type_traits>

#ifndef SKELOPS_RENDER_HEATMAPS_ISA
#error "define SKELOPS_RENDER_HEATMAPS_ISA before including this file"
#endif

namespace skelops::render_heatmaps::SKELOPS_RENDER_HEATMAPS_ISA {

template <typename acc_t>
inline void fill_tables(const Primitive<acc_t>& p, const Params<acc_t>& q,
                        const AxisTables<acc_t>& t) {
  const acc_t two_sigma2 = q.two_sigma2, ax = p.ax, ay = p.ay, peak = p.peak;
  acc_t *ex = t.ex, *gx = t.gx, *gx_peak = t.gx_peak, *ey = t.ey, *gy = t.gy;
  for (int32_t j = p.x0; j < p.x1; ++j) {
    const acc_t e = axis_exponent(static_cast<acc_t>(j) - ax, two_sigma2);
    const acc_t g = exp_neg(e);
    ex[j] = e;
    gx[j] = g;
    gx_peak[j] = peak * g;
  }
  for (int32_t i = p.y0; i < p.y1; ++i) {
    const acc_t e = axis_exponent(static_cast<acc_t>(i) - ay, two_sigma2);
    ey[i] = e;
    gy[i] = exp_neg(e);
  }
}

template <typename acc_t, typename out_t>
inline void store_max(out_t& o, acc_t v) {
  if constexpr (std::is_same_v<acc_t, out_t>) {
    o = v > o ? v : o;
  } else {
    if (v > static_cast<acc_t>(o)) o = static_cast<out_t>(v);
  }
}

// out[i * row_stride + j * col_stride] = max(out, value) over the primitive's box.
template <bool kWindow, bool kUnitStride, typename acc_t, typename out_t>
inline void draw(const Primitive<acc_t>& primitive, const Params<acc_t>& q,
                 const AxisTables<acc_t>& tables, out_t* base, int64_t row_stride,
                 int64_t col_stride) {
  // Local copies: the stores cannot alias them, so the loops keep them in registers.
  const Primitive<acc_t> p = primitive;
  const acc_t two_sigma2 = q.two_sigma2;
  const int32_t x0 = p.x0, x1 = p.x1;
  if (p.kind == kPoint) {
    fill_tables(p, q, tables);
    const acc_t* ex = tables.ex;
    const acc_t* gx_peak = tables.gx_peak;
    for (int32_t i = p.y0; i < p.y1; ++i) {
      out_t* row = base + i * row_stride;
      const acc_t ey = tables.ey[i], gy = tables.gy[i];
      for (int32_t j = x0; j < x1; ++j) {
        const acc_t v = point_value(ex[j], ey, gx_peak[j], gy, kWindow);
        store_max(row[kUnitStride ? j : j * col_stride], v);
      }
    }
  } else if (p.kind == kSegment) {
    for (int32_t i = p.y0; i < p.y1; ++i) {
      out_t* row = base + i * row_stride;
      const acc_t py = static_cast<acc_t>(i);
      for (int32_t j = x0; j < x1; ++j) {
        const SegmentPoint<acc_t> s = segment_at(p, static_cast<acc_t>(j), py, two_sigma2);
        store_max(row[kUnitStride ? j : j * col_stride], p.peak * gaussian_of(s.e, kWindow));
      }
    }
  }
}

template <bool kWindow, bool kUnitStride, typename acc_t, typename out_t>
inline void draw_all(const ChannelDraw<acc_t, out_t>& a) {
  for (int64_t m = 0; m < a.count; ++m) {
    draw<kWindow, kUnitStride>(a.prims[m], a.q, a.tables, a.base, a.row_stride, a.col_stride);
  }
}

template <typename acc_t, typename out_t>
inline void draw_channel_impl(const ChannelDraw<acc_t, out_t>& a) {
  if (a.q.window) {
    a.col_stride == 1 ? draw_all<true, true>(a) : draw_all<true, false>(a);
  } else {
    a.col_stride == 1 ? draw_all<false, true>(a) : draw_all<false, false>(a);
  }
}

// Calls f(i, j, v, gaussian, s) for every pixel of the primitive's box, with the value v exactly
// as the forward computes it and s the pixel's coefficient and residual (a point's: c = 0,
// r = p - a). Only the baseline build has it (the backward, render_heatmaps_cpu.cpp).
template <bool kWindow, typename acc_t, typename F>
inline void for_each_value(const Primitive<acc_t>& p, const Params<acc_t>& q,
                           const AxisTables<acc_t>& tables, F&& f) {
  if (p.kind == kPoint) {
    fill_tables(p, q, tables);
    for (int32_t i = p.y0; i < p.y1; ++i) {
      const acc_t ey = tables.ey[i], gy = tables.gy[i];
      const acc_t dy = static_cast<acc_t>(i) - p.ay;
      for (int32_t j = p.x0; j < p.x1; ++j) {
        const acc_t v = point_value(tables.ex[j], ey, tables.gx_peak[j], gy, kWindow);
        SegmentPoint<acc_t> s;
        s.along = 0;
        s.rx = static_cast<acc_t>(j) - p.ax;
        s.ry = dy;
        s.e = 0;
        f(i, j, v, gy * tables.gx[j], s);
      }
    }
  } else if (p.kind == kSegment) {
    for (int32_t i = p.y0; i < p.y1; ++i) {
      const acc_t py = static_cast<acc_t>(i);
      for (int32_t j = p.x0; j < p.x1; ++j) {
        const SegmentPoint<acc_t> s = segment_at(p, static_cast<acc_t>(j), py, q.two_sigma2);
        const acc_t g = gaussian_of(s.e, kWindow);
        f(i, j, p.peak * g, g, s);
      }
    }
  }
}

}  // namespace skelops::render_heatmaps::SKELOPS_RENDER_HEATMAPS_ISA
