#include "loadgen_http.hpp"

#include <algorithm>
#include <cctype>

namespace weft::loadgen {

namespace {

constexpr std::size_t max_chunk_line_bytes = 1024;
constexpr std::size_t max_trailer_bytes = 16 * 1024;
// Far beyond any response here; keeps the size arithmetic clear of overflow.
constexpr std::uint64_t max_body_piece = std::uint64_t{1} << 48;

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool is_token_char(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/// Calls `f` with each trimmed, non-empty element of a comma-separated list.
template <class F>
void for_each_element(std::string_view list, F&& f) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        const std::string_view item = trim(list.substr(0, comma));
        if (!item.empty()) {
            f(item);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        list.remove_prefix(comma + 1);
    }
}

} // namespace

std::optional<std::string_view> response_head::header(std::string_view name) const noexcept {
    for (const auto& [key, value] : headers) {
        if (iequals(key, name)) {
            return std::string_view(value);
        }
    }
    return std::nullopt;
}

bool response_head::has_token(std::string_view name, std::string_view token) const noexcept {
    bool found = false;
    for (const auto& [key, value] : headers) {
        if (iequals(key, name)) {
            for_each_element(value, [&](std::string_view item) { found = found || iequals(item, token); });
        }
    }
    return found;
}

void response_parser::reset() noexcept {
    m_state = state::head;
    m_started = false;
    m_close_delimited = false;
    m_saw_cr = false;
    m_remaining = 0;
    m_line_start = 0;
    m_trailer_bytes = 0;
    m_raw_head.clear();
    m_line.clear();
    m_error.clear();
    m_head.status = 0;
    m_head.minor_version = 1;
    m_head.reason.clear();
    m_head.headers.clear();
}

response_parser::step response_parser::fail(std::string reason) {
    m_state = state::failed;
    m_error = std::move(reason);
    return step::error;
}

bool response_parser::keep_alive() const noexcept {
    if (m_close_delimited) {
        return false;
    }
    if (m_head.minor_version >= 1) {
        return !m_head.has_token("connection", "close");
    }
    return m_head.has_token("connection", "keep-alive");
}

response_parser::step response_parser::next(std::string_view& input, std::string_view& body) {
    if (!input.empty()) {
        m_started = true;
    }
    for (;;) {
        switch (m_state) {
        case state::head:
            return take_head(input);
        case state::body_length:
        case state::chunk_data:
            if (m_remaining == 0) {
                m_state = m_state == state::body_length ? state::done : state::chunk_data_end;
                continue;
            }
            return take_piece(input, body);
        case state::until_close:
            return take_piece(input, body);
        case state::chunk_data_end: {
            if (input.empty()) {
                return step::need_more;
            }
            const char c = input.front();
            if (c == '\r' && !m_saw_cr) {
                m_saw_cr = true;
                input.remove_prefix(1);
                continue;
            }
            if (c != '\n') {
                return fail("chunk data not followed by CRLF");
            }
            m_saw_cr = false;
            input.remove_prefix(1);
            m_state = state::chunk_size;
            continue;
        }
        case state::chunk_size: {
            bool too_long = false;
            if (!take_line(input, max_chunk_line_bytes, too_long)) {
                return too_long ? fail("chunk-size line too long") : step::need_more;
            }
            std::uint64_t size = 0;
            std::size_t i = 0;
            for (; i < m_line.size() && hex_value(m_line[i]) >= 0; ++i) {
                size = size * 16 + static_cast<std::uint64_t>(hex_value(m_line[i]));
                if (size > max_body_piece) {
                    return fail("chunk size too large");
                }
            }
            if (i == 0 || (i < m_line.size() && m_line[i] != ';' && m_line[i] != ' ' && m_line[i] != '\t')) {
                return fail("malformed chunk-size line");
            }
            m_line.clear();
            if (size == 0) {
                m_state = state::trailers;
            } else {
                m_remaining = size;
                m_state = state::chunk_data;
            }
            continue;
        }
        case state::trailers: {
            bool too_long = false;
            if (!take_line(input, max_trailer_bytes - m_trailer_bytes, too_long)) {
                return too_long ? fail("trailers too large") : step::need_more;
            }
            const bool last = m_line.empty();
            m_trailer_bytes += m_line.size() + 2;
            m_line.clear();
            if (last) {
                m_state = state::done;
            }
            continue;
        }
        case state::done:
            return step::complete;
        case state::failed:
            return step::error;
        }
    }
}

response_parser::step response_parser::take_piece(std::string_view& input, std::string_view& body) {
    if (input.empty()) {
        return step::need_more;
    }
    std::size_t n = input.size();
    if (m_state != state::until_close) {
        n = static_cast<std::size_t>(std::min<std::uint64_t>(m_remaining, n));
        m_remaining -= n;
    }
    body = input.substr(0, n);
    input.remove_prefix(n);
    return step::body;
}

bool response_parser::take_line(std::string_view& input, std::size_t limit, bool& too_long) {
    const auto lf = input.find('\n');
    const std::size_t n = lf == std::string_view::npos ? input.size() : lf;
    if (m_line.size() + n > limit) {
        too_long = true;
        return false;
    }
    m_line.append(input.data(), n);
    if (lf == std::string_view::npos) {
        input.remove_prefix(input.size());
        return false;
    }
    input.remove_prefix(lf + 1);
    if (!m_line.empty() && m_line.back() == '\r') {
        m_line.pop_back();
    }
    return true;
}

response_parser::step response_parser::take_head(std::string_view& input) {
    while (!input.empty()) {
        const auto lf = input.find('\n');
        const std::size_t n = lf == std::string_view::npos ? input.size() : lf + 1;
        if (m_raw_head.size() + n > m_max_head_bytes) {
            return fail("response head too large");
        }
        m_raw_head.append(input.data(), n);
        input.remove_prefix(n);
        if (lf == std::string_view::npos) {
            return step::need_more;
        }
        std::string_view line(m_raw_head);
        line = line.substr(m_line_start, line.size() - m_line_start - 1);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (!line.empty()) {
            m_line_start = m_raw_head.size();
            continue;
        }
        if (m_line_start == 0) {
            return fail("empty line before the status line");
        }
        if (!parse_head()) {
            return step::error;
        }
        if (m_head.status < 200) {
            if (m_head.status == 101) {
                return fail("unexpected 101 Switching Protocols");
            }
            // An interim response (100 Continue, 103 Early Hints): the final one follows.
            m_raw_head.clear();
            m_line_start = 0;
            m_head.headers.clear();
            continue;
        }
        return begin_body();
    }
    return step::need_more;
}

bool response_parser::parse_head() {
    std::string_view rest(m_raw_head);
    auto next_line = [&rest]() {
        const auto lf = rest.find('\n');
        std::string_view line = rest.substr(0, lf);
        rest.remove_prefix(lf == std::string_view::npos ? rest.size() : lf + 1);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        return line;
    };
    const std::string_view status_line = next_line();
    if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || !is_digit(status_line[7]) ||
        status_line[8] != ' ' || !is_digit(status_line[9]) || !is_digit(status_line[10]) ||
        !is_digit(status_line[11]) || (status_line.size() > 12 && status_line[12] != ' ')) {
        fail("malformed status line");
        return false;
    }
    m_head.minor_version = status_line[7] - '0';
    m_head.status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
    m_head.reason = std::string(status_line.size() > 12 ? status_line.substr(13) : std::string_view{});
    m_head.headers.clear();
    for (std::string_view line = next_line(); !line.empty(); line = next_line()) {
        if (line.front() == ' ' || line.front() == '\t') {
            fail("obsolete header line folding");
            return false;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0 ||
            !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), is_token_char)) {
            fail("malformed header line");
            return false;
        }
        m_head.headers.emplace_back(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
    }
    return true;
}

