// json_schema_compiler's number and string keywords: minimum / maximum /
// exclusiveMinimum / exclusiveMaximum / multipleOf as a range of scaled
// integers (and whether an enum value lies in it), `format`, and `pattern`
// (compiled once, for strings and for patternProperties' keys).
#include "json_schema_compiler.hpp"

#include "json_format.hpp"
#include "json_pattern.hpp"
#include "json_schema_merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace weft::serve {

namespace {

using detail::fail;
using detail::at_path;

} // namespace

/// Units per 1 when bounds count in units of 10^-fraction_digits.
std::int64_t json_schema_compiler::unit_of(int fraction_digits) {
    std::int64_t u = 1;
    while (fraction_digits-- > 0) u *= 10;
    return u;
}

/// `scaled` as a whole number of units where it is one (0.1 * 10 is,
/// though no double is 0.1).
std::optional<long double> json_schema_compiler::whole_units(long double scaled) {
    const long double whole = std::nearbyintl(scaled);
    if (std::fabs(scaled - whole) > 1e-9L * std::max(1.0L, std::fabs(whole))) return std::nullopt;
    return whole;
}

/// Whether the number `v` (an enum / const value) lies within n's bounds
/// and is a multiple of its step.
bool json_schema_compiler::within_bounds(const json& v, const json_schema::node& n) {
    // long double holds every int64 and uint64 exactly.
    const long double x = v.get<long double>() * static_cast<long double>(unit_of(n.bound_fraction_digits));
    if (x < static_cast<long double>(n.min_scaled) || x > static_cast<long double>(n.max_scaled)) return false;
    if (n.step_scaled == 1) return true;
    const auto whole = whole_units(x);
    return whole && std::fmod(*whole, static_cast<long double>(n.step_scaled)) == 0;
}

/// minimum / maximum / exclusiveMinimum / exclusiveMaximum: the closed
/// range they leave in units of 10^-F (F = 0 for integers, 6 for other
/// numbers), within the 18 digits the matcher reads.
void json_schema_compiler::number_bounds(const json& s, const std::string& path, json_schema::node& n) {
    constexpr std::int64_t widest = 999'999'999'999'999'999; // 18 digits
    const int f = n.integer_only ? 0 : 6;
    const std::int64_t unit = unit_of(f);
    std::int64_t lo = -widest;
    std::int64_t hi = widest;
    bool any = false;
    for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
        const auto it = s.find(key);
        if (it == s.end()) continue;
        any = true;
        if (!it->is_number()) fail(at_path(path, key), "must be a number");
        const bool lower = std::string_view(key).ends_with("inimum");
        const bool exclusive = key[0] == 'e';
        // The bound in units, rounded to the allowed side, exact when it
        // is a whole number of units (0.1 is, though no double is 0.1).
        const long double scaled = it->get<long double>() * static_cast<long double>(unit);
        const auto whole = whole_units(scaled);
        const bool exact = whole.has_value();
        long double b = exact ? *whole : lower ? std::ceil(scaled) : std::floor(scaled);
        if (exact && exclusive) b += lower ? 1 : -1;
        // Beyond 18 digits: just outside the range the matcher reads.
        b = std::clamp<long double>(b, -static_cast<long double>(widest) - 1, static_cast<long double>(widest) + 1);
        const auto bound = static_cast<std::int64_t>(b);
        if (lower) lo = std::max(lo, bound);
        else hi = std::min(hi, bound);
    }
    // multipleOf: a whole number of units, the step between values.
    std::int64_t step = 1;
    if (const auto it = s.find("multipleOf"); it != s.end()) {
        any = true;
        if (!it->is_number() || it->get<long double>() <= 0) fail(at_path(path, "multipleOf"), "must be a positive number");
        const auto whole = whole_units(it->get<long double>() * static_cast<long double>(unit));
        if (!whole || *whole > static_cast<long double>(widest)) {
            fail(at_path(path, "multipleOf"), f == 0 ? "must be a whole number of at most 18 digits"
                                                     : "must be a multiple of 0.000001 below 10^12");
        }
        step = static_cast<std::int64_t>(*whole);
        // The range shrinks to its outermost multiples.
        lo = lo >= 0 ? (lo + step - 1) / step * step : -(-lo / step * step);
        hi = hi >= 0 ? hi / step * step : -((-hi + step - 1) / step * step);
    }
    if (!any) return;
    if (lo > hi) {
        fail(path, f == 0 ? "no integer of at most 18 digits lies within its bounds"
                          : "no number of at most 18 digits, 6 after the point, lies within its bounds");
    }
    n.bounded = true;
    n.step_scaled = step;
    n.bound_fraction_digits = static_cast<std::uint8_t>(f);
    n.min_scaled = lo;
    n.max_scaled = hi;
}

/// format: the grammar of the node's strings. Where the node takes no
/// string it constrains nothing (JSON Schema applies it to strings only).
void json_schema_compiler::string_format(const json& s, const std::string& path, bool strings, json_schema::node& n) {
    const auto it = s.find("format");
    if (it == s.end()) return;
    if (!it->is_string()) fail(at_path(path, "format"), "must be a string");
    if (!strings) return;
    const std::string name = it->get<std::string>();
    // OpenAPI's hints that say nothing of the value: any string is one
    // (pydantic writes them for SecretStr and bytes).
    if (name == "password" || name == "binary") return;
    const auto format = detail::format_named(name);
    if (!format) {
        fail(at_path(path, "format"),
             fmt::format("'{}' is not supported ({} are)", name, detail::format_names()));
    }
    // maxLength is kept while generating; minLength only where every
    // value of the format is that long.
    const std::uint32_t shortest = detail::format_need(*format, 0);
    if (count(s, "minLength", path, 0) > shortest) {
        fail(at_path(path, "minLength"),
             fmt::format("above {} (the shortest '{}' value) is not supported beside 'format'", shortest, name));
    }
    if (count(s, "maxLength", path, json_schema::unbounded) < shortest) {
        fail(at_path(path, "maxLength"), fmt::format("no '{}' value is this short (the shortest has {} characters)",
                                                     name, shortest));
    }
    n.format = *format;
}

std::shared_ptr<const json_pattern> json_schema_compiler::compile_pattern(const std::string& pattern,
                                                                          const std::string& path) {
    std::shared_ptr<const json_pattern> out;
    try {
        out = std::make_shared<const json_pattern>(pattern);
    } catch (const std::invalid_argument& e) {
        fail(path, e.what());
    }
    if (out->min_length() > json_schema::max_pattern_bytes) {
        fail(path, fmt::format("its matches take more than the {} bytes a patterned string may have",
                               json_schema::max_pattern_bytes));
    }
    return out;
}

/// pattern: compiled once, shared by the matchers. Like format, it
/// constrains strings only.
void json_schema_compiler::string_pattern(const json& s, const std::string& path, bool strings, json_schema::node& n) {
    const auto it = s.find("pattern");
    if (it == s.end()) return;
    if (!it->is_string()) fail(at_path(path, "pattern"), "must be a string");
    if (!strings) return;
    if (n.format != json_schema::string_format::none) fail(path, "'pattern' beside 'format' is not supported");
    n.pattern = compile_pattern(it->get<std::string>(), at_path(path, "pattern"));
}

} // namespace weft::serve
