/// \file
/// `response_parser`: the load generator's incremental HTTP/1.1 response
/// parser (the client side of weft::http's `request_parser`).
///
/// Feed it the bytes of a connection as they arrive, in pieces of any size,
/// and pull what they complete with `next`: the head once (status and
/// headers, after skipping interim 1xx responses), then the body as views
/// into the caller's input (Content-Length, chunked with extensions and
/// trailers ignored, or delimited by the close of the connection), then
/// `complete`. Only a partial head or chunk-size line is copied; body bytes
/// never are. When the peer closes the connection, `finish()` says whether
/// that completed the response (a body read until close) or truncated it.
///
/// Lifetime: the parser owns its small buffers; the body views returned by
/// `next` point into the input passed to it. `reset()` readies it for the
/// next response on a kept-alive connection.
/// Threading: not thread-safe; one connection, one parser.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::loadgen {

struct response_head {
    int status = 0;
    int minor_version = 1; ///< HTTP/1.<minor>
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;

    /// Value of the first header named `name` (ASCII case-insensitive).
    [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
    /// True when a header named `name` lists `token` (comma-separated, case-insensitive).
    [[nodiscard]] bool has_token(std::string_view name, std::string_view token) const noexcept;
};

class response_parser {
public:
    enum class step : unsigned char {
        need_more, ///< the input is used up
        head,      ///< the final head is parsed: see head()
        body,      ///< `body` holds the next piece of the body
        complete,  ///< the response ended; what remains of the input is not part of it
        error,     ///< malformed response: see error(); close the connection
    };

    explicit response_parser(std::size_t max_head_bytes = 64 * 1024) noexcept
        : m_max_head_bytes(max_head_bytes) {}

    /// Forgets the current response: the next byte starts a new one.
    void reset() noexcept;

    /// Consumes a prefix of `input` and says what it completed. Keeps
    /// answering `complete` (or `error`) until reset().
    step next(std::string_view& input, std::string_view& body);

    /// The peer closed the connection: `complete` when that ends a body read
    /// until close, `error` otherwise (a truncated response).
    step finish();

    [[nodiscard]] const response_head& head() const noexcept { return m_head; }
    /// Whether some byte of this response arrived.
    [[nodiscard]] bool started() const noexcept { return m_started; }
    /// After `complete`: whether the connection may carry another request.
    [[nodiscard]] bool keep_alive() const noexcept;
    [[nodiscard]] const std::string& error() const noexcept { return m_error; }

private:
    enum class state : unsigned char {
        head, body_length, chunk_size, chunk_data, chunk_data_end, trailers, until_close, done, failed
    };

    step fail(std::string reason);
    step take_head(std::string_view& input);
    bool parse_head();
    step begin_body();
    /// Moves a line ending in LF (CR stripped) into m_line; false when the
    /// input ran out first.
    bool take_line(std::string_view& input, std::size_t limit, bool& too_long);
    step take_piece(std::string_view& input, std::string_view& body);

    std::size_t m_max_head_bytes;
    state m_state = state::head;
    bool m_started = false;
    bool m_close_delimited = false;
    bool m_saw_cr = false;
    std::uint64_t m_remaining = 0;
    std::size_t m_line_start = 0; ///< in m_raw_head: start of the line being received
    std::size_t m_trailer_bytes = 0;
    std::string m_raw_head;
    std::string m_line;
    std::string m_error;
    response_head m_head;
};

} // namespace weft::loadgen
