/// \file
/// HTTP/1.1 message types: `method`, `version`, `header_map`, `request`,
/// `response`, and `reason_phrase`.
///
/// Lifetime: every type here owns its data (plain values, no views into a
/// parser's buffer), so a `request` handed out by `request_parser` stays valid
/// after the parser moves on or is destroyed.
///
/// Threading: plain values; no internal synchronisation (one thread at a time
/// per object, any number of objects concurrently).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::http {

/// Request methods the library knows by name; anything else is `other` (the
/// spelling is kept in `request::method_name`).
enum class method : unsigned char { get, head, post, put, delete_, connect, options, trace, patch, other };

/// `method` from its (case-sensitive, as in RFC 9110) spelling; `other` if unknown.
method method_from_string(std::string_view name) noexcept;
/// Canonical spelling ("GET", ...); "" for `other`.
std::string_view to_string(method m) noexcept;

enum class version : unsigned char { http_1_0, http_1_1 };

/// True when `a` and `b` are equal ignoring ASCII case.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// Header fields in arrival order, looked up case-insensitively. Repeated fields
/// are kept as separate entries.
class header_map {
public:
    using field = std::pair<std::string, std::string>;
    using const_iterator = std::vector<field>::const_iterator;

    /// Appends a field (no validation: the parser validates what it receives;
    /// serializers trust the application).
    void add(std::string name, std::string value);
    /// Replaces every field named `name` with one field (appended if absent).
    void set(std::string_view name, std::string value);
    /// Removes every field named `name`; returns how many were removed.
    std::size_t remove(std::string_view name);

    /// Value of the first field named `name`.
    std::optional<std::string_view> get(std::string_view name) const noexcept;
    bool contains(std::string_view name) const noexcept { return get(name).has_value(); }
    std::size_t count(std::string_view name) const noexcept;
    /// True when some field named `name` holds `token` in its comma-separated
    /// list (case-insensitive; e.g. has_token("connection", "close")).
    bool has_token(std::string_view name, std::string_view token) const noexcept;

    std::size_t size() const noexcept { return m_fields.size(); }
    bool empty() const noexcept { return m_fields.empty(); }
    const_iterator begin() const noexcept { return m_fields.begin(); }
    const_iterator end() const noexcept { return m_fields.end(); }
    void clear() noexcept { m_fields.clear(); }
    void reserve(std::size_t n) { m_fields.reserve(n); }

private:
    std::vector<field> m_fields;
};

struct request {
    http::method method = method::get;
    std::string method_name;   ///< as received, e.g. "GET" or "PROPFIND"
    std::string target;        ///< request-target as received, e.g. "/a/b?x=1"
    http::version version = version::http_1_1;
    header_map headers;
    std::string body;          ///< de-chunked body

    /// `target` up to the first '?'.
    std::string_view path() const noexcept;
    /// `target` after the first '?' ("" if none).
    std::string_view query() const noexcept;
    /// Whether the connection stays open after this request: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    bool keep_alive() const noexcept;
};

struct response {
    int status = 200;
    header_map headers;
    std::string body;

    response() = default;
    response(int status_code, std::string body_text = {}, std::string content_type = {});
};

/// Standard reason phrase for `status` ("OK", "Not Found", ...), "Unknown" otherwise.
std::string_view reason_phrase(int status) noexcept;

/// Appends "HTTP/1.1 <status> <reason>\r\n" and every header of `headers` to
/// `out`, without the blank line that ends the head.
void append_status_and_headers(std::string& out, int status, const header_map& headers);

/// Appends the whole response to `out`: status line, the application's headers
/// except Content-Length and Transfer-Encoding, `Content-Length: <body size>`,
/// a blank line, the body.
void serialize(const response& r, std::string& out);
std::string serialize(const response& r);

} // namespace weft::http
