/// \file
/// `batch` and `step_output`: what one forward step of a model backend
/// takes and gives.
///
/// A batch is ragged: any mix of prompt chunks and single decode tokens from
/// different sequences at different positions. Chunk i runs `tokens` at
/// positions start .. start + tokens.size() - 1 of its sequence, attending over
/// positions 0 .. its own; `blocks` is the sequence's block table and covers
/// every position up to the chunk's last (the earlier positions' keys and
/// values are already in the cache, written by earlier steps). The step
/// produces the logits of the chunk's last `logits` tokens (usually 0 or 1:
/// the last token, whose logits give the next one; a request for prompt
/// log-probabilities asks for every token of its prompt chunks). A batch
/// marked `argmax_only` needs only each such row's most likely token: a
/// backend may then fill `step_output::argmax` instead of the logits (a GPU
/// sends a few bytes back instead of the vocabulary); one that ignores the
/// flag fills the logits as usual.
///
/// Lifetime: the spans are views; what they point to must stay valid until
/// the step's task completes. Threading: plain values.
#pragma once

#include <weft/serve/token.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace weft::serve {

struct batch_chunk {
    seq_id id = 0;
    std::size_t start = 0;
    std::span<const token_id> tokens;
    std::span<const block_id> blocks;
    std::size_t logits = 0; ///< logit rows wanted: the chunk's last `logits` tokens (<= tokens.size())
};

struct batch {
    std::vector<batch_chunk> chunks;
    bool argmax_only = false;

    [[nodiscard]] std::size_t num_tokens() const noexcept {
        std::size_t n = 0;
        for (const batch_chunk& c : chunks) n += c.tokens.size();
        return n;
    }
    [[nodiscard]] std::size_t num_logits() const noexcept {
        std::size_t n = 0;
        for (const batch_chunk& c : chunks) n += c.logits;
        return n;
    }
};

/// Logits of a step: one row of `vocab` floats per row asked for, in chunk
/// order and position order within a chunk; or, for an `argmax_only` batch whose backend
/// honours it, the most likely token of each of those rows (ties: lowest id)
/// in `argmax`, with `logits` empty.
struct step_output {
    std::size_t vocab = 0;
    std::vector<float> logits;
    std::vector<token_id> argmax;
    /// Seconds the backend spent on the step, from taking the batch to
    /// its results being ready (0: the backend does not measure it).
    double compute_seconds = 0.0;

    [[nodiscard]] std::size_t rows() const noexcept { return vocab == 0 ? 0 : logits.size() / vocab; }
    [[nodiscard]] std::span<float> row(std::size_t i) noexcept { return {logits.data() + i * vocab, vocab}; }
    [[nodiscard]] std::span<const float> row(std::size_t i) const noexcept { return {logits.data() + i * vocab, vocab}; }
};

} // namespace weft::serve
