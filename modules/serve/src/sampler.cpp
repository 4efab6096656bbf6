#include <weft/serve/sampler.hpp>

#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace weft::serve {

namespace {

constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

constexpr std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Strict total order: larger logit first, then lower id, so that every
// selection is the same whatever algorithm the standard library uses.
template <typename Candidate>
bool ranks_before(const Candidate& a, const Candidate& b) noexcept {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

void check_token(token_id t, std::size_t vocab, const char* what) {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab) {
        throw std::out_of_range(std::string("sampler: ") + what + " token " + std::to_string(t) +
                                " is outside the vocabulary of " + std::to_string(vocab));
    }
}

} // namespace

sampler::sampler(sampling_params params, std::uint64_t fallback_seed) : m_params(std::move(params)) {
    const auto& p = m_params;
    const auto fail = [](const std::string& what) { throw std::invalid_argument("sampling parameters: " + what); };
    if (!std::isfinite(p.temperature) || p.temperature < 0.0f) {
        fail("temperature must be a finite number >= 0, got " + std::to_string(p.temperature));
    }
    if (p.top_k < 0) {
        fail("top_k must be >= 0, got " + std::to_string(p.top_k));
    }
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
        fail("top_p must be in (0, 1], got " + std::to_string(p.top_p));
    }
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
        fail("min_p must be in [0, 1], got " + std::to_string(p.min_p));
    }
    if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0.0f) {
        fail("repetition_penalty must be a finite number > 0, got " + std::to_string(p.repetition_penalty));
    }
    if (!std::isfinite(p.frequency_penalty) || !std::isfinite(p.presence_penalty)) {
        fail("frequency_penalty and presence_penalty must be finite");
    }
    if (p.top_logprobs < 0) {
        fail("top_logprobs must be >= 0, got " + std::to_string(p.top_logprobs));
    }
    for (const auto& [token, bias] : p.logit_bias) {
        if (std::isnan(bias)) {
            fail("logit_bias for token " + std::to_string(token) + " is NaN");
        }
    }
    std::uint64_t x = p.seed.value_or(fallback_seed);
    for (auto& word : m_state) {
        word = splitmix64(x);
    }
}

// xoshiro256** (Blackman and Vigna).
std::uint64_t sampler::next_random() noexcept {
    const std::uint64_t result = rotl(m_state[1] * 5, 7) * 9;
    const std::uint64_t t = m_state[1] << 17;
    m_state[2] ^= m_state[0];
    m_state[3] ^= m_state[1];
    m_state[1] ^= m_state[2];
    m_state[0] ^= m_state[3];
    m_state[2] ^= t;
    m_state[3] = rotl(m_state[3], 45);
    return result;
}

double sampler::next_unit() noexcept { return static_cast<double>(next_random() >> 11) * 0x1.0p-53; }

sample_result sampler::sample(std::span<float> logits, std::span<const token_id> prompt,
                              std::span<const token_id> generated) {
    const std::size_t vocab = logits.size();
    if (vocab == 0) {
        throw std::invalid_argument("sampler: empty logits");
    }
    if (vocab > static_cast<std::size_t>(std::numeric_limits<token_id>::max())) {
        throw std::invalid_argument("sampler: vocabulary of " + std::to_string(vocab) + " exceeds token ids");
    }
    for (const auto& [token, bias] : m_params.logit_bias) {
        check_token(token, vocab, "logit_bias");
    }
    for (const auto& [token, bias] : m_params.logit_bias) {
        float& l = logits[static_cast<std::size_t>(token)];
        l = bias <= -100.0f ? -std::numeric_limits<float>::infinity() : l + bias;
    }
    if (generated.size() < m_params.min_tokens) {
        for (const token_id t : m_params.held_back) {
            check_token(t, vocab, "held_back");
            logits[static_cast<std::size_t>(t)] = -std::numeric_limits<float>::infinity();
        }
    }
    apply_penalties(logits, prompt, generated);

    // One vectorized pass for the maximum and the NaN check.
    const float max = kernels::max_or_nan(logits.data(), vocab);
    if (std::isnan(max)) {
        throw std::invalid_argument("sampler: logits contain NaN");
    }
    if (!std::isfinite(max)) {
        throw std::invalid_argument(max > 0 ? "sampler: logits contain +infinity"
                                            : "sampler: every token is banned (no finite logit)");
    }

    sample_result result;
    if (m_params.temperature == 0.0f) {
        // The first maximum: the lowest id on ties.
        result.token = static_cast<token_id>(kernels::find_first(logits.data(), vocab, max));
    } else {
        result.token = draw(logits, max);
    }
    if (m_params.logprobs || m_params.top_logprobs > 0) {
        add_logprobs(logits, max, static_cast<std::size_t>(m_params.top_logprobs), m_candidates, result);
    }
    return result;
}

