#include <weft/http/request_parser.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace weft::http {

namespace {

constexpr std::array<bool, 256> make_tchar_table() noexcept {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
}
constexpr std::array<bool, 256> tchar_table = make_tchar_table();

bool is_tchar(unsigned char c) noexcept { return tchar_table[c]; }

bool is_token(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// Request-target bytes: visible ASCII (no controls, no space, no DEL), and
/// anything above 0x7F only as well-formed UTF-8 (no overlongs, no surrogates,
/// nothing above U+10FFFF).
bool valid_target(std::string_view t) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(t.data());
    const auto* end = p + t.size();
    while (p < end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7F) return false;
            ++p;
            continue;
        }
        int extra = 0;
        unsigned min_next = 0x80, max_next = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0) min_next = 0xA0;       // overlong
            if (c == 0xED) max_next = 0x9F;       // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0) min_next = 0x90;       // overlong
            if (c == 0xF4) max_next = 0x8F;       // > U+10FFFF
        } else {
            return false;
        }
        if (end - p <= extra) return false;
        if (p[1] < min_next || p[1] > max_next) return false;
        for (int i = 2; i <= extra; ++i) {
            if (p[i] < 0x80 || p[i] > 0xBF) return false;
        }
        p += extra + 1;
    }
    return true;
}

/// Field value: HTAB, SP, VCHAR, obs-text.
bool valid_field_value(std::string_view v) noexcept {
    for (const char ch : v) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
    }
    return true;
}

enum class scan_result : unsigned char { need_more, found, error };

} // namespace

request_parser::request_parser(http::limits lim) : m_limits(lim) {}

void request_parser::feed(std::string_view bytes) { m_buffer.append(bytes); }

