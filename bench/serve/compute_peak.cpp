// Each thread runs 12 independent accumulator chains of one instruction for
// a fixed count; the chains hide the instruction's latency, so the time is
// set by its throughput. The accumulators' values are irrelevant.
#include "compute_peak.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The vector lambdas below are inlined into functions of their own target;
// GCC's note that their ABI differs from the file's default is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace weft::bench {

namespace {

constexpr int chains = 12;
constexpr std::size_t iterations = std::size_t{1} << 22;

/// Runs `step` on 12 independent accumulators `iterations` times and returns
/// them combined by `add`. The accumulators are named variables, so they
/// live in registers; each round makes them opaque to the optimiser, so the
/// loop is never folded.
template <class V, class Step, class Add>
__attribute__((always_inline)) inline V run_chains(V init, Step step, Add add) {
    V a0 = init, a1 = init, a2 = init, a3 = init, a4 = init, a5 = init;
    V a6 = init, a7 = init, a8 = init, a9 = init, a10 = init, a11 = init;
    for (std::size_t i = 0; i < iterations; ++i) {
        a0 = step(a0); a1 = step(a1); a2 = step(a2); a3 = step(a3); a4 = step(a4); a5 = step(a5);
        a6 = step(a6); a7 = step(a7); a8 = step(a8); a9 = step(a9); a10 = step(a10); a11 = step(a11);
        asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                     "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    return add(add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7))), add(add(a8, a9), add(a10, a11)));
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_avx512() {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
    const __m512 sum = run_chains(
        _mm512_set1_ps(1.0f), [&](__m512 v) __attribute__((target("avx512f"))) { return _mm512_fmadd_ps(v, a, b); },
        [](__m512 x, __m512 y) __attribute__((target("avx512f"))) { return _mm512_add_ps(x, y); });
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    return lanes[0];
}

__attribute__((target("avx2,fma"))) float fma_avx2() {
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
    const __m256 sum = run_chains(
        _mm256_set1_ps(1.0f), [&](__m256 v) __attribute__((target("avx2,fma"))) { return _mm256_fmadd_ps(v, a, b); },
        [](__m256 x, __m256 y) __attribute__((target("avx2,fma"))) { return _mm256_add_ps(x, y); });
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    return lanes[0];
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) float dot_vnni() {
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    const __m512i sum = run_chains(
        _mm512_set1_epi32(1),
        [&](__m512i v) __attribute__((target("avx512f,avx512bw,avx512vnni"))) { return _mm512_dpbusd_epi32(v, a, b); },
        [](__m512i x, __m512i y) __attribute__((target("avx512f"))) { return _mm512_add_epi32(x, y); });
    alignas(64) std::int32_t lanes[16];
    _mm512_store_si512(lanes, sum);
    return static_cast<float>(lanes[0]);
}

/// AVX2 without VNNI: vpmaddubsw (u8 x s8 pairs to int16), vpmaddwd by ones
/// (to int32), vpaddd, as the AVX2 Q8_0 tiles do it.
__attribute__((target("avx2"))) float dot_avx2() {
    const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    const __m256i sum = run_chains(
        _mm256_set1_epi32(1),
        [&](__m256i v) __attribute__((target("avx2"))) {
            // v itself as the unsigned bytes, so the products are not hoisted.
            return _mm256_add_epi32(v, _mm256_madd_epi16(_mm256_maddubs_epi16(v, b), ones));
        },
        [](__m256i x, __m256i y) __attribute__((target("avx2"))) { return _mm256_add_epi32(x, y); });
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
    return static_cast<float>(lanes[0]);
}
#endif

float fma_scalar() {
    return run_chains(1.0f, [](float v) { return v * 0.999f + 1e-3f; }, [](float x, float y) { return x + y; });
}

/// Multiply-adds per second of `kernel` (`macs` per chain step) on `threads`
/// threads at once: the best of 5 rounds (a round is ~15 ms: one that
/// shares a core with another program's burst reads half the peak).
double rate(float (*kernel)(), double macs, std::size_t threads) {
    double best = 0;
    for (int round = 0; round < 5; ++round) {
        std::vector<float> sink(threads);
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (std::size_t t = 0; t < threads; ++t) pool.emplace_back([&, t] { sink[t] = kernel(); });
        for (auto& th : pool) th.join();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::max(best, static_cast<double>(threads) * static_cast<double>(iterations) * chains * macs / secs);
    }
    return best;
}

} // namespace

compute_peak measure_compute_peak(std::size_t threads) {
    compute_peak p;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        p.f32_macs_per_s = rate(fma_avx512, 16, threads);
        p.f32_isa = "avx512 fma";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        p.f32_macs_per_s = rate(fma_avx2, 8, threads);
        p.f32_isa = "avx2 fma";
    }
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
        p.int8_macs_per_s = rate(dot_vnni, 64, threads);
        p.int8_isa = "avx512 vnni";
    } else if (__builtin_cpu_supports("avx2")) {
        p.int8_macs_per_s = rate(dot_avx2, 32, threads);
        p.int8_isa = "avx2 maddubs";
    }
#endif
    if (p.f32_macs_per_s == 0) {
        p.f32_macs_per_s = rate(fma_scalar, 1, threads);
        p.f32_isa = "scalar";
    }
    return p;
}

} // namespace weft::bench
