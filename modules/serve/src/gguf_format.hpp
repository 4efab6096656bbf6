// Internal: GGUF layout constants and value helpers shared by the reader,
// gguf_value and the writer.
#pragma once

#include <weft/serve/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace weft::serve::gguf_format {

inline constexpr char magic[4] = {'G', 'G', 'U', 'F'};
inline constexpr std::uint32_t current_version = 3;
inline constexpr std::uint64_t default_alignment = 32;
inline constexpr std::string_view alignment_key = "general.alignment";
/// ggml's GGML_MAX_DIMS.
inline constexpr std::uint32_t max_dims = 4;

/// Scalar value payload size; 0 for string, array and unknown types.
std::size_t scalar_size(gguf_value_type t) noexcept;

inline bool is_valid(gguf_value_type t) noexcept {
    return static_cast<std::uint32_t>(t) <= static_cast<std::uint32_t>(gguf_value_type::float64);
}

struct number {
    enum kind { none, unsigned_int, signed_int, floating };
    kind k = unsigned_int;
    std::uint64_t u = 0;
    std::int64_t i = 0;
    double f = 0;
};

/// How a value of type `t` reads as a number (`none`: bool, string, array).
number::kind kind_of(gguf_value_type t) noexcept;
/// Decodes the scalar at `p` (which holds scalar_size(t) bytes); `p` is not
/// read when kind_of(t) is none.
number load_number(gguf_value_type t, const std::byte* p) noexcept;

/// `s` fit for an error message: non-printable bytes escaped, long text cut.
std::string printable(std::string_view s);

} // namespace weft::serve::gguf_format
