#include "tokenizer_internal.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <utility>

namespace weft::serve {
namespace detail {

void special_matcher::add(std::string_view text, token_id id) {
    if (!text.empty()) {
        by_text.insert_or_assign(text, id);
    }
}

void special_matcher::finalize() {
    for (const auto& [text, id] : by_text) {
        lengths.push_back(text.size());
        starts[static_cast<unsigned char>(text.front())] = true;
    }
    std::sort(lengths.begin(), lengths.end(), std::greater<>{});
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
}

void merge_table::insert(std::uint64_t key, merge_entry entry) {
    if ((m_size + 1) * 2 > m_slots.size()) {
        grow();
    }
    std::size_t i = slot_of(key);
    for (; m_slots[i].key != empty_key; i = (i + 1) & m_mask) {
        if (m_slots[i].key == key) {
            return;
        }
    }
    m_slots[i] = {key, entry};
    ++m_size;
}

void merge_table::grow() {
    std::vector<slot> old = std::move(m_slots);
    const std::size_t capacity = old.empty() ? 64 : old.size() * 2;
    m_slots.assign(capacity, slot{});
    m_mask = capacity - 1;
    m_shift = 64 - static_cast<unsigned>(std::countr_zero(capacity));
    m_size = 0;
    for (const slot& s : old) {
        if (s.key != empty_key) {
            insert(s.key, s.entry);
        }
    }
}

} // namespace detail

namespace {

using detail::tokenizer_state;

[[noreturn]] void fail(const std::string& what) { throw tokenizer_error("tokenizer: " + what); }

std::string quoted(std::string_view s) {
    constexpr std::size_t limit = 40;
    std::string out = "\"";
    out += s.substr(0, limit);
    if (s.size() > limit) {
        out += "...";
    }
    return out + "\"";
}

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/// The byte of a "<0xXX>" token text, or -1.
int byte_token_value(std::string_view text) noexcept {
    if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') {
        return -1;
    }
    const int hi = hex_digit(text[3]);
    const int lo = hex_digit(text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string undo_byte_alphabet(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t pos = 0; pos < text.size();) {
        const auto scan = detail::scan_utf8(text, pos);
        if (scan.status == detail::utf8_status::complete) {
            const int byte = detail::unicode_to_byte(detail::decode_utf8(text, pos, scan.length));
            if (byte >= 0) {
                out += static_cast<char>(byte);
                pos += scan.length;
                continue;
            }
        }
        // Not from the byte alphabet: the text stands for itself.
        const std::size_t n = scan.status == detail::utf8_status::complete ? scan.length : 1;
        out.append(text.substr(pos, n));
        pos += n;
    }
    return out;
}

std::string unescape_spaces(std::string_view text) {
    constexpr std::string_view space_mark = "\xE2\x96\x81"; // U+2581 "▁"
    std::string out;
    out.reserve(text.size());
    for (std::size_t pos = 0; pos < text.size();) {
        if (text.substr(pos, space_mark.size()) == space_mark) {
            out += ' ';
            pos += space_mark.size();
        } else {
            out += text[pos++];
        }
    }
    return out;
}

void check_id(const std::optional<token_id>& id, const char* name, std::size_t n) {
    if (id && (*id < 0 || static_cast<std::size_t>(*id) >= n)) {
        fail(std::string(name) + " token id " + std::to_string(*id) +
             " is outside the vocabulary of " + std::to_string(n) + " tokens");
    }
}

void validate(const tokenizer_data& d) {
    if (d.model != "gpt2" && d.model != "llama") {
        fail("unsupported model " + quoted(d.model) + " (expected \"gpt2\" or \"llama\")");
    }
    const std::size_t n = d.tokens.size();
    if (n == 0) {
        fail("the vocabulary is empty");
    }
    if (n > static_cast<std::size_t>(std::numeric_limits<token_id>::max())) {
        fail("the vocabulary has " + std::to_string(n) + " tokens, more than token ids can number");
    }
    if (!d.scores.empty() && d.scores.size() != n) {
        fail(std::to_string(d.scores.size()) + " scores for " + std::to_string(n) + " tokens");
    }
    if (!d.types.empty() && d.types.size() != n) {
        fail(std::to_string(d.types.size()) + " token types for " + std::to_string(n) + " tokens");
    }
    for (std::size_t i = 0; i < d.types.size(); ++i) {
        const auto t = static_cast<std::int32_t>(d.types[i]);
        if (t < 0 || t > static_cast<std::int32_t>(token_type::byte)) {
            fail("token " + std::to_string(i) + " has unknown type " + std::to_string(t));
        }
        if (d.types[i] == token_type::byte && byte_token_value(d.tokens[i]) < 0) {
            fail("byte token " + std::to_string(i) + " is " + quoted(d.tokens[i]) +
                 ", not of the form <0xXX>");
        }
    }
    check_id(d.bos, "bos", n);
    check_id(d.eos, "eos", n);
    check_id(d.eot, "eot", n);
    check_id(d.eom, "eom", n);
    check_id(d.unk, "unk", n);
    check_id(d.pad, "pad", n);
}

std::optional<token_id> lookup(const detail::text_to_id_map& map, std::string_view text) {
    const auto it = map.find(text);
    return it == map.end() ? std::nullopt : std::optional<token_id>(it->second);
}

void build_merges(tokenizer_state& st) {
    const auto& merges = st.data.merges;
    std::string joined;
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string_view merge = merges[rank];
        const auto space = merge.find(' ', 1);
        if (space == std::string_view::npos) {
            fail("merge " + std::to_string(rank) + " " + quoted(merge) +
                 " is not two tokens separated by a space");
        }
        const auto left_text = merge.substr(0, space);
        const auto right_text = merge.substr(space + 1);
        const auto left = lookup(st.token_to_id, left_text);
        const auto right = lookup(st.token_to_id, right_text);
        if (!left || !right) {
            fail("merge " + std::to_string(rank) + " " + quoted(merge) + " names " +
                 quoted(!left ? left_text : right_text) + ", which is not a token");
        }
        joined.assign(left_text).append(right_text);
        const auto result = lookup(st.token_to_id, joined);
        if (!result) {
            fail("merge " + std::to_string(rank) + " " + quoted(merge) + " makes " +
                 quoted(joined) + ", which is not a token");
        }
        // A repeated pair keeps its first (best) rank.
        st.merges.insert(detail::pair_key(*left, *right),
                         detail::merge_entry{static_cast<std::uint32_t>(rank), *result});
    }
}

void build(tokenizer_state& st) {
    auto& d = st.data;
    const std::size_t n = d.tokens.size();
    d.scores.resize(n, 0.0f);
    d.types.resize(n, token_type::normal);
    st.byte_level = d.model == "gpt2";

    st.token_to_id.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        // A text listed twice maps to its last id, as in llama.cpp.
        st.token_to_id.insert_or_assign(d.tokens[i], static_cast<token_id>(i));
    }

