/// \file
/// `sampler`: turns one row of logits into the next token of one sequence.
///
/// `sample()` works in this order:
///  1. `logit_bias` is added (a bias of -100 or less bans the token: its logit
///     becomes -inf; OpenAI documents -100 as a ban); while fewer than
///     `min_tokens` tokens are generated, the `held_back` tokens (end of
///     generation, stop token ids) are banned too;
///  2. repetition penalty over the distinct tokens of prompt + generated
///     (llama.cpp / Hugging Face style: a positive logit is divided by the
///     penalty, a negative one multiplied);
///  3. frequency and presence penalties over the generated tokens (OpenAI:
///     logit -= count * frequency_penalty + (count > 0) * presence_penalty);
///  4. log-probabilities, when asked for, are log_softmax of *these* logits:
///     after bias and penalties, before temperature and truncation (as the
///     OpenAI API reports them), and `logits` is left holding them;
///  5. temperature 0 picks the argmax (ties: lowest id) in one pass;
///     otherwise logits are divided by the temperature, truncated by top-k,
///     then top-p (the smallest most-probable set whose mass reaches top_p,
///     renormalized after top-k), then min-p (tokens below min_p times the
///     most probable one's probability), and one token is drawn.
///
/// The draw uses the sampler's own generator (xoshiro256**, seeded through
/// splitmix64 from `seed`, or `fallback_seed` when unset), so a seed gives the
/// same tokens on every platform, whatever the standard library. Ties in any
/// ordering break towards the lower token id. Selection is partial: top-k and
/// top logprobs keep a heap of k entries, top-p sorts only as many leading
/// candidates as it needs.
///
/// Lifetime: one sampler per sequence (it carries the generator state and
/// scratch buffers). Bad parameters throw `std::invalid_argument` from the
/// constructor; empty or NaN logits, out-of-range token ids and logits with no
/// finite entry throw from `sample()`.
///
/// Threading: not synchronized; one sequence's owner uses it.
#pragma once

#include <weft/serve/token.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace weft::serve {

struct sampling_params {
    float temperature = 1.0f; ///< >= 0; 0 is greedy
    int top_k = 0;            ///< 0: off
    float top_p = 1.0f;       ///< (0, 1]; 1: off
    float min_p = 0.0f;       ///< [0, 1]; 0: off
    std::optional<std::uint64_t> seed;
    float repetition_penalty = 1.0f; ///< > 0; 1: off
    float frequency_penalty = 0.0f;
    float presence_penalty = 0.0f;
    std::vector<std::pair<token_id, float>> logit_bias;
    int top_logprobs = 0; ///< most likely alternatives to report, >= 0
    bool logprobs = false;
    /// Tokens generated before any of `held_back` may be.
    std::size_t min_tokens = 0;
    std::vector<token_id> held_back;
};

struct token_logprob {
    token_id token = 0;
    float logprob = 0.0f;
};

struct sample_result {
    token_id token = 0;
    float logprob = 0.0f;           ///< of `token`; 0 unless logprobs or top_logprobs asked
    std::vector<token_logprob> top; ///< top_logprobs entries, most likely first
};

class sampler {
public:
    sampler(sampling_params params, std::uint64_t fallback_seed);

    /// Picks the next token. `logits` (one per vocabulary entry) is modified
    /// in place (see the file comment); `prompt` and `generated` feed the
    /// penalties.
    sample_result sample(std::span<float> logits, std::span<const token_id> prompt,
                         std::span<const token_id> generated);

    const sampling_params& params() const noexcept { return m_params; }

    /// The log-probability of `token` under the softmax of `logits` as they
    /// are — no bias, penalty or temperature: how a prompt token's
    /// log-probability is reported — with the `top` most likely tokens, most
    /// likely first. Throws as `sample` does for empty or non-finite logits.
    static sample_result score(std::span<const float> logits, token_id token, std::size_t top);

private:
    struct candidate {
        float logit;
        token_id id;
        double weight; // unnormalized probability while drawing
    };

    /// The best `n` of `logits` (larger logit, then lower id), best first.
    static void select_top(std::span<const float> logits, std::size_t n, std::vector<candidate>& out);
    /// result.logprob (of result.token) and result.top (`top` entries) from
    /// the log-softmax of `logits`, whose maximum is `max`.
    static void add_logprobs(std::span<const float> logits, float max, std::size_t top,
                             std::vector<candidate>& scratch, sample_result& result);

    void apply_penalties(std::span<float> logits, std::span<const token_id> prompt,
                         std::span<const token_id> generated);
    token_id draw(std::span<const float> logits, float max);
    std::uint64_t next_random() noexcept;
    double next_unit() noexcept; // [0, 1)

    sampling_params m_params;
    std::array<std::uint64_t, 4> m_state{};
    std::vector<token_id> m_scratch_ids;
    std::vector<candidate> m_candidates;
    std::vector<float> m_weights; // the whole vocabulary's, when nothing truncates it
};

} // namespace weft::serve
