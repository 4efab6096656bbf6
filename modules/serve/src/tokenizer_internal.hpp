// Private to weft::serve: the state behind `tokenizer` and the pieces the
// encoders, the stream decoder and the BPE trainer share.
#pragma once

#include <weft/serve/tokenizer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pcre2_real_code_8; // pcre2.h stays out of this header

namespace weft::serve::detail {

// ---- UTF-8 and GPT-2's byte alphabet (tokenizer_unicode.cpp) -------------

/// UTF-8 text of the character GPT-2's bytes_to_unicode assigns to each byte.
const std::array<std::string, 256>& byte_to_unicode_table();

/// The byte a character of GPT-2's byte alphabet stands for, or -1.
int unicode_to_byte(char32_t cp) noexcept;

/// The 256 bytes in the order bytes_to_unicode lists them: printable
/// Latin-1 first, then the rest; GPT-2 vocabularies number them this way.
const std::array<std::uint8_t, 256>& bytes_in_vocab_order();

enum class utf8_status { complete, truncated, invalid };

struct utf8_scan {
    utf8_status status;
    /// complete: the character's length; truncated: the bytes present (a
    /// valid start the end of input cut short); invalid: the maximal
    /// subpart to replace by one U+FFFD (at least 1).
    std::size_t length;
};

/// What the bytes at s[pos] (pos < s.size()) hold.
utf8_scan scan_utf8(std::string_view s, std::size_t pos) noexcept;

/// The code point of the complete character at s[pos].
char32_t decode_utf8(std::string_view s, std::size_t pos, std::size_t length) noexcept;

void append_utf8(std::string& out, char32_t cp);

// ---- Pre-tokenizer (tokenizer_regex.cpp) ----------------------------------

enum class pre_kind { gpt2, llama3, qwen2 };

/// The pre-tokenizer of a `tokenizer.ggml.pre` name; unknown names give gpt2.
pre_kind pre_kind_from_name(std::string_view name) noexcept;

/// One compiled pre-tokenizer regex. Immutable after construction; `split`
/// is safe from many threads (match data is per thread).
class regex_splitter {
public:
    explicit regex_splitter(pre_kind kind);
    regex_splitter(const regex_splitter&) = delete;
    regex_splitter& operator=(const regex_splitter&) = delete;
    ~regex_splitter();

    /// Appends the pieces of `text` to `pieces`; together they are exactly
    /// `text`. Bytes no alternative matches (invalid UTF-8) become pieces of
    /// their own, a maximal run at a time.
    void split(std::string_view text, std::vector<std::string_view>& pieces) const;

private:
    pcre2_real_code_8* m_code;
};

// ---- Tokenizer state (tokenizer.cpp) --------------------------------------

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

using text_to_id_map =
    std::unordered_map<std::string, token_id, string_hash, std::equal_to<>>;

/// Token texts matched as a whole before the model's own splitting.
struct special_matcher {
    std::unordered_map<std::string_view, token_id> by_text;
    std::vector<std::size_t> lengths; ///< distinct text lengths, longest first
    std::array<bool, 256> starts{};   ///< first bytes of the texts

    bool empty() const noexcept { return by_text.empty(); }
    void add(std::string_view text, token_id id);
    void finalize();
};

constexpr std::uint64_t pair_key(token_id left, token_id right) noexcept {
    return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) |
           static_cast<std::uint32_t>(right);
}

struct merge_entry {
    std::uint32_t rank;
    token_id result;
};

