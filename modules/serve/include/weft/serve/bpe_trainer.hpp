/// \file
/// Vocabulary for demo models: a deterministic pseudo-English corpus and a
/// byte-level BPE trainer that turns a corpus into `tokenizer_data` of the
/// "gpt2" kind (Llama 3 style special tokens).
///
/// Both are pure functions of their arguments, with the same result on every
/// platform (own PRNG, integer arithmetic, fixed tie-breaking). Threading:
/// safe from any thread.
#pragma once

#include <weft/serve/tokenizer_data.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace weft::serve {

/// Exactly `bytes` bytes of valid UTF-8 pseudo-English: words built from
/// syllables drawn with a Zipf-like distribution, sentences with
/// punctuation, contractions, numbers, paragraphs, and a few non-ASCII
/// characters ("é", "ü", "—", "😀", ...).
std::string demo_corpus(std::size_t bytes, std::uint64_t seed);

/// Byte-level BPE trained on `corpus`: tokens 0..255 are the 256 bytes in
/// GPT-2's bytes_to_unicode order, then one token per learned merge (the
/// most frequent adjacent pair over the words of the `pre` pre-tokenizer;
/// ties go to the pair with the smaller (left id, right id)), then the
/// control tokens "<|begin_of_text|>" (bos), "<|end_of_text|>" (eos),
/// "<|eot_id|>" (eot), "<|start_header_id|>", "<|end_header_id|>". If the
/// corpus runs out of pairs first, "<|reserved_special_token_N|>" control
/// tokens fill the vocabulary, so it always has exactly `vocab_size` tokens.
/// Scores are left empty (absent). Throws tokenizer_error if `vocab_size`
/// is below 261 or above 2^31 - 1.
tokenizer_data train_byte_bpe(std::string_view corpus, std::size_t vocab_size,
                              std::string_view pre = "llama-bpe");

} // namespace weft::serve
