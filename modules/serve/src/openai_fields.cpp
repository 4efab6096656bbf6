#include "openai_fields.hpp"

#include <weft/serve/openai_error.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace weft::serve::detail {

using json = nlohmann::json;

namespace {

template <class Value>
[[noreturn]] void below(const std::string& param, std::string_view what, std::string_view bound, Value got) {
    throw api_error::invalid(param, fmt::format("Invalid '{}': {} below minimum value. Expected a value {}, but got {} instead.",
                                                param, what, bound, got));
}

template <class Value>
[[noreturn]] void above(const std::string& param, std::string_view what, std::string_view bound, Value got) {
    throw api_error::invalid(param, fmt::format("Invalid '{}': {} above maximum value. Expected a value {}, but got {} instead.",
                                                param, what, bound, got));
}

} // namespace

std::string_view a_type(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a decimal number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a value of another type";
    }
}

[[noreturn]] void wrong_type(const std::string& param, std::string_view expected, const json& v) {
    throw api_error::invalid(
        param, fmt::format("Invalid type for '{}': expected {}, but got {} instead.", param, expected, a_type(v)));
}

[[noreturn]] void invalid_value(const std::string& param, std::string_view why) {
    throw api_error::invalid(param, fmt::format("Invalid value for '{}': {}", param, why));
}

/// An integer field in [min, max]; integral decimals (16.0) are accepted.
long long read_integer(const json& v, const std::string& param, long long min, long long max) {
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (min > 0 && u < static_cast<std::uint64_t>(min)) below(param, "integer", fmt::format(">= {}", min), u);
        if (u > static_cast<std::uint64_t>(max)) above(param, "integer", fmt::format("<= {}", max), u);
        return static_cast<long long>(u);
    }
    if (v.is_number_integer()) {
        const auto i = v.get<std::int64_t>();
        if (i < min) below(param, "integer", fmt::format(">= {}", min), i);
        if (i > max) above(param, "integer", fmt::format("<= {}", max), i);
        return i;
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d != std::floor(d)) wrong_type(param, "an integer", v);
        if (d < static_cast<double>(min)) below(param, "integer", fmt::format(">= {}", min), d);
        // Compare in double: `max` may round up, so also refuse its neighbourhood.
        if (d > static_cast<double>(max) || d >= 9.2e18) above(param, "integer", fmt::format("<= {}", max), d);
        return static_cast<long long>(d);
    }
    wrong_type(param, "an integer", v);
}

double read_number(const json& v, const std::string& param, double min, double max, bool min_exclusive) {
    if (!v.is_number()) wrong_type(param, "a number", v);
    const double d = v.get<double>();
    if (min_exclusive ? !(d > min) : !(d >= min)) {
        below(param, "decimal", fmt::format("{} {}", min_exclusive ? ">" : ">=", min), d);
    }
    if (!(d <= max)) above(param, "decimal", fmt::format("<= {}", max), d);
    return d;
}

bool read_bool(const json& v, const std::string& param) {
    if (!v.is_boolean()) wrong_type(param, "a boolean", v);
    return v.get<bool>();
}

const std::string& read_string(const json& v, const std::string& param) {
    if (!v.is_string()) wrong_type(param, "a string", v);
    return v.get_ref<const std::string&>();
}

/// The field `name` of `obj`, or nullptr when absent or null.
const json* field(const json& obj, std::string_view name) {
    const auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

const json* required_field(const json& obj, std::string_view name, const std::string& param) {
    const json* v = field(obj, name);
    if (v == nullptr) throw api_error::invalid(param, fmt::format("'{}' is a required property.", name));
    return v;
}

} // namespace weft::serve::detail
