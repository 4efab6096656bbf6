// The matmul kernels on every isa this machine has: agreement with the
// reference dot products, bitwise batch invariance, and the activation
// quantizers' agreement with quantize_row.
#include "kernels/matmul.hpp"

#include <weft/serve/quant.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace weft::serve;
namespace k = weft::serve::kernels;

namespace {

const ggml_type weight_types[] = {ggml_type::f32,  ggml_type::f16,  ggml_type::bf16, ggml_type::q8_0,
                                  ggml_type::q4_0, ggml_type::q4_k, ggml_type::q6_k};

std::vector<k::isa> available_isas() {
    std::vector<k::isa> out{k::isa::scalar};
    if (k::best_isa() >= k::isa::avx2) {
        out.push_back(k::isa::avx2);
    }
    if (k::best_isa() >= k::isa::avx512) {
        out.push_back(k::isa::avx512);
    }
    return out;
}

/// Restores the detected isa when a test ends.
struct isa_guard {
    explicit isa_guard(k::isa i) { k::set_isa(i); }
    ~isa_guard() { k::set_isa(k::best_isa()); }
    isa_guard(const isa_guard&) = delete;
    isa_guard& operator=(const isa_guard&) = delete;
};

std::vector<float> gaussian(std::size_t n, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& f : v) {
        f = dist(rng);
    }
    return v;
}

/// `rows` weight rows of `k` elements of type `t`, from gaussian floats.
std::vector<std::byte> weights(ggml_type t, std::size_t rows, std::size_t kk, std::mt19937& rng) {
    const std::size_t rb = row_bytes(t, kk);
    std::vector<std::byte> w(rows * rb);
    for (std::size_t r = 0; r < rows; ++r) {
        const auto f = gaussian(kk, rng);
        quantize_row(t, f.data(), w.data() + r * rb, kk);
    }
    return w;
}

/// matmul over all rows, in chunks split at random points.
void split_matmul(ggml_type t, const std::vector<std::byte>& w, std::size_t rows, const k::activations& x,
                  float* y, std::size_t y_stride, std::mt19937& rng) {
    std::size_t r = 0;
    while (r < rows) {
        const std::size_t len = std::uniform_int_distribution<std::size_t>(1, rows - r)(rng);
        k::matmul(t, w.data(), r, r + len, x, y, y_stride);
        r += len;
    }
}

std::size_t test_k(ggml_type t) {
    // Float types get a k with an 8/16-element tail; Q8_0/Q4_0 an odd block
    // count (the kernels take blocks in pairs).
    switch (type_info(t).block_size) {
    case 1: return 333;
    case 32: return 480;
    default: return 512;
    }
}

} // namespace

