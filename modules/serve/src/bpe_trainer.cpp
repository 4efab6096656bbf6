#include <weft/serve/bpe_trainer.hpp>

#include "tokenizer_internal.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <queue>
#include <unordered_map>

namespace weft::serve {
namespace {

// ---- Corpus ------------------------------------------------------------------

/// splitmix64: tiny, and the same sequence everywhere (std's distributions
/// are not specified bit for bit, so they are not used here).
class prng {
public:
    explicit prng(std::uint64_t seed) : m_state(seed) {}

    std::uint64_t next() noexcept {
        std::uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
    /// True with probability percent / 100.
    bool chance(unsigned percent) noexcept { return below(100) < percent; }

private:
    std::uint64_t m_state;
};

/// Draws index r with weight proportional to 1 / (r + offset), in integers;
/// a larger offset flattens the head of the distribution.
class zipf_table {
public:
    zipf_table(std::size_t n, std::size_t offset) {
        std::uint64_t total = 0;
        for (std::size_t r = 0; r < n; ++r) {
            total += (std::uint64_t{1} << 24) / (r + offset);
            m_cumulative.push_back(total);
        }
    }
    std::size_t draw(prng& rng) const {
        const std::uint64_t x = rng.below(m_cumulative.back());
        return static_cast<std::size_t>(
            std::upper_bound(m_cumulative.begin(), m_cumulative.end(), x) - m_cumulative.begin());
    }

private:
    std::vector<std::uint64_t> m_cumulative;
};

template <std::size_t N>
std::string_view pick(prng& rng, const std::array<std::string_view, N>& list) {
    return list[rng.below(N)];
}

constexpr std::array<std::string_view, 30> function_words = {
    "the", "of", "and", "to", "a", "in", "is", "it", "that", "was", "for", "on", "with", "as", "he",
    "she", "they", "at", "by", "this", "we", "you", "from", "or", "but", "not", "are", "be", "have",
    "one"};
constexpr std::array<std::string_view, 24> onsets = {
    "", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p",
    "r", "s", "t", "v", "w", "th", "st", "br", "ch", "sh", "tr", "pl"};
constexpr std::array<std::string_view, 9> vowels = {"a", "e", "i", "o", "u",
                                                    "ea", "ou", "ai", "io"};
constexpr std::array<std::string_view, 12> accented = {"é", "ü", "ö", "è", "ï", "å",
                                                       "é", "ü", "ñ", "ç", "ô", "á"};
constexpr std::array<std::string_view, 14> codas = {"", "", "", "", "n", "r", "s",
                                                    "t", "l", "nd", "st", "ng", "m", "ck"};
constexpr std::array<std::string_view, 8> contractions = {"don't", "it's", "we're", "they've",
                                                          "I'm", "you'll", "he'd", "can't"};
constexpr std::array<std::string_view, 6> symbols = {"😀", "—", "…", "✓", "日本", "€"};

std::vector<std::string> make_lexicon(prng& rng, std::size_t size) {
    // The syllable inventory in a seeded order, so that Zipf's frequent
    // ranks fall on arbitrary syllables rather than the first combinations.
    std::vector<std::string> syllables;
    for (const auto onset : onsets) {
        for (const auto vowel : vowels) {
            for (const auto coda : codas) {
                syllables.push_back(std::string(onset) + std::string(vowel) + std::string(coda));
            }
        }
    }
    for (std::size_t i = syllables.size() - 1; i > 0; --i) {
        std::swap(syllables[i], syllables[rng.below(i + 1)]);
    }
    const zipf_table syllable_rank(syllables.size(), 20);
    std::vector<std::string> lexicon(function_words.begin(), function_words.end());
    while (lexicon.size() < size) {
        std::string word;
        const std::uint64_t roll = rng.below(100);
        const int count = roll < 30 ? 1 : roll < 75 ? 2 : roll < 93 ? 3 : 4;
        for (int i = 0; i < count; ++i) {
            std::string syllable = syllables[syllable_rank.draw(rng)];
            if (rng.chance(3)) {
                // Swap the syllable's first vowel for an accented one.
                const auto at = syllable.find_first_of("aeiou");
                if (at != std::string::npos) {
                    syllable.replace(at, 1, pick(rng, accented));
                }
            }
            word += syllable;
        }
        lexicon.push_back(std::move(word));
    }
    return lexicon;
}

void append_number(prng& rng, std::string& out) {
    if (rng.chance(40)) {
        out += std::to_string(1800 + rng.below(230)); // a year
    } else if (rng.chance(30)) {
        out += std::to_string(rng.below(100)) + "." + std::to_string(rng.below(100));
    } else {
        out += std::to_string(rng.below(rng.chance(50) ? 100 : 1000000));
    }
}

void append_sentence(prng& rng, const std::vector<std::string>& lexicon, const zipf_table& rank,
                     std::string& out) {
    const std::uint64_t words = 4 + rng.below(15);
    for (std::uint64_t i = 0; i < words; ++i) {
        if (i > 0) {
            if (rng.chance(6)) {
                out += ',';
            } else if (rng.chance(2)) {
                out += " —";
            }
            out += ' ';
        }
        const std::size_t at = out.size();
        if (rng.chance(3)) {
            append_number(rng, out);
        } else if (rng.chance(2)) {
            out += pick(rng, contractions);
        } else {
            const std::size_t word = rank.draw(rng);
            out += lexicon[word];
            if (word >= function_words.size() && rng.chance(4)) {
                out += "'s";
            }
        }
        if (i == 0 && out[at] >= 'a' && out[at] <= 'z') {
            out[at] = static_cast<char>(out[at] - 'a' + 'A');
        }
    }
    if (rng.chance(4)) {
        out += ' ';
        out += pick(rng, symbols);
    }
    const std::uint64_t end = rng.below(100);
    out += end < 80 ? "." : end < 90 ? "?" : end < 97 ? "!" : "...";
}

// ---- Trainer -----------------------------------------------------------------

struct train_word {
    std::vector<token_id> symbols;
    std::uint64_t count;
};

struct heap_entry {
    std::uint64_t count;
    std::uint64_t pair;
};

// Most frequent first; equal counts: the smaller (left, right) ids first.
struct worse_entry {
    bool operator()(const heap_entry& a, const heap_entry& b) const noexcept {
        return a.count != b.count ? a.count < b.count : a.pair > b.pair;
    }
};

class bpe_trainer {
public:
    bpe_trainer(std::vector<train_word> words) : m_words(std::move(words)) {
        for (std::uint32_t w = 0; w < m_words.size(); ++w) {
            const auto& s = m_words[w].symbols;
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                const auto key = detail::pair_key(s[i], s[i + 1]);
                m_counts[key] += m_words[w].count;
                note_word(key, w);
            }
        }
        for (const auto& [key, count] : m_counts) {
            m_heap.push({count, key});
        }
    }

