// The automata of the formats written in a fixed notation, for
// json_format.cpp: date, time, date-time, duration, uuid (and its versions),
// ipv4, ipv6 and ipvanyaddress; and the cursor, the 32-bit state that every
// format's automaton reads and writes. json_format_hosts.hpp has the formats
// built of host names.
//
// Included by json_format.cpp alone, so that the automata stay in one
// translation unit with internal linkage, as when they were one file:
// format_step and format_need then inline the small ones (an email's, a
// hostname's) into their dispatch. Split into a file per family, called
// across files, the email mask took 17-40% longer (weft-mask-bench).
#pragma once

#include "json_format.hpp"

#include "json_bytes.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace weft::serve::detail {

namespace {

/// A format's 32-bit state: the position in its grammar (low 8 bits) and
/// what it remembers of the bytes so far (the rest).
struct cursor {
    std::uint32_t pos;
    std::uint32_t data;

    static cursor of(std::uint32_t state) noexcept { return {state & 0xffu, state >> 8}; }
    [[nodiscard]] std::uint32_t packed() const noexcept { return pos | data << 8; }
};

std::uint32_t days_in_month(std::uint32_t month, std::uint32_t year) noexcept {
    switch (month) {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28;
    case 4: case 6: case 9: case 11: return 30;
    default: return 31;
    }
}

// date: positions 0-9 of YYYY-MM-DD, complete at 10. Data: the year (bits
// 0-13), the month (14-17; its tens digit alone at position 6), the day's
// tens digit (18-19).
constexpr std::uint32_t date_end = 10;

bool date_step(cursor& s, std::uint8_t c) noexcept {
    const std::uint32_t d = static_cast<std::uint32_t>(c) - '0';
    const bool digit = is_digit(c);
    std::uint32_t year = s.data & 0x3fffu, month = s.data >> 14 & 0xfu, tens = s.data >> 18 & 0x3u;
    switch (s.pos) {
    case 0: case 1: case 2: case 3:
        if (!digit) return false;
        year = year * 10 + d;
        break;
    case 4: case 7:
        if (c != '-') return false;
        break;
    case 5:
        if (c != '0' && c != '1') return false;
        month = d;
        break;
    case 6: // 01-09 or 10-12
        if (!digit || (month == 0 ? d == 0 : d > 2)) return false;
        month = month * 10 + d;
        break;
    case 8: // a 3x day only in months of 30 days or more
        if (!digit || d > 3 || (d == 3 && days_in_month(month, year) < 30)) return false;
        tens = d;
        break;
    case 9: {
        if (!digit) return false;
        const std::uint32_t day = tens * 10 + d;
        if (day == 0 || day > days_in_month(month, year)) return false;
        break;
    }
    default: return false;
    }
    ++s.pos;
    s.data = year | month << 14 | tens << 18;
    return true;
}

// time: HH:MM:SS at positions 0-7, then 8: '.', 'Z' or an offset's sign;
// 9: fraction digits; 10-14: the offset's HH:MM; complete at 15. Data: the
// tens digit of an hour (bits 0-1), fraction digits so far (2-5).
constexpr std::uint32_t time_end = 15;
constexpr std::uint32_t max_fraction_digits = 9;

bool time_step(cursor& s, std::uint8_t c) noexcept {
    const std::uint32_t d = static_cast<std::uint32_t>(c) - '0';
    const bool digit = is_digit(c);
    const std::uint32_t tens = s.data & 0x3u, fraction = s.data >> 2 & 0xfu;
    auto to = [&](std::uint32_t pos, std::uint32_t data) {
        s.pos = pos;
        s.data = data;
        return true;
    };
    switch (s.pos) {
    case 0: case 10: // an hour's tens: 0-2
        return digit && d <= 2 && to(s.pos + 1, d);
    case 1: case 11: // 00-23
        return digit && (tens < 2 || d <= 3) && to(s.pos + 1, 0);
    case 2: case 5: case 12:
        return c == ':' && to(s.pos + 1, 0);
    case 3: case 6: case 13: // minutes' and seconds' tens: 0-5
        return digit && d <= 5 && to(s.pos + 1, 0);
    case 4: case 7: case 14:
        return digit && to(s.pos + 1, 0);
    case 8:
        if (c == '.') return to(9, 0);
        break;
    case 9:
        if (digit) return fraction < max_fraction_digits && to(9, (fraction + 1) << 2);
        if (fraction == 0) return false;
        break;
    default: return false;
    }
    // After the seconds or their fraction: the zone.
    if (c == 'Z') return to(time_end, 0);
    if (c == '+' || c == '-') return to(10, 0);
    return false;
}

/// The fewest characters that end a time: the seconds, then 'Z'.
std::uint32_t time_need(cursor s) noexcept {
    if (s.pos < 8) return 8 - s.pos + 1;
    if (s.pos == 8) return 1;
    if (s.pos == 9) return (s.data >> 2 & 0xfu) == 0 ? 2 : 1; // a fraction digit, then 'Z'
    return time_end - s.pos;
}

// date-time: the date at positions 0-9, 'T' at 10, the time from 11.
constexpr std::uint32_t time_start = date_end + 1;

bool date_time_step(cursor& s, std::uint8_t c) noexcept {
    if (s.pos < date_end) return date_step(s, c);
    if (s.pos == date_end) {
        if (c != 'T') return false;
        s = {time_start, 0};
        return true;
    }
    cursor t{s.pos - time_start, s.data};
    if (!time_step(t, c)) return false;
    s = {t.pos + time_start, t.data};
    return true;
}

// duration: 0: 'P'; 1: after it; 2: a number of the date part; 3: after a
// date unit; 4: after 'T'; 5: a number of the time part; 6: after a time
// unit; 7: after weeks. Data: digits of the number (bits 0-3), the rank of
// the part's last unit (4-5: Y, M, D or H, M, S as 1-3, 0 for none).
constexpr std::uint32_t max_number_digits = 9;

std::uint32_t unit_rank(std::uint8_t c, bool time) noexcept {
    if (time) return c == 'H' ? 1 : c == 'M' ? 2 : c == 'S' ? 3 : 0;
    return c == 'Y' ? 1 : c == 'M' ? 2 : c == 'D' ? 3 : 0;
}

bool duration_step(cursor& s, std::uint8_t c) noexcept {
    const bool digit = is_digit(c);
    const std::uint32_t digits = s.data & 0xfu, rank = s.data >> 4 & 0x3u;
    auto to = [&](std::uint32_t pos, std::uint32_t new_digits, std::uint32_t new_rank) {
        s.pos = pos;
        s.data = new_digits | new_rank << 4;
        return true;
    };
    switch (s.pos) {
    case 0: return c == 'P' && to(1, 0, 0);
    case 1:
        if (digit) return to(2, 1, 0);
        return c == 'T' && to(4, 0, 0);
    case 2: case 5: {
        if (digit) return digits < max_number_digits && to(s.pos, digits + 1, rank);
        const bool time = s.pos == 5;
        if (!time && c == 'W') return rank == 0 && to(7, 0, 0); // weeks stand alone
        // The first unit of a part may be any; each later one the next.
        const std::uint32_t r = unit_rank(c, time);
        if (r == 0 || (rank != 0 && r != rank + 1)) return false;
        return to(time ? 6 : 3, 0, r);
    }
    case 3: case 6:
        if (digit) return rank < 3 && to(s.pos - 1, 1, rank);
        return s.pos == 3 && c == 'T' && to(4, 0, 0);
    case 4: return digit && to(5, 1, 0);
    default: return false;
    }
}

/// The fewest characters that end a duration: "P1D" from the start.
std::uint32_t duration_need(cursor s) noexcept {
    switch (s.pos) {
    case 0: return 3;
    case 1: case 4: return 2; // a number's digit and its unit
    case 2: case 5: return 1; // the unit
    default: return 0;
    }
}

// uuid: 36 characters, '-' at 8, 13, 18 and 23, hexadecimal digits elsewhere.
constexpr std::uint32_t uuid_end = 36;

/// `version`: 0 for any uuid, else the digit the version must be (with
/// RFC 4122's variant, which a uuid's version is only defined for).
bool uuid_step(cursor& s, std::uint8_t c, char version) noexcept {
    if (s.pos >= uuid_end) return false;
    const bool dash = s.pos == 8 || s.pos == 13 || s.pos == 18 || s.pos == 23;
    if (dash ? c != '-' : !is_hex(c)) return false;
    if (version != 0 && s.pos == 14 && c != static_cast<std::uint8_t>(version)) return false;
    if (version != 0 && s.pos == 19 && std::string_view("89abAB").find(static_cast<char>(c)) == std::string_view::npos) {
        return false;
    }
    ++s.pos;
    return true;
}

/// The version digit of a versioned uuid format, 0 for any other.
constexpr char uuid_version(string_format f) noexcept {
    switch (f) {
    case string_format::uuid1: return '1';
    case string_format::uuid3: return '3';
    case string_format::uuid4: return '4';
    case string_format::uuid5: return '5';
    default: return 0;
    }
}

// ipv4: data: the part (bits 0-1), its digits (2-3), its value (4-11).
bool ipv4_step(cursor& s, std::uint8_t c) noexcept {
    const std::uint32_t part = s.data & 0x3u, digits = s.data >> 2 & 0x3u, value = s.data >> 4 & 0xffu;
    if (c == '.') {
        if (digits == 0 || part == 3) return false;
        s.data = part + 1;
        return true;
    }
    if (!is_digit(c)) return false;
    if (digits > 0 && value == 0) return false; // no leading zero
    const std::uint32_t next = value * 10 + (static_cast<std::uint32_t>(c) - '0');
    if (next > 255) return false;
    s.data = part | (digits + 1) << 2 | next << 4;
    return true;
}

// ipv6: RFC 4291 text, eight groups of 1-4 hexadecimal digits joined by
// colons, or fewer around one `::` that stands for the missing ones (one
// group at least, so seven written at most). No embedded IPv4 tail. Pos: at
// the start (0), after a leading ':' (1), in a group (2), after a ':' that
// follows one (3), after `::` (4). Data: groups written (bits 0-3), digits
// of the current one (4-6), whether `::` was written (7).
enum : std::uint32_t { v6_start, v6_lead, v6_group, v6_colon, v6_double };

bool ipv6_step(cursor& s, std::uint8_t c) noexcept {
    std::uint32_t groups = s.data & 0xfu, digits = s.data >> 4 & 0x7u, doubled = s.data >> 7 & 1u;
    // Groups in all: eight, or seven written beside `::`.
    const std::uint32_t most = doubled != 0 ? 7 : 8;
    if (is_hex(c)) {
        if (s.pos == v6_lead) return false;
        if (s.pos == v6_group) {
            if (digits == 4) return false;
            ++digits;
        } else {
            if (groups + 1 > (s.pos == v6_double ? 7 : most)) return false;
            ++groups;
            digits = 1;
        }
        s.pos = v6_group;
    } else if (c == ':') {
        switch (s.pos) {
        case v6_start: s.pos = v6_lead; break;
        case v6_lead: s.pos = v6_double; doubled = 1; break;
        // A single colon needs a group after it (or, with no `::` yet, a
        // second colon, which ends the address with seven groups at most).
        case v6_group:
            if (groups + 1 > most) return false;
            s.pos = v6_colon;
            break;
        case v6_colon:
            if (doubled != 0) return false;
            s.pos = v6_double;
            doubled = 1;
            break;
        default: return false;
        }
    } else {
        return false;
    }
    s.data = groups | digits << 4 | doubled << 7;
    return true;
}

/// The fewest characters that end an address: "::" from the start, ':'
/// after a leading one, "::" after groups with none yet (a single ':'
/// where one was just written), nothing once `::` is in.
std::uint32_t ipv6_need(cursor s) noexcept {
    const std::uint32_t groups = s.data & 0xfu, doubled = s.data >> 7 & 1u;
    switch (s.pos) {
    case v6_start: return 2;
    case v6_lead: case v6_colon: return 1;
    case v6_group: return doubled != 0 || groups == 8 ? 0 : 2;
    default: return 0;
    }
}

bool ipv6_complete(cursor s) noexcept {
    const std::uint32_t groups = s.data & 0xfu, doubled = s.data >> 7 & 1u;
    return s.pos == v6_double || (s.pos == v6_group && (doubled != 0 || groups == 8));
}

bool ipv4_complete(cursor s) noexcept { return (s.data & 0x3u) == 3 && (s.data >> 2 & 0x3u) != 0; }

std::uint32_t ipv4_need(cursor s) noexcept {
    // Each part to come: a '.' and a digit; the current one a digit if it has none.
    const std::uint32_t part = s.data & 0x3u, digits = s.data >> 2 & 0x3u;
    return (digits == 0 ? 1 : 0) + (3 - part) * 2;
}

// ipvanyaddress (pydantic's IPvAnyAddress): an ipv4 or an ipv6 address, the
// two automata run side by side while each still can. Pos: the ipv6 one's.
// Data: the ipv4 one's (bits 0-11), the ipv6 one's (12-19), whether the
// ipv4 one (20) or the ipv6 one (21) has refused a byte.
struct either_ip {
    cursor v4;
    cursor v6;
    bool v4_out;
    bool v6_out;

