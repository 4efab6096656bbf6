#include "kernels/kernels.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

using namespace weft::serve;

TEST_CASE("swiglu matches silu(gate) * up in double precision, tails and extremes included", "[kernels]") {
    // 8-lane body and scalar tail both covered: n = 37.
    std::vector<float> gate{-200.0f, -88.5f, -87.0f, -30.0f, -1.0f, -1e-3f, 0.0f, 1e-3f, 0.5f, 1.0f, 3.0f, 20.0f, 87.0f, 95.0f};
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 4.0f);
    while (gate.size() < 37) gate.push_back(dist(rng));
    std::vector<float> up(gate.size());
    for (float& u : up) u = dist(rng);
    std::vector<float> out(gate.size());
    kernels::swiglu(gate.data(), up.data(), out.data(), gate.size());
    for (std::size_t i = 0; i < gate.size(); ++i) {
        INFO("gate " << gate[i] << " up " << up[i]);
        const double g = gate[i];
        const double expected = g / (1.0 + std::exp(-g)) * up[i];
        CHECK(std::isfinite(out[i]));
        CHECK(std::abs(out[i] - expected) <= 1e-6 * std::abs(expected) + 1e-30);
    }
}

TEST_CASE("swiglu gives an element the same bits through its sixteen- and eight-lane paths", "[kernels]") {
    // Over [0, 24) elements 16..23 take the eight-lane path; over [16, 48)
    // the same elements take the sixteen-lane one (on CPUs that have it).
    std::mt19937 rng(5);
    std::normal_distribution<float> dist(0.0f, 6.0f);
    std::vector<float> gate(48), up(48), whole(48), first(24), second(32);
    for (float& g : gate) g = dist(rng);
    for (float& u : up) u = dist(rng);
    kernels::swiglu(gate.data(), up.data(), whole.data(), 48);
    kernels::swiglu(gate.data(), up.data(), first.data(), 24);
    kernels::swiglu(gate.data() + 16, up.data() + 16, second.data(), 32);
    for (std::size_t i = 0; i < 24; ++i) CHECK(first[i] == whole[i]);
    for (std::size_t i = 0; i < 32; ++i) CHECK(second[i] == whole[16 + i]);
}

TEST_CASE("rmsnorm matches the double-precision formula on SIMD bodies and scalar tails", "[kernels]") {
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    // 16-element steps with and without a tail, and rows shorter than a step.
    for (std::size_t n : {512u, 37u, 16u, 7u, 1u}) {
        INFO("n " << n);
        std::vector<float> x(n), w(n), out(n);
        for (float& v : x) v = dist(rng);
        for (float& v : w) v = dist(rng);
        kernels::rmsnorm(x.data(), w.data(), out.data(), n, 1e-5f);
        double ss = 0;
        for (float v : x) ss += static_cast<double>(v) * v;
        const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-5);
        for (std::size_t i = 0; i < n; ++i) {
            const double expected = x[i] * scale * w[i];
            CHECK(std::abs(out[i] - expected) <= 1e-6 * std::abs(expected) + 1e-6);
        }
    }
}

TEST_CASE("rmsnorm_rows gives every row the bits rmsnorm gives it alone, in place or not", "[kernels]") {
    std::mt19937 rng(13);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    // Widths the four-row path takes (multiples of 16) and one it leaves to
    // rmsnorm; row counts with and without a remainder after groups of four.
    for (std::size_t n : {64u, 16u, 528u, 40u}) {
        for (std::size_t rows : {0u, 1u, 3u, 4u, 5u, 9u, 12u}) {
            INFO("n " << n << " rows " << rows);
            std::vector<float> x(rows * n), w(n), alone(rows * n), together(rows * n);
            for (float& v : x) v = dist(rng);
            for (float& v : w) v = dist(rng);
            if (rows > 1) {
                for (float& v : std::span(x).subspan(n, n)) v *= 1e-3f; // rows far apart in scale
            }
            for (std::size_t r = 0; r < rows; ++r) {
                kernels::rmsnorm(&x[r * n], w.data(), &alone[r * n], n, 1e-5f);
            }
            kernels::rmsnorm_rows(x.data(), w.data(), together.data(), rows, n, 1e-5f);
            CHECK(together == alone);
            kernels::rmsnorm_rows(x.data(), w.data(), x.data(), rows, n, 1e-5f);
            CHECK(x == alone);
        }
    }
}

