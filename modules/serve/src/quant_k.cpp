// The k-quants: Q4_K and Q6_K weights and the Q8_K activations they pair
// with. The quantizers follow llama.cpp's reference ones: a least-squares
// search for each sub-block's scale (and min), then the sub-block scales are
// themselves quantized against one f16 super-block scale.
#include "kernels/matmul_blocks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace weft::serve::kernels {

namespace {

/// Below this a group of weights counts as all zero.
constexpr float group_zero = 1e-15f;

/// Asymmetric fit for Q4_K: x ~ scale * l - min_out with l in [0, nmax],
/// minimising the error weighted by `w`. Starts from the plain min/max grid,
/// then tries 21 slightly different grid densities, refitting scale and min
/// by weighted least squares on each candidate's levels. Returns the scale;
/// `min_out` gets the (non-negative) offset, `levels` the chosen l.
float fit_scale_min(const float* x, const float* w, int n, int nmax, std::uint8_t* levels, float& min_out) {
    float lo = x[0];
    float hi = x[0];
    float sum_w = w[0];
    float sum_x = w[0] * x[0];
    for (int i = 1; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    lo = std::min(lo, 0.0f);
    if (hi == lo) {
        std::fill_n(levels, n, std::uint8_t{0});
        min_out = -lo;
        return 0.0f;
    }
    float inv = static_cast<float>(nmax) / (hi - lo);
    float scale = 1.0f / inv;
    float offset = lo;
    float best = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = std::clamp(nearest_int(inv * (x[i] - lo)), 0, nmax);
        levels[i] = static_cast<std::uint8_t>(l);
        const float diff = scale * static_cast<float>(l) + lo - x[i];
        best += w[i] * diff * diff;
    }
    std::uint8_t trial[qk_k];
    for (int step = 0; step <= 20; ++step) {
        inv = (-1.0f + 0.1f * static_cast<float>(step) + static_cast<float>(nmax)) / (hi - lo);
        float sum_l = 0.0f;
        float sum_l2 = 0.0f;
        float sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(inv * (x[i] - lo)), 0, nmax);
            trial[i] = static_cast<std::uint8_t>(l);
            const float fl = static_cast<float>(l);
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0.0f)) {
            continue;
        }
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_offset = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_offset > 0.0f) { // the offset may only lower the grid
            this_offset = 0.0f;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0.0f;
        for (int i = 0; i < n; ++i) {
            const float diff = this_scale * static_cast<float>(trial[i]) + this_offset - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best) {
            std::copy_n(trial, n, levels);
            best = err;
            scale = this_scale;
            offset = this_offset;
        }
    }
    min_out = -offset;
    return scale;
}

/// Symmetric fit for Q6_K: x ~ scale * l with l in [-nmax, nmax - 1], error
/// weighted by x^2 (large weights matter most). Tries 19 grid densities
/// around the one that maps the largest magnitude onto -nmax and keeps the
/// least-squares best. Returns the scale (negative when the largest
/// magnitude is positive); `levels` get l + nmax.
float fit_scale_symmetric(const float* x, int n, int nmax, std::uint8_t* levels) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    if (amax < group_zero) {
        std::fill_n(levels, n, std::uint8_t{0});
        return 0.0f;
    }
    float best_sum_lx = 0.0f;
    float best_scale = 0.0f;
    float best_inv = 0.0f;
    bool have = false;
    for (int step = 0; step <= 18; ++step) {
        // Step 0 is the plain grid; then -0.9 .. +0.9 around it.
        const int is = step == 0 ? 0 : (step <= 9 ? step - 10 : step - 9);
        const float inv = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        float sum_lx = 0.0f;
        float sum_l2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(inv * x[i]), -nmax, nmax - 1);
            const float fl = static_cast<float>(l);
            const float wt = x[i] * x[i];
            sum_lx += wt * x[i] * fl;
            sum_l2 += wt * fl * fl;
        }
        if (!have) {
            best_scale = sum_l2 != 0.0f ? sum_lx / sum_l2 : 0.0f;
            best_sum_lx = sum_lx;
            best_inv = inv;
            have = true;
            continue;
        }
        // Larger sum_lx^2 / sum_l2 means a smaller weighted squared error.
        if (sum_l2 > 0.0f && sum_lx * sum_lx > best_scale * best_sum_lx * sum_l2) {
            best_scale = sum_lx / sum_l2;
            best_sum_lx = sum_lx;
            best_inv = inv;
        }
    }
    for (int i = 0; i < n; ++i) {
        levels[i] = static_cast<std::uint8_t>(nmax + std::clamp(nearest_int(best_inv * x[i]), -nmax, nmax - 1));
    }
    return best_scale;
}

} // namespace