    st.pieces.resize(n);
    st.special.assign(n, false);
    st.restarts_text.assign(n, false);
    st.text_piece.assign(n, false);
    st.byte_token.fill(-1);
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<token_id>(i);
        const std::string& text = d.tokens[i];
        switch (d.types[i]) {
        case token_type::byte: {
            const int byte = byte_token_value(text);
            st.pieces[i] = std::string(1, static_cast<char>(byte));
            if (!st.byte_level && st.byte_token[byte] < 0) {
                st.byte_token[byte] = id;
            }
            break;
        }
        case token_type::control:
        case token_type::unknown:
            st.pieces[i] = text;
            st.special[i] = true;
            st.restarts_text[i] = true;
            st.all_specials.add(text, id);
            break;
        case token_type::user_defined:
            st.pieces[i] = text;
            st.restarts_text[i] = true;
            st.text_piece[i] = true;
            st.user_specials.add(text, id);
            st.all_specials.add(text, id);
            break;
        case token_type::unused:
            break;
        case token_type::undefined:
        case token_type::normal:
            st.pieces[i] = st.byte_level ? undo_byte_alphabet(text) : unescape_spaces(text);
            st.text_piece[i] = true;
            break;
        }
    }
    st.user_specials.finalize();
    st.all_specials.finalize();
    for (const auto& id : {d.bos, d.eos, d.eot, d.eom, d.unk, d.pad}) {
        if (id) {
            st.special[static_cast<std::size_t>(*id)] = true;
        }
    }

    if (st.byte_level) {
        const auto& alphabet = detail::byte_to_unicode_table();
        for (std::size_t b = 0; b < 256; ++b) {
            if (const auto id = lookup(st.token_to_id, alphabet[b])) {
                st.byte_token[b] = *id;
            }
        }
        build_merges(st);
        st.pre = detail::pre_kind_from_name(d.pre);
        st.ignore_merges = st.pre == detail::pre_kind::llama3;
        st.splitter = std::make_unique<detail::regex_splitter>(st.pre);
    }
}

void check_token(token_id id, std::size_t n) {
    if (id < 0 || static_cast<std::size_t>(id) >= n) {
        fail("token id " + std::to_string(id) + " is outside the vocabulary of " +
             std::to_string(n) + " tokens");
    }
}

} // namespace

