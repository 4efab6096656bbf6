// The IP address formats' automata (json_format_automata.hpp): ipv4, ipv6
// and pydantic's ipvanyaddress, which runs the two side by side.
#include "json_format_automata.hpp"

#include "json_bytes.hpp"

#include <algorithm>
#include <cstdint>

namespace weft::serve::detail {

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

namespace {

// ipv6: RFC 4291 text, eight groups of 1-4 hexadecimal digits joined by
// colons, or fewer around one `::` that stands for the missing ones (one
// group at least, so seven written at most). No embedded IPv4 tail. Pos: at
// the start (0), after a leading ':' (1), in a group (2), after a ':' that
// follows one (3), after `::` (4). Data: groups written (bits 0-3), digits
// of the current one (4-6), whether `::` was written (7).
enum : std::uint32_t { v6_start, v6_lead, v6_group, v6_colon, v6_double };

} // namespace

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

namespace {

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

} // namespace

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

} // namespace weft::serve::detail
