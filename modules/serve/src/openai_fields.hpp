// Internal: reading and checking the fields of an OpenAI request body, each
// failure an api_error 400 that names the field (`param`) and says why, in
// OpenAI's wording. Shared by openai_request.cpp and openai_tools.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace weft::serve::detail {

/// "a string", "an integer", ...: the JSON type of `v` for messages.
std::string_view a_type(const nlohmann::json& v);

[[noreturn]] void wrong_type(const std::string& param, std::string_view expected, const nlohmann::json& v);
[[noreturn]] void invalid_value(const std::string& param, std::string_view why);

/// An integer field in [min, max]; integral decimals (16.0) are accepted.
long long read_integer(const nlohmann::json& v, const std::string& param, long long min, long long max);
double read_number(const nlohmann::json& v, const std::string& param, double min, double max,
                   bool min_exclusive = false);
bool read_bool(const nlohmann::json& v, const std::string& param);
const std::string& read_string(const nlohmann::json& v, const std::string& param);

/// The field `name` of `obj`, or nullptr when absent or null.
const nlohmann::json* field(const nlohmann::json& obj, std::string_view name);
/// The field `name` of `obj`, never null: absent or null is a 400 at
/// `param` (the field's path), "'name' is a required property.".
const nlohmann::json* required_field(const nlohmann::json& obj, std::string_view name, const std::string& param);

} // namespace weft::serve::detail
