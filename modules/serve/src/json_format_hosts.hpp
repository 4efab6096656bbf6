// The automata of the formats built of host names, for json_format.cpp:
// hostname, email (a local part, '@', a domain) and uri (an http or https
// URL), on the cursor of json_format_values.hpp.
//
// Included by json_format.cpp alone, and of internal linkage there (see
// json_format_values.hpp).
#pragma once

#include "json_format_values.hpp"

#include "json_bytes.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace weft::serve::detail {

namespace {

// hostname (and an email's domain): labels of letters, digits and inner
// hyphens, 1-63 each, joined by dots, 253 characters in all, the last of 2
// or more letters only (a top-level domain: validators differ on others).
// An email's domain has two labels at least. Data: the label's length (bits
// 0-5), whether it ends in a hyphen (6), is letters only (7), labels before
// it (8-9, at most 3 counted), characters so far (10-17).
struct host_rules {
    std::uint32_t max_total;  // characters in all
    std::uint32_t min_labels; // labels in all
};

struct host_state {
    std::uint32_t label, hyphen, alpha, before, total;

    static host_state of(std::uint32_t d) noexcept {
        return {d & 0x3fu, d >> 6 & 1u, d >> 7 & 1u, d >> 8 & 0x3u, d >> 10 & 0xffu};
    }
    [[nodiscard]] std::uint32_t packed() const noexcept {
        return label | hyphen << 6 | alpha << 7 | before << 8 | total << 10;
    }
};

constexpr std::uint32_t max_label = 63;
constexpr std::uint32_t unreachable = 1000;

/// Characters a label begun after `before` labels needs to end the name:
/// one-letter labels and dots up to the labels required, then two letters.
std::uint32_t fresh_need(const host_rules& r, std::uint32_t before) noexcept {
    const std::uint32_t more = r.min_labels > before + 1 ? r.min_labels - before - 1 : 0;
    return more * 2 + 2;
}

/// The fewest characters that end the name from `h`.
std::uint32_t host_need(const host_rules& r, const host_state& h) noexcept {
    if (h.label == 0) return fresh_need(r, h.before);
    std::uint32_t best = unreachable;
    if (h.before + 1 >= r.min_labels && h.alpha != 0) { // end within this label
        const std::uint32_t need = h.label >= 2 ? 0 : 2 - h.label;
        if (h.label + need <= max_label) best = need;
    }
    // Or a dot (after one more character where the label ends in a hyphen)
    // and a fresh label.
    if (h.label + h.hyphen <= max_label) {
        best = std::min(best, h.hyphen + 1 + fresh_need(r, std::min<std::uint32_t>(h.before + 1, 3)));
    }
    return best;
}

bool host_step(const host_rules& r, std::uint32_t& data, std::uint8_t c) noexcept {
    host_state h = host_state::of(data);
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c == '.') {
        if (h.label == 0 || h.hyphen != 0) return false;
        h = {0, 0, 0, std::min<std::uint32_t>(h.before + 1, 3), h.total + 1};
    } else if (letter || is_digit(c) || c == '-') {
        if (h.label == max_label || (c == '-' && h.label == 0)) return false;
        h.alpha = (h.label == 0 || h.alpha != 0) && letter ? 1 : 0;
        h.hyphen = c == '-' ? 1 : 0;
        ++h.label;
        ++h.total;
    } else {
        return false;
    }
    // Only while the name can still end in time.
    if (h.total + host_need(r, h) > r.max_total) return false;
    data = h.packed();
    return true;
}

bool host_complete(const host_rules& r, std::uint32_t data) noexcept {
    const host_state h = host_state::of(data);
    return h.label != 0 && host_need(r, h) == 0;
}

constexpr host_rules hostname_rules{253, 1};

// email: the local part at position 0 (data: its length, bits 0-6, and
// whether it ends in a dot, 7): dot-separated runs of letters, digits and
// `_ + -`, 64 characters at most; then '@' and the domain at position
// 1 + the local part's length (data: host_state), 254 characters in all.
constexpr std::uint32_t max_local = 64;
constexpr std::uint32_t max_email = 254;

host_rules domain_rules(std::uint32_t local) noexcept { return {max_email - local - 1, 2}; }

bool email_step(cursor& s, std::uint8_t c) noexcept {
    if (s.pos > 0) return host_step(domain_rules(s.pos - 1), s.data, c);
    const std::uint32_t length = s.data & 0x7fu, dot = s.data >> 7 & 1u;
    if (c == '@') {
        if (length == 0 || dot != 0) return false;
        s = {1 + length, 0};
        return true;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '+' || c == '-') {
        if (length == max_local) return false;
        s.data = length + 1;
        return true;
    }
    // A dot between runs, with room after it for one more character.
    if (c == '.' && length > 0 && dot == 0 && length + 2 <= max_local) {
        s.data = (length + 1) | 1u << 7;
        return true;
    }
    return false;
}

