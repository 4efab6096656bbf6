/// \file
/// `tokenizer`: text to token ids and back, compatible with llama.cpp's GGUF
/// tokenizers — byte-level BPE ("gpt2": GPT-2, Llama 3, Qwen 2, ...) and
/// SentencePiece BPE ("llama": Llama 2, Mistral, ...).
///
/// Encoding first splits off special tokens (see `encode`), then per model:
/// - "gpt2": the pre-tokenizer regex of `tokenizer_data::pre` (PCRE2, Unicode
///   properties; invalid UTF-8 never fails: bytes no alternative can match
///   become pieces of their own), each piece's bytes mapped to GPT-2's
///   byte-to-unicode alphabet, then BPE by merge rank. For the Llama 3
///   pre-tokenizers a piece that is itself a token is taken whole, as
///   llama.cpp does. A byte whose single-byte token is missing from the
///   vocabulary becomes `unk` if the model has one and is dropped otherwise.
/// - "llama": spaces become "▁" (plus a leading "▁" with `add_space_prefix`,
///   at the start and after each special token, as llama.cpp does), then the
///   adjacent pair whose concatenation is the highest-scoring token is merged
///   repeatedly; characters left without a token become byte tokens "<0xXX>"
///   (or `unk`, or nothing, when those are missing).
/// Byte-level BPE round-trips every byte string: decode(encode(s)) == s.
///
/// Lifetime: copies share one immutable state (cheap to copy; a copy stays
/// valid after the original is gone). Threading: every member is const and
/// safe to call from any number of threads at once.
#pragma once

#include <weft/serve/tokenizer_data.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

/// Invalid tokenizer data, or a token id outside the vocabulary.
class tokenizer_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
struct tokenizer_state;
}

class tokenizer {
public:
    /// Checks `data` (model known, array sizes agree, types and special ids
    /// in range, byte tokens spelled "<0xXX>", and for "gpt2" each merge
    /// "a b" names two tokens whose concatenation is a token; "llama"
    /// ignores merges) and builds the lookup tables. Throws tokenizer_error
    /// naming the first problem. A text listed twice maps to its last id.
    explicit tokenizer(tokenizer_data data);

    // Copies share state; there is deliberately no move, so that no
    // tokenizer is ever left empty.
    tokenizer(const tokenizer&) = default;
    tokenizer& operator=(const tokenizer&) = default;
    ~tokenizer();

    /// Token ids for `text`. `add_special`: BOS first if `add_bos`, EOS
    /// last if `add_eos` (when the model has those ids). Texts of
    /// user_defined tokens are always matched as whole tokens; with
    /// `parse_special` so are those of control and unknown tokens (e.g.
    /// "<|eot_id|>"); leftmost match wins, the longest at one position.
    std::vector<token_id> encode(std::string_view text, bool add_special = true,
                                 bool parse_special = false) const;

    /// The concatenated pieces of `ids`. `skip_special` drops special
    /// tokens (`is_special`). For "llama" models with `add_space_prefix` the
    /// space `encode` put in front of the text (at the start and after each
    /// special token) is removed again. Throws tokenizer_error for an id
    /// outside the vocabulary.
    std::string decode(std::span<const token_id> ids, bool skip_special = false) const;

    /// The bytes `id` stands for: byte tokens give their byte, GPT-2's
    /// byte-to-unicode mapping is undone, SentencePiece "▁" becomes " ",
    /// control/unknown/user_defined tokens give their text, unused tokens
    /// nothing. Throws tokenizer_error for an id outside the vocabulary.
    std::string token_to_piece(token_id id) const;

    std::size_t vocab_size() const noexcept;
    std::optional<token_id> bos() const noexcept;
    std::optional<token_id> eos() const noexcept;
    /// End of generation: the eos, eot or eom id.
    bool is_eog(token_id id) const noexcept;
    /// The end-of-generation ids the model has (eos, eot, eom; each once).
    std::vector<token_id> eog_ids() const;
    /// Not ordinary text: control or unknown type, or one of the bos, eos,
    /// eot, eom, unk, pad ids. False for ids outside the vocabulary.
    bool is_special(token_id id) const noexcept;
    /// The id of the token whose text is exactly `token_text` (vocabulary
    /// text: GPT-2 alphabet / "▁" as stored in the model).
    std::optional<token_id> find(std::string_view token_text) const;
    const tokenizer_data& data() const noexcept;

private:
    friend class token_stream_decoder;

    /// Appends the piece of `id` the way `decode` does; `at_text_start` is
    /// true where a "llama" space prefix would have been inserted, and is
    /// updated for the next token.
    void append_piece(token_id id, bool skip_special, bool& at_text_start,
                      std::string& out) const;

    std::shared_ptr<const detail::tokenizer_state> m_state;
};

} // namespace weft::serve