// --- Q4_K ------------------------------------------------------------------------

void quantize_row_q4_k(const float* x, block_q4_k* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b, x += qk_k) {
        std::uint8_t levels[qk_k];
        float scales[8];
        float mins[8];
        float max_scale = 0.0f;
        float max_min = 0.0f;
        for (int j = 0; j < 8; ++j) {
            const float* xs = x + 32 * j;
            float sum_x2 = 0.0f;
            for (int l = 0; l < 32; ++l) {
                sum_x2 += xs[l] * xs[l];
            }
            const float rms = std::sqrt(sum_x2 / 32.0f);
            float weights[32];
            for (int l = 0; l < 32; ++l) {
                weights[l] = rms + std::fabs(xs[l]);
            }
            scales[j] = fit_scale_min(xs, weights, 32, 15, levels + 32 * j, mins[j]);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        block_q4_k& out = y[b];
        std::memset(out.scales, 0, sizeof out.scales);
        for (int j = 0; j < 8; ++j) {
            const auto ls = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
            const auto lm = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
            if (j < 4) {
                out.scales[j] = ls;
                out.scales[j + 4] = lm;
            } else {
                out.scales[j + 4] = static_cast<std::uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
                out.scales[j - 4] = static_cast<std::uint8_t>(out.scales[j - 4] | ((ls >> 4) << 6));
                out.scales[j] = static_cast<std::uint8_t>(out.scales[j] | ((lm >> 4) << 6));
            }
        }
        out.d = f32_to_f16(max_scale / 63.0f);
        out.dmin = f32_to_f16(max_min / 63.0f);
        // Requantize against the scales as stored (6-bit, f16 super scales).
        for (int j = 0; j < 8; ++j) {
            std::uint8_t sc = 0;
            std::uint8_t m = 0;
            q4_k_scale_min(j, out.scales, sc, m);
            const float d = f16_to_f32(out.d) * static_cast<float>(sc);
            if (d == 0.0f) {
                continue;
            }
            const float dm = f16_to_f32(out.dmin) * static_cast<float>(m);
            for (int l = 0; l < 32; ++l) {
                const int l4 = std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, 15);
                levels[32 * j + l] = static_cast<std::uint8_t>(l4);
            }
        }
        for (int g = 0; g < 4; ++g) {
            for (int l = 0; l < 32; ++l) {
                out.qs[32 * g + l] = static_cast<std::uint8_t>(levels[64 * g + l] | (levels[64 * g + 32 + l] << 4));
            }
        }
    }
}

void dequantize_row_q4_k(const block_q4_k* x, float* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b) {
        const float d = f16_to_f32(x[b].d);
        const float dmin = f16_to_f32(x[b].dmin);
        std::uint8_t sc[8];
        std::uint8_t m[8];
        q4_k_unpack_scales(x[b].scales, sc, m);
        for (int g = 0; g < 4; ++g) {
            const std::uint8_t* q = x[b].qs + 32 * g;
            const float d_lo = d * static_cast<float>(sc[2 * g]);
            const float m_lo = dmin * static_cast<float>(m[2 * g]);
            const float d_hi = d * static_cast<float>(sc[2 * g + 1]);
            const float m_hi = dmin * static_cast<float>(m[2 * g + 1]);
            for (int l = 0; l < 32; ++l) {
                *y++ = d_lo * static_cast<float>(q[l] & 0xf) - m_lo;
            }
            for (int l = 0; l < 32; ++l) {
                *y++ = d_hi * static_cast<float>(q[l] >> 4) - m_hi;
            }
        }
    }
}

