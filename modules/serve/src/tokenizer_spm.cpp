// SentencePiece BPE ("llama" models), the way llama.cpp's llm_tokenizer_spm
// does it: start from single characters, repeatedly merge the adjacent pair
// whose concatenation is the best-scoring token, and spell whatever is left
// without a token in byte tokens.
#include "tokenizer_internal.hpp"

#include <algorithm>

namespace weft::serve::detail {
namespace {

constexpr std::string_view space_mark = "\xE2\x96\x81"; // U+2581 "▁"

// Best score first; equal scores: the leftmost first.
struct worse_candidate {
    bool operator()(const spm_candidate& a, const spm_candidate& b) const noexcept {
        return a.score != b.score ? a.score < b.score : a.left > b.left;
    }
};

void push_candidate(const tokenizer_state& st, encode_scratch& s, int left, int right) {
    if (left < 0 || right < 0) {
        return;
    }
    const spm_symbol& l = s.spm_symbols[static_cast<std::size_t>(left)];
    const spm_symbol& r = s.spm_symbols[static_cast<std::size_t>(right)];
    const std::size_t length = l.length + r.length;
    const auto it = st.token_to_id.find(std::string_view(s.text).substr(l.offset, length));
    if (it == st.token_to_id.end() || !st.text_piece[static_cast<std::size_t>(it->second)]) {
        return;
    }
    s.spm_heap.push_back({st.data.scores[static_cast<std::size_t>(it->second)], left, right, length});
    std::push_heap(s.spm_heap.begin(), s.spm_heap.end(), worse_candidate{});
}

void emit_symbol(const tokenizer_state& st, std::string_view text, std::vector<token_id>& out) {
    const auto it = st.token_to_id.find(text);
    if (it != st.token_to_id.end() && st.text_piece[static_cast<std::size_t>(it->second)]) {
        out.push_back(it->second);
        return;
    }
    for (const char c : text) {
        const token_id byte = st.byte_token[static_cast<unsigned char>(c)];
        if (byte >= 0) {
            out.push_back(byte);
        } else if (st.data.unk) {
            out.push_back(*st.data.unk);
        }
    }
}

} // namespace

void encode_sentencepiece(const tokenizer_state& st, std::string_view text, bool space_prefix,
                          encode_scratch& s, std::vector<token_id>& out) {
    s.text.clear();
    if (space_prefix) {
        s.text += space_mark;
    }
    for (const char c : text) {
        if (c == ' ') {
            s.text += space_mark;
        } else {
            s.text += c;
        }
    }

    auto& symbols = s.spm_symbols;
    symbols.clear();
    for (std::size_t pos = 0; pos < s.text.size();) {
        const auto scan = scan_utf8(s.text, pos);
        // A broken sequence splits into single bytes, each spelled as a byte token.
        const std::size_t length = scan.status == utf8_status::complete ? scan.length : 1;
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({pos, length, index - 1, -1});
        if (index > 0) {
            symbols[static_cast<std::size_t>(index - 1)].next = index;
        }
        pos += length;
    }

    s.spm_heap.clear();
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) {
        push_candidate(st, s, i - 1, i);
    }
    while (!s.spm_heap.empty()) {
        std::pop_heap(s.spm_heap.begin(), s.spm_heap.end(), worse_candidate{});
        const spm_candidate c = s.spm_heap.back();
        s.spm_heap.pop_back();
        spm_symbol& l = symbols[static_cast<std::size_t>(c.left)];
        spm_symbol& r = symbols[static_cast<std::size_t>(c.right)];
        // Stale when either side has changed since the pair was scored.
        if (l.length == 0 || r.length == 0 || l.length + r.length != c.length || l.next != c.right) {
            continue;
        }
        l.length += r.length;
        r.length = 0;
        l.next = r.next;
        if (r.next >= 0) {
            symbols[static_cast<std::size_t>(r.next)].prev = c.left;
        }
        push_candidate(st, s, l.prev, c.left);
        push_candidate(st, s, c.left, l.next);
    }

    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
        const spm_symbol& sym = symbols[static_cast<std::size_t>(i)];
        emit_symbol(st, std::string_view(s.text).substr(sym.offset, sym.length), out);
    }
}

} // namespace weft::serve::detail
