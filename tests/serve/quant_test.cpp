// Row conversions of the ggml types: known bit patterns, quantization error
// bounds, and the reference dot products against a double-precision oracle.
#include <weft/serve/quant.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace weft::serve;

namespace {

std::vector<float> gaussian(std::size_t n, unsigned seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& f : v) {
        f = dist(rng);
    }
    return v;
}

std::vector<std::byte> quantize(ggml_type t, const std::vector<float>& x) {
    std::vector<std::byte> out(row_bytes(t, x.size()));
    quantize_row(t, x.data(), out.data(), x.size());
    return out;
}

std::vector<float> dequantize(ggml_type t, const std::vector<std::byte>& q, std::size_t n) {
    std::vector<float> out(n);
    dequantize_row(t, q.data(), out.data(), n);
    return out;
}

/// RMS of (a - b) over RMS of a.
double relative_rms_error(const std::vector<float>& a, const std::vector<float>& b) {
    double err = 0.0;
    double ref = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        err += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        ref += double(a[i]) * a[i];
    }
    return std::sqrt(err / ref);
}

std::uint16_t half_bits(float f) {
    std::uint16_t h = 0;
    quantize_row(ggml_type::f16, &f, &h, 1);
    return h;
}

std::uint16_t bf16_bits(float f) {
    std::uint16_t h = 0;
    quantize_row(ggml_type::bf16, &f, &h, 1);
    return h;
}

float from_half(std::uint16_t h) {
    float f = 0.0f;
    dequantize_row(ggml_type::f16, &h, &f, 1);
    return f;
}

} // namespace

TEST_CASE("f16 conversion handles zeros, limits, infinities and nan", "[quant]") {
    CHECK(half_bits(0.0f) == 0x0000);
    CHECK(half_bits(-0.0f) == 0x8000);
    CHECK(half_bits(1.0f) == 0x3c00);
    CHECK(half_bits(-2.0f) == 0xc000);
    CHECK(half_bits(65504.0f) == 0x7bff);      // largest finite half
    CHECK(half_bits(65519.0f) == 0x7bff);      // still rounds down
    CHECK(half_bits(65520.0f) == 0x7c00);      // rounds up to infinity
    CHECK(half_bits(1e10f) == 0x7c00);
    CHECK(half_bits(-INFINITY) == 0xfc00);
    const std::uint16_t nan = half_bits(NAN);
    CHECK((nan & 0x7c00) == 0x7c00);
    CHECK((nan & 0x03ff) != 0);
    CHECK(std::isnan(from_half(nan)));
    CHECK(std::isinf(from_half(0x7c00)));
    CHECK(from_half(0xfbff) == -65504.0f);
}

TEST_CASE("f16 conversion rounds subnormals and ties to even", "[quant]") {
    CHECK(half_bits(std::ldexp(1.0f, -24)) == 0x0001);          // smallest subnormal
    CHECK(half_bits(std::ldexp(1.0f, -25)) == 0x0000);          // tie: to even (zero)
    CHECK(half_bits(std::ldexp(3.0f, -25)) == 0x0002);          // tie: to even (2)
    CHECK(half_bits(std::ldexp(1.0f, -26)) == 0x0000);
    CHECK(half_bits(std::ldexp(1023.0f, -24)) == 0x03ff);       // largest subnormal
    CHECK(half_bits(std::ldexp(1.0f, -14)) == 0x0400);          // smallest normal
    CHECK(half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);   // tie: down to even
    CHECK(half_bits(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);   // tie: up to even
    CHECK(half_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
    CHECK(from_half(0x0001) == std::ldexp(1.0f, -24));
    CHECK(from_half(0x83ff) == -std::ldexp(1023.0f, -24));
}

TEST_CASE("f16 conversion round-trips every half value", "[quant]") {
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const float f = from_half(static_cast<std::uint16_t>(h));
        if (std::isnan(f)) {
            continue;
        }
        REQUIRE(half_bits(f) == h);
    }
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps nan", "[quant]") {
    CHECK(bf16_bits(1.0f) == 0x3f80);
    CHECK(bf16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);  // tie: down to even
    CHECK(bf16_bits(1.0f + std::ldexp(3.0f, -8)) == 0x3f82);  // tie: up to even
    CHECK(bf16_bits(-INFINITY) == 0xff80);
    float back = 0.0f;
    const std::uint16_t nan = bf16_bits(NAN);
    dequantize_row(ggml_type::bf16, &nan, &back, 1);
    CHECK(std::isnan(back));
}

TEST_CASE("q8_0 quantizes a hand-computed block", "[quant]") {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) {
        x[j] = static_cast<float>(j - 16);
    }
    const auto q = quantize(ggml_type::q8_0, x);
    block_q8_0 b{};
    std::memcpy(&b, q.data(), sizeof b);
    // d = 16 / 127 = 0.12598..: f16 exponent -3, mantissa round(0.00787 * 1024) = 8.
    CHECK(b.d == 0x3008);
    // q = round(x * 127 / 16)
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[15] == -8);
    CHECK(b.qs[16] == 0);
    CHECK(b.qs[17] == 8);
    CHECK(b.qs[18] == 16);  // 15.875
    CHECK(b.qs[31] == 119); // 119.0625
}

