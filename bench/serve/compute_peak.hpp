// The machine's arithmetic peak, measured: the compute floor of a batched
// decode step, as a large copy gives its bandwidth floor.
#pragma once

#include <cstddef>
#include <string>

namespace weft::bench {

/// Multiply-adds per second over `threads` threads, each running independent
/// chains of the widest vector instruction this CPU has for the kind.
struct compute_peak {
    double f32_macs_per_s = 0;  ///< float FMA (AVX-512 or AVX2+FMA; scalar otherwise)
    std::string f32_isa;
    double int8_macs_per_s = 0; ///< u8 x s8 products summed into int32 (VNNI or AVX2)
    std::string int8_isa;
};

/// Best of 5 rounds of about 15 ms each (on an AVX-512 core).
compute_peak measure_compute_peak(std::size_t threads);

} // namespace weft::bench
