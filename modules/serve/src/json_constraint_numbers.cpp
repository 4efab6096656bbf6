// json_matcher's numbers: RFC 8259's grammar a byte at a time, below
// 10^308 (max_number_scale), integers only where the schema says so, and a
// bounded number (minimum, maximum, multipleOf) refused at the first digit
// after which no number in range can follow.
#include <weft/serve/json_constraint.hpp>

#include "json_bytes.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace weft::serve {

namespace {

using detail::is_digit;

__extension__ using wide = __int128;

constexpr wide pow10(int n) noexcept {
    wide p = 1;
    while (n-- > 0) p *= 10;
    return p;
}

/// The largest multiple of `step` (positive) at most `v`.
constexpr wide floor_multiple(wide v, wide step) noexcept {
    const wide q = v / step;
    return (v % step != 0 && v < 0 ? q - 1 : q) * step;
}

} // namespace

bool json_matcher::number_byte(std::uint8_t c) noexcept {
    const bool digit = is_digit(c);
    const bool exp = c == 'e' || c == 'E';
    if (m_int_only && (exp || c == '.')) return false;
    // A bounded number has no exponent, and takes a byte only while some
    // number in range can still follow.
    if (m_bounded && exp) return false;
    if (m_bounded && digit && m_sub != zero && !bounded_digit(c)) return false;
    if (m_bounded && c == '.' && (m_sub == zero || m_sub == integer) && !bounded_point()) return false;
    // Below 10^(digits before the point + positive exponent) <= 10^308: a
    // digit that would pass that is refused, and the number can always end
    // where it is (or with a 0 after an 'e').
    const auto exponent_digit = [&] {
        if (m_exponent_negative) return true; // underflows to zero at worst
        const std::size_t e = std::size_t{m_exponent} * 10 + (c - '0');
        if (m_number_digits + e > max_number_scale) return false;
        m_exponent = static_cast<std::uint16_t>(e);
        return true;
    };
    switch (m_sub) {
    case minus:
        if (!digit) return false;
        m_sub = c == '0' ? zero : integer;
        m_number_digits = 1;
        return true;
    case zero:
        if (c == '.') return m_sub = dot, true;
        if (exp) return m_sub = exponent, true;
        break;
    case integer:
        if (digit) {
            if (m_number_digits >= max_number_scale) return false;
            ++m_number_digits;
            return true;
        }
        if (c == '.') return m_sub = dot, true;
        if (exp) return m_sub = exponent, true;
        break;
    case dot:
        if (!digit) return false;
        m_sub = fraction;
        return true;
    case fraction:
        if (digit) return true;
        if (exp) return m_sub = exponent, true;
        break;
    case exponent:
        if (c == '+' || c == '-') {
            m_exponent_negative = c == '-';
            return m_sub = exponent_sign, true;
        }
        [[fallthrough]];
    case exponent_sign:
        if (!digit || !exponent_digit()) return false;
        m_sub = exponent_digits;
        return true;
    case exponent_digits:
        if (digit) return exponent_digit();
        break;
    default: return false;
    }
    // The number is complete and `c` is whatever follows it.
    if (m_bounded && !bounded_in_range()) return false;
    if (!take_unique_value()) return false;
    value_done();
    return step(c);
}

// A bounded number's value is counted in units of 10^-F (F: the node's
// bound_fraction_digits, 0 for integers): its digits so far spell
// m_magnitude, m_int_digits of them before the point and m_fraction after
// it (-1: no point yet). With F digits at most after the point and 18 in
// all, every value fits an int64 in those units.
bool json_matcher::bounded_reachable(std::uint64_t magnitude, int int_digits, int fraction,
                                     bool grows) const noexcept {
    const json_schema::node& n = node_at(m_node);
    const int f = n.bound_fraction_digits;
    // Whether the values first..last (as magnitudes) hold one in range that
    // is a multiple of the step.
    const auto meets = [&](wide first, wide last) {
        const wide from = std::max<wide>(m_negative ? -last : first, n.min_scaled);
        const wide to = std::min<wide>(m_negative ? -first : last, n.max_scaled);
        return from <= to && floor_multiple(to, n.step_scaled) >= from;
    };
    if (fraction >= 0) { // the digits still to come refine the value below its last digit
        if (fraction > f) return false;
        const wide unit = pow10(f - fraction);
        return meets(wide{magnitude} * unit, (wide{magnitude} + 1) * unit - 1);
    }
    // Before the point: with k more integer digits, magnitude * 10^k up
    // to (magnitude + 1) * 10^k - 1, and any fraction.
    wide first = wide{magnitude} * pow10(f);
    wide last = (wide{magnitude} + 1) * pow10(f) - 1;
    for (int digits = int_digits; digits <= 18 - f; ++digits) {
        if (meets(first, last)) return true;
        if (!grows) break;
        first *= 10;
        last = last * 10 + 9;
    }
    return false;
}

bool json_matcher::bounded_digit(std::uint8_t c) noexcept {
    const std::uint64_t next = m_magnitude * 10 + (c - '0');
    const bool integer_part = m_fraction < 0;
    const int int_digits = m_int_digits + (integer_part ? 1 : 0);
    const int fraction = integer_part ? -1 : m_fraction + 1;
    // A leading 0 takes no more integer digits.
    if (!bounded_reachable(next, int_digits, fraction, !(integer_part && c == '0' && m_magnitude == 0))) return false;
    m_magnitude = next;
    m_int_digits = static_cast<std::uint8_t>(int_digits);
    m_fraction = static_cast<std::int8_t>(fraction);
    return true;
}

bool json_matcher::bounded_point() noexcept {
    if (m_fraction >= 0 || !bounded_reachable(m_magnitude, m_int_digits, 0, false)) return false;
    m_fraction = 0;
    return true;
}

bool json_matcher::bounded_in_range() const noexcept {
    const json_schema::node& n = node_at(m_node);
    const int f = n.bound_fraction_digits;
    const wide v = wide{m_magnitude} * pow10(f - std::max<int>(m_fraction, 0));
    const wide signed_v = m_negative ? -v : v;
    return signed_v >= n.min_scaled && signed_v <= n.max_scaled && signed_v % n.step_scaled == 0;
}

} // namespace weft::serve