TEST_CASE("q8_0 rounds halves away from zero", "[quant]") {
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f; // d = 1 exactly
    x[1] = 0.5f;
    x[2] = -0.5f;
    x[3] = 2.5f;
    x[4] = -2.5f;
    x[5] = 1.4999999f;
    const auto q = quantize(ggml_type::q8_0, x);
    block_q8_0 b{};
    std::memcpy(&b, q.data(), sizeof b);
    CHECK(b.d == 0x3c00);
    CHECK(b.qs[1] == 1);
    CHECK(b.qs[2] == -1);
    CHECK(b.qs[3] == 3);
    CHECK(b.qs[4] == -3);
    CHECK(b.qs[5] == 1);
}

TEST_CASE("q4_0 scales by the signed largest value and packs nibbles", "[quant]") {
    SECTION("largest magnitude negative: d = 1") {
        std::vector<float> x(32, 0.0f);
        x[0] = -8.0f;
        x[1] = 7.0f;
        x[2] = 7.4f;
        x[3] = -0.6f;
        x[16] = 3.0f;
        const auto q = quantize(ggml_type::q4_0, x);
        block_q4_0 b{};
        std::memcpy(&b, q.data(), sizeof b);
        CHECK(b.d == 0x3c00);
        CHECK((b.qs[0] & 0xf) == 0);   // -8 + 8.5
        CHECK((b.qs[1] & 0xf) == 15);
        CHECK((b.qs[2] & 0xf) == 15);  // 15.9, truncated
        CHECK((b.qs[3] & 0xf) == 7);   // 7.9, truncated
        CHECK((b.qs[4] & 0xf) == 8);
        CHECK((b.qs[0] >> 4) == 11);   // element 16: 3 + 8.5
        const auto back = dequantize(ggml_type::q4_0, q, 32);
        CHECK(back[0] == -8.0f);
        CHECK(back[2] == 7.0f);
        CHECK(back[16] == 3.0f);
    }
    SECTION("largest magnitude positive: d = -2, clamped to 15") {
        std::vector<float> x(32, 0.0f);
        x[0] = 16.0f;
        x[1] = -14.0f;
        x[2] = -15.9f;
        const auto q = quantize(ggml_type::q4_0, x);
        block_q4_0 b{};
        std::memcpy(&b, q.data(), sizeof b);
        CHECK(b.d == 0xc000);
        CHECK((b.qs[0] & 0xf) == 0);
        CHECK((b.qs[1] & 0xf) == 15);
        CHECK((b.qs[2] & 0xf) == 15);
    }
}

