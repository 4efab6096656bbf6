#include "kernels/packed_f32.hpp"

#include "kernels/huge_buffer.hpp"

#include "kernels/matmul.hpp"
#include "kernels/matmul_impl.hpp"
#include "kernels/transpose_avx512.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#if WEFT_KERNELS_X86
// GCC 12's own AVX-512 headers trip its uninitialised-use warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace weft::serve::kernels {

namespace {

constexpr std::size_t P = packed_f32::panel_rows;

/// `tokens` split into the fewest tiles of at most `max_width`, whose widths
/// differ by at most one (20 at most 8 wide: 7+7+6, not 8+8+4): a narrow
/// tile loads more per FMA, and one of too few tokens has too few FMA chains
/// to cover the FMA's latency.
struct token_tiles {
    token_tiles(std::size_t tokens, std::size_t max_width) noexcept
        : count((tokens + max_width - 1) / max_width), even(tokens / count), wider(tokens % count) {}
    /// The width of tile `tile` (< count); the wider ones come first.
    [[nodiscard]] std::size_t width(std::size_t tile) const noexcept { return even + (tile < wider ? 1 : 0); }

    std::size_t count, even, wider;
};


/// One panel, tokens one at a time, in the lane order of the SIMD paths.
void multiply_scalar(const float* panel, std::size_t k, const float* x, std::size_t x_stride, std::size_t tokens,
                     float* y, std::size_t y_stride, std::size_t valid) {
    for (std::size_t t = 0; t < tokens; ++t) {
        float acc[P] = {};
        const float* xt = x + t * x_stride;
        for (std::size_t kk = 0; kk < k; ++kk) {
            for (std::size_t l = 0; l < P; ++l) acc[l] = std::fma(panel[kk * P + l], xt[kk], acc[l]);
        }
        std::copy_n(acc, valid, y + t * y_stride);
    }
}

#if WEFT_KERNELS_X86
/// Cache lines of the panels a thread multiplies next, asked into L2 a few
/// per k step while the current panels are being multiplied. A model's
/// weights do not fit in the caches, and the hardware prefetcher alone
/// follows two 32 KiB panel streams too slowly: without this a batch of 32
/// ran at ~65% of the FMA peak it reaches on cache-resident weights. The
/// tiles of one group of panels share the next group's lines between them,
/// so each line is asked for once.
struct prefetch_run {
    const char* next = nullptr;
    const char* end = nullptr;
    std::size_t per_step = 0; // lines per k step