/// Merge rules by pair_key: open addressing with linear probing. The BPE
/// inner loop is one lookup per candidate pair, and std::unordered_map's
/// node chasing made it the bulk of encoding time.
class merge_table {
public:
    /// Keeps the first entry of a repeated key.
    void insert(std::uint64_t key, merge_entry entry);
    const merge_entry* find(std::uint64_t key) const noexcept {
        if (m_slots.empty()) {
            return nullptr;
        }
        for (std::size_t i = slot_of(key);; i = (i + 1) & m_mask) {
            const slot& s = m_slots[i];
            if (s.key == key) {
                return &s.entry;
            }
            if (s.key == empty_key) {
                return nullptr;
            }
        }
    }
    std::size_t size() const noexcept { return m_size; }

private:
    // Token ids are non-negative, so no real key has the top bit set.
    static constexpr std::uint64_t empty_key = ~std::uint64_t{0};
    struct slot {
        std::uint64_t key = empty_key;
        merge_entry entry{};
    };
    std::size_t slot_of(std::uint64_t key) const noexcept {
        return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> m_shift) & m_mask;
    }
    void grow();

    std::vector<slot> m_slots;
    std::size_t m_mask = 0;
    unsigned m_shift = 64;
    std::size_t m_size = 0;
};

struct tokenizer_state {
    tokenizer_data data;     // scores/types filled to vocabulary size
    bool byte_level = false; // "gpt2"; otherwise "llama" (SentencePiece)
    pre_kind pre = pre_kind::gpt2;
    bool ignore_merges = false; // Llama 3: a piece that is a token is taken whole
    std::unique_ptr<regex_splitter> splitter;
    text_to_id_map token_to_id;
    std::vector<std::string> pieces; // decoded bytes of each token
    std::vector<bool> special;       // is_special per token
    std::vector<bool> restarts_text; // a "llama" space prefix follows this token
    std::vector<bool> text_piece;    // may come out of the model's own merging
    /// gpt2: the token of each byte's alphabet character; llama: "<0xXX>".
    std::array<token_id, 256> byte_token{};
    merge_table merges; // gpt2
    special_matcher user_specials; // user_defined
    special_matcher all_specials;  // user_defined, control, unknown
};

// ---- Model encoders (tokenizer_bpe.cpp, tokenizer_spm.cpp) -----------------

struct bpe_symbol {
    token_id id; // -1: byte without a token; -2: merged away
    int prev;
    int next;
};

struct bpe_candidate {
    std::uint32_t rank;
    int left;
    token_id left_id;
    token_id right_id;
    token_id result;
};

struct spm_symbol {
    std::size_t offset;
    std::size_t length; // 0: merged away
    int prev;
    int next;
};

struct spm_candidate {
    float score;
    int left;
    int right;
    std::size_t length;
};

/// Long texts repeat their words: the tokens of each word seen, keyed by
/// views into the text being encoded, so the cache lives for one encode
/// call and needs no locking. Open addressing; past `max_slots / 2` words
/// new words are simply not cached.
class word_cache {
public:
    static constexpr std::size_t max_word_bytes = 32;

    /// The cached tokens of `word`, or false.
    bool lookup(std::string_view word, std::vector<token_id>& out) const;
    /// Caches `ids` for `word`, which must not be cached yet.
    void insert(std::string_view word, std::span<const token_id> ids);

private:
    struct slot {
        const char* data = nullptr;
        std::uint32_t length = 0;
        std::uint32_t first = 0; // range in m_ids
        std::uint32_t count = 0;
    };
    static constexpr std::size_t max_slots = std::size_t{1} << 17;
    void place(const slot& s);

    std::vector<slot> m_slots;
    std::vector<token_id> m_ids;
    std::size_t m_size = 0;
};

/// Buffers reused across the pieces of one encode call.
struct encode_scratch {
    std::vector<std::string_view> words;
    word_cache cache;
    std::string text;
    std::vector<bpe_symbol> bpe_symbols;
    std::vector<bpe_candidate> bpe_heap;
    std::vector<spm_symbol> spm_symbols;
    std::vector<spm_candidate> spm_heap;
};

/// Byte-level BPE of `text` (no special tokens in it), appended to `out`.
void encode_byte_level(const tokenizer_state& st, std::string_view text,
                       encode_scratch& scratch, std::vector<token_id>& out);

/// SentencePiece BPE of `text`; `space_prefix` puts "▁" in front.
void encode_sentencepiece(const tokenizer_state& st, std::string_view text,
                          bool space_prefix, encode_scratch& scratch,
                          std::vector<token_id>& out);

} // namespace weft::serve::detail
