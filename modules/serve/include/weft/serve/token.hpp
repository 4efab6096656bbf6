/// \file
/// The integer types shared by the serving engine: token ids, sequence ids
/// and KV-cache block ids.
#pragma once

#include <cstdint>

namespace weft::serve {

using token_id = std::int32_t;
using seq_id = std::uint64_t;
using block_id = std::uint32_t;

} // namespace weft::serve
