// Internal, device code only: element conversions and warp / block
// reductions shared by kernels.cu and attention.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace weft::serve::cuda::device {

constexpr unsigned full_mask = 0xffffffffu;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
    return x;
}
// Round to nearest even, as the host's f32_to_bf16.
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/// Sum over the 32 lanes; every lane gets it. All lanes must take part.
template <class V>
__device__ __forceinline__ V warp_sum(V v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(full_mask, v, o);
    return v;
}

/// Maximum over the 32 lanes; every lane gets it. All lanes must take part.
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(full_mask, v, o));
    return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
/// thread gets the same value, combined in a fixed order. `scratch` holds 32
/// values; it may be reused once this returns (the last barrier guards it).
template <class V>
__device__ V block_sum(V v, V* scratch) {
    v = warp_sum(v);
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int warp = static_cast<int>(threadIdx.x) / 32;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = static_cast<int>(blockDim.x) / 32;
    V total = scratch[0];
    for (int w = 1; w < warps; ++w) total += scratch[w];
    __syncthreads();
    return total;
}

} // namespace weft::serve::cuda::device
