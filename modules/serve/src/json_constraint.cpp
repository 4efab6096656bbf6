// json_constraint: a matcher applied to a vocabulary. token_texts holds each
// token's bytes (and which are plain string content, the mask's shortcut);
// allowed / mask give the tokens the matcher accepts now, advance feeds the
// one chosen. The matcher itself is json_constraint_matcher.cpp.
#include <weft/serve/json_constraint.hpp>

#include <weft/serve/tokenizer.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::serve {

token_texts::token_texts(const tokenizer& tok) {
    const std::size_t n = tok.vocab_size();
    m_offsets.reserve(n + 1);
    m_plain.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<token_id>(i);
        add(tok.is_special(id) ? std::string() : tok.token_to_piece(id));
    }
}

token_texts::token_texts(const std::vector<std::string>& pieces) {
    m_offsets.reserve(pieces.size() + 1);
    m_plain.reserve(pieces.size());
    for (const std::string& p : pieces) add(p);
}

void token_texts::add(std::string_view piece) {
    m_bytes += piece;
    m_offsets.push_back(m_bytes.size());
    m_first.push_back(piece.empty() ? 0 : static_cast<std::uint8_t>(piece[0]));
    // A matcher inside a string at a character boundary takes exactly the
    // plain content and stays there; ask one.
    json_matcher m;
    bool plain = !piece.empty() && m.feed(R"({")");
    for (std::size_t i = 0; plain && i < piece.size(); ++i) {
        const auto c = static_cast<std::uint8_t>(piece[i]);
        plain = c != '"' && c != '\\' && m.feed(c);
    }
    plain = plain && m.in_plain_string();
    m_plain.push_back(plain ? 1 : 0);
    std::uint32_t chars = 0;
    if (plain) {
        for (const char c : piece) chars += (static_cast<std::uint8_t>(c) & 0xc0) != 0x80 ? 1 : 0;
    }
    m_plain_chars.push_back(chars);
}

json_constraint::json_constraint(std::shared_ptr<const token_texts> vocabulary,
                                 std::shared_ptr<const json_schema> schema)
    : m_vocabulary(std::move(vocabulary)), m_schema(std::move(schema)), m_matcher(m_schema.get()) {}

std::size_t json_constraint::allowed(std::vector<std::uint64_t>& bits) const {
    const token_texts& vocab = *m_vocabulary;
    const std::size_t n = vocab.size();
    bits.assign((n + 63) / 64, 0);
    // Most tokens fail on their first byte: try each byte once.
    std::array<bool, 256> first{};
    for (std::size_t b = 1; b < first.size(); ++b) { // byte 0 stands for "empty" too: never accepted
        const char ch = static_cast<char>(b);
        first[b] = m_matcher.accepts(std::string_view(&ch, 1));
    }
    // In a pattern's text, a multi-byte character's first byte alone is
    // refused but a token that holds the whole character may be taken
    // (unless the pattern matches ASCII only).
    std::array<bool, 256> whole = first;
    if (m_matcher.in_pattern_beyond_ascii()) std::fill(whole.begin() + 0xc2, whole.begin() + 0xf5, true);
    const std::span<const std::uint8_t> first_bytes = vocab.first_bytes();
    const bool in_string = m_matcher.in_plain_string();
    // In a string the schema bounds, a plain token is decided by its length.
    const std::int64_t room = m_matcher.plain_room();
    std::size_t count = 0;
    for (std::size_t w = 0; w < bits.size(); ++w) {
        std::uint64_t word = 0;
        const std::size_t end = std::min(n, (w + 1) * 64);
        for (std::size_t i = w * 64; i < end; ++i) {
            const auto id = static_cast<token_id>(i);
            bool ok = in_string && vocab.plain(id);
            if (!ok && room >= 0 && vocab.plain(id)) {
                ok = vocab.plain_chars(id) <= static_cast<std::uint64_t>(room);
            } else if (!ok && whole[first_bytes[i]]) {
                const std::string_view text = vocab[id];
                ok = text.size() > 1 ? m_matcher.accepts(text) : first[first_bytes[i]];
            }
            word |= std::uint64_t{ok} << (i % 64);
        }
        bits[w] = word;
        count += static_cast<std::size_t>(std::popcount(word));
    }
    return count;
}

void json_constraint::apply(std::span<const std::uint64_t> bits, std::span<float> logits) noexcept {
    const std::size_t n = std::min(logits.size(), bits.size() * 64);
    constexpr float ban = -std::numeric_limits<float>::infinity();
    for (std::size_t w = 0; w * 64 < n; ++w) {
        const std::uint64_t word = bits[w];
        if (word == ~std::uint64_t{0}) continue;
        const std::size_t end = std::min(n, (w + 1) * 64);
        for (std::size_t i = w * 64; i < end; ++i) {
            if ((word >> (i % 64) & 1) == 0) logits[i] = ban;
        }
    }
    for (std::size_t i = n; i < logits.size(); ++i) logits[i] = ban;
}

std::size_t json_constraint::mask(std::span<float> logits) const {
    std::vector<std::uint64_t> bits;
    const std::size_t count = allowed(bits);
    apply(bits, logits);
    return count;
}

bool json_constraint::allows(token_id id) const noexcept {
    if (id < 0 || static_cast<std::size_t>(id) >= m_vocabulary->size()) return false;
    const std::string_view text = (*m_vocabulary)[id];
    json_matcher m = m_matcher;
    return !text.empty() && m.feed(text);
}

bool json_constraint::advance(token_id id) noexcept {
    if (id < 0 || static_cast<std::size_t>(id) >= m_vocabulary->size()) return false;
    const std::string_view text = (*m_vocabulary)[id];
    // feed() is all or nothing: a refused token leaves the state as it was.
    return !text.empty() && m_matcher.feed(text);
}

} // namespace weft::serve
