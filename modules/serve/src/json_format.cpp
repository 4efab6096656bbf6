// The string formats of structured outputs (json_format.hpp): format_step,
// format_complete and format_need pick each format's automaton
// (json_format_values.hpp, json_format_hosts.hpp), which they inline; and
// the formats' names.
#include "json_format.hpp"

#include "json_format_hosts.hpp"
#include "json_format_values.hpp"

#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace weft::serve::detail {

bool format_step(string_format f, std::uint32_t& state, std::uint8_t c) noexcept {
    cursor s = cursor::of(state);
    bool ok = false;
    switch (f) {
    case string_format::none: return true;
    case string_format::date: ok = date_step(s, c); break;
    case string_format::time: ok = time_step(s, c); break;
    case string_format::date_time: ok = date_time_step(s, c); break;
    case string_format::duration: ok = duration_step(s, c); break;
    case string_format::uuid:
    case string_format::uuid1:
    case string_format::uuid3:
    case string_format::uuid4:
    case string_format::uuid5: ok = uuid_step(s, c, uuid_version(f)); break;
    case string_format::ipv4: ok = ipv4_step(s, c); break;
    case string_format::ipvanyaddress: ok = ipvany_step(s, c); break;
    case string_format::ipv6: ok = ipv6_step(s, c); break;
    case string_format::hostname: ok = host_step(hostname_rules, s.data, c); break;
    case string_format::email: ok = email_step(s, c); break;
    case string_format::uri: ok = uri_step(s, c); break;
    }
    if (ok) state = s.packed();
    return ok;
}

bool format_complete(string_format f, std::uint32_t state) noexcept {
    const cursor s = cursor::of(state);
    switch (f) {
    case string_format::none: return true;
    case string_format::date: return s.pos == date_end;
    case string_format::time: return s.pos == time_end;
    case string_format::date_time: return s.pos == time_start + time_end;
    case string_format::duration: return s.pos == 3 || s.pos == 6 || s.pos == 7;
    case string_format::uuid:
    case string_format::uuid1:
    case string_format::uuid3:
    case string_format::uuid4:
    case string_format::uuid5: return s.pos == uuid_end;
    case string_format::ipv4: return ipv4_complete(s);
    case string_format::ipvanyaddress: return ipvany_complete(s);
    case string_format::ipv6: return ipv6_complete(s);
    case string_format::hostname: return host_complete(hostname_rules, s.data);
    case string_format::email: return s.pos > 0 && host_complete(domain_rules(s.pos - 1), s.data);
    case string_format::uri: return uri_complete(s);
    }
    return false;
}

std::uint32_t format_need(string_format f, std::uint32_t state) noexcept {
    const cursor s = cursor::of(state);
    switch (f) {
    case string_format::none: return 0;
    case string_format::date: return date_end - s.pos;
    case string_format::time: return time_need(s);
    case string_format::date_time:
        // The rest of the date, 'T', then the shortest time, HH:MM:SSZ.
        if (s.pos <= date_end) return date_end - s.pos + 1 + time_need({0, 0});
        return time_need({s.pos - time_start, s.data});
    case string_format::duration: return duration_need(s);
    case string_format::uuid:
    case string_format::uuid1:
    case string_format::uuid3:
    case string_format::uuid4:
    case string_format::uuid5: return uuid_end - s.pos;
    case string_format::ipv4: return ipv4_need(s);
    case string_format::ipvanyaddress: return ipvany_need(s);
    case string_format::ipv6: return ipv6_need(s);
    case string_format::hostname: return host_need(hostname_rules, host_state::of(s.data));
    case string_format::email: {
        if (s.pos > 0) return host_need(domain_rules(s.pos - 1), host_state::of(s.data));
        const std::uint32_t length = s.data & 0x7fu, dot = s.data >> 7 & 1u;
        // A character where the local part may not end yet, '@', a domain.
        return (length == 0 || dot != 0 ? 1 : 0) + 1 + fresh_need(domain_rules(0), 0);
    }
    case string_format::uri: return uri_need(s);
    }
    return 0;
}

bool format_matches(string_format f, std::string_view text) noexcept {
    std::uint32_t state = 0;
    for (const char c : text) {
        if (!format_step(f, state, static_cast<std::uint8_t>(c))) return false;
    }
    return format_complete(f, state);
}

namespace {

constexpr std::pair<std::string_view, string_format> format_table[]{
    {"date", string_format::date},         {"time", string_format::time},
    {"date-time", string_format::date_time}, {"duration", string_format::duration},
    {"uuid", string_format::uuid},         {"ipv4", string_format::ipv4},
    {"ipv6", string_format::ipv6},         {"hostname", string_format::hostname},
    {"email", string_format::email},       {"uri", string_format::uri},
    {"uuid1", string_format::uuid1},       {"uuid3", string_format::uuid3},
    {"uuid4", string_format::uuid4},       {"uuid5", string_format::uuid5},
    {"ipvanyaddress", string_format::ipvanyaddress},
};

} // namespace

std::optional<string_format> format_named(std::string_view name) noexcept {
    for (const auto& [known, format] : format_table) {
        if (name == known) return format;
    }
    return std::nullopt;
}

std::string format_names() {
    std::string names;
    for (std::size_t i = 0; i < std::size(format_table); ++i) {
        if (i > 0) names += i + 1 == std::size(format_table) ? " and " : ", ";
        names += format_table[i].first;
    }
    return names;
}

} // namespace weft::serve::detail