tokenizer::tokenizer(tokenizer_data data) {
    validate(data);
    // Built in place: the special matchers keep views of the token texts.
    auto st = std::make_shared<tokenizer_state>();
    st->data = std::move(data);
    build(*st);
    m_state = std::move(st);
}

tokenizer::~tokenizer() = default;

std::vector<token_id> tokenizer::encode(std::string_view text, bool add_special,
                                        bool parse_special) const {
    const tokenizer_state& st = *m_state;
    const auto& d = st.data;
    std::vector<token_id> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && d.add_bos && d.bos) {
        out.push_back(*d.bos);
    }

    detail::encode_scratch scratch;
    bool at_text_start = true;
    const auto encode_text = [&](std::string_view part) {
        if (part.empty()) {
            return;
        }
        if (st.byte_level) {
            detail::encode_byte_level(st, part, scratch, out);
        } else {
            detail::encode_sentencepiece(st, part, at_text_start && d.add_space_prefix, scratch,
                                         out);
        }
        at_text_start = false;
    };

    const detail::special_matcher& specials = parse_special ? st.all_specials : st.user_specials;
    if (specials.empty()) {
        encode_text(text);
    } else {
        std::size_t done = 0;
        for (std::size_t pos = 0; pos < text.size();) {
            if (!specials.starts[static_cast<unsigned char>(text[pos])]) {
                ++pos;
                continue;
            }
            std::optional<token_id> match;
            std::size_t match_length = 0;
            for (const std::size_t length : specials.lengths) {
                if (length <= text.size() - pos) {
                    const auto it = specials.by_text.find(text.substr(pos, length));
                    if (it != specials.by_text.end()) {
                        match = it->second;
                        match_length = length;
                        break;
                    }
                }
            }
            if (!match) {
                ++pos;
                continue;
            }
            encode_text(text.substr(done, pos - done));
            out.push_back(*match);
            at_text_start = true;
            pos += match_length;
            done = pos;
        }
        encode_text(text.substr(done));
    }

    if (add_special && d.add_eos && d.eos) {
        out.push_back(*d.eos);
    }
    return out;
}

void tokenizer::append_piece(token_id id, bool skip_special, bool& at_text_start,
                             std::string& out) const {
    const tokenizer_state& st = *m_state;
    check_token(id, st.pieces.size());
    const auto i = static_cast<std::size_t>(id);
    if (st.restarts_text[i] || st.special[i]) {
        if (!(skip_special && st.special[i])) {
            out += st.pieces[i];
        }
        at_text_start = true;
        return;
    }
    std::string_view piece = st.pieces[i];
    if (piece.empty()) {
        return;
    }
    // Undo the space encode put in front of the text.
    if (at_text_start && !st.byte_level && st.data.add_space_prefix && piece.front() == ' ') {
        piece.remove_prefix(1);
    }
    out += piece;
    at_text_start = false;
}

std::string tokenizer::decode(std::span<const token_id> ids, bool skip_special) const {
    std::string out;
    bool at_text_start = true;
    for (const token_id id : ids) {
        append_piece(id, skip_special, at_text_start, out);
    }
    return out;
}

std::string tokenizer::token_to_piece(token_id id) const {
    const tokenizer_state& st = *m_state;
    check_token(id, st.pieces.size());
    return st.pieces[static_cast<std::size_t>(id)];
}

std::size_t tokenizer::vocab_size() const noexcept { return m_state->data.tokens.size(); }

std::optional<token_id> tokenizer::bos() const noexcept { return m_state->data.bos; }

std::optional<token_id> tokenizer::eos() const noexcept { return m_state->data.eos; }

bool tokenizer::is_eog(token_id id) const noexcept {
    const auto& d = m_state->data;
    return (d.eos && id == *d.eos) || (d.eot && id == *d.eot) || (d.eom && id == *d.eom);
}

std::vector<token_id> tokenizer::eog_ids() const {
    const auto& d = m_state->data;
    std::vector<token_id> out;
    for (const std::optional<token_id>& id : {d.eos, d.eot, d.eom}) {
        if (id && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
    }
    return out;
}

bool tokenizer::is_special(token_id id) const noexcept {
    const auto& special = m_state->special;
    return id >= 0 && static_cast<std::size_t>(id) < special.size() &&
           special[static_cast<std::size_t>(id)];
}

std::optional<token_id> tokenizer::find(std::string_view token_text) const {
    return lookup(m_state->token_to_id, token_text);
}

const tokenizer_data& tokenizer::data() const noexcept { return m_state->data; }

} // namespace weft::serve
