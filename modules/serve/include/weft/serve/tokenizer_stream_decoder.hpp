/// \file
/// `token_stream_decoder`: turns generated tokens, one at a time, into text
/// chunks that are always whole UTF-8 characters — a character split across
/// tokens (common for emoji and CJK under byte-level BPE) is held back until
/// the token that completes it arrives.
///
/// The concatenated chunks plus `finish()` equal `tokenizer::decode` of all
/// tokens pushed whenever that decode is valid UTF-8. Bytes that cannot
/// start or continue a character are replaced by U+FFFD as they come, and an
/// incomplete character left at `finish()` becomes one U+FFFD, so every
/// chunk is valid UTF-8.
///
/// Lifetime: holds a copy of the tokenizer (shared state), so it may outlive
/// the object it was made from. Threading: one decoder per stream; not safe
/// to use from two threads at once.
#pragma once

#include <weft/serve/tokenizer.hpp>

#include <string>

namespace weft::serve {

class token_stream_decoder {
public:
    explicit token_stream_decoder(const tokenizer& tok, bool skip_special = false);

    /// The complete characters that `id` finishes (possibly empty).
    /// Throws tokenizer_error for an id outside the vocabulary.
    std::string push(token_id id);

    /// What is still held back, an incomplete character as U+FFFD; the
    /// decoder is then empty and can start a new stream.
    std::string finish();

private:
    tokenizer m_tokenizer;
    bool m_skip_special;
    bool m_at_text_start = true;
    std::string m_pending;
};

} // namespace weft::serve
