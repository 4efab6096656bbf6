/// \file
/// `tokenizer_data`: everything a tokenizer is built from, field for field
/// what llama.cpp's GGUF `tokenizer.ggml.*` keys hold, plus the token id and
/// token type vocabulary shared by the tokenizer and its users.
///
/// A plain value type with no invariants of its own: `tokenizer`'s
/// constructor is what checks it. Copy, move and share it freely; like any
/// standard container it is safe to read from many threads at once.
#pragma once

#include <weft/serve/token.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace weft::serve {

/// `tokenizer.ggml.token_type` values, numbered as in llama.cpp.
enum class token_type : std::int32_t {
    undefined = 0,
    normal = 1,
    unknown = 2,
    control = 3,      ///< special tokens (BOS, EOS, chat markers): parsed from text only on request
    user_defined = 4, ///< added tokens that are ordinary text: always matched as a whole
    unused = 5,
    byte = 6, ///< "<0xXX>": one raw byte (SentencePiece byte fallback)
};

/// The GGUF `tokenizer.ggml.*` keys (and `tokenizer.chat_template`).
/// Absent arrays are left empty; absent ids stay `std::nullopt`.
struct tokenizer_data {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE).
    std::string model;
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a "gpt2" model. Known:
    /// "default"/"gpt2", "llama-bpe"/"llama3"/"llama-v3", "qwen2"/"deepseek-r1-qwen";
    /// anything else (or "") uses GPT-2's split.
    std::string pre;
    std::vector<std::string> tokens;   ///< `tokenizer.ggml.tokens`
    std::vector<float> scores;         ///< `tokenizer.ggml.scores` (empty: all 0)
    std::vector<token_type> types;     ///< `tokenizer.ggml.token_type` (empty: all normal)
    std::vector<std::string> merges;   ///< `tokenizer.ggml.merges`: "left right", rank order ("gpt2" only)
    std::optional<token_id> bos;       ///< `tokenizer.ggml.bos_token_id`
    std::optional<token_id> eos;       ///< `tokenizer.ggml.eos_token_id`
    std::optional<token_id> eot;       ///< `tokenizer.ggml.eot_token_id`
    std::optional<token_id> eom;       ///< `tokenizer.ggml.eom_token_id`
    std::optional<token_id> unk;       ///< `tokenizer.ggml.unknown_token_id`
    std::optional<token_id> pad;       ///< `tokenizer.ggml.padding_token_id`
    bool add_bos = true;               ///< `tokenizer.ggml.add_bos_token`
    bool add_eos = false;              ///< `tokenizer.ggml.add_eos_token`
    bool add_space_prefix = true;      ///< `tokenizer.ggml.add_space_prefix` ("llama" only)
    std::string chat_template;         ///< `tokenizer.chat_template` ("" if absent)
};

} // namespace weft::serve