TEST_CASE("q4_K dequantizes the llama.cpp scale and nibble layout", "[quant]") {
    // Scales and mins up to 63 exercise the high bits packed into bytes 0..7.
    const std::uint8_t sc[8] = {1, 20, 33, 47, 63, 5, 50, 17};
    const std::uint8_t mn[8] = {60, 2, 31, 16, 8, 63, 40, 0};
    block_q4_k b{};
    b.d = 0x3c00;    // 1.0
    b.dmin = 0x3800; // 0.5
    for (int j = 0; j < 4; ++j) {
        b.scales[j] = static_cast<std::uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = static_cast<std::uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
    for (int i = 0; i < 128; ++i) {
        b.qs[i] = static_cast<std::uint8_t>((i % 16) | ((15 - (i * 7) % 16) << 4));
    }
    std::vector<float> y(256);
    dequantize_row(ggml_type::q4_k, &b, y.data(), 256);
    for (int g = 0; g < 4; ++g) {
        for (int l = 0; l < 32; ++l) {
            const int i = 32 * g + l;
            CHECK(y[64 * g + l] == float(sc[2 * g] * (i % 16)) - 0.5f * float(mn[2 * g]));
            CHECK(y[64 * g + 32 + l] == float(sc[2 * g + 1] * (15 - (i * 7) % 16)) - 0.5f * float(mn[2 * g + 1]));
        }
    }
}

TEST_CASE("q6_K dequantizes the llama.cpp ql/qh layout with signed scales", "[quant]") {
    block_q6_k b{};
    b.d = 0x3400; // 0.25
    for (int j = 0; j < 16; ++j) {
        b.scales[j] = static_cast<std::int8_t>(j * 17 - 128); // -128 .. 127
    }
    auto level = [](int i) { return (i * 37 + 5) % 64; };
    // Element 128h + 32m + l: low nibble in ql[64h + 32(m % 2) + l] (high
    // half of the byte for m >= 2), top two bits at 2m in qh[32h + l].
    for (int i = 0; i < 256; ++i) {
        const int h = i / 128;
        const int m = (i % 128) / 32;
        const int l = i % 32;
        std::uint8_t& low = b.ql[64 * h + 32 * (m % 2) + l];
        low = static_cast<std::uint8_t>(low | ((level(i) & 0xf) << (m >= 2 ? 4 : 0)));
        std::uint8_t& high = b.qh[32 * h + l];
        high = static_cast<std::uint8_t>(high | ((level(i) >> 4) << (2 * m)));
    }
    std::vector<float> y(256);
    dequantize_row(ggml_type::q6_k, &b, y.data(), 256);
    for (int i = 0; i < 256; ++i) {
        CHECK(y[i] == 0.25f * float(b.scales[i / 16]) * float(level(i) - 32));
    }
}

TEST_CASE("q8_K fills block sums and maps the largest magnitude to 127", "[quant]") {
    auto x = gaussian(512, 7);
    x[300] = -9.0f; // largest magnitude, negative: scale follows its sign
    const auto q = quantize(ggml_type::q8_k, x);
    block_q8_k b[2];
    std::memcpy(b, q.data(), sizeof b);
    CHECK(b[1].qs[300 - 256] == -127);
    CHECK(b[1].d == Approx(9.0f / 127.0f));
    for (const auto& blk : b) {
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int l = 0; l < 16; ++l) {
                s += blk.qs[16 * j + l];
            }
            CHECK(blk.bsums[j] == s);
        }
    }
    const std::vector<float> zeros(256, 0.0f);
    const auto qz = quantize(ggml_type::q8_k, zeros);
    CHECK(dequantize(ggml_type::q8_k, qz, 256) == zeros);
}

TEST_CASE("quantization error stays within each type's bound", "[quant]") {
    struct bound {
        ggml_type type;
        double max_rel_rms;
    };
    // Gaussian rows; the bounds are ~1.4x what the formats achieve.
    const bound bounds[] = {
        {ggml_type::f16, 3.5e-4}, {ggml_type::bf16, 2.5e-3}, {ggml_type::q8_0, 8e-3}, {ggml_type::q8_k, 1e-2},
        {ggml_type::q6_k, 2.5e-2}, {ggml_type::q4_0, 1.2e-1}, {ggml_type::q4_k, 1e-1},
    };
    const auto x = gaussian(4096, 11);
    for (const auto& [type, max_rel] : bounds) {
        INFO(type_info(type).name);
        const auto back = dequantize(type, quantize(type, x), x.size());
        const double err = relative_rms_error(x, back);
        CHECK(err < max_rel);
        CHECK(err > 0.0);
    }
    CHECK(dequantize(ggml_type::f32, quantize(ggml_type::f32, x), x.size()) == x);
}

