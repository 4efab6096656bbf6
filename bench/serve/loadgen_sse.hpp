/// \file
/// Server-Sent Events on the client side: `sse_parser` splits a response
/// body into events across arbitrary chunk and packet boundaries, and
/// `scan_chunk` reads the few fields the load generator needs from an
/// OpenAI streaming chunk without building a JSON document.
///
/// `sse_parser` follows the WHATWG event-stream rules: lines end in CRLF, LF
/// or CR (a CRLF split between two pieces counts once), `data:` fields of one
/// event are joined with '\n', a blank line dispatches the event, comments
/// (":...") and other fields (event, id, retry) are ignored, as is an event
/// without data. A leading UTF-8 byte order mark is skipped.
///
/// `scan_chunk` locates keys by their quoted spelling followed by a colon,
/// which cannot occur inside a JSON string value (a quote inside a string is
/// escaped), so no full parse is needed: it finds the content ("text" for
/// completions, "content" for chat deltas; empty or null is no content),
/// "finish_reason", and "usage" counts. A chunk that is not a JSON object, or
/// that carries "error" instead of "choices", is reported as such.
///
/// Lifetime: the event data returned by `next` lives in the parser until the
/// following call; `chunk_fields::finish_reason` points into the scanned text.
/// Threading: not thread-safe; one stream, one parser.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace weft::loadgen {

class sse_parser {
public:
    enum class step : unsigned char {
        need_more, ///< the input is used up
        event,     ///< `data` holds the next event's data
        error,     ///< an event or line exceeded the size limit
    };

    explicit sse_parser(std::size_t max_event_bytes = 4 * 1024 * 1024) noexcept
        : m_max_event_bytes(max_event_bytes) {}

    /// Forgets any partial line or event.
    void reset() noexcept;

    /// Consumes `input` up to the end of the next complete event (`event`,
    /// with its data in `data`) or entirely (`need_more`).
    step next(std::string_view& input, std::string_view& data);

private:
    /// Applies one complete line; true when it dispatched an event.
    bool process_line(std::string_view line);

    std::size_t m_max_event_bytes;
    std::string m_line; ///< a line split across inputs
    std::string m_data;
    bool m_has_data = false;
    bool m_dispatched = false; ///< m_data was handed out; clear it first
    bool m_skip_lf = false;    ///< the last input ended in CR
    bool m_at_start = true;    ///< nothing consumed yet (BOM check)
};

enum class api_kind : unsigned char { completions, chat };

struct chunk_fields {
    bool done = false;      ///< the "[DONE]" sentinel
    bool malformed = false; ///< not a JSON object
    bool error = false;     ///< an error object instead of choices
    bool content = false;   ///< non-empty text (completions) or delta content (chat)
    std::string_view finish_reason; ///< empty while null or absent
    long long prompt_tokens = -1;   ///< from "usage", when present
    long long completion_tokens = -1;
};

/// Reads one streaming chunk's data (see the file comment).
chunk_fields scan_chunk(std::string_view data, api_kind kind) noexcept;

/// Position just past `"key"` and the colon after it (whitespace skipped),
/// searching from `from`; npos when absent.
std::size_t find_json_key(std::string_view json, std::string_view key, std::size_t from = 0) noexcept;

} // namespace weft::loadgen
