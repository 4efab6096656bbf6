#include <weft/serve/tokenizer_stream_decoder.hpp>

#include "tokenizer_internal.hpp"

namespace weft::serve {
namespace {

constexpr std::string_view replacement_character = "\xEF\xBF\xBD"; // U+FFFD

} // namespace

token_stream_decoder::token_stream_decoder(const tokenizer& tok, bool skip_special)
    : m_tokenizer(tok), m_skip_special(skip_special) {}

std::string token_stream_decoder::push(token_id id) {
    m_tokenizer.append_piece(id, m_skip_special, m_at_text_start, m_pending);
    std::string out;
    std::size_t pos = 0;
    while (pos < m_pending.size()) {
        const auto scan = detail::scan_utf8(m_pending, pos);
        if (scan.status == detail::utf8_status::truncated) {
            break; // the next token may finish it
        }
        if (scan.status == detail::utf8_status::complete) {
            out.append(m_pending, pos, scan.length);
        } else {
            out += replacement_character;
        }
        pos += scan.length;
    }
    m_pending.erase(0, pos);
    return out;
}

std::string token_stream_decoder::finish() {
    std::string out;
    // Whatever is pending is one incomplete character (push emits the rest).
    if (!m_pending.empty()) {
        out = replacement_character;
    }
    m_pending.clear();
    m_at_text_start = true;
    return out;
}

} // namespace weft::serve
