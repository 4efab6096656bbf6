// The automata behind json_format.hpp's functions, one a format (or a few
// alike), for json_format.cpp, which picks one by the format. Each takes a
// byte of the string's content (`*_step`), and says whether the content so
// far is a whole value (`*_complete`, or an end position) and how many bytes
// it still needs at least (`*_need`), on the format's 32-bit state unpacked
// as a cursor. Private to the serve module.
#pragma once

#include <cstdint>

namespace weft::serve::detail {

/// A format's 32-bit state: the position in its grammar (low 8 bits) and
/// what it remembers of the bytes so far (the rest).
struct cursor {
    std::uint32_t pos;
    std::uint32_t data;

    static cursor of(std::uint32_t state) noexcept { return {state & 0xffu, state >> 8}; }
    [[nodiscard]] std::uint32_t packed() const noexcept { return pos | data << 8; }
};

// ---- dates and times (json_format_time.cpp) --------------------------------

/// Where a date and a time are complete, and where a date-time's time starts.
constexpr std::uint32_t date_end = 10;
constexpr std::uint32_t time_end = 15;
constexpr std::uint32_t time_start = date_end + 1;

bool date_step(cursor& s, std::uint8_t c) noexcept;
bool time_step(cursor& s, std::uint8_t c) noexcept;
std::uint32_t time_need(cursor s) noexcept;
bool date_time_step(cursor& s, std::uint8_t c) noexcept;
bool duration_step(cursor& s, std::uint8_t c) noexcept;
std::uint32_t duration_need(cursor s) noexcept;

// ---- IP addresses (json_format_ip.cpp) -------------------------------------

bool ipv4_step(cursor& s, std::uint8_t c) noexcept;
bool ipv4_complete(cursor s) noexcept;
std::uint32_t ipv4_need(cursor s) noexcept;
bool ipv6_step(cursor& s, std::uint8_t c) noexcept;
bool ipv6_complete(cursor s) noexcept;
std::uint32_t ipv6_need(cursor s) noexcept;
bool ipvany_step(cursor& s, std::uint8_t c) noexcept;
bool ipvany_complete(cursor s) noexcept;
std::uint32_t ipvany_need(cursor s) noexcept;

// ---- host names, emails and URIs (json_format_host.cpp) --------------------

/// The bounds of a host name: a hostname's, or an email's domain's.
struct host_rules {
    std::uint32_t max_total;  // characters in all
    std::uint32_t min_labels; // labels in all
};

/// A host name's state, packed into a cursor's data (the layout is in
/// json_format_host.cpp).
struct host_state {
    std::uint32_t label, hyphen, alpha, before, total;

    static host_state of(std::uint32_t d) noexcept {
        return {d & 0x3fu, d >> 6 & 1u, d >> 7 & 1u, d >> 8 & 0x3u, d >> 10 & 0xffu};
    }
    [[nodiscard]] std::uint32_t packed() const noexcept {
        return label | hyphen << 6 | alpha << 7 | before << 8 | total << 10;
    }
};

constexpr host_rules hostname_rules{253, 1};

/// The rules of an email's domain after a local part of `local` characters.
host_rules domain_rules(std::uint32_t local) noexcept;

std::uint32_t fresh_need(const host_rules& r, std::uint32_t before) noexcept;
std::uint32_t host_need(const host_rules& r, const host_state& h) noexcept;
bool host_step(const host_rules& r, std::uint32_t& data, std::uint8_t c) noexcept;
bool host_complete(const host_rules& r, std::uint32_t data) noexcept;
bool email_step(cursor& s, std::uint8_t c) noexcept;
bool uri_step(cursor& s, std::uint8_t c) noexcept;
bool uri_complete(cursor s) noexcept;
std::uint32_t uri_need(cursor s) noexcept;

} // namespace weft::serve::detail
