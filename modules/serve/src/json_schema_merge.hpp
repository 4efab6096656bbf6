// Structured outputs: an intersection of schemas (`allOf`, or `$ref` beside
// other keywords, which JSON Schema 2019-09 and later read as the same thing)
// rewritten as one schema, which json_schema's compiler then reads as any
// other. Also the two error helpers the compiler's files (json_schema*.cpp)
// share with it. Private to the serve module.
//
// The rewrite is exact for the keywords json_schema supports:
// - `type`: the types the schemas have in common (integer within number);
// - `properties`: the union; a property two schemas declare takes both
//   (an `allOf` of its schemas); a property one schema declares is also held
//   to every other schema's `additionalProperties`, and left out where one of
//   them is `false` (a required property it leaves out is an error);
// - `required`: the union; `additionalProperties`: `false` if any is, else
//   every schema's (an `allOf`);
// - `enum`: the values common to all; `const`: the one value;
// - lower bounds (`minimum`, `minLength`, `minProperties`, ...): the highest;
//   upper bounds the lowest; `uniqueItems`: true if any is;
// - `items` (a schema): both (an `allOf`), `false` if either is.
// Any other keyword two schemas give different values (`pattern`, `format`,
// `anyOf`, tuples, ...) is an error that names it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace weft::serve::detail {

/// Throws std::invalid_argument with `why`, prefixed by `path` (a dotted
/// place in the schema, such as `properties.a.items`) unless it is empty.
[[noreturn]] void fail(const std::string& path, std::string_view why);

/// `path` extended by `key`: `key` alone at the top level.
std::string at_path(const std::string& path, std::string_view key);

/// Whether `key` is a keyword that says nothing about which values a schema
/// accepts (`title`, `description`, `$defs`, ...).
bool is_schema_annotation(std::string_view key);

/// The schema a `#/$defs/NAME` or `#/definitions/NAME` reference names in
/// `doc` (`~0` and `~1` unescaped). Throws std::invalid_argument, prefixed by
/// `path`, for a reference of another form or to nothing.
const nlohmann::json& find_definition(const nlohmann::json& doc, const std::string& ref, const std::string& path);

/// `schema` (an object with `allOf`, or `$ref` beside other keywords) as one
/// schema without either: its own keywords, its reference's and each `allOf`
/// member's, nested ones included, merged as the file's comment says.
/// Throws std::invalid_argument naming the path of what it cannot merge.
nlohmann::json merge_all_of(const nlohmann::json& doc, const nlohmann::json& schema, const std::string& path);

} // namespace weft::serve::detail