    static either_ip of(cursor s) noexcept {
        return {{0, s.data & 0xfffu}, {s.pos, s.data >> 12 & 0xffu}, (s.data >> 20 & 1u) != 0,
                (s.data >> 21 & 1u) != 0};
    }
    [[nodiscard]] cursor packed() const noexcept {
        return {v6.pos, v4.data | v6.data << 12 | static_cast<std::uint32_t>(v4_out) << 20 |
                            static_cast<std::uint32_t>(v6_out) << 21};
    }
};

bool ipvany_step(cursor& s, std::uint8_t c) noexcept {
    either_ip e = either_ip::of(s);
    e.v4_out = e.v4_out || !ipv4_step(e.v4, c);
    e.v6_out = e.v6_out || !ipv6_step(e.v6, c);
    if (e.v4_out && e.v6_out) return false;
    s = e.packed();
    return true;
}

bool ipvany_complete(cursor s) noexcept {
    const either_ip e = either_ip::of(s);
    return (!e.v4_out && ipv4_complete(e.v4)) || (!e.v6_out && ipv6_complete(e.v6));
}

std::uint32_t ipvany_need(cursor s) noexcept {
    const either_ip e = either_ip::of(s);
    if (e.v4_out) return ipv6_need(e.v6);
    if (e.v6_out) return ipv4_need(e.v4);
    return std::min(ipv4_need(e.v4), ipv6_need(e.v6));
}

} // namespace

} // namespace weft::serve::detail
