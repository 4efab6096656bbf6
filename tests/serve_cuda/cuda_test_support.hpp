/// \file
/// Helpers for the CUDA backend's tests: device buffers filled from and read
/// back into host vectors, bf16 rounding, seeded random data, and tolerance
/// checks. Tests run on one blocking stream each (blocking is fine here).
#pragma once

#include "cuda/cuda_check.hpp"
#include "cuda/launch.hpp"

#include <weft/serve/ggml_type.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace weft::serve::cuda::test {

/// The command-line flag that makes weft_tests_cuda run the stream-fault
/// scenario in a child process (see stream_test.cpp) instead of the tests.
inline constexpr const char* fault_child_flag = "--stream-fault-child";
/// The child scenario: exit status 0 when the fault came out of the co_await
/// as it should.
int run_fault_child();

/// A stream of its own, synchronized by hand.
class test_stream {
public:
    test_stream() { check(cudaStreamCreate(&m_stream), "cudaStreamCreate"); }
    ~test_stream() { cudaStreamDestroy(m_stream); }
    test_stream(const test_stream&) = delete;
    test_stream& operator=(const test_stream&) = delete;
    [[nodiscard]] cudaStream_t get() const noexcept { return m_stream; }
    void sync() const { check(cudaStreamSynchronize(m_stream), "cudaStreamSynchronize"); }

private:
    cudaStream_t m_stream = nullptr;
};

template <class T>
device_buffer upload(const std::vector<T>& v) {
    device_buffer b(std::max<std::size_t>(v.size(), 1) * sizeof(T), "cudaMalloc (test)");
    if (!v.empty()) check(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return b;
}

template <class T>
std::vector<T> download(const device_buffer& b, std::size_t n) {
    std::vector<T> v(n);
    if (n > 0) check(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return v;
}

/// Floats as the device stores them for `t`: bf16 bit patterns or f32 bytes.
inline std::vector<std::byte> encode(const std::vector<float>& v, dtype t) {
    std::vector<std::byte> out(v.size() * dtype_size(t));
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (t == dtype::f32) {
            std::memcpy(out.data() + 4 * i, &v[i], 4);
        } else {
            const std::uint16_t b = f32_to_bf16(v[i]);
            std::memcpy(out.data() + 2 * i, &b, 2);
        }
    }
    return out;
}

inline std::vector<float> decode(const std::vector<std::byte>& bytes, dtype t) {
    const std::size_t n = bytes.size() / dtype_size(t);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (t == dtype::f32) {
            std::memcpy(&v[i], bytes.data() + 4 * i, 4);
        } else {
            std::uint16_t b = 0;
            std::memcpy(&b, bytes.data() + 2 * i, 2);
            v[i] = bf16_to_f32(b);
        }
    }
    return v;
}

/// v rounded through the storage type `t` (identity for f32).
inline std::vector<float> round_through(std::vector<float> v, dtype t) {
    if (t == dtype::bf16) {
        for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
    }
    return v;
}

/// Uniform floats in [lo, hi) from a fixed generator.
inline std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    for (float& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x = lo + (hi - lo) * static_cast<float>(s >> 40) / static_cast<float>(1ull << 24);
    }
    return v;
}

/// The largest |got - want| / (|want| + floor) over the elements: a relative
/// error that does not blow up for elements near zero.
inline double max_relative_error(const std::vector<float>& got, const std::vector<float>& want, double floor) {
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double d = std::abs(static_cast<double>(got[i]) - want[i]) / (std::abs(static_cast<double>(want[i])) + floor);
        worst = std::max(worst, std::isnan(d) ? 1e30 : d);
    }
    return worst;
}

/// Relative error bound of one rounding to `t` (f32: a few ulps of slack for
/// differently ordered sums; bf16: one bf16 ulp).
inline double storage_tolerance(dtype t) { return t == dtype::f32 ? 1e-5 : 1.0 / 128; }

} // namespace weft::serve::cuda::test
