#include <weft/serve/ngram_proposer.hpp>

#include <algorithm>

namespace weft::serve {

std::vector<token_id> propose_ngram(std::span<const token_id> tokens, std::size_t max_ngram, std::size_t k,
                                    std::size_t min_ngram) {
    const std::size_t size = tokens.size();
    if (k == 0) return {};
    for (std::size_t n = std::min(max_ngram, size == 0 ? 0 : size - 1); n >= std::max<std::size_t>(min_ngram, 1); --n) {
        const std::span<const token_id> suffix = tokens.last(n);
        // Latest first: the nearest context is the likeliest to repeat. An
        // occurrence may overlap the suffix ("a a a" repeats "a a").
        for (std::size_t start = size - n; start-- > 0;) {
            if (std::equal(suffix.begin(), suffix.end(), tokens.begin() + static_cast<std::ptrdiff_t>(start))) {
                const std::size_t from = start + n;
                const std::size_t take = std::min(k, size - from);
                return {tokens.begin() + static_cast<std::ptrdiff_t>(from),
                        tokens.begin() + static_cast<std::ptrdiff_t>(from + take)};
            }
        }
    }
    return {};
}

} // namespace weft::serve
