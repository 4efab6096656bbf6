/// \file
/// Reading and writing a tokenizer's description as GGUF metadata
/// (llama.cpp's `tokenizer.ggml.*` keys and `tokenizer.chat_template`).
///
/// Threading: pure functions.
#pragma once

#include <weft/serve/tokenizer.hpp>

namespace weft::serve {

class gguf_file;
class gguf_writer;

/// The tokenizer stored in `file`; gguf_error naming the file and key when a
/// key is missing or of the wrong type.
tokenizer_data tokenizer_data_from_gguf(const gguf_file& file);

/// Writes `data` under the keys `tokenizer_data_from_gguf` reads.
void write_tokenizer(gguf_writer& out, const tokenizer_data& data);

} // namespace weft::serve