TEST_CASE("add_inplace adds every element, tails included", "[kernels]") {
    for (std::size_t n : {37u, 8u, 3u}) {
        std::vector<float> x(n), y(n);
        for (std::size_t i = 0; i < n; ++i) {
            x[i] = static_cast<float>(i);
            y[i] = 0.5f * static_cast<float>(i) + 1.0f;
        }
        kernels::add_inplace(x.data(), y.data(), n);
        for (std::size_t i = 0; i < n; ++i) CHECK(x[i] == 1.5f * static_cast<float>(i) + 1.0f);
    }
}

TEST_CASE("exp_weights gives e^((x - max) * scale), zero for banned tokens, on SIMD bodies and scalar tails",
          "[kernels]") {
    std::mt19937 rng(13);
    std::normal_distribution<float> dist(0.0f, 5.0f);
    const float banned = -std::numeric_limits<float>::infinity();
    for (std::size_t n : {4096u, 37u, 8u, 3u}) {
        for (float scale : {1.0f, 0.5f, 10.0f}) {
            INFO("n " << n << " scale " << scale);
            std::vector<float> x(n);
            for (float& v : x) v = dist(rng);
            x[n / 2] = banned;
            if (n > 8) x[n - 1] = banned; // one in the tail too
            float max = banned;
            for (float v : x) max = std::max(max, v);
            std::vector<float> out(n, -1.0f);
            kernels::exp_weights(x.data(), max, scale, out.data(), n);
            for (std::size_t i = 0; i < n; ++i) {
                if (x[i] == banned) {
                    CHECK(out[i] == 0.0f);
                    continue;
                }
                const double d = (static_cast<double>(x[i]) - max) * scale;
                const double expected = std::exp(d);
                // The exponent is computed in float (error ~6e-8 of |d|, which
                // e^d turns into a relative error); below e^-87 the result is
                // clamped near 1.6e-38: tiny either way.
                CHECK(std::abs(out[i] - expected) <= (1e-6 + 2.4e-7 * std::abs(d)) * expected + 2e-38);
            }
        }
    }
}

TEST_CASE("max_or_nan finds the maximum and any NaN, in SIMD bodies and scalar tails", "[kernels]") {
    const float inf = std::numeric_limits<float>::infinity();
    for (std::size_t n : {1u, 7u, 8u, 37u, 4096u}) {
        INFO("n " << n);
        std::vector<float> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(static_cast<float>(i)) * 10.0f;
        const float expected = *std::max_element(x.begin(), x.end());
        CHECK(kernels::max_or_nan(x.data(), n) == expected);
        for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
            std::vector<float> y = x;
            y[at] = std::numeric_limits<float>::quiet_NaN();
            CHECK(std::isnan(kernels::max_or_nan(y.data(), n)));
            y[at] = 1e30f;
            CHECK(kernels::max_or_nan(y.data(), n) == 1e30f);
        }
        std::vector<float> banned(n, -inf);
        CHECK(kernels::max_or_nan(banned.data(), n) == -inf);
    }
    CHECK(kernels::max_or_nan(nullptr, 0) == -inf);
}