TEST_CASE("k-quants beat the plain 4-bit format and keep zero blocks zero", "[quant]") {
    // Values with an offset: Q4_K's per-sub-block min pays off.
    auto x = gaussian(2048, 5, 0.5f);
    for (float& f : x) {
        f += 2.0f;
    }
    const double q4_0 = relative_rms_error(x, dequantize(ggml_type::q4_0, quantize(ggml_type::q4_0, x), x.size()));
    const double q4_k = relative_rms_error(x, dequantize(ggml_type::q4_k, quantize(ggml_type::q4_k, x), x.size()));
    CHECK(q4_k < q4_0);
    for (ggml_type t : {ggml_type::q4_k, ggml_type::q6_k, ggml_type::q8_0, ggml_type::q4_0}) {
        const std::vector<float> zeros(256, 0.0f);
        CHECK(dequantize(t, quantize(t, zeros), 256) == zeros);
    }
}

TEST_CASE("reference dot products match dequantize-then-multiply in double", "[quant]") {
    const std::size_t n = 1024;
    const ggml_type types[] = {ggml_type::f32,  ggml_type::f16,  ggml_type::bf16, ggml_type::q8_0,
                               ggml_type::q4_0, ggml_type::q4_k, ggml_type::q6_k};
    for (ggml_type t : types) {
        INFO(type_info(t).name);
        for (unsigned seed = 1; seed <= 4; ++seed) {
            const auto w = quantize(t, gaussian(n, seed));
            const ggml_type vt = vec_dot_type(t);
            const auto x = quantize(vt, gaussian(n, seed + 100));
            const auto wf = dequantize(t, w, n);
            const auto xf = dequantize(vt, x, n);
            double exact = 0.0;
            double magnitude = 0.0;
            for (std::size_t i = 0; i < n; ++i) {
                exact += double(wf[i]) * xf[i];
                magnitude += std::fabs(double(wf[i]) * xf[i]);
            }
            const float got = vec_dot_reference(t, w.data(), x.data(), n);
            CHECK(std::fabs(got - exact) <= 1e-5 * magnitude);
        }
    }
}

TEST_CASE("vec_dot_type pairs each weight type with its activation type", "[quant]") {
    CHECK(vec_dot_type(ggml_type::f32) == ggml_type::f32);
    CHECK(vec_dot_type(ggml_type::f16) == ggml_type::f32);
    CHECK(vec_dot_type(ggml_type::bf16) == ggml_type::f32);
    CHECK(vec_dot_type(ggml_type::q8_0) == ggml_type::q8_0);
    CHECK(vec_dot_type(ggml_type::q4_0) == ggml_type::q8_0);
    CHECK(vec_dot_type(ggml_type::q4_k) == ggml_type::q8_k);
    CHECK(vec_dot_type(ggml_type::q6_k) == ggml_type::q8_k);
    CHECK_THROWS_AS(vec_dot_type(ggml_type::q8_k), std::invalid_argument);
}

TEST_CASE("row conversions reject partial blocks and unsupported types by name", "[quant]") {
    std::vector<float> x(64, 1.0f);
    std::vector<std::byte> buf(1024);
    CHECK_THROWS_WITH(quantize_row(ggml_type::q8_0, x.data(), buf.data(), 33),
                      Catch::Contains("q8_0") && Catch::Contains("33"));
    CHECK_THROWS_WITH(dequantize_row(ggml_type::q4_k, buf.data(), x.data(), 64), Catch::Contains("q4_K"));
    CHECK_THROWS_WITH(quantize_row(ggml_type::q5_k, x.data(), buf.data(), 256), Catch::Contains("q5_K"));
    CHECK_THROWS_WITH(vec_dot_reference(ggml_type::iq2_xs, buf.data(), buf.data(), 256), Catch::Contains("iq2_xs"));
    CHECK_THROWS_AS(vec_dot_reference(ggml_type::q8_k, buf.data(), buf.data(), 256), std::invalid_argument);
    CHECK_THROWS_WITH(dequantize_row(static_cast<ggml_type>(99), buf.data(), x.data(), 1),
                      Catch::Contains("unknown"));
}
