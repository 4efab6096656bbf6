// The F32 row-panel kernel on every isa this machine has: agreement with
// double-precision products, and bitwise batch invariance over token counts
// and row splits.
#include "kernels/matmul.hpp"
#include "kernels/packed_f32.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace k = weft::serve::kernels;

namespace {

std::vector<float> random_floats(std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen);
    return v;
}

std::vector<k::isa> isas() {
    std::vector<k::isa> out{k::isa::scalar};
    if (k::best_isa() >= k::isa::avx2) out.push_back(k::isa::avx2);
    if (k::best_isa() >= k::isa::avx512) out.push_back(k::isa::avx512);
    return out;
}

struct isa_guard {
    explicit isa_guard(k::isa i) { k::set_isa(i); }
    ~isa_guard() { k::set_isa(k::best_isa()); }
};

} // namespace

TEST_CASE("panel-packed f32 products match double precision, tails included", "[matmul][packed]") {
    for (k::isa path : isas()) {
        INFO(k::isa_name(path));
        isa_guard guard(path);
        for (std::size_t rows : {1, 15, 16, 33, 100}) {
            for (std::size_t kk : {1, 7, 64, 300}) {
                const auto w = random_floats(rows * kk, 1);
                const std::size_t tokens = 11;
                const auto x = random_floats(tokens * kk, 2);
                const k::packed_f32 p(w.data(), rows, kk, kk);
                std::vector<float> y(tokens * rows, -1.0f);
                p.multiply(x.data(), kk, tokens, 0, rows, y.data(), rows);
                for (std::size_t t = 0; t < tokens; ++t) {
                    for (std::size_t r = 0; r < rows; ++r) {
                        double want = 0;
                        for (std::size_t i = 0; i < kk; ++i) want += static_cast<double>(w[r * kk + i]) * x[t * kk + i];
                        INFO("rows " << rows << " k " << kk << " t " << t << " r " << r);
                        CHECK(std::abs(y[t * rows + r] - want) <= 1e-5 * (1.0 + std::abs(want)) * std::sqrt(kk));
                    }
                }
            }
        }
    }
}

TEST_CASE("panel-packed f32 results are bitwise the same for any batch and row split", "[matmul][packed][invariance]") {
    const std::size_t rows = 80, kk = 96;
    const auto w = random_floats(rows * kk, 3);
    const k::packed_f32 p(w.data(), rows, kk, kk);
    for (k::isa path : isas()) {
        INFO(k::isa_name(path));
        isa_guard guard(path);
        const auto mine = random_floats(kk, 4);
        std::vector<float> alone(rows);
        p.multiply(mine.data(), kk, 1, 0, rows, alone.data(), rows);
        for (std::size_t tokens : {2, 7, 9, 17, 40}) {
            for (std::size_t at : {std::size_t{0}, tokens / 2, tokens - 1}) {
                auto x = random_floats(tokens * kk, static_cast<unsigned>(10 + tokens));
                std::copy(mine.begin(), mine.end(), x.begin() + static_cast<std::ptrdiff_t>(at * kk));
                // Row ranges split at panel boundaries: in an odd order; one
                // of four panels (the 4-panel tile, 6 tokens wide) and one;
                // and whole (three panels and two).
                using split = std::vector<std::pair<std::size_t, std::size_t>>;
                for (const split& ranges : {split{{48, 80}, {0, 16}, {16, 48}}, split{{0, 64}, {64, 80}},
                                            split{{0, 80}}}) {
                    std::vector<float> y(tokens * rows);
                    for (auto [b, e] : ranges) p.multiply(x.data(), kk, tokens, b, e, y.data(), rows);
                    INFO(tokens << " tokens, ours at " << at << ", " << ranges.size() << " ranges");
                    CHECK(std::memcmp(y.data() + at * rows, alone.data(), rows * sizeof(float)) == 0);
                }
            }
        }
    }
}

TEST_CASE("panel-packed f32 reads activation rows any stride apart", "[matmul][packed]") {
    // Rows of x padded past k (a buffer with room for wider rows), k with a
    // tail past a multiple of 16, and more tokens than one 16-token block:
    // the products are bitwise those of the same rows stored back to back.
    const std::size_t rows = 50, kk = 37, stride = 45, tokens = 19;
    const auto w = random_floats(rows * kk, 5);
    const k::packed_f32 p(w.data(), rows, kk, kk);
    const auto compact = random_floats(tokens * kk, 6);
    std::vector<float> padded(tokens * stride, std::nanf(""));
    for (std::size_t t = 0; t < tokens; ++t) {
        std::copy_n(compact.begin() + static_cast<std::ptrdiff_t>(t * kk), kk,
                    padded.begin() + static_cast<std::ptrdiff_t>(t * stride));
    }
    for (k::isa path : isas()) {
        INFO(k::isa_name(path));
        isa_guard guard(path);
        for (std::size_t n : {std::size_t{1}, std::size_t{8}, tokens}) {
            INFO(n << " tokens");
            std::vector<float> want(n * rows), got(n * rows);
            p.multiply(compact.data(), kk, n, 0, rows, want.data(), rows);
            p.multiply(padded.data(), stride, n, 0, rows, got.data(), rows);
            CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0);
        }
    }
}
