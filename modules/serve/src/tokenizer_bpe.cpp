// Byte-level BPE ("gpt2" models): pre-tokenizer split, then merges by rank
// over a linked list of symbols with a heap of candidate pairs, so a piece
// of n bytes costs O(n log n) rather than a rescan per merge.
#include "tokenizer_internal.hpp"

#include <algorithm>

namespace weft::serve::detail {
namespace {

// Lowest rank first; the same pair twice: the leftmost first.
struct later_candidate {
    bool operator()(const bpe_candidate& a, const bpe_candidate& b) const noexcept {
        return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    }
};

void push_candidate(const tokenizer_state& st, encode_scratch& s, int left) {
    if (left < 0) {
        return;
    }
    const bpe_symbol& l = s.bpe_symbols[static_cast<std::size_t>(left)];
    if (l.next < 0 || l.id < 0) {
        return;
    }
    const bpe_symbol& r = s.bpe_symbols[static_cast<std::size_t>(l.next)];
    if (r.id < 0) {
        return;
    }
    const merge_entry* merge = st.merges.find(pair_key(l.id, r.id));
    if (merge == nullptr) {
        return;
    }
    s.bpe_heap.push_back({merge->rank, left, l.id, r.id, merge->result});
    std::push_heap(s.bpe_heap.begin(), s.bpe_heap.end(), later_candidate{});
}

void encode_piece(const tokenizer_state& st, std::string_view piece, encode_scratch& s,
                  std::vector<token_id>& out) {
    if (st.ignore_merges) {
        // Llama 3 takes a piece that is a token whole, whatever the merges say.
        const auto& alphabet = byte_to_unicode_table();
        s.text.clear();
        for (const char c : piece) {
            s.text += alphabet[static_cast<unsigned char>(c)];
        }
        const auto it = st.token_to_id.find(std::string_view(s.text));
        if (it != st.token_to_id.end() && st.text_piece[static_cast<std::size_t>(it->second)]) {
            out.push_back(it->second);
            return;
        }
    }

    auto& symbols = s.bpe_symbols;
    symbols.clear();
    const int n = static_cast<int>(piece.size());
    for (int i = 0; i < n; ++i) {
        symbols.push_back({st.byte_token[static_cast<unsigned char>(piece[static_cast<std::size_t>(i)])],
                           i - 1, i + 1 < n ? i + 1 : -1});
    }
    s.bpe_heap.clear();
    for (int i = 0; i + 1 < n; ++i) {
        push_candidate(st, s, i);
    }
    while (!s.bpe_heap.empty()) {
        std::pop_heap(s.bpe_heap.begin(), s.bpe_heap.end(), later_candidate{});
        const bpe_candidate c = s.bpe_heap.back();
        s.bpe_heap.pop_back();
        bpe_symbol& l = symbols[static_cast<std::size_t>(c.left)];
        // Stale when either side has been merged into something else since.
        if (l.id != c.left_id || l.next < 0) {
            continue;
        }
        bpe_symbol& r = symbols[static_cast<std::size_t>(l.next)];
        if (r.id != c.right_id) {
            continue;
        }
        l.id = c.result;
        r.id = -2;
        l.next = r.next;
        if (r.next >= 0) {
            symbols[static_cast<std::size_t>(r.next)].prev = c.left;
        }
        push_candidate(st, s, l.prev);
        push_candidate(st, s, c.left);
    }
    for (int i = n > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
        const token_id id = symbols[static_cast<std::size_t>(i)].id;
        if (id >= 0) {
            out.push_back(id);
        } else if (st.data.unk) {
            // A byte whose alphabet character is not in the vocabulary.
            out.push_back(*st.data.unk);
        }
    }
}

std::size_t word_hash(std::string_view word) noexcept {
    // FNV-1a, then a multiply to spread the low bits the mask keeps.
    std::uint64_t h = 0xCBF29CE484222325ULL;
    for (const char c : word) {
        h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ULL;
    }
    return static_cast<std::size_t>((h * 0x9E3779B97F4A7C15ULL) >> 32);
}

} // namespace

bool word_cache::lookup(std::string_view word, std::vector<token_id>& out) const {
    if (m_slots.empty()) {
        return false;
    }
    const std::size_t mask = m_slots.size() - 1;
    for (std::size_t i = word_hash(word) & mask;; i = (i + 1) & mask) {
        const slot& s = m_slots[i];
        if (s.data == nullptr) {
            return false;
        }
        if (s.length == word.size() && std::string_view(s.data, s.length) == word) {
            const auto first = m_ids.begin() + s.first;
            out.insert(out.end(), first, first + s.count);
            return true;
        }
    }
}

void word_cache::insert(std::string_view word, std::span<const token_id> ids) {
    // At most half full, so probes stay short and always end.
    if ((m_size + 1) * 2 > m_slots.size()) {
        if (m_slots.size() >= max_slots) {
            return;
        }
        std::vector<slot> old = std::move(m_slots);
        m_slots.assign(old.empty() ? 1024 : old.size() * 2, slot{});
        for (const slot& s : old) {
            if (s.data != nullptr) {
                place(s);
            }
        }
    }
    place({word.data(), static_cast<std::uint32_t>(word.size()),
           static_cast<std::uint32_t>(m_ids.size()), static_cast<std::uint32_t>(ids.size())});
    m_ids.insert(m_ids.end(), ids.begin(), ids.end());
    ++m_size;
}

void word_cache::place(const slot& s) {
    const std::size_t mask = m_slots.size() - 1;
    std::size_t i = word_hash(std::string_view(s.data, s.length)) & mask;
    while (m_slots[i].data != nullptr) {
        i = (i + 1) & mask;
    }
    m_slots[i] = s;
}

void encode_byte_level(const tokenizer_state& st, std::string_view text, encode_scratch& scratch,
                       std::vector<token_id>& out) {
    scratch.words.clear();
    st.splitter->split(text, scratch.words);
    // Below a few kilobytes the cache costs more than it saves.
    constexpr std::size_t cache_from_bytes = 4096;
    const bool use_cache = text.size() >= cache_from_bytes;
    for (const std::string_view word : scratch.words) {
        const bool cacheable = use_cache && word.size() <= word_cache::max_word_bytes;
        if (cacheable && scratch.cache.lookup(word, out)) {
            continue;
        }
        const std::size_t before = out.size();
        encode_piece(st, word, scratch, out);
        if (cacheable) {
            scratch.cache.insert(word, std::span(out).subspan(before));
        }
    }
}

} // namespace weft::serve::detail
