/// \file
/// `propose_ngram`: draft tokens for speculative decoding by prompt lookup
/// (as vLLM's "ngram" method and llama.cpp's lookup decoding): find the
/// latest earlier occurrence of the sequence's last n tokens, n from
/// `max_ngram` down to 1, and propose the tokens that followed it.
///
/// Text that repeats what came before — code under edit, a summary quoting
/// its source, extraction, a model stuck in a loop — is guessed right, and a
/// step that checks k guesses costs little more than one decode step while
/// the weights, not the arithmetic, bound it. The engine checks each guess
/// against the model's own greedy choice, so output never changes.
///
/// Threading: a pure function. Cost: O(tokens.size() x max_ngram).
#pragma once

#include <weft/serve/token.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace weft::serve {

/// Up to `k` tokens that followed the latest earlier occurrence of the
/// longest suffix of `tokens` (of `min_ngram` to `max_ngram` tokens) seen
/// before; empty when no such suffix occurred earlier.
std::vector<token_id> propose_ngram(std::span<const token_id> tokens, std::size_t max_ngram, std::size_t k,
                                    std::size_t min_ngram = 1);

} // namespace weft::serve