    void step() noexcept {
        for (std::size_t i = 0; i < per_step && next < end; ++i, next += 64) {
            prefetch(reinterpret_cast<const std::byte*>(next));
        }
    }
};

/// The lines [begin, begin + bytes) split among `tiles` tiles in turn (their
/// sizes differ by at most one line), each asking for its share over `k`
/// steps. The divisions are done once for all the tiles: three a tile
/// showed in a tiny model's profile beside its tiles.
class prefetch_shares {
public:
    prefetch_shares(const float* begin, std::size_t bytes, std::size_t tiles, std::size_t k) noexcept
        : m_next(reinterpret_cast<const char*>(begin)) {
        if (begin == nullptr || bytes == 0 || tiles == 0) return;
        const std::size_t lines = bytes / 64;
        m_each = lines / tiles;
        m_more = lines % tiles;
        // The widest share's lines over k steps, rounded up: a narrower one
        // ends early, bounded by its end.
        m_per_step = (m_each + (m_more != 0 ? 1 : 0) + k - 1) / std::max<std::size_t>(k, 1);
    }
    /// Tile `tile`'s share; tiles are taken in order, from 0.
    prefetch_run take(std::size_t tile) noexcept {
        if (m_next == nullptr) return {};
        const char* first = m_next;
        m_next += 64 * (m_each + (tile < m_more ? 1 : 0));
        return {first, m_next, m_per_step};
    }

private:
    const char* m_next = nullptr;
    std::size_t m_each = 0, m_more = 0, m_per_step = 0;
};

/// out[kk * 16 + t] = x[t * x_stride + kk] for t < tokens (at most 16),
/// kk < k: the tokens' activations k-major, so that a tile's broadcasts of
/// one k step read one 64-byte line through one pointer. Rows are stored
/// whole; their lanes past `tokens` are never read.
WEFT_TARGET_AVX512 void transpose_tokens(const float* x, std::size_t x_stride, std::size_t tokens, std::size_t k,
                                         float* out) noexcept {
    const std::size_t k16 = k & ~std::size_t{15};
    for (std::size_t kb = 0; kb < k16; kb += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (std::size_t i = 0; i < 16; ++i) {
            r[i] = i < tokens ? _mm512_loadu_ps(x + i * x_stride + kb) : _mm512_setzero_ps();
        }
        transpose16(r);
#pragma GCC unroll 16
        for (std::size_t j = 0; j < 16; ++j) _mm512_storeu_ps(out + (kb + j) * 16, r[j]);
    }
    for (std::size_t kk = k16; kk < k; ++kk) {
        for (std::size_t i = 0; i < tokens; ++i) out[kk * 16 + i] = x[i * x_stride + kk];
    }
}

/// Panels (1 to 4) x T tokens with 16-lane accumulators. Token t's element
/// kk is x[t * x_stride + kk], or with KMajor (see transpose_tokens)
/// x[kk * x_stride + t]: read through one pointer, the T broadcasts of a k
/// step take no register each. With a pointer per token row an 8-token tile
/// runs out of general registers and spills in its loop: 96% of the FMA
/// peak on cache-resident panels, against 100% k-major or 6 tokens wide.
template <std::size_t Panels, std::size_t T, bool KMajor>
WEFT_TARGET_AVX512 void tile_avx512(const float* panel, std::size_t panel_stride, std::size_t k, const float* x,
                                    std::size_t x_stride, float* y, std::size_t y_stride, std::size_t valid,
                                    const prefetch_run& shares) {
    // The share comes by reference and is copied here: passed by value, the
    // 24-byte struct was rebuilt on the caller's stack before every call.
    prefetch_run pf = shares;
    __m512 acc[Panels][T];
#pragma GCC unroll 16
    for (std::size_t p = 0; p < Panels; ++p) {
#pragma GCC unroll 8
        for (std::size_t t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
    }
    for (std::size_t kk = 0; kk < k; ++kk) {
        __m512 w[Panels];
#pragma GCC unroll 4
        for (std::size_t p = 0; p < Panels; ++p) w[p] = _mm512_load_ps(panel + p * panel_stride + kk * P);
        pf.step();
#pragma GCC unroll 8
        for (std::size_t t = 0; t < T; ++t) {
            const __m512 xb = _mm512_set1_ps(KMajor ? x[kk * x_stride + t] : x[t * x_stride + kk]);
#pragma GCC unroll 4
            for (std::size_t p = 0; p < Panels; ++p) acc[p][t] = _mm512_fmadd_ps(w[p], xb, acc[p][t]);
        }
    }
#pragma GCC unroll 4
    for (std::size_t p = 0; p < Panels; ++p) {
        const std::size_t rows = std::min(P, valid - std::min(valid, p * P));
        const __mmask16 mask = static_cast<__mmask16>(rows >= P ? 0xffffu : (1u << rows) - 1u);
#pragma GCC unroll 8
        for (std::size_t t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * y_stride + p * P, mask, acc[p][t]);
    }
}

/// One k step of a one-panel AVX2 tile: acc[h][t] += w[kk][8h..8h+7] * x_t[kk].
template <std::size_t T>
WEFT_TARGET_AVX2 inline __attribute__((always_inline)) void step_avx2(__m256 (&acc)[2][T], const float* panel,
                                                                     std::size_t kk, const float* x,
                                                                     std::size_t x_stride) {
    const __m256 w0 = _mm256_load_ps(panel + kk * P);
    const __m256 w1 = _mm256_load_ps(panel + kk * P + 8);
#pragma GCC unroll 8
    for (std::size_t t = 0; t < T; ++t) {
        const __m256 xb = _mm256_broadcast_ss(x + t * x_stride + kk);
        acc[0][t] = _mm256_fmadd_ps(w0, xb, acc[0][t]);
        acc[1][t] = _mm256_fmadd_ps(w1, xb, acc[1][t]);
    }
}

/// One panel (two 8-lane halves) x T tokens. The first `pf_lines` k steps
/// (at most k) each ask for one line from `pf` on, the tile's share of the
/// next panel: in a loop of their own, so the steps after them carry no
/// test at all. Asked for a line at a time under a bound tested on every
/// step, as the AVX-512 tiles do, a tiny model's F32 products (cached
/// panels, 64 k steps a tile, where every cycle of a step shows) ran up to
/// a seventh slower on a Zen 3 core.
template <std::size_t T>
WEFT_TARGET_AVX2 void tile_avx2(const float* panel, std::size_t k, const float* x, std::size_t x_stride, float* y,
                                std::size_t y_stride, std::size_t valid, const char* pf, std::size_t pf_lines) {
    __m256 acc[2][T];
#pragma GCC unroll 8
    for (std::size_t t = 0; t < T; ++t) {
        acc[0][t] = _mm256_setzero_ps();
        acc[1][t] = _mm256_setzero_ps();
    }
    std::size_t kk = 0;
    for (; kk < pf_lines; ++kk, pf += 64) {
        step_avx2<T>(acc, panel, kk, x, x_stride);
        prefetch(reinterpret_cast<const std::byte*>(pf));
    }
    for (; kk < k; ++kk) step_avx2<T>(acc, panel, kk, x, x_stride);
    if (valid >= P) {
#pragma GCC unroll 8
        for (std::size_t t = 0; t < T; ++t) {
            _mm256_storeu_ps(y + t * y_stride, acc[0][t]);
            _mm256_storeu_ps(y + t * y_stride + 8, acc[1][t]);
        }
        return;
    }
    alignas(32) float tmp[P];
    // Unrolled like the loops above: indexing acc with a run-time t would
    // make GCC keep the accumulators in memory, stored on every k step.
#pragma GCC unroll 8
    for (std::size_t t = 0; t < T; ++t) {
        _mm256_store_ps(tmp, acc[0][t]);
        _mm256_store_ps(tmp + 8, acc[1][t]);
        std::copy_n(tmp, valid, y + t * y_stride);
    }
}

using avx512_fn = void (*)(const float*, std::size_t, std::size_t, const float*, std::size_t, float*, std::size_t,
                           std::size_t, const prefetch_run&);
using avx2_fn = void (*)(const float*, std::size_t, const float*, std::size_t, float*, std::size_t, std::size_t,
                         const char*, std::size_t);

template <std::size_t Panels, bool KMajor, std::size_t... T>
constexpr std::array<avx512_fn, sizeof...(T)> avx512_table(std::index_sequence<T...>) {
    return {&tile_avx512<Panels, T + 1, KMajor>...};
}
template <std::size_t... T>
constexpr std::array<avx2_fn, sizeof...(T)> avx2_table(std::index_sequence<T...>) {
    return {&tile_avx2<T + 1>...};
}

// 3 panels x 8 tokens: 24 accumulators, 3 weight vectors and a broadcast of
// the 32 registers. Against 2 panels (16 accumulators) the tile loads a
// third fewer vectors per FMA: ~3% more of the FMA peak on a batch of 32
// (111 against 108 GFLOP/s on one core, whose peak is ~116), 15% faster
// streaming of cached weights for one token.
// 4 panels x 6 tokens (24 accumulators, 4 weights and a broadcast) loads
// as few vectors per FMA, and takes four panels that would otherwise leave
// one (or two) to a narrow tile: 64-row products (a small model's attention
// output and down projection) in one pass instead of 3 + 1 panels, whose
// 1-panel tile loads a vector per FMA.
constexpr std::size_t avx512_panels = 3;
constexpr std::size_t avx512_tokens = 8;
constexpr std::size_t avx512_tokens_four = 6;
constexpr std::size_t avx2_tokens = 6;   // 2 halves x 6 tokens: 12 accumulators
/// The tiles of each group size, [0] for activations by rows and [1] k-major.
template <std::size_t Panels, std::size_t Width>
constexpr std::array<std::array<avx512_fn, Width>, 2> avx512_tables = {
    avx512_table<Panels, false>(std::make_index_sequence<Width>{}),
    avx512_table<Panels, true>(std::make_index_sequence<Width>{})};
constexpr auto& avx512_panel_four = avx512_tables<4, avx512_tokens_four>;
constexpr auto& avx512_panel_three = avx512_tables<3, avx512_tokens>;
constexpr auto& avx512_panel_two = avx512_tables<2, avx512_tokens>;
constexpr auto& avx512_panel_one = avx512_tables<1, avx512_tokens>;
/// The token counts whose activations are multiplied k-major: one block
/// of 16 (a 64-byte line per k step). Fewer tokens' tiles (at most 6 wide)
/// have registers for a pointer per token, and transposing costs more than
/// it saves in a step of few tokens, which streaming the weights bounds (a
/// batch of 4 of `small`: 8% slower steps). More tokens k-major would be a
/// line per k step for each tile, half or less of it read: a 512-token
/// prompt computed 9% slower than from its rows.
constexpr std::size_t k_major_min = 7, k_major_max = 16;
constexpr auto avx2_panel_tiles = avx2_table(std::make_index_sequence<avx2_tokens>{});
#endif

} // namespace

packed_f32::packed_f32(const float* w, std::size_t rows, std::size_t k, std::size_t row_stride)
    : m_rows(rows), m_k(k), m_panels((rows + P - 1) / P), m_data(allocate_huge(m_panels * P * k * sizeof(float))) {
    float* out = data();
    for (std::size_t p = 0; p < m_panels; ++p) {
        for (std::size_t kk = 0; kk < k; ++kk) {
            for (std::size_t l = 0; l < P; ++l) {
                const std::size_t r = p * P + l;
                *out++ = r < rows ? w[r * row_stride + kk] : 0.0f;
            }
        }
    }
}

void packed_f32::multiply(const float* x, std::size_t x_stride, std::size_t tokens, std::size_t row_begin,
                          std::size_t row_end, float* y, std::size_t y_stride) const {
    row_end = std::min(row_end, m_rows);
    if (row_begin >= row_end || tokens == 0) return;
    const std::size_t panel_floats = P * m_k;
#if WEFT_KERNELS_X86
    const isa path = active_isa();
    if (path == isa::avx512) {
        // 7 to 16 tokens' activations k-major, in this thread's buffer:
        // multiply runs on several threads at once.
        const bool k_major = tokens >= k_major_min && tokens <= k_major_max;
        const float* xk = x;
        std::size_t xk_stride = x_stride;
        if (k_major) {
            static_assert(k_major_max == 16, "transpose_tokens writes rows of 16 tokens");
            thread_local std::vector<float> buffer;
            xk_stride = k_major_max;
            if (buffer.size() < xk_stride * m_k) buffer.resize(xk_stride * m_k);
            transpose_tokens(x, x_stride, tokens, m_k, buffer.data());
            xk = buffer.data();
        }
        // Panels in groups of three (8 tokens a tile) or four (6 tokens),
        // chosen so that a range leaves a narrower group only when it has 1,
        // 2 or 5 panels: 4 -> 4, 7 -> 4+3, 8 -> 4+4, 5 -> 3+2.
        auto group_panels = [](std::size_t left) -> std::size_t {
            if (left % 3 == 1 && left >= 4) return 4;
            if (left % 3 == 2 && left >= 8) return 4;
            return std::min<std::size_t>(left, left >= 3 ? 3 : 2);
        };
        for (std::size_t r = row_begin; r < row_end;) {
            const std::size_t panels = group_panels((row_end - r + P - 1) / P);
            const std::size_t valid = std::min(panels * P, row_end - r);
            const float* panel = data() + r / P * panel_floats;
            const std::size_t width = panels == 4 ? avx512_tokens_four : avx512_tokens;
            const avx512_fn* table = panels == 4   ? avx512_panel_four[k_major].data()
                                     : panels == 3 ? avx512_panel_three[k_major].data()
                                     : panels == 2 ? avx512_panel_two[k_major].data()
                                                   : avx512_panel_one[k_major].data();
            // The next group's panels of this row range.
            const std::size_t next_rows =
                r + valid < row_end ? std::min(group_panels((row_end - r - valid + P - 1) / P) * P, row_end - r - valid)
                                    : 0;
            const float* next = next_rows ? panel + panels * panel_floats : nullptr;
            const std::size_t next_bytes = (next_rows + P - 1) / P * panel_floats * sizeof(float);
            const token_tiles tiles(tokens, width);
            prefetch_shares shares(next, next_bytes, tiles.count, m_k);
            for (std::size_t t = 0, tile = 0; t < tokens; ++tile) {
                const std::size_t n = tiles.width(tile);
                table[n - 1](panel, panel_floats, m_k, k_major ? xk + t : xk + t * xk_stride, xk_stride,
                             y + t * y_stride + r, y_stride, valid, shares.take(tile));
                t += n;
            }
            r += valid;
        }
        return;
    }
    if (path == isa::avx2) {
        // Tiles of equal width (19: 5+5+5+4, not 6+6+6+1). A tile of fewer
        // than four tokens has fewer than eight accumulators, too few to
        // cover the FMA's latency (4 cycles, two issued a cycle), and runs
        // at its chains' pace: 19 tokens as 6+6+6+1 ran 10-15% slower.
        const token_tiles tiles(tokens, avx2_tokens);
        // A panel is one line (16 floats) a k step, k lines in all: the
        // tiles of a panel ask for the next panel's lines in shares of at
        // most k, in order, one a k step.
        static_assert(P * sizeof(float) == 64, "tile_avx2 prefetches one 64-byte line a k step");
        const std::size_t share = (m_k + tiles.count - 1) / tiles.count;
        for (std::size_t r = row_begin; r < row_end; r += P) {
            const std::size_t valid = std::min(P, row_end - r);
            const float* panel = data() + r / P * panel_floats;
            const char* next = reinterpret_cast<const char*>(panel + panel_floats);
            std::size_t left = r + P < row_end ? m_k : 0; // lines of the next panel not yet asked for
            for (std::size_t t = 0, tile = 0; t < tokens; ++tile) {
                const std::size_t n = tiles.width(tile);
                const std::size_t lines = std::min(share, left);
                avx2_panel_tiles[n - 1](panel, m_k, x + t * x_stride, x_stride, y + t * y_stride + r, y_stride, valid,
                                        next, lines);
                next += 64 * lines;
                left -= lines;
                t += n;
            }
        }
        return;
    }
#endif
    for (std::size_t r = row_begin; r < row_end; r += P) {
        multiply_scalar(data() + r / P * panel_floats, m_k, x, x_stride, tokens, y + r, y_stride,
                        std::min(P, row_end - r));
    }
}

} // namespace weft::serve::kernels