void request_parser::feed(std::span<const std::byte> bytes) {
    m_buffer.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

parse_status request_parser::fail(int status, std::string_view reason) {
    m_error = {status, reason};
    m_state = state::failed;
    return parse_status::error;
}

void request_parser::compact() {
    if (m_pos == 0) return;
    if (m_pos == m_buffer.size()) {
        m_buffer.clear();
    } else if (m_pos >= 4096 && m_pos * 2 >= m_buffer.size()) {
        m_buffer.erase(0, m_pos);
    } else {
        return;
    }
    m_scan = m_scan >= m_pos ? m_scan - m_pos : 0;
    m_line = m_line >= m_pos ? m_line - m_pos : 0;
    m_pos = 0;
}

request request_parser::take() {
    request r = std::move(m_request);
    m_request = request{};
    if (m_state == state::done) {
        m_state = state::head;
        m_scan = m_line = m_pos;
    }
    return r;
}

parse_status request_parser::next() {
    if (m_state == state::failed) return parse_status::error;
    if (m_state == state::done) return parse_status::complete;
    compact();

    for (;;) {
        switch (m_state) {
        case state::head: {
            // Line by line from where the last call stopped (memchr for the
            // LF, then for NUL and CR in the line), so nothing is scanned
            // twice. Errors are reported in byte order whatever the split:
            // the scan never looks past the byte that breaks the size limit,
            // and that byte is still checked before the limit fails.
            const char* base = m_buffer.data();
            const std::size_t end = m_buffer.size();
            const std::size_t last = m_pos + m_limits.max_header_bytes;  // first byte over the limit
            const std::size_t window = std::min(end, last + 1);
            m_scan = std::max(m_scan, m_pos);
            m_line = std::max(m_line, m_pos);
            for (;;) {
                const auto* lf = static_cast<const char*>(std::memchr(base + m_scan, '\n', window - m_scan));
                const std::size_t stop = lf != nullptr ? static_cast<std::size_t>(lf - base) : window;
                const auto* nul = static_cast<const char*>(std::memchr(base + m_scan, '\0', stop - m_scan));
                const auto* cr = static_cast<const char*>(std::memchr(base + m_scan, '\r', stop - m_scan));
                // A CR must end its line: right before the LF, or the last
                // byte seen (what follows decides).
                const std::size_t cr_ok_at = (lf != nullptr ? stop : window) - 1;
                const bool bad_cr = cr != nullptr && static_cast<std::size_t>(cr - base) != cr_ok_at;
                if (nul != nullptr && (!bad_cr || nul < cr)) return fail(400, "NUL byte in request head");
                if (bad_cr) return fail(400, "bare CR in request head");
                if (lf == nullptr) {
                    const bool pending_cr = cr != nullptr;  // at window - 1
                    if (pending_cr && window < end && base[window] != '\n') {
                        return fail(400, "bare CR in request head");
                    }
                    if (window > last) {
                        if (pending_cr && window == end) {
                            m_scan = window - 1;
                            return parse_status::need_more;
                        }
                        return fail(431, "request header fields too large");
                    }
                    m_scan = pending_cr ? window - 1 : window;
                    return parse_status::need_more;
                }
                if (stop == m_line || base[stop - 1] != '\r') return fail(400, "bare LF in request head");
                if (stop >= last) return fail(431, "request header fields too large");
                const bool empty_line = stop == m_line + 1;
                m_scan = m_line = stop + 1;
                if (!empty_line) continue;
                if (m_line == m_pos + 2) {
                    // Empty line before the request line: ignored (RFC 9112 2.2).
                    m_pos = m_line;
                    goto next_state;  // limits count from the request line
                }
                const std::size_t head_end = m_line;
                std::string_view head(base + m_pos, head_end - m_pos);
                m_request = request{};
                if (parse_head(head) == parse_status::error) return parse_status::error;
                m_pos = head_end;
                m_scan = m_line = m_pos;
                if (setup_body() == parse_status::error) return parse_status::error;
                goto next_state;
            }
        }
        case state::body_length: {
            const std::size_t n = std::min(m_remaining, m_buffer.size() - m_pos);
            m_request.body.append(m_buffer, m_pos, n);
            m_pos += n;
            m_remaining -= n;
            if (m_remaining != 0) return parse_status::need_more;
            m_state = state::done;
            break;
        }
        case state::chunk_size: {
            const parse_status s = step_chunk_size();
            if (s != parse_status::complete) return s;
            break;
        }
        case state::chunk_data: {
            const std::size_t n = std::min(m_remaining, m_buffer.size() - m_pos);
            m_request.body.append(m_buffer, m_pos, n);
            m_pos += n;
            m_remaining -= n;
            if (m_remaining != 0) return parse_status::need_more;
            m_state = state::chunk_data_end;
            break;
        }
        case state::chunk_data_end: {
            if (m_buffer.size() - m_pos < 2) {
                if (m_buffer.size() > m_pos && m_buffer[m_pos] != '\r') {
                    return fail(400, "chunk data not followed by CRLF");
                }
                return parse_status::need_more;
            }
            if (m_buffer[m_pos] != '\r' || m_buffer[m_pos + 1] != '\n') {
                return fail(400, "chunk data not followed by CRLF");
            }
            m_pos += 2;
            m_scan = m_pos;
            m_state = state::chunk_size;
            break;
        }
        case state::trailers: {
            const parse_status s = step_trailers();
            if (s != parse_status::complete) return s;
            break;
        }
        case state::done:
            return parse_status::complete;
        case state::failed:
            return parse_status::error;
        }
    next_state:;
    }
}

parse_status request_parser::parse_head(std::string_view head) {
    // head ends with "\r\n\r\n"; every line ends with CRLF, no bare CR/LF/NUL.
    head.remove_suffix(2);
    m_host_count = 0;
    m_has_te = m_has_cl = false;
    m_request.headers.reserve(8);
    std::size_t eol = head.find("\r\n");
    if (parse_request_line(head.substr(0, eol)) == parse_status::error) return parse_status::error;
    std::size_t start = eol + 2;
    while (start < head.size()) {
        eol = head.find("\r\n", start);
        if (parse_header_line(head.substr(start, eol - start)) == parse_status::error) {
            return parse_status::error;
        }
        start = eol + 2;
    }
    if (m_request.version == version::http_1_1 && m_host_count != 1) {
        return fail(400, "HTTP/1.1 request needs exactly one Host header");
    }
    return parse_status::complete;
}

parse_status request_parser::parse_request_line(std::string_view line) {
    const std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return fail(400, "malformed request line");
    const std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return fail(400, "malformed request line");
    const std::string_view name = line.substr(0, sp1);
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view ver = line.substr(sp2 + 1);

    if (!is_token(name)) return fail(400, "invalid method");
    if (target.empty() || !valid_target(target)) return fail(400, "invalid request target");

    if (ver == "HTTP/1.1") {
        m_request.version = version::http_1_1;
    } else if (ver == "HTTP/1.0") {
        m_request.version = version::http_1_0;
    } else if (ver.size() == 8 && ver.substr(0, 5) == "HTTP/" && ver[5] >= '0' && ver[5] <= '9' &&
               ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9') {
        return fail(505, "HTTP version not supported");
    } else {
        return fail(400, "invalid HTTP version");
    }

    m_request.method = method_from_string(name);
    m_request.method_name.assign(name);
    // Target forms (RFC 9112 3.2): origin, absolute, authority (CONNECT), asterisk (OPTIONS).
    const bool origin = target.front() == '/';
    const bool asterisk = target == "*" && m_request.method == method::options;
    const bool absolute = target.find("://") != std::string_view::npos && target.front() != ':';
    const bool authority = m_request.method == method::connect && !origin;
    if (!origin && !asterisk && !absolute && !authority) return fail(400, "invalid request target");
    m_request.target.assign(target);
    return parse_status::complete;
}

parse_status request_parser::parse_header_line(std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return fail(400, "obsolete line folding");
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(400, "header line without colon");
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return fail(400, "invalid header name");
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (!valid_field_value(value)) return fail(400, "invalid header value");
    if (m_request.headers.size() >= m_limits.max_header_count) return fail(431, "too many header fields");
    // What the head's checks and the body setup need, noted on the way.
    if (name.size() == 4 && iequals(name, "host")) ++m_host_count;
    if (name.size() == 17 && iequals(name, "transfer-encoding")) m_has_te = true;
    if (name.size() == 14 && iequals(name, "content-length")) m_has_cl = true;
    m_request.headers.add(std::string(name), std::string(value));
    return parse_status::complete;
}

parse_status request_parser::setup_body() {
    const bool has_te = m_has_te;
    const bool has_cl = m_has_cl;
    if (has_te && has_cl) return fail(400, "both Content-Length and Transfer-Encoding");

    if (has_te) {
        // Codings in order over every Transfer-Encoding field; chunked must be last, once.
        std::string_view last;
        bool chunked_seen = false;
        bool other_seen = false;
        for (const auto& [name, value] : m_request.headers) {
            if (!iequals(name, "transfer-encoding")) continue;
            std::string_view rest = value;
            while (true) {
                const std::size_t comma = rest.find(',');
                const std::string_view item = trim_ows(rest.substr(0, comma));
                if (!item.empty()) {
                    if (chunked_seen) return fail(400, "chunked is not the final transfer coding");
                    if (iequals(item, "chunked")) {
                        chunked_seen = true;
                    } else if (!is_token(item.substr(0, item.find_first_of(" \t;")))) {
                        return fail(400, "invalid transfer coding");
                    } else {
                        other_seen = true;
                    }
                    last = item;
                }
                if (comma == std::string_view::npos) break;
                rest.remove_prefix(comma + 1);
            }
        }
        if (other_seen) return fail(501, "unsupported transfer coding");
        if (!chunked_seen) return fail(400, "empty Transfer-Encoding");
        m_state = state::chunk_size;
        m_scan = m_pos;
        return parse_status::complete;
    }

    if (has_cl) {
        bool have = false;
        std::size_t length = 0;
        for (const auto& [name, value] : m_request.headers) {
            if (!iequals(name, "content-length")) continue;
            std::string_view rest = value;
            while (true) {
                const std::size_t comma = rest.find(',');
                const std::string_view item = trim_ows(rest.substr(0, comma));
                if (item.empty()) return fail(400, "invalid Content-Length");
                std::size_t v = 0;
                for (const char c : item) {
                    if (c < '0' || c > '9') return fail(400, "invalid Content-Length");
                    const auto digit = static_cast<std::size_t>(c - '0');
                    if (v > (std::numeric_limits<std::size_t>::max() - digit) / 10) {
                        return fail(400, "Content-Length overflows");
                    }
                    v = v * 10 + digit;
                }
                if (have && v != length) return fail(400, "conflicting Content-Length values");
                have = true;
                length = v;
                if (comma == std::string_view::npos) break;
                rest.remove_prefix(comma + 1);
            }
        }
        if (length > m_limits.max_body_bytes) return fail(413, "content too large");
        if (length == 0) {
            m_state = state::done;
        } else {
            m_state = state::body_length;
            m_remaining = length;
            m_request.body.reserve(length);
        }
        return parse_status::complete;
    }

    m_state = state::done;
    return parse_status::complete;
}

/// Reads "chunk-size [chunk-ext] CRLF". Returns complete when it moved to the
/// next state.
parse_status request_parser::step_chunk_size() {
    m_scan = std::max(m_scan, m_pos);
    bool found = false;
    while (m_scan < m_buffer.size()) {
        const char c = m_buffer[m_scan];
        if (c == '\0') return fail(400, "NUL byte in chunk size line");
        if (c == '\n') {
            if (m_scan == m_pos || m_buffer[m_scan - 1] != '\r') return fail(400, "bare LF in chunk size line");
            found = true;
            break;
        }
        if (c == '\r') {
            if (m_scan + 1 >= m_buffer.size()) break;
            if (m_buffer[m_scan + 1] != '\n') return fail(400, "bare CR in chunk size line");
        }
        ++m_scan;
        if (m_scan - m_pos > m_limits.max_chunk_line_bytes) return fail(400, "chunk size line too long");
    }
    if (!found) return parse_status::need_more;

    const std::string_view line(m_buffer.data() + m_pos, m_scan - 1 - m_pos);
    std::size_t i = 0;
    std::size_t size = 0;
    for (; i < line.size(); ++i) {
        const int h = hex_value(line[i]);
        if (h < 0) break;
        if (size > (std::numeric_limits<std::size_t>::max() >> 4)) return fail(400, "chunk size overflows");
        size = (size << 4) | static_cast<std::size_t>(h);
    }
    if (i == 0) return fail(400, "invalid chunk size");
    std::string_view ext = line.substr(i);
    // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): contents ignored,
    // but it must start with ';' after optional whitespace and hold no controls.
    const std::string_view ext_trimmed = trim_ows(ext);
    if (!ext_trimmed.empty() && ext_trimmed.front() != ';') return fail(400, "invalid chunk size");
    if (!valid_field_value(ext)) return fail(400, "invalid chunk extension");

    if (size > m_limits.max_body_bytes - m_request.body.size()) return fail(413, "content too large");
    m_pos = m_scan + 1;
    m_scan = m_pos;
    if (size == 0) {
        m_state = state::trailers;
        m_trailer_bytes = 0;
    } else {
        m_state = state::chunk_data;
        m_remaining = size;
    }
    return parse_status::complete;
}

/// Reads trailer fields up to the empty line; they are validated lightly
/// (no NUL, no bare CR/LF, size limit) and dropped.
parse_status request_parser::step_trailers() {
    m_scan = std::max(m_scan, m_pos);
    while (m_scan < m_buffer.size()) {
        const char c = m_buffer[m_scan];
        if (c == '\0') return fail(400, "NUL byte in trailers");
        if (c == '\r') {
            if (m_scan + 1 >= m_buffer.size()) break;
            if (m_buffer[m_scan + 1] != '\n') return fail(400, "bare CR in trailers");
        } else if (c == '\n') {
            if (m_scan == m_pos || m_buffer[m_scan - 1] != '\r') return fail(400, "bare LF in trailers");
            const std::size_t line_len = m_scan + 1 - m_pos;
            if (line_len == 2) {
                m_pos = m_scan + 1;
                m_scan = m_pos;
                m_state = state::done;
                return parse_status::complete;
            }
            const std::string_view line(m_buffer.data() + m_pos, line_len - 2);
            const std::size_t colon = line.find(':');
            if (colon == std::string_view::npos || !is_token(line.substr(0, colon)) ||
                !valid_field_value(line.substr(colon + 1))) {
                return fail(400, "invalid trailer field");
            }
            m_trailer_bytes += line_len;
            m_pos = m_scan + 1;
        }
        ++m_scan;
        if (m_trailer_bytes + (m_scan - m_pos) > m_limits.max_header_bytes) {
            return fail(431, "trailer fields too large");
        }
    }
    return parse_status::need_more;
}

} // namespace weft::http
