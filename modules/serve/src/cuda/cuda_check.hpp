// Internal: turning CUDA runtime and cuBLAS status codes into cuda_error,
// and small RAII owners for device and pinned host memory.
#pragma once

#include <weft/serve/cuda/cuda_error.hpp>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

namespace weft::serve::cuda {

/// Throws cuda_error "<what>: <cudaErrorName>: <string>" unless e is cudaSuccess.
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        throw cuda_error(std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e),
                         static_cast<int>(e));
    }
}

/// Throws cuda_error "<what>: cuBLAS: <status>" unless s is CUBLAS_STATUS_SUCCESS.
inline void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        throw cuda_error(std::string(what) + ": cuBLAS: " + cublasGetStatusString(s), 0);
    }
}

/// Kernel launches report bad configurations through cudaGetLastError.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

/// Owns a buffer of bytes from `Alloc` (cudaError_t(void**, std::size_t)),
/// released with `Release`.
template <auto Alloc, auto Release>
class owned_buffer {
public:
    owned_buffer() noexcept = default;
    explicit owned_buffer(std::size_t bytes, const char* what) : m_bytes(bytes) {
        if (bytes > 0) check(Alloc(&m_ptr, bytes), what);
    }
    owned_buffer(owned_buffer&& o) noexcept
        : m_ptr(std::exchange(o.m_ptr, nullptr)), m_bytes(std::exchange(o.m_bytes, 0)) {}
    owned_buffer& operator=(owned_buffer&& o) noexcept {
        if (this != &o) {
            reset();
            m_ptr = std::exchange(o.m_ptr, nullptr);
            m_bytes = std::exchange(o.m_bytes, 0);
        }
        return *this;
    }
    ~owned_buffer() { reset(); }

    void reset() noexcept {
        if (m_ptr != nullptr) Release(m_ptr);
        m_ptr = nullptr;
        m_bytes = 0;
    }
    [[nodiscard]] void* get() const noexcept { return m_ptr; }
    template <class T>
    [[nodiscard]] T* as() const noexcept { return static_cast<T*>(m_ptr); }
    [[nodiscard]] std::size_t bytes() const noexcept { return m_bytes; }

private:
    void* m_ptr = nullptr;
    std::size_t m_bytes = 0;
};

inline cudaError_t device_alloc(void** p, std::size_t bytes) { return cudaMalloc(p, bytes); }
inline cudaError_t pinned_alloc(void** p, std::size_t bytes) { return cudaMallocHost(p, bytes); }
inline void device_free(void* p) noexcept { cudaFree(p); }
inline void pinned_free(void* p) noexcept { cudaFreeHost(p); }

/// Owns a cudaMalloc'd buffer of bytes.
using device_buffer = owned_buffer<&device_alloc, &device_free>;
/// Owns a cudaMallocHost'd (page-locked) buffer: asynchronous copies need it.
using pinned_buffer = owned_buffer<&pinned_alloc, &pinned_free>;

} // namespace weft::serve::cuda