TEST_CASE("matmul agrees with the reference dot product on every isa", "[matmul]") {
    std::mt19937 rng(42);
    const std::size_t rows = 37;
    for (k::isa path : available_isas()) {
        isa_guard guard(path);
        for (ggml_type t : weight_types) {
            INFO(k::isa_name(path) << " " << type_info(t).name);
            const std::size_t kk = test_k(t);
            const auto w = weights(t, rows, kk, rng);
            for (std::size_t tokens : {1u, 5u, 32u}) {
                const auto xf = gaussian(tokens * kk, rng);
                std::vector<std::byte> buf;
                const k::activations x = k::prepare_activations(t, xf.data(), kk, tokens, kk, buf);
                REQUIRE(x.type == vec_dot_type(t));
                std::vector<float> y(tokens * rows, NAN);
                k::matmul(t, w.data(), 0, rows, x, y.data(), rows);
                for (std::size_t tok = 0; tok < tokens; ++tok) {
                    for (std::size_t r = 0; r < rows; ++r) {
                        const std::byte* wr = w.data() + r * row_bytes(t, kk);
                        const std::byte* xr = x.data + tok * x.row_bytes;
                        const float ref = vec_dot_reference(t, wr, xr, kk);
                        // Tolerance from the magnitude of the terms: float sums in another order.
                        std::vector<float> wd(kk);
                        std::vector<float> xd(kk);
                        dequantize_row(t, wr, wd.data(), kk);
                        dequantize_row(x.type, xr, xd.data(), kk);
                        double magnitude = 0.0;
                        for (std::size_t i = 0; i < kk; ++i) {
                            magnitude += std::fabs(double(wd[i]) * xd[i]);
                        }
                        const float got = y[tok * rows + r];
                        if (path == k::isa::scalar) {
                            REQUIRE(got == ref);
                        } else {
                            REQUIRE(std::fabs(double(got) - ref) <= 1e-5 * magnitude);
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("matmul results are bitwise independent of batch size, batch contents and row split",
          "[matmul]") {
    std::mt19937 rng(7);
    const std::size_t rows = 29;
    const std::size_t probes = 6;
    for (k::isa path : available_isas()) {
        isa_guard guard(path);
        for (ggml_type t : weight_types) {
            INFO(k::isa_name(path) << " " << type_info(t).name);
            const std::size_t kk = test_k(t);
            const auto w = weights(t, rows, kk, rng);
            const auto probe = gaussian(probes * kk, rng);
            // Each probe token alone, all rows in one call.
            std::vector<float> alone(probes * rows);
            std::vector<std::byte> buf;
            for (std::size_t p = 0; p < probes; ++p) {
                const auto x = k::prepare_activations(t, probe.data() + p * kk, kk, 1, kk, buf);
                k::matmul(t, w.data(), 0, rows, x, alone.data() + p * rows, rows);
            }
            for (std::size_t batch : {1u, 3u, 7u, 32u, 64u}) {
                INFO("batch " << batch);
                // The probes at random distinct slots among random other tokens.
                auto xf = gaussian(batch * kk, rng);
                std::vector<std::size_t> slots(batch);
                for (std::size_t i = 0; i < batch; ++i) {
                    slots[i] = i;
                }
                std::shuffle(slots.begin(), slots.end(), rng);
                const std::size_t used = std::min(batch, probes);
                for (std::size_t p = 0; p < used; ++p) {
                    std::copy_n(probe.data() + p * kk, kk, xf.data() + slots[p] * kk);
                }
                const auto x = k::prepare_activations(t, xf.data(), kk, batch, kk, buf);
                const std::size_t y_stride = rows + 3;
                std::vector<float> y(batch * y_stride, NAN);
                split_matmul(t, w, rows, x, y.data(), y_stride, rng);
                for (std::size_t p = 0; p < used; ++p) {
                    const float* got = y.data() + slots[p] * y_stride;
                    REQUIRE(std::memcmp(got, alone.data() + p * rows, rows * sizeof(float)) == 0);
                }
            }
        }
    }
}

TEST_CASE("threads sharing one batch and splitting the rows get the single-threaded result", "[matmul]") {
    std::mt19937 rng(5);
    const std::size_t rows = 61;
    const std::size_t kk = 256;
    const std::size_t tokens = 9;
    for (ggml_type t : {ggml_type::f32, ggml_type::q8_0, ggml_type::q4_k}) {
        INFO(type_info(t).name);
        const auto w = weights(t, rows, kk, rng);
        const auto xf = gaussian(tokens * kk, rng);
        std::vector<std::byte> buf;
        const auto x = k::prepare_activations(t, xf.data(), kk, tokens, kk, buf);
        std::vector<float> one(tokens * rows);
        k::matmul(t, w.data(), 0, rows, x, one.data(), rows);
        std::vector<float> split(tokens * rows, NAN);
        std::vector<std::thread> pool;
        for (std::size_t i = 0; i < 4; ++i) {
            const std::size_t begin = rows * i / 4;
            const std::size_t end = rows * (i + 1) / 4;
            pool.emplace_back([&, begin, end] { k::matmul(t, w.data(), begin, end, x, split.data(), rows); });
        }
        for (auto& th : pool) {
            th.join();
        }
        CHECK(std::memcmp(one.data(), split.data(), one.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("matmul writes only the requested rows", "[matmul]") {
    std::mt19937 rng(3);
    const std::size_t rows = 20;
    const std::size_t kk = 64;
    for (k::isa path : available_isas()) {
        isa_guard guard(path);
        const auto w = weights(ggml_type::q8_0, rows, kk, rng);
        const auto xf = gaussian(2 * kk, rng);
        std::vector<std::byte> buf;
        const auto x = k::prepare_activations(ggml_type::q8_0, xf.data(), kk, 2, kk, buf);
        std::vector<float> y(2 * rows, -1.0f);
        k::matmul(ggml_type::q8_0, w.data(), 5, 11, x, y.data(), rows);
        for (std::size_t t = 0; t < 2; ++t) {
            for (std::size_t r = 0; r < rows; ++r) {
                CHECK((y[t * rows + r] == -1.0f) == (r < 5 || r >= 11));
            }
        }
    }
}

TEST_CASE("activation quantizers match quantize_row bit for bit", "[matmul]") {
    std::mt19937 rng(9);
    const std::size_t kk = 1024;
    auto xf = gaussian(3 * kk, rng);
    // Exact halves after scaling (d = 1 in the first Q8_0 block) and ties in magnitude.
    xf[0] = 127.0f;
    xf[1] = 0.5f;
    xf[2] = -2.5f;
    xf[3] = 1.5f;
    xf[kk + 10] = -6.0f;
    xf[kk + 11] = 6.0f;
    std::fill_n(xf.data() + 2 * kk, 256, 0.0f); // an all-zero Q8_K block
    for (k::isa path : available_isas()) {
        isa_guard guard(path);
        for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_k}) {
            INFO(k::isa_name(path) << " " << type_info(t).name);
            const ggml_type vt = vec_dot_type(t);
            std::vector<std::byte> buf;
            const auto x = k::prepare_activations(t, xf.data(), kk, 3, kk, buf);
            std::vector<std::byte> ref(row_bytes(vt, kk));
            for (std::size_t row = 0; row < 3; ++row) {
                quantize_row(vt, xf.data() + row * kk, ref.data(), kk);
                REQUIRE(std::memcmp(ref.data(), x.data + row * x.row_bytes, ref.size()) == 0);
            }
        }
    }
}

TEST_CASE("packed Q8_0 activations hold each block's levels, scale, sum and seed where the AVX-512 tiles read them",
          "[matmul]") {
    if (k::best_isa() < k::isa::avx512) {
        return; // the packed rows exist only for the AVX-512 tiles
    }
    // The layout written out by hand (avx512::group_bytes): groups of 8
    // blocks; 8 vectors of 32 bytes, vector j holding bytes 4j..4j+3 of
    // block i in its 4-byte lane i; then the 8 scales (f32), the 8 sums of
    // the levels and the 8 seeds -128 x sum (int32). Missing blocks are zero.
    constexpr std::size_t group = 352;
    std::mt19937 rng(21);
    for (std::size_t kk : {64, 96, 192, 256, 320, 1024}) {
        INFO("k = " << kk);
        const std::size_t tokens = 3;
        auto xf = gaussian(tokens * kk, rng);
        xf[0] = 127.0f; // exact halves after scaling
        xf[1] = 0.5f;
        xf[2] = -2.5f;
        std::fill_n(xf.data() + kk, 32, 0.0f); // an all-zero block
        isa_guard guard(k::isa::avx512);
        std::vector<std::byte> buf;
        const auto x = k::prepare_activations(ggml_type::q8_0, xf.data(), kk, tokens, kk, buf);
        REQUIRE(x.packed != nullptr);
        const std::size_t nb = kk / 32;
        REQUIRE(x.packed_row_bytes == (nb + 7) / 8 * group);
        std::vector<block_q8_0> ref(nb);
        for (std::size_t t = 0; t < tokens; ++t) {
            quantize_row(ggml_type::q8_0, xf.data() + t * kk, reinterpret_cast<std::byte*>(ref.data()), kk);
            REQUIRE(std::memcmp(ref.data(), x.data + t * x.row_bytes, nb * sizeof(block_q8_0)) == 0);
            const std::byte* row = x.packed + t * x.packed_row_bytes;
            for (std::size_t b = 0; b < (nb + 7) / 8 * 8; ++b) {
                const std::byte* g = row + b / 8 * group;
                const std::size_t lane = b % 8;
                std::int8_t levels[32] = {};
                float scale = 0.0f;
                if (b < nb) {
                    std::memcpy(levels, ref[b].qs, sizeof levels);
                    scale = f16_to_f32(ref[b].d);
                }
                std::int32_t sum = 0;
                for (std::size_t j = 0; j < 8; ++j) {
                    CHECK(std::memcmp(g + 32 * j + 4 * lane, levels + 4 * j, 4) == 0);
                }
                for (std::int8_t l : levels) sum += l;
                float packed_scale = 0.0f;
                std::int32_t packed_sum = 0, packed_seed = 0;
                std::memcpy(&packed_scale, g + 256 + 4 * lane, 4);
                std::memcpy(&packed_sum, g + 288 + 4 * lane, 4);
                std::memcpy(&packed_seed, g + 320 + 4 * lane, 4);
                CHECK(packed_scale == scale);
                CHECK(packed_sum == sum);
                CHECK(packed_seed == -128 * sum);
            }
        }
    }
}

TEST_CASE("matmul rejects activations prepared for another weight type", "[matmul]") {
    std::vector<float> xf(256, 1.0f);
    std::vector<std::byte> buf;
    const auto x = k::prepare_activations(ggml_type::q8_0, xf.data(), 256, 1, 256, buf);
    std::vector<std::byte> w(row_bytes(ggml_type::q4_k, 256));
    float y = 0.0f;
    CHECK_THROWS_WITH(k::matmul(ggml_type::q4_k, w.data(), 0, 1, x, &y, 1), Catch::Contains("q8_K"));
    CHECK_THROWS_AS(k::prepare_activations(ggml_type::q4_k, xf.data(), 100, 1, 100, buf), std::invalid_argument);
    CHECK_THROWS_WITH(k::prepare_activations(ggml_type::q5_k, xf.data(), 256, 1, 256, buf), Catch::Contains("q5_K"));
}

TEST_CASE("activations prepared under one isa still multiply under another", "[matmul]") {
    std::mt19937 rng(11);
    const std::size_t rows = 9;
    const std::size_t kk = 288;
    for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_0}) {
        const auto w = weights(t, rows, kk, rng);
        const auto xf = gaussian(2 * kk, rng);
        for (k::isa prepared : available_isas()) {
            std::vector<std::byte> buf;
            k::set_isa(prepared);
            const auto x = k::prepare_activations(t, xf.data(), kk, 2, kk, buf);
            for (k::isa used : available_isas()) {
                INFO(type_info(t).name << " prepared " << k::isa_name(prepared) << ", used " << k::isa_name(used));
                isa_guard guard(used);
                std::vector<float> y(2 * rows);
                k::matmul(t, w.data(), 0, rows, x, y.data(), rows);
                for (std::size_t tok = 0; tok < 2; ++tok) {
                    for (std::size_t r = 0; r < rows; ++r) {
                        const float ref = vec_dot_reference(t, w.data() + r * row_bytes(t, kk),
                                                            x.data + tok * x.row_bytes, kk);
                        CHECK(y[tok * rows + r] == Approx(ref).epsilon(1e-4).margin(1e-3));
                    }
                }
            }
        }
    }
}

TEST_CASE("prepacked Q8_0 rows give bitwise the products of the plain rows", "[matmul]") {
    if (k::best_isa() < k::isa::avx512) {
        WARN("no AVX-512 VNNI on this cpu: prepacking is not used");
        CHECK_FALSE(k::q8_0_prepack_supported());
        return;
    }
    isa_guard guard(k::isa::avx512);
    std::mt19937 rng(5);
    // 480: a partial group of blocks at the end; 512: whole groups only; 32: one block;
    // 1280: five groups, as the demo models' down projection.
    for (std::size_t kk : {480u, 512u, 32u, 1280u}) {
        const std::size_t rows = 37;
        const auto w = weights(ggml_type::q8_0, rows, kk, rng);
        std::vector<std::byte> packed(k::q8_0_prepacked_bytes(rows, kk));
        k::prepack_q8_0(w.data(), rows, kk, packed.data());
        for (std::size_t tokens : {1u, 3u, 8u, 13u, 32u}) {
            INFO("k " << kk << ", " << tokens << " tokens");
            const auto xf = gaussian(tokens * kk, rng);
            std::vector<std::byte> buf;
            const auto x = k::prepare_activations(ggml_type::q8_0, xf.data(), kk, tokens, kk, buf);
            std::vector<float> plain(tokens * rows), pre(tokens * rows, -1.0f);
            k::matmul(ggml_type::q8_0, w.data(), 0, rows, x, plain.data(), rows);
            // Calls over a row split, as the threads of a team make them:
            // at a panel's edge (16), and inside panels (7, 21).
            k::matmul_prepacked_q8_0(packed.data(), kk, 0, 7, x, pre.data(), rows);
            k::matmul_prepacked_q8_0(packed.data(), kk, 7, 16, x, pre.data(), rows);
            k::matmul_prepacked_q8_0(packed.data(), kk, 16, 21, x, pre.data(), rows);
            k::matmul_prepacked_q8_0(packed.data(), kk, 21, rows, x, pre.data(), rows);
            CHECK(std::memcmp(plain.data(), pre.data(), plain.size() * sizeof(float)) == 0);
        }
    }
    // Activations without the AVX-512 groups are refused with a reason.
    std::vector<std::byte> buf;
    std::vector<float> xf(64, 1.0f);
    const auto w = weights(ggml_type::q8_0, 1, 64, rng);
    std::vector<std::byte> packed(k::q8_0_prepacked_bytes(1, 64));
    k::prepack_q8_0(w.data(), 1, 64, packed.data());
    k::set_isa(k::isa::avx2);
    const auto x = k::prepare_activations(ggml_type::q8_0, xf.data(), 64, 1, 64, buf);
    float y = 0;
    CHECK_THROWS_WITH(k::matmul_prepacked_q8_0(packed.data(), 64, 0, 1, x, &y, 1), Catch::Contains("avx512"));
}

TEST_CASE("activations converted in row ranges from several threads equal those converted at once", "[matmul]") {
    std::mt19937 rng(9);
    const std::size_t kk = 512;
    const std::size_t tokens = 11;
    const auto xf = gaussian(tokens * kk, rng);
    for (k::isa path : available_isas()) {
        isa_guard guard(path);
        for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_k}) {
            INFO(k::isa_name(path) << ", " << type_info(t).name);
            std::vector<std::byte> whole_buf, parts_buf;
            const auto whole = k::prepare_activations(t, xf.data(), kk, tokens, kk, whole_buf);
            const auto parts = k::layout_activations(t, tokens, kk, parts_buf);
            std::thread a([&] { k::fill_activations(parts, xf.data(), kk, 0, 4); });
            std::thread b([&] { k::fill_activations(parts, xf.data(), kk, 4, tokens); });
            a.join();
            b.join();
            REQUIRE(parts.type == whole.type);
            REQUIRE(parts.row_bytes == whole.row_bytes);
            CHECK(std::memcmp(parts.data, whole.data, tokens * whole.row_bytes) == 0);
            REQUIRE((parts.packed == nullptr) == (whole.packed == nullptr));
            if (whole.packed != nullptr) {
                CHECK(std::memcmp(parts.packed, whole.packed, tokens * whole.packed_row_bytes) == 0);
            }
        }
    }
    std::vector<std::byte> buf;
    CHECK_THROWS_WITH(k::layout_activations(ggml_type::f32, 1, kk, buf), Catch::Contains("as they are"));
}

TEST_CASE("set_isa clamps to what the cpu has", "[matmul]") {
    isa_guard guard(k::isa::avx512);
    CHECK(k::active_isa() == k::best_isa());
    k::set_isa(k::isa::scalar);
    CHECK(k::active_isa() == k::isa::scalar);
}
