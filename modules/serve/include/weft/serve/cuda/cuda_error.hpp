/// \file
/// `cuda_error`: the exception the CUDA backend and the stream awaitable
/// throw for a failed CUDA runtime or cuBLAS call, or for an error the GPU
/// reported while running enqueued work. The message names the operation and
/// carries CUDA's own error name and string.
///
/// Needs no CUDA headers (the code is kept as a plain int).
/// Threading: a plain value.
#pragma once

#include <stdexcept>
#include <string>

namespace weft::serve {

class cuda_error : public std::runtime_error {
public:
    /// `code`: the cudaError_t value, or 0 when the failure is cuBLAS's (the
    /// message then names the cublasStatus_t).
    cuda_error(const std::string& what, int code) : std::runtime_error(what), m_code(code) {}

    [[nodiscard]] int code() const noexcept { return m_code; }

private:
    int m_code;
};

} // namespace weft::serve