void sampler::add_logprobs(std::span<const float> logits, float max, std::size_t top, std::vector<candidate>& scratch,
                           sample_result& result) {
    double sum = 0.0;
    for (const float l : logits) {
        sum += std::exp(static_cast<double>(l) - max);
    }
    const double log_norm = static_cast<double>(max) + std::log(sum);
    result.logprob = static_cast<float>(logits[static_cast<std::size_t>(result.token)] - log_norm);
    if (top > 0) {
        select_top(logits, std::min(top, logits.size()), scratch);
        result.top.reserve(scratch.size());
        for (const candidate& c : scratch) {
            result.top.push_back({c.id, static_cast<float>(c.logit - log_norm)});
        }
    }
}

sample_result sampler::score(std::span<const float> logits, token_id token, std::size_t top) {
    const std::size_t vocab = logits.size();
    if (vocab == 0) throw std::invalid_argument("sampler: empty logits");
    if (token < 0 || static_cast<std::size_t>(token) >= vocab) {
        throw std::invalid_argument("sampler: token " + std::to_string(token) + " is outside the vocabulary of " +
                                    std::to_string(vocab));
    }
    float max = -std::numeric_limits<float>::infinity();
    for (const float l : logits) {
        if (std::isnan(l)) throw std::invalid_argument("sampler: logits contain NaN");
        max = std::max(max, l);
    }
    if (!std::isfinite(max)) throw std::invalid_argument("sampler: logits have no finite maximum");
    sample_result r;
    r.token = token;
    std::vector<candidate> scratch;
    add_logprobs(logits, max, top, scratch, r);
    return r;
}

void sampler::apply_penalties(std::span<float> logits, std::span<const token_id> prompt,
                              std::span<const token_id> generated) {
    const std::size_t vocab = logits.size();
    if (m_params.repetition_penalty != 1.0f) {
        m_scratch_ids.assign(prompt.begin(), prompt.end());
        m_scratch_ids.insert(m_scratch_ids.end(), generated.begin(), generated.end());
        std::sort(m_scratch_ids.begin(), m_scratch_ids.end());
        m_scratch_ids.erase(std::unique(m_scratch_ids.begin(), m_scratch_ids.end()), m_scratch_ids.end());
        if (!m_scratch_ids.empty()) {
            check_token(m_scratch_ids.front(), vocab, "context");
            check_token(m_scratch_ids.back(), vocab, "context");
        }
        const float penalty = m_params.repetition_penalty;
        for (const token_id t : m_scratch_ids) {
            float& l = logits[static_cast<std::size_t>(t)];
            l = l > 0.0f ? l / penalty : l * penalty;
        }
    }
    if (m_params.frequency_penalty != 0.0f || m_params.presence_penalty != 0.0f) {
        m_scratch_ids.assign(generated.begin(), generated.end());
        std::sort(m_scratch_ids.begin(), m_scratch_ids.end());
        if (!m_scratch_ids.empty()) {
            check_token(m_scratch_ids.front(), vocab, "generated");
            check_token(m_scratch_ids.back(), vocab, "generated");
        }
        for (auto run = m_scratch_ids.begin(); run != m_scratch_ids.end();) {
            const auto end = std::upper_bound(run, m_scratch_ids.end(), *run);
            const auto count = static_cast<float>(end - run);
            logits[static_cast<std::size_t>(*run)] -= count * m_params.frequency_penalty + m_params.presence_penalty;
            run = end;
        }
    }
}

