// json_schema_compiler's object keywords beyond properties / required /
// additionalProperties (which compile reads): `propertyNames` (an enum of
// names rewritten as properties, a pattern as patternProperties, lengths
// kept per key), `patternProperties`, and minProperties / maxProperties.
#include "json_schema_compiler.hpp"

#include "json_schema_merge.hpp"

#include <fmt/format.h>

#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::serve {

namespace {

using json = nlohmann::json;
using detail::fail;
using detail::at_path;

} // namespace

/// `s` with `propertyNames` given as an enum / const of names (what
/// pydantic writes for `dict[Literal[...], V]` and `dict[SomeEnum, V]`)
/// rewritten as the properties it allows: each name allowed is a
/// property, with its schema in `properties` or else
/// `additionalProperties` (left out where that is false), and no other
/// key is. A pattern of names (and lengths) is read as
/// patternProperties (with_pattern_names); lengths alone are read by
/// key_lengths; names of other forms (a format) are refused.
json json_schema_compiler::with_named_properties(const json& s, const std::string& path) const {
    const std::string names_path = at_path(path, "propertyNames");
    const json* names = &s.at("propertyNames");
    if (names->is_object() && names->size() == 1 && names->contains("$ref") && names->at("$ref").is_string()) {
        names = &detail::find_definition(m_doc, names->at("$ref").get<std::string>(), at_path(names_path, "$ref"));
    }
    json out = s;
    out.erase("propertyNames");
    if (names->is_boolean() && names->get<bool>()) return out;
    if (names->is_object() && names->contains("pattern")) return with_pattern_names(s, *names, out, path);
    std::vector<std::string> allowed;
    if (names->is_object()) {
        for (const auto& [key, value] : names->items()) {
            if (key == "type" && value == "string") continue;
            if (key == "enum" && value.is_array()) {
                for (const json& v : value) {
                    if (v.is_string()) allowed.push_back(v.get<std::string>());
                }
            } else if (key == "const") {
                if (value.is_string()) allowed.push_back(value.get<std::string>());
            } else if (!detail::is_schema_annotation(key)) {
                fail(at_path(names_path, key),
                     "only a pattern and lengths, or an enum or const of the names, are supported in propertyNames");
            }
        }
        if (!names->contains("enum") && !names->contains("const")) {
            fail(names_path, "only an enum or const of the names is supported");
        }
    } else if (!names->is_boolean()) {
        fail(names_path, "a schema must be an object");
    }
    const json declared = s.value("properties", json::object());
    if (!declared.is_object()) fail(at_path(path, "properties"), "must be an object");
    const json additional = s.value("additionalProperties", json(true));
    json properties = json::object();
    for (const std::string& name : allowed) {
        if (declared.contains(name)) {
            properties[name] = declared.at(name);
        } else if (additional != json(false)) {
            properties[name] = additional;
        }
    }
    for (const json& name : s.value("required", json::array())) {
        if (name.is_string() && !properties.contains(name.get<std::string>())) {
            fail(at_path(path, "required"), fmt::format("{} is not a name propertyNames allows", name.dump()));
        }
    }
    out["properties"] = std::move(properties);
    out["additionalProperties"] = false;
    return out;
}

/// `out` (`s` less its propertyNames) with `names`, a pattern, read as
/// patternProperties: keys that match it, each value against
/// `additionalProperties`.
json json_schema_compiler::with_pattern_names(const json& s, const json& names, json out, const std::string& path) {
    const std::string names_path = at_path(path, "propertyNames");
    json lengths = json::object();
    for (const auto& [key, value] : names.items()) {
        if (is_length(key)) lengths[key] = value;
        if (is_length(key) || (key == "type" && value == "string") || key == "pattern" ||
            detail::is_schema_annotation(key)) {
            continue;
        }
        fail(at_path(names_path, key),
             "only a pattern and lengths, or an enum or const of the names, are supported in propertyNames");
    }
    if (!lengths.empty()) out["propertyNames"] = std::move(lengths);
    if (!names.at("pattern").is_string()) fail(at_path(names_path, "pattern"), "must be a string");
    if (!s.value("properties", json::object()).empty() || s.contains("patternProperties")) {
        fail(names_path, "a pattern beside 'properties' or 'patternProperties' is not supported");
    }
    const json additional = s.value("additionalProperties", json(true));
    if (additional == json(false)) return out; // no key at all
    out.erase("additionalProperties");
    out["patternProperties"] = json::object({{names.at("pattern").get<std::string>(),
                                              additional == json(true) ? json::object() : additional}});
    return out;
}

/// patternProperties: its one pattern's keys, each value against its
/// schema. Keys that match no pattern would be additionalProperties':
/// none is generated, so that needs no node.
void json_schema_compiler::key_pattern(const json& p, const std::string& path, json_schema::node& n) {
    if (!p.is_object()) fail(path, "must be an object");
    if (p.empty()) return;
    if (p.size() > 1) fail(path, "more than one pattern is not supported");
    if (!n.properties.empty()) fail(path, "beside 'properties' is not supported");
    const std::string& pattern = p.begin().key();
    n.key_pattern = compile_pattern(pattern, at_path(path, pattern));
    n.additional = compile(p.begin().value(), at_path(path, pattern));
}

/// propertyNames left with lengths only (see lengths_only): each key's.
void json_schema_compiler::key_lengths(const json& names, const std::string& path, json_schema::node& n) {
    if (!n.properties.empty()) fail(path, "key lengths beside 'properties' are not supported");
    n.key_min_length = count(names, "minLength", path, 0);
    n.key_max_length = count(names, "maxLength", path, json_schema::unbounded);
    if (n.key_min_length > n.key_max_length) fail(path, "minLength is above maxLength");
}

/// A propertyNames schema that bounds the keys' lengths and nothing
/// else, read by key_lengths where the others are rewritten.
bool json_schema_compiler::lengths_only(const json& names) {
    if (!names.is_object()) return false;
    for (const auto& [key, value] : names.items()) {
        if (!is_length(key) && !(key == "type" && value == "string") && !detail::is_schema_annotation(key)) {
            return false;
        }
    }
    return true;
}

bool json_schema_compiler::is_length(std::string_view key) { return key == "minLength" || key == "maxLength"; }

/// minProperties / maxProperties, checked against what the object can
/// hold: an object generated with properties has only those keys.
void json_schema_compiler::object_size(const json& s, const std::string& path, json_schema::node& n) {
    n.min_properties = count(s, "minProperties", path, 0);
    n.max_properties = count(s, "maxProperties", path, json_schema::unbounded);
    if (n.by_kind[json_schema::object_kind] < 0) return; // it constrains objects only
    if (n.min_properties > n.max_properties) fail(path, "minProperties is above maxProperties");
    const auto required = static_cast<std::uint32_t>(std::popcount(n.required));
    if (n.max_properties < required) {
        fail(at_path(path, "maxProperties"), fmt::format("below the {} required properties", required));
    }
    if (!n.properties.empty() && n.min_properties > n.properties.size()) {
        fail(at_path(path, "minProperties"),
             fmt::format("above the {} properties, the only keys generated beside 'properties'", n.properties.size()));
    }
    if (n.properties.empty() && n.additional < 0 && n.min_properties > 0) {
        fail(at_path(path, "minProperties"), "above 0, but additionalProperties false allows no key");
    }
}

} // namespace weft::serve