TEST_CASE("find_first gives the lowest index holding the value, n when none does", "[kernels]") {
    const float inf = std::numeric_limits<float>::infinity();
    for (std::size_t n : {1u, 7u, 8u, 31u, 32u, 33u, 64u, 100u, 512u}) {
        INFO("n " << n);
        std::vector<float> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
        for (std::size_t at = 0; at < n; ++at) {
            std::vector<float> y = x;
            y[at] = 9.0f;
            CHECK(kernels::find_first(y.data(), n, 9.0f) == at);
            // A second copy later does not move it; one earlier does.
            if (at + 1 < n) {
                y[n - 1] = 9.0f;
                CHECK(kernels::find_first(y.data(), n, 9.0f) == at);
            }
            if (at > 0) {
                y[at - 1] = 9.0f;
                CHECK(kernels::find_first(y.data(), n, 9.0f) == at - 1);
            }
        }
        CHECK(kernels::find_first(x.data(), n, 9.0f) == n);
        CHECK(kernels::find_first(x.data(), n, std::numeric_limits<float>::quiet_NaN()) == n);
        std::vector<float> banned(n, -inf);
        CHECK(kernels::find_first(banned.data(), n, -inf) == 0);
    }
    CHECK(kernels::find_first(nullptr, 0, 1.0f) == 0);
}

TEST_CASE("rope rotates pairs as cos/sin of position times the frequency, in both pair layouts and with tails",
          "[kernels]") {
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.0f, 2.0f);
    // rope_dim 64 and 128: SIMD bodies only; 24: the halves layout leaves a
    // scalar tail of 4 pairs; 20 (in heads of 32): 5 pairs, a tail of 1
    // adjacent pair, and elements past rope_dim left alone.
    struct shape {
        std::size_t rope_dim, head_dim;
    };
    for (const shape sh : {shape{64, 64}, shape{128, 128}, shape{24, 24}, shape{20, 32}}) {
        for (const rope_style style : {rope_style::adjacent, rope_style::halves}) {
            INFO("rope_dim " << sh.rope_dim << ", head_dim " << sh.head_dim << ", halves "
                             << (style == rope_style::halves));
            kernels::rope_table table(sh.rope_dim, 10000.0f, style);
            const std::size_t heads = 3, pos = 37, half = sh.rope_dim / 2;
            std::vector<float> x(heads * sh.head_dim);
            for (float& v : x) v = dist(rng);
            std::vector<float> rotated = x;
            table.apply(rotated.data(), heads, sh.head_dim, pos);
            for (std::size_t h = 0; h < heads; ++h) {
                const float* in = x.data() + h * sh.head_dim;
                const float* out = rotated.data() + h * sh.head_dim;
                for (std::size_t i = 0; i < half; ++i) {
                    const double theta = static_cast<double>(pos) * std::pow(10000.0, -2.0 * static_cast<double>(i) /
                                                                                          static_cast<double>(sh.rope_dim));
                    const std::size_t a = style == rope_style::adjacent ? 2 * i : i;
                    const std::size_t b = style == rope_style::adjacent ? 2 * i + 1 : i + half;
                    const double c = std::cos(theta), s = std::sin(theta);
                    CHECK(out[a] == Approx(in[a] * c - in[b] * s).margin(1e-5));
                    CHECK(out[b] == Approx(in[a] * s + in[b] * c).margin(1e-5));
                    // Every SIMD width gives the scalar formula's bits: two
                    // float products, then one subtraction or addition.
                    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
                    const float ac = in[a] * cf, bs = in[b] * sf, as = in[a] * sf, bc = in[b] * cf;
                    CHECK(out[a] == ac - bs);
                    CHECK(out[b] == as + bc);
                }
                for (std::size_t e = sh.rope_dim; e < sh.head_dim; ++e) CHECK(out[e] == in[e]);
            }
            // The same rotation whichever head count shares the call.
            std::vector<float> one(x.begin() + static_cast<std::ptrdiff_t>(sh.head_dim),
                                   x.begin() + static_cast<std::ptrdiff_t>(2 * sh.head_dim));
            table.apply(one.data(), 1, sh.head_dim, pos);
            CHECK(std::equal(one.begin(), one.end(), rotated.begin() + static_cast<std::ptrdiff_t>(sh.head_dim)));
        }
    }
}
