#include <weft/http/stream_writer.hpp>

#include <stdexcept>

namespace weft::http {

namespace {
void append_hex(std::string& out, std::size_t n) {
    constexpr char digits[] = "0123456789abcdef";
    char buf[2 * sizeof(std::size_t)];
    std::size_t len = 0;
    do {
        buf[len++] = digits[n & 0xF];
        n >>= 4;
    } while (n != 0);
    while (len > 0) out += buf[--len];
}

void append_split_lines(std::string& out, std::string_view prefix, std::string_view text) {
    std::size_t start = 0;
    while (true) {
        const std::size_t brk = text.find_first_of("\r\n", start);
        out += prefix;
        out += text.substr(start, brk == std::string_view::npos ? std::string_view::npos : brk - start);
        out += '\n';
        if (brk == std::string_view::npos) break;
        start = brk + 1;
        if (text[brk] == '\r' && start < text.size() && text[start] == '\n') ++start;
    }
}

/// Whether `text` holds a CR or an LF: two memchr scans (find_first_of
/// tests the set character by character).
bool line_break_in(std::string_view text) noexcept {
    return text.find('\n') != std::string_view::npos || text.find('\r') != std::string_view::npos;
}

void check_single_line(std::string_view field, std::string_view value) {
    if (line_break_in(value)) {
        throw std::invalid_argument(std::string("sse_writer: ") + std::string(field) + " must not contain CR or LF");
    }
}
} // namespace

std::string chunked_writer::encode_chunk(std::string_view data) {
    std::string out;
    append_chunk(out, data);
    return out;
}

void chunked_writer::append_chunk(std::string& out, std::string_view data, std::size_t extra) {
    if (data.empty()) return;
    // Size line (at most 16 hex digits), the data, two CRLFs, and what the caller adds after.
    out.reserve(out.size() + data.size() + 2 * sizeof(std::size_t) + 4 + extra);
    append_hex(out, data.size());
    out += "\r\n";
    out += data;
    out += "\r\n";
}

std::string chunked_writer::head_of(int status, header_map headers) {
    headers.remove("content-length");
    headers.set("Transfer-Encoding", "chunked");
    std::string head;
    append_status_and_headers(head, status, headers);
    head += "\r\n";
    return head;
}

task<void> chunked_writer::start(int status, header_map headers) {
    if (m_started) throw std::logic_error("chunked_writer: already started");
    std::string head = head_of(status, std::move(headers));
    m_started = true;
    co_await m_sink.write_string(head);
}

void chunked_writer::begin(int status, header_map headers) {
    if (m_started) throw std::logic_error("chunked_writer: already started");
    m_head = head_of(status, std::move(headers));
    m_started = true;
}

std::string chunked_writer::take_head() {
    std::string head = std::move(m_head);
    m_head.clear();
    return head;
}

task<void> chunked_writer::send_head() {
    if (m_head.empty()) co_return;
    const std::string head = take_head();
    co_await m_sink.write_string(head);
}

task<void> chunked_writer::write(std::span<const std::byte> bytes) {
    if (!m_started || m_finished) throw std::logic_error("chunked_writer: write outside start()..finish()");
    if (bytes.empty()) co_return;
    // The head (before the first write), the chunk's size line, the bytes
    // and the CRLF, built in one allocation: a token stream writes once per
    // token.
    std::string chunk = take_head();
    append_chunk(chunk, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    co_await m_sink.write_string(chunk);
}

task<void> chunked_writer::finish_with(std::span<const std::byte> bytes) {
    if (!m_started || m_finished) throw std::logic_error("chunked_writer: write outside start()..finish()");
    m_finished = true;
    std::string last = take_head();
    append_chunk(last, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 5);
    last += "0\r\n\r\n";
    co_await m_sink.write_string(last);
}

task<void> chunked_writer::finish() {
    if (!m_started) throw std::logic_error("chunked_writer: finish() before start()");
    if (m_finished) co_return;
    m_finished = true;
    std::string last = take_head();
    last += "0\r\n\r\n";
    co_await m_sink.write_string(last);
}

std::string sse_writer::format(std::string_view data, std::string_view event, std::string_view id) {
    std::string out;
    out.reserve(data.size() + event.size() + id.size() + 32);
    append(out, data, event, id);
    return out;
}

bool sse_writer::has_line_break(std::string_view text) noexcept { return line_break_in(text); }

void sse_writer::append(std::string& out, std::string_view data, std::string_view event, std::string_view id) {
    // Checked before anything is appended: a throw leaves `out` as it was.
    check_single_line("event", event);
    check_single_line("id", id);
    if (!event.empty()) {
        out += "event: ";
        out += event;
        out += '\n';
    }
    if (!id.empty()) {
        out += "id: ";
        out += id;
        out += '\n';
    }
    append_split_lines(out, "data: ", data);
    out += '\n';
}

task<void> sse_writer::send(std::string_view data, std::string_view event, std::string_view id) {
    const std::string text = format(data, event, id);
    co_await m_sink.write_string(text);
}

task<void> sse_writer::comment(std::string_view text) {
    std::string out;
    append_split_lines(out, ": ", text);
    co_await m_sink.write_string(out);
}

task<void> sse_writer::retry(std::chrono::milliseconds delay) {
    const std::string out = "retry: " + std::to_string(delay.count()) + "\n\n";
    co_await m_sink.write_string(out);
}

header_map sse_writer::headers() {
    header_map h;
    h.add("Content-Type", "text/event-stream");
    h.add("Cache-Control", "no-cache");
    return h;
}

} // namespace weft::http
