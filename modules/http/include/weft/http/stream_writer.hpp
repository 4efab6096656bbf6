/// \file
/// Streaming responses over a `byte_sink`: `chunked_writer` (HTTP/1.1 chunked
/// transfer coding) and `sse_writer` (Server-Sent Events framing).
///
/// `chunked_writer` writes the response head with `Transfer-Encoding: chunked`
/// (`start`, or `begin` to send it with the first chunk), then one chunk per
/// `write` (one sink write each, so awaiting it applies the sink's
/// back-pressure), then the last chunk (`finish`). It is
/// itself a `byte_sink`, so an `sse_writer` can sit on top of it:
///
///     chunked_writer out(sink);
///     co_await out.start(200, sse_writer::headers());
///     sse_writer sse(out);
///     co_await sse.send("hello\nworld", "greeting");   // one chunk
///     co_await out.finish();
///
/// A handler that gathers several events into one write (a step's tokens for
/// many streams) frames them with `sse_writer::append` or `append_with` into
/// its own buffer and writes that.
///
/// Lifetime: both hold a reference to their sink, which must outlive them; data
/// passed to a write must stay valid until its task completes.
/// Threading: not thread-safe; await one write before starting the next.
#pragma once

#include <weft/http/byte_sink.hpp>
#include <weft/http/message.hpp>
#include <weft/task.hpp>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace weft::http {

class chunked_writer final : public byte_sink {
public:
    explicit chunked_writer(byte_sink& sink) noexcept : m_sink(sink) {}

    /// Writes the status line and `headers` (minus any Content-Length or
    /// Transfer-Encoding) plus `Transfer-Encoding: chunked`. Throws
    /// std::logic_error if already started.
    task<void> start(int status, header_map headers = {});
    /// Prepares the same head without writing it: it goes out in the same
    /// sink write as the first chunk (or `finish`, `finish_with`), so a
    /// response whose body is ready costs one send, and a stream's head
    /// rides with its first events. For a response about to write; one that
    /// may wait first should `start`, so the client sees its head. Throws
    /// std::logic_error if already started.
    void begin(int status, header_map headers = {});
    /// Writes a head that `begin` prepared and no write has sent yet.
    task<void> send_head();
    /// Writes `bytes` as one chunk (nothing for an empty span). Throws
    /// std::logic_error before `start` or after `finish`.
    task<void> write(std::span<const std::byte> bytes) override;
    /// Writes the last chunk "0\r\n\r\n" (no trailers). Throws std::logic_error
    /// before `start`; a second call does nothing.
    task<void> finish();
    /// write(bytes) then finish() in one write to the sink: a stream's end
    /// costs one send, not two. Throws like write.
    task<void> finish_with(std::span<const std::byte> bytes);

    /// Whether `start` or `begin` was called (the head may still be pending).
    bool started() const noexcept { return m_started; }
    bool finished() const noexcept { return m_finished; }

    /// The bytes of one chunk carrying `data` ("" for empty data).
    static std::string encode_chunk(std::string_view data);
    /// Appends encode_chunk(data) to `out`, with room reserved for `extra`
    /// more bytes after it (nothing for empty data).
    static void append_chunk(std::string& out, std::string_view data, std::size_t extra = 0);

private:
    static std::string head_of(int status, header_map headers);
    /// The head `begin` left pending ("" once sent), leaving none.
    std::string take_head();

    byte_sink& m_sink;
    std::string m_head; ///< from `begin`, until the first write
    bool m_started = false;
    bool m_finished = false;
};

class sse_writer {
public:
    explicit sse_writer(byte_sink& sink) noexcept : m_sink(sink) {}

    /// Sends one event: optional `event:` and `id:` lines, then `data` split at
    /// every line break (CRLF, LF or CR) into `data:` lines, then a blank line.
    /// `event` and `id` must not contain CR or LF (std::invalid_argument).
    task<void> send(std::string_view data, std::string_view event = {}, std::string_view id = {});
    /// Sends a comment (": text" lines), e.g. as a keep-alive ping.
    task<void> comment(std::string_view text);
    /// Sends "retry: <ms>" followed by a blank line.
    task<void> retry(std::chrono::milliseconds delay);

    /// The exact bytes `send` writes.
    static std::string format(std::string_view data, std::string_view event = {}, std::string_view id = {});
    /// Appends format(data, event, id) to `out`: several events framed into
    /// one buffer go out in one write (one chunk, one send). An `event` or
    /// `id` with a line break throws std::invalid_argument before anything
    /// is appended.
    static void append(std::string& out, std::string_view data, std::string_view event = {},
                       std::string_view id = {});
    /// Appends one event (no event or id line) whose data `write(out)`
    /// appends to `out` in place, for a handler that serialises straight
    /// into its buffer: no string for the data alone. The same bytes as
    /// append(out, data) for the data `write` appended, line breaks
    /// included: a single line (one JSON document) costs one scan for them.
    /// If `write` throws, `out` is cut back to what it held and the
    /// exception propagates.
    template <class Write>
    static void append_with(std::string& out, Write&& write) {
        const std::size_t begin = out.size();
        out += "data: ";
        const std::size_t data_begin = out.size();
        try {
            std::forward<Write>(write)(out);
        } catch (...) {
            out.resize(begin);
            throw;
        }
        if (!has_line_break(std::string_view(out).substr(data_begin))) {
            out += "\n\n";
            return;
        }
        const std::string data = out.substr(data_begin);
        out.resize(begin);
        append(out, data);
    }
    /// Content-Type: text/event-stream and Cache-Control: no-cache.
    static header_map headers();

private:
    static bool has_line_break(std::string_view text) noexcept;

    byte_sink& m_sink;
};

} // namespace weft::http
