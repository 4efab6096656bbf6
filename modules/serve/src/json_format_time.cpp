// The date and time formats' automata (json_format_automata.hpp): RFC 3339's
// full-date, full-time and date-time, and its appendix A's durations.
#include "json_format_automata.hpp"

#include "json_bytes.hpp"

#include <cstdint>

namespace weft::serve::detail {

namespace {

std::uint32_t days_in_month(std::uint32_t month, std::uint32_t year) noexcept {
    switch (month) {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28;
    case 4: case 6: case 9: case 11: return 30;
    default: return 31;
    }
}

} // namespace

// date: positions 0-9 of YYYY-MM-DD, complete at 10. Data: the year (bits
// 0-13), the month (14-17; its tens digit alone at position 6), the day's
// tens digit (18-19).
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

namespace {

// time: HH:MM:SS at positions 0-7, then 8: '.', 'Z' or an offset's sign;
// 9: fraction digits; 10-14: the offset's HH:MM; complete at 15. Data: the
// tens digit of an hour (bits 0-1), fraction digits so far (2-5).
constexpr std::uint32_t max_fraction_digits = 9;

} // namespace

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

namespace {

// duration: 0: 'P'; 1: after it; 2: a number of the date part; 3: after a
// date unit; 4: after 'T'; 5: a number of the time part; 6: after a time
// unit; 7: after weeks. Data: digits of the number (bits 0-3), the rank of
// the part's last unit (4-5: Y, M, D or H, M, S as 1-3, 0 for none).
constexpr std::uint32_t max_number_digits = 9;

std::uint32_t unit_rank(std::uint8_t c, bool time) noexcept {
    if (time) return c == 'H' ? 1 : c == 'M' ? 2 : c == 'S' ? 3 : 0;
    return c == 'Y' ? 1 : c == 'M' ? 2 : c == 'D' ? 3 : 0;
}

} // namespace

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

} // namespace weft::serve::detail