response_parser::step response_parser::begin_body() {
    if (m_head.status == 204 || m_head.status == 304) {
        m_state = state::done;
        return step::head;
    }
    bool has_transfer_encoding = false;
    std::string_view last_coding;
    std::optional<std::uint64_t> length;
    for (const auto& [name, value] : m_head.headers) {
        if (iequals(name, "transfer-encoding")) {
            has_transfer_encoding = true;
            for_each_element(value, [&](std::string_view item) { last_coding = item; });
        } else if (iequals(name, "content-length")) {
            if (value.empty() || value.size() > 15 || !std::all_of(value.begin(), value.end(), is_digit)) {
                return fail("invalid Content-Length");
            }
            const std::uint64_t v = std::stoull(value);
            if (length && *length != v) {
                return fail("conflicting Content-Length headers");
            }
            length = v;
        }
    }
    if (has_transfer_encoding) {
        // Transfer-Encoding overrides Content-Length (RFC 9112, 6.3); a body
        // whose final coding is not chunked runs until the connection closes.
        if (iequals(last_coding, "chunked")) {
            m_state = state::chunk_size;
        } else {
            m_state = state::until_close;
            m_close_delimited = true;
        }
    } else if (length) {
        m_remaining = *length;
        m_state = *length == 0 ? state::done : state::body_length;
    } else {
        m_state = state::until_close;
        m_close_delimited = true;
    }
    return step::head;
}

response_parser::step response_parser::finish() {
    switch (m_state) {
    case state::until_close:
        m_state = state::done;
        return step::complete;
    case state::done:
        return step::complete;
    case state::failed:
        return step::error;
    default:
        return fail(m_started ? "connection closed in the middle of the response"
                              : "connection closed before the response");
    }
}

} // namespace weft::loadgen