float vec_dot_q4_k_q8_k(const block_q4_k* w, const block_q8_k* x, std::size_t n) {
    float sum = 0.0f;
    for (std::size_t b = 0; b < n / qk_k; ++b) {
        std::uint8_t sc[8];
        std::uint8_t m[8];
        q4_k_unpack_scales(w[b].scales, sc, m);
        int sumi = 0;
        int summ = 0;
        for (int j = 0; j < 8; ++j) {
            const std::uint8_t* q = w[b].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            int s = 0;
            for (int l = 0; l < 32; ++l) {
                s += ((q[l] >> shift) & 0xf) * x[b].qs[32 * j + l];
            }
            sumi += sc[j] * s;
            summ += m[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        const float d = f16_to_f32(w[b].d) * x[b].d;
        const float dmin = f16_to_f32(w[b].dmin) * x[b].d;
        sum += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
    }
    return sum;
}

// --- Q6_K ------------------------------------------------------------------------

void quantize_row_q6_k(const float* x, block_q6_k* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b, x += qk_k) {
        std::uint8_t levels[qk_k];
        float scales[16];
        float max_scale = 0.0f;
        float max_abs_scale = 0.0f;
        for (int j = 0; j < 16; ++j) {
            scales[j] = fit_scale_symmetric(x + 16 * j, 16, 32, levels + 16 * j);
            if (std::fabs(scales[j]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[j]);
                max_scale = scales[j];
            }
        }
        block_q6_k& out = y[b];
        if (max_abs_scale < group_zero) {
            std::memset(&out, 0, sizeof out);
            continue;
        }
        // The largest scale maps onto -128, so the int8 scales use their full range.
        const float inv = -128.0f / max_scale;
        out.d = f32_to_f16(1.0f / inv);
        for (int j = 0; j < 16; ++j) {
            out.scales[j] = static_cast<std::int8_t>(std::min(127, nearest_int(inv * scales[j])));
        }
        for (int j = 0; j < 16; ++j) {
            const float d = f16_to_f32(out.d) * static_cast<float>(out.scales[j]);
            if (d == 0.0f) {
                continue;
            }
            for (int l = 0; l < 16; ++l) {
                const int q = std::clamp(nearest_int(x[16 * j + l] / d), -32, 31);
                levels[16 * j + l] = static_cast<std::uint8_t>(q + 32);
            }
        }
        for (int half = 0; half < 2; ++half) {
            const std::uint8_t* lv = levels + 128 * half;
            std::uint8_t* ql = out.ql + 64 * half;
            std::uint8_t* qh = out.qh + 32 * half;
            for (int l = 0; l < 32; ++l) {
                ql[l] = static_cast<std::uint8_t>((lv[l] & 0xf) | ((lv[l + 64] & 0xf) << 4));
                ql[l + 32] = static_cast<std::uint8_t>((lv[l + 32] & 0xf) | ((lv[l + 96] & 0xf) << 4));
                qh[l] = static_cast<std::uint8_t>((lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) |
                                                  ((lv[l + 64] >> 4) << 4) | ((lv[l + 96] >> 4) << 6));
            }
        }
    }
}

namespace {

/// The 6-bit level (0..63) of element `i` of a Q6_K block.
int q6_k_level(const block_q6_k& b, int i) noexcept {
    const int half = i / 128;
    const int quarter = (i % 128) / 32;
    const int l = i % 32;
    const std::uint8_t low = b.ql[64 * half + 32 * (quarter % 2) + l];
    const int nibble = quarter < 2 ? (low & 0xf) : (low >> 4);
    const int high = (b.qh[32 * half + l] >> (2 * quarter)) & 3;
    return nibble | (high << 4);
}

} // namespace

void dequantize_row_q6_k(const block_q6_k* x, float* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b) {
        const float d = f16_to_f32(x[b].d);
        for (int i = 0; i < static_cast<int>(qk_k); ++i) {
            *y++ = d * static_cast<float>(x[b].scales[i / 16]) * static_cast<float>(q6_k_level(x[b], i) - 32);
        }
    }
}

float vec_dot_q6_k_q8_k(const block_q6_k* w, const block_q8_k* x, std::size_t n) {
    float sum = 0.0f;
    for (std::size_t b = 0; b < n / qk_k; ++b) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int l = 0; l < 16; ++l) {
                s += (q6_k_level(w[b], 16 * j + l) - 32) * x[b].qs[16 * j + l];
            }
            sumi += w[b].scales[j] * s;
        }
        sum += f16_to_f32(w[b].d) * x[b].d * static_cast<float>(sumi);
    }
    return sum;
}

// --- Q8_K ------------------------------------------------------------------------

void quantize_row_q8_k(const float* x, block_q8_k* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b, x += qk_k) {
        float amax = 0.0f;
        float max = 0.0f;
        for (std::size_t j = 0; j < qk_k; ++j) {
            if (std::fabs(x[j]) > amax) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        block_q8_k& out = y[b];
        if (amax == 0.0f) {
            std::memset(&out, 0, sizeof out);
            continue;
        }
        const float inv = -127.0f / max;
        for (std::size_t j = 0; j < qk_k; ++j) {
            out.qs[j] = static_cast<std::int8_t>(std::min(127, nearest_int(inv * x[j])));
        }
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int l = 0; l < 16; ++l) {
                s += out.qs[16 * j + l];
            }
            out.bsums[j] = static_cast<std::int16_t>(s);
        }
        out.d = 1.0f / inv;
    }
}

void dequantize_row_q8_k(const block_q8_k* x, float* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b) {
        for (std::size_t j = 0; j < qk_k; ++j) {
            *y++ = x[b].d * static_cast<float>(x[b].qs[j]);
        }
    }
}

} // namespace weft::serve::kernels
