/// \file
/// `request_parser`: an incremental HTTP/1.1 request parser.
///
/// Feed it bytes as they arrive, in chunks of any size (`feed`), and ask for
/// the next request (`next`). It answers `need_more`, `complete` (take the
/// request with `take`) or `error` (see `error()`: the status code to answer
/// with, e.g. 400/413/431/501/505, and a short reason; after an error the
/// connection must be closed, the parser stays in the error state). Bytes after
/// a complete request stay buffered for the next call, so pipelined requests
/// come out one by one.
///
/// The head is scanned once as bytes arrive (no rescans when fed byte by byte;
/// whole lines at a time with memchr)
/// and parsed in place when its blank line is found; bodies (Content-Length or
/// chunked, with chunk extensions and trailers ignored) are copied once into
/// `request::body`. Limits (`limits`) bound the memory a client can make it hold.
///
/// Lifetime: the parser owns its buffer; `take` moves the request out.
/// Threading: not thread-safe; one connection, one parser.
#pragma once

#include <weft/http/message.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace weft::http {

struct limits {
    std::size_t max_header_bytes = 16 * 1024;  ///< request line + headers (and trailers) → 431
    std::size_t max_header_count = 100;        ///< → 431
    std::size_t max_body_bytes = 1024 * 1024;  ///< decoded body → 413
    std::size_t max_chunk_line_bytes = 1024;   ///< one chunk-size line, extensions included → 400
};

struct parse_error {
    int status = 0;          ///< 0 when there is no error
    std::string_view reason; ///< static text, e.g. "invalid header name"
};

enum class parse_status : unsigned char { need_more, complete, error };

class request_parser {
public:
    explicit request_parser(http::limits lim = {});

    /// Appends bytes to the parser's buffer (no parsing happens here).
    void feed(std::string_view bytes);
    void feed(std::span<const std::byte> bytes);

    /// Parses as far as the buffered bytes allow.
    parse_status next();

    /// The request completed by the last `next()` that returned `complete`.
    request take();

    const parse_error& error() const noexcept { return m_error; }
    bool has_error() const noexcept { return m_error.status != 0; }
    const http::limits& limits() const noexcept { return m_limits; }
    /// Bytes received and not yet consumed by a completed request.
    std::size_t buffered() const noexcept { return m_buffer.size() - m_pos; }
    /// True while nothing of a next request has been received (between requests).
    bool idle() const noexcept { return m_state == state::head && buffered() == 0 && !has_error(); }

private:
    enum class state : unsigned char { head, body_length, chunk_size, chunk_data, chunk_data_end, trailers, done, failed };

    parse_status fail(int status, std::string_view reason);
    parse_status parse_head(std::string_view head);
    parse_status parse_request_line(std::string_view line);
    parse_status parse_header_line(std::string_view line);
    parse_status setup_body();
    parse_status step_chunk_size();
    parse_status step_trailers();
    void compact();

    http::limits m_limits;
    std::string m_buffer;
    std::size_t m_pos = 0;       ///< start of unconsumed bytes
    std::size_t m_scan = 0;      ///< head/trailer scan position (relative to m_buffer)
    std::size_t m_line = 0;      ///< head: start of the line being scanned
    std::size_t m_remaining = 0; ///< body or chunk bytes still expected
    std::size_t m_trailer_bytes = 0;
    std::size_t m_host_count = 0; ///< Host fields of the head being parsed
    bool m_has_te = false;        ///< ... a Transfer-Encoding field
    bool m_has_cl = false;        ///< ... a Content-Length field
    state m_state = state::head;
    request m_request;
    parse_error m_error;
};

} // namespace weft::http