// uri: an http or https URL, the part of RFC 3986's URIs that every
// validator of `uri` and pydantic's HttpUrl alike accept: `http://` or
// `https://`, a host name (as `hostname`), an optional port (1-65535, no
// leading zero), then a path, `?query` and `#fragment` of RFC 3986 pchars
// (unreserved, sub-delims, ':', '@', %XX), '/' and (after the path) '?'.
// Pos: 0-3 the letters of "http"; 4 after them; 5 after "https"; 6 after
// ':'; 7 after the first '/'; 8 the host (data: host_state); 9 the port
// (data: digits, bits 0-2, and value, 3-19); 10 the path, 11 the query, 12
// the fragment (data: hexadecimal digits a '%' still needs, bits 0-1).
enum : std::uint32_t { uri_after_http = 4, uri_after_https, uri_colon, uri_slash, uri_host, uri_port, uri_path,
                       uri_query, uri_fragment };
constexpr std::uint32_t max_port = 65535;

bool is_pchar(std::uint8_t c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
    switch (c) {
    case '-': case '.': case '_': case '~':                                  // unreserved
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*':
    case '+': case ',': case ';': case '=':                                  // sub-delims
    case ':': case '@': return true;
    default: return false;
    }
}

/// The part a '/', '?' or '#' opens after the host or port.
bool uri_open_part(cursor& s, std::uint8_t c) noexcept {
    switch (c) {
    case '/': s = {uri_path, 0}; return true;
    case '?': s = {uri_query, 0}; return true;
    case '#': s = {uri_fragment, 0}; return true;
    default: return false;
    }
}

bool uri_step(cursor& s, std::uint8_t c) noexcept {
    constexpr std::string_view http = "http";
    if (s.pos < http.size()) {
        if (c != static_cast<std::uint8_t>(http[s.pos])) return false;
        ++s.pos;
        return true;
    }
    switch (s.pos) {
    case uri_after_http:
        if (c == 's') { s.pos = uri_after_https; return true; }
        [[fallthrough]];
    case uri_after_https:
        if (c != ':') return false;
        s.pos = uri_colon;
        return true;
    case uri_colon:
    case uri_slash:
        if (c != '/') return false;
        s = {s.pos == uri_colon ? uri_slash : uri_host, 0};
        return true;
    case uri_host:
        if (c == ':' || c == '/' || c == '?' || c == '#') {
            if (!host_complete(hostname_rules, s.data)) return false;
            if (c == ':') {
                s = {uri_port, 0};
                return true;
            }
            return uri_open_part(s, c);
        }
        return host_step(hostname_rules, s.data, c);
    case uri_port: {
        const std::uint32_t digits = s.data & 0x7u, value = s.data >> 3;
        if (!is_digit(c)) return digits > 0 && uri_open_part(s, c);
        const std::uint32_t next = value * 10 + (static_cast<std::uint32_t>(c) - '0');
        if (next == 0 || next > max_port) return false; // no leading zero, no port 0
        s.data = (digits + 1) | next << 3;
        return true;
    }
    default: { // path, query, fragment
        if (s.data != 0) { // within %XX
            if (!is_hex(c)) return false;
            --s.data;
            return true;
        }
        if (c == '%') {
            s.data = 2;
            return true;
        }
        if (is_pchar(c) || c == '/' || (c == '?' && s.pos != uri_path)) return true;
        if (c == '?' && s.pos == uri_path) {
            s.pos = uri_query;
            return true;
        }
        if (c == '#' && s.pos != uri_fragment) {
            s.pos = uri_fragment;
            return true;
        }
        return false;
    }
    }
}

bool uri_complete(cursor s) noexcept {
    switch (s.pos) {
    case uri_host: return host_complete(hostname_rules, s.data);
    case uri_port: return (s.data & 0x7u) != 0;
    case uri_path: case uri_query: case uri_fragment: return s.data == 0;
    default: return false;
    }
}

std::uint32_t uri_need(cursor s) noexcept {
    // "http://" then the shortest host name.
    const std::uint32_t host = fresh_need(hostname_rules, 0);
    switch (s.pos) {
    case uri_after_http: case uri_after_https: return 3 + host;
    case uri_colon: return 2 + host;
    case uri_slash: return 1 + host;
    case uri_host: return host_need(hostname_rules, host_state::of(s.data));
    case uri_port: return (s.data & 0x7u) == 0 ? 1 : 0;
    case uri_path: case uri_query: case uri_fragment: return s.data;
    default: return 4 - s.pos + 3 + host;
    }
}

} // namespace

} // namespace weft::serve::detail