void sampler::select_top(std::span<const float> logits, std::size_t n, std::vector<candidate>& out) {
    out.clear();
    if (n == 0) {
        return;
    }
    out.reserve(n);
    // A heap whose front is the worst kept candidate.
    const auto cmp = [](const candidate& a, const candidate& b) { return ranks_before(a, b); };
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const candidate c{logits[i], static_cast<token_id>(i), 0.0};
        if (out.size() < n) {
            out.push_back(c);
            std::push_heap(out.begin(), out.end(), cmp);
        } else if (ranks_before(c, out.front())) {
            std::pop_heap(out.begin(), out.end(), cmp);
            out.back() = c;
            std::push_heap(out.begin(), out.end(), cmp);
        }
    }
    std::sort_heap(out.begin(), out.end(), cmp);
}

token_id sampler::draw(std::span<const float> logits, float max) {
    const std::size_t vocab = logits.size();
    const double inv_temperature = 1.0 / static_cast<double>(m_params.temperature);
    if ((m_params.top_k <= 0 || static_cast<std::size_t>(m_params.top_k) >= vocab) && m_params.top_p >= 1.0f &&
        m_params.min_p <= 0.0f) {
        // Nothing truncates the distribution (the default): the whole
        // vocabulary's weights in one vectorized pass, no candidate list.
        m_weights.resize(vocab);
        kernels::exp_weights(logits.data(), max, static_cast<float>(inv_temperature), m_weights.data(), vocab);
        double total = 0.0;
        for (const float w : m_weights) total += w;
        const double r = next_unit() * total;
        double cumulative = 0.0;
        std::size_t last = 0; // the last token with a weight: never a banned one
        for (std::size_t i = 0; i < vocab; ++i) {
            if (m_weights[i] == 0.0f) continue;
            cumulative += m_weights[i];
            last = i;
            if (r < cumulative) return static_cast<token_id>(i);
        }
        return static_cast<token_id>(last); // unreachable while r < total (same summation order)
    }
    bool sorted = false;
    if (m_params.top_k > 0 && static_cast<std::size_t>(m_params.top_k) < vocab) {
        select_top(logits, static_cast<std::size_t>(m_params.top_k), m_candidates);
        sorted = true;
    } else {
        m_candidates.clear();
        m_candidates.reserve(vocab);
        for (std::size_t i = 0; i < vocab; ++i) {
            if (logits[i] != -std::numeric_limits<float>::infinity()) {
                m_candidates.push_back({logits[i], static_cast<token_id>(i), 0.0});
            }
        }
    }
    // Weights relative to the most likely token (weight 1): softmax(l / T)
    // up to the normalization, which the draw does not need.
    double total = 0.0;
    for (candidate& c : m_candidates) {
        c.weight = std::exp((static_cast<double>(c.logit) - max) * inv_temperature);
        total += c.weight;
    }

    auto& cands = m_candidates;
    if (m_params.top_p < 1.0f) {
        // Sort only the leading candidates, widening until the mass is reached:
        // usually a few dozen tokens carry it, not the whole vocabulary.
        const double target = static_cast<double>(m_params.top_p) * total;
        const auto cmp = [](const candidate& a, const candidate& b) { return ranks_before(a, b); };
        std::size_t sorted_end = sorted ? cands.size() : 0;
        double mass = 0.0;
        std::size_t keep = cands.size();
        for (std::size_t i = 0; i < cands.size(); ++i) {
            if (i == sorted_end) {
                sorted_end = std::min(cands.size(), std::max<std::size_t>(64, sorted_end * 4));
                std::partial_sort(cands.begin() + static_cast<std::ptrdiff_t>(i),
                                  cands.begin() + static_cast<std::ptrdiff_t>(sorted_end), cands.end(), cmp);
            }
            mass += cands[i].weight;
            if (mass >= target) {
                keep = i + 1;
                break;
            }
        }
        cands.resize(keep);
        total = mass;
    }
    if (m_params.min_p > 0.0f) {
        const double threshold = m_params.min_p; // the best token's weight is 1
        std::erase_if(cands, [&](const candidate& c) { return c.weight < threshold; });
        total = 0.0;
        for (const candidate& c : cands) {
            total += c.weight;
        }
    }

    const double r = next_unit() * total;
    double cumulative = 0.0;
    for (const candidate& c : cands) {
        cumulative += c.weight;
        if (r < cumulative) {
            return c.id;
        }
    }
    // Unreachable while r < total (same summation order); never a banned token.
    return cands.front().id;
}

} // namespace weft::serve
