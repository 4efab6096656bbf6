/// \file
/// The integer vocabulary of the serving engine: token ids as the tokenizer
/// and model see them, sequence ids as the scheduler and engine name requests,
/// and block ids naming pages of the paged KV cache.
///
/// Threading: type aliases only.
#pragma once

#include <cstdint>

namespace weft::serve {

/// A vocabulary index (signed, as in llama.cpp and GGUF token arrays).
using token_id = std::int32_t;
/// The engine's name for one generation request; unique while it is live.
using seq_id = std::uint64_t;
/// One page of the paged KV cache, `0 .. num_blocks - 1`.
using block_id = std::uint32_t;

} // namespace weft::serve
