#include <weft/http/message.hpp>

#include <algorithm>
#include <array>

namespace weft::http {

namespace {
char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

constexpr std::array<std::string_view, 9> method_names = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
} // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

method method_from_string(std::string_view name) noexcept {
    for (std::size_t i = 0; i < method_names.size(); ++i) {
        if (method_names[i] == name) return static_cast<method>(i);
    }
    return method::other;
}

std::string_view to_string(method m) noexcept {
    const auto i = static_cast<std::size_t>(m);
    return i < method_names.size() ? method_names[i] : std::string_view{};
}

void header_map::add(std::string name, std::string value) {
    m_fields.emplace_back(std::move(name), std::move(value));
}

void header_map::set(std::string_view name, std::string value) {
    remove(name);
    m_fields.emplace_back(std::string(name), std::move(value));
}

std::size_t header_map::remove(std::string_view name) {
    const auto before = m_fields.size();
    std::erase_if(m_fields, [&](const field& f) { return iequals(f.first, name); });
    return before - m_fields.size();
}

std::optional<std::string_view> header_map::get(std::string_view name) const noexcept {
    for (const auto& f : m_fields) {
        if (iequals(f.first, name)) return std::string_view(f.second);
    }
    return std::nullopt;
}

std::size_t header_map::count(std::string_view name) const noexcept {
    return static_cast<std::size_t>(
        std::count_if(m_fields.begin(), m_fields.end(), [&](const field& f) { return iequals(f.first, name); }));
}

bool header_map::has_token(std::string_view name, std::string_view token) const noexcept {
    for (const auto& f : m_fields) {
        if (!iequals(f.first, name)) continue;
        std::string_view rest = f.second;
        while (true) {
            const std::size_t comma = rest.find(',');
            if (iequals(trim_ows(rest.substr(0, comma)), token)) return true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return false;
}

std::string_view request::path() const noexcept {
    const std::string_view t = target;
    return t.substr(0, t.find('?'));
}

std::string_view request::query() const noexcept {
    const std::string_view t = target;
    const std::size_t q = t.find('?');
    return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

bool request::keep_alive() const noexcept {
    if (headers.has_token("connection", "close")) return false;
    if (version == version::http_1_1) return true;
    return headers.has_token("connection", "keep-alive");
}

response::response(int status_code, std::string body_text, std::string content_type)
    : status(status_code), body(std::move(body_text)) {
    if (!content_type.empty()) headers.add("Content-Type", std::move(content_type));
}

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

namespace {
void append_number(std::string& out, std::size_t n) {
    char digits[24];
    std::size_t len = 0;
    do {
        digits[len++] = static_cast<char>('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (len > 0) out += digits[--len];
}

void append_status_line(std::string& out, int status) {
    switch (status) {  // the usual ones, whole
    case 200: out += "HTTP/1.1 200 OK\r\n"; return;
    case 204: out += "HTTP/1.1 204 No Content\r\n"; return;
    case 404: out += "HTTP/1.1 404 Not Found\r\n"; return;
    default: break;
    }
    out += "HTTP/1.1 ";
    out += std::to_string(status);  // short: no allocation
    out += ' ';
    out += reason_phrase(status);
    out += "\r\n";
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
}
} // namespace

void append_status_and_headers(std::string& out, int status, const header_map& headers) {
    append_status_line(out, status);
    for (const auto& [name, value] : headers) append_header(out, name, value);
}

void serialize(const response& r, std::string& out) {
    std::size_t size = 64 + r.body.size();
    for (const auto& [name, value] : r.headers) size += name.size() + value.size() + 4;
    out.reserve(out.size() + size);
    append_status_line(out, r.status);
    for (const auto& [name, value] : r.headers) {
        if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) continue;
        append_header(out, name, value);
    }
    out += "Content-Length: ";
    append_number(out, r.body.size());
    out += "\r\n\r\n";
    out += r.body;
}

std::string serialize(const response& r) {
    std::string out;
    serialize(r, out);
    return out;
}

} // namespace weft::http