    /// The most frequent pair, or false when no pair is left.
    bool best(std::uint64_t& pair) {
        while (!m_heap.empty()) {
            const heap_entry top = m_heap.top();
            m_heap.pop();
            const auto it = m_counts.find(top.pair);
            // Entries are not updated in place: a changed count was pushed again.
            if (it != m_counts.end() && it->second == top.count && top.count > 0) {
                pair = top.pair;
                return true;
            }
        }
        return false;
    }

    /// Replaces every occurrence of `pair` by `merged`, updating the
    /// counts of the pairs around each occurrence only.
    void merge(std::uint64_t pair, token_id merged) {
        const auto left = static_cast<token_id>(pair >> 32);
        const auto right = static_cast<token_id>(pair & 0xFFFFFFFFU);
        const auto found = m_where.find(pair);
        std::vector<std::uint32_t> affected;
        if (found != m_where.end()) {
            affected = std::move(found->second);
            m_where.erase(found);
        }
        for (const std::uint32_t w : affected) {
            merge_in_word(w, left, right, merged);
        }
        m_counts.erase(pair);
    }

private:
    void note_word(std::uint64_t key, std::uint32_t w) {
        auto& list = m_where[key];
        if (list.empty() || list.back() != w) {
            list.push_back(w);
        }
    }

    void merge_in_word(std::uint32_t w, token_id left, token_id right, token_id merged) {
        auto& s = m_words[w].symbols;
        std::vector<token_id> out;
        out.reserve(s.size());
        bool changed = false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
                out.push_back(merged);
                ++i;
                changed = true;
            } else {
                out.push_back(s[i]);
            }
        }
        if (!changed) {
            return; // listed twice, or the pair went away with an earlier merge
        }
        m_deltas.clear();
        for (std::size_t i = 0; i + 1 < s.size(); ++i) {
            m_deltas.emplace_back(detail::pair_key(s[i], s[i + 1]), -1);
        }
        for (std::size_t i = 0; i + 1 < out.size(); ++i) {
            m_deltas.emplace_back(detail::pair_key(out[i], out[i + 1]), 1);
        }
        std::sort(m_deltas.begin(), m_deltas.end());
        const std::uint64_t count = m_words[w].count;
        for (std::size_t i = 0; i < m_deltas.size();) {
            const std::uint64_t key = m_deltas[i].first;
            std::int64_t delta = 0;
            for (; i < m_deltas.size() && m_deltas[i].first == key; ++i) {
                delta += m_deltas[i].second;
            }
            if (delta == 0) {
                continue;
            }
            auto& total = m_counts[key];
            if (delta > 0) {
                total += count * static_cast<std::uint64_t>(delta);
                note_word(key, w);
            } else {
                total -= count * static_cast<std::uint64_t>(-delta);
            }
            if (total > 0) {
                m_heap.push({total, key});
            }
        }
        s = std::move(out);
    }

    std::vector<train_word> m_words;
    std::unordered_map<std::uint64_t, std::uint64_t> m_counts;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> m_where;
    std::priority_queue<heap_entry, std::vector<heap_entry>, worse_entry> m_heap;
    std::vector<std::pair<std::uint64_t, std::int64_t>> m_deltas;
};

constexpr std::array<std::string_view, 5> special_tokens = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
    "<|end_header_id|>"};

} // namespace

std::string demo_corpus(std::size_t bytes, std::uint64_t seed) {
    prng rng(seed);
    const std::vector<std::string> lexicon = make_lexicon(rng, 6000);
    const zipf_table rank(lexicon.size(), 2);
    std::string out;
    out.reserve(bytes + 256);
    while (out.size() < bytes) {
        const std::uint64_t sentences = 2 + rng.below(6);
        for (std::uint64_t i = 0; i < sentences && out.size() < bytes; ++i) {
            if (i > 0) {
                out += ' ';
            }
            append_sentence(rng, lexicon, rank, out);
        }
        out += rng.chance(70) ? "\n\n" : "\n";
    }
    // Cut at a character boundary, then pad, so the size is exact and the
    // text stays valid UTF-8.
    std::size_t cut = bytes;
    while (cut > 0 && cut < out.size() && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
        --cut;
    }
    out.resize(cut);
    out.resize(bytes, '\n');
    return out;
}

tokenizer_data train_byte_bpe(std::string_view corpus, std::size_t vocab_size,
                              std::string_view pre) {
    constexpr std::size_t minimum = 256 + special_tokens.size();
    if (vocab_size < minimum ||
        vocab_size > static_cast<std::size_t>(std::numeric_limits<token_id>::max())) {
        throw tokenizer_error("train_byte_bpe: vocabulary size " + std::to_string(vocab_size) +
                              " is outside [" + std::to_string(minimum) + ", 2^31 - 1]");
    }

    tokenizer_data d;
    d.model = "gpt2";
    d.pre = std::string(pre);
    d.add_bos = true;
    d.add_eos = false;
    d.add_space_prefix = false;

    const auto& alphabet = detail::byte_to_unicode_table();
    const auto& order = detail::bytes_in_vocab_order();
    std::array<token_id, 256> byte_id{};
    detail::text_to_id_map ids;
    for (std::size_t i = 0; i < 256; ++i) {
        byte_id[order[i]] = static_cast<token_id>(i);
        d.tokens.push_back(alphabet[order[i]]);
        ids.emplace(d.tokens.back(), static_cast<token_id>(i));
    }

    // Word counts over the pre-tokenizer's pieces, in a fixed order.
    std::vector<std::string_view> pieces;
    detail::regex_splitter(detail::pre_kind_from_name(pre)).split(corpus, pieces);
    std::unordered_map<std::string_view, std::uint64_t> counts;
    for (const auto piece : pieces) {
        ++counts[piece];
    }
    std::vector<std::pair<std::string_view, std::uint64_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());
    std::vector<train_word> words;
    words.reserve(sorted.size());
    for (const auto& [text, count] : sorted) {
        train_word w{{}, count};
        for (const char c : text) {
            w.symbols.push_back(byte_id[static_cast<unsigned char>(c)]);
        }
        words.push_back(std::move(w));
    }

    bpe_trainer trainer(std::move(words));
    const std::size_t learned = vocab_size - special_tokens.size();
    std::uint64_t pair = 0;
    while (d.tokens.size() < learned && trainer.best(pair)) {
        const auto& left = d.tokens[static_cast<std::size_t>(pair >> 32)];
        const auto& right = d.tokens[static_cast<std::size_t>(pair & 0xFFFFFFFFU)];
        std::string text = left + right;
        d.merges.push_back(left + " " + right);
        // Two different pairs can spell the same text; they share its token.
        auto [it, added] = ids.try_emplace(text, static_cast<token_id>(d.tokens.size()));
        if (added) {
            d.tokens.push_back(std::move(text));
        }
        trainer.merge(pair, it->second);
    }
    d.types.assign(d.tokens.size(), token_type::normal);

    for (std::size_t i = 0; i < special_tokens.size(); ++i) {
        d.tokens.emplace_back(special_tokens[i]);
        d.types.push_back(token_type::control);
    }
    const auto first_special = static_cast<token_id>(d.tokens.size() - special_tokens.size());
    d.bos = first_special;
    d.eos = first_special + 1;
    d.eot = first_special + 2;
    for (std::size_t n = 0; d.tokens.size() < vocab_size; ++n) {
        d.tokens.push_back("<|reserved_special_token_" + std::to_string(n) + "|>");
        d.types.push_back(token_type::control);
    }
    return d;
}

} // namespace weft::serve
