// json_schema::parse and the core of its compiler (json_schema_compiler.hpp):
// a schema's keywords read into one node (compile, which hands objects',
// arrays', numbers', strings' and unions' keywords to the other
// json_schema_*.cpp files), `$ref`s resolved once each (recursion included),
// and the counts (minItems, maxLength, ...) every part reads.
#include <weft/serve/json_schema.hpp>

#include "json_format.hpp"
#include "json_pattern.hpp"
#include "json_schema_compiler.hpp"
#include "json_schema_merge.hpp"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::serve {

namespace {

using json = nlohmann::json;
using detail::fail;
using detail::at_path;

const std::set<std::string, std::less<>> keywords{"type",       "enum",     "const",    "properties",
                                                   "required",   "additionalProperties", "items", "minItems",
                                                   "maxItems",   "minLength", "maxLength", "anyOf",
                                                   "oneOf",      "$ref",     "minimum",  "maximum",
                                                   "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                                                   "format", "pattern", "prefixItems", "additionalItems", "uniqueItems",
                                                   "allOf", "minProperties", "maxProperties", "propertyNames",
                                                   "patternProperties"};

json_schema::value_kind kind_of_text(std::string_view text) {
    switch (text.front()) {
    case '{': return json_schema::object_kind;
    case '[': return json_schema::array_kind;
    case '"': return json_schema::string_kind;
    case 't': case 'f': return json_schema::boolean_kind;
    case 'n': return json_schema::null_kind;
    default: return json_schema::number_kind;
    }
}

} // namespace

json_schema_compiler::json_schema_compiler(const json& doc) : m_doc(doc) {
    json_schema::node any_node;
    any_node.by_kind.fill(json_schema::any);
    m_out.m_nodes.push_back(std::move(any_node));
    m_done.push_back(true);
}

json_schema json_schema_compiler::run() {
    const std::uint16_t root = compile(m_doc, "", "#");
    const std::int32_t object = m_out.m_nodes[root].by_kind[json_schema::object_kind];
    if (object < 0) fail("", "the top-level value must be an object (\"type\": \"object\")");
    m_out.m_root = static_cast<std::uint16_t>(object);
    return std::move(m_out);
}

std::uint16_t json_schema_compiler::allocate(const std::string& memo_key) {
    if (m_out.m_nodes.size() >= 65535) fail("", "the schema has too many parts");
    const auto idx = static_cast<std::uint16_t>(m_out.m_nodes.size());
    m_out.m_nodes.emplace_back();
    m_done.push_back(false);
    if (!memo_key.empty()) m_refs[memo_key] = idx;
    return idx;
}

std::uint16_t json_schema_compiler::compile(const json& s, const std::string& path, const std::string& memo_key) {
    if (s.is_boolean()) {
        if (!s.get<bool>()) fail(path, "the schema 'false' accepts no value");
        return json_schema::any;
    }
    if (!s.is_object()) fail(path, "a schema must be an object");
    for (const auto& [key, value] : s.items()) {
        if (!detail::is_schema_annotation(key) && !keywords.contains(key)) {
            fail(at_path(path, key), "this keyword is not supported");
        }
    }
    auto constraint_keys = [&] {
        std::vector<std::string> out;
        for (const auto& [key, value] : s.items()) {
            if (!detail::is_schema_annotation(key)) out.push_back(key);
        }
        return out;
    };
    const auto ref = s.find("$ref");
    const auto all = s.find("allOf");
    const std::size_t constraints = constraint_keys().size();
    if (ref != s.end() && constraints == 1) {
        if (!ref->is_string()) fail(at_path(path, "$ref"), "must be a string");
        return resolve(ref->get<std::string>(), at_path(path, "$ref"));
    }
    if (all != s.end() && constraints == 1 && all->is_array() && all->size() == 1) {
        // One schema, as pydantic v1 wraps a `$ref` that has a description.
        return compile(all->front(), at_path(path, "allOf") + "[0]", memo_key);
    }
    if (ref != s.end() || all != s.end()) {
        // An intersection: allOf, or a reference beside other keywords
        // (the same thing since JSON Schema 2019-09), as one schema.
        const json merged = detail::merge_all_of(m_doc, s, path);
        return compile(merged, path, memo_key);
    }
    const bool any_of = s.contains("anyOf"), one_of = s.contains("oneOf");
    if (any_of || one_of) {
        if (constraint_keys().size() != 1) fail(path, "'anyOf' / 'oneOf' beside other constraints is not supported");
        return compile_union(s.at(any_of ? "anyOf" : "oneOf"), at_path(path, any_of ? "anyOf" : "oneOf"),
                             memo_key, one_of && !any_of);
    }
    if (s.contains("propertyNames") && !lengths_only(s.at("propertyNames"))) {
        return compile(with_named_properties(s, path), path, memo_key);
    }
    const std::uint16_t idx = allocate(memo_key);
    json_schema::node n;
    // type
    std::array<bool, json_schema::kind_count> kinds{};
    bool integer = false, number = false;
    if (const auto t = s.find("type"); t != s.end()) {
        std::vector<std::string> names;
        if (t->is_string()) {
            names.push_back(t->get<std::string>());
        } else if (t->is_array() && !t->empty()) {
            for (const json& e : *t) {
                if (!e.is_string()) fail(at_path(path, "type"), "must be a type name or a list of them");
                names.push_back(e.get<std::string>());
            }
        } else {
            fail(at_path(path, "type"), "must be a type name or a list of them");
        }
        for (const std::string& name : names) {
            if (name == "object") kinds[json_schema::object_kind] = true;
            else if (name == "array") kinds[json_schema::array_kind] = true;
            else if (name == "string") kinds[json_schema::string_kind] = true;
            else if (name == "number") number = kinds[json_schema::number_kind] = true;
            else if (name == "integer") integer = kinds[json_schema::number_kind] = true;
            else if (name == "boolean") kinds[json_schema::boolean_kind] = true;
            else if (name == "null") kinds[json_schema::null_kind] = true;
            else fail(at_path(path, "type"), fmt::format("'{}' is not a JSON Schema type", name));
        }
        n.integer_only = integer && !number;
    } else {
        kinds.fill(true);
    }
    number_bounds(s, path, n);
    string_format(s, path, kinds[json_schema::string_kind], n);
    string_pattern(s, path, kinds[json_schema::string_kind], n);
    // enum / const: the values, serialised, of the kinds the type allows.
    if (s.contains("enum") || s.contains("const")) {
        std::vector<json> values;
        if (const auto e = s.find("enum"); e != s.end()) {
            if (!e->is_array() || e->empty()) fail(at_path(path, "enum"), "must be a non-empty array");
            values.assign(e->begin(), e->end());
        }
        if (const auto c = s.find("const"); c != s.end()) {
            // Both: the value must satisfy both.
            if (!values.empty() && std::find(values.begin(), values.end(), *c) == values.end()) {
                fail(path, "'const' is not one of the 'enum' values");
            }
            values = {*c};
        }
        std::array<bool, json_schema::kind_count> literal_kinds{};
        for (const json& v : values) {
            if (v.is_object() || v.is_array()) {
                fail(path, "enum / const values that are objects or arrays are not supported");
            }
            std::string text = v.dump(-1, ' ', false, json::error_handler_t::strict);
            const json_schema::value_kind k = kind_of_text(text);
            if (!kinds[k]) continue;
            if (n.integer_only && !v.is_number_integer() && !v.is_number_unsigned()) continue;
            if (k == json_schema::number_kind && n.bounded && !within_bounds(v, n)) continue;
            if (k == json_schema::string_kind && !detail::format_matches(n.format, v.get<std::string>())) continue;
            if (k == json_schema::string_kind && n.pattern && !n.pattern->found_in(v.get<std::string>())) continue;
            if (std::find(n.literals.begin(), n.literals.end(), text) != n.literals.end()) continue;
            n.literals.push_back(std::move(text));
            literal_kinds[k] = true;
        }
        if (n.literals.empty()) fail(path, "no value of 'enum' / 'const' has the schema's type");
        if (n.literals.size() > json_schema::max_literals) fail(at_path(path, "enum"), "more than 64 values");
        kinds = literal_kinds;
    }
    for (std::size_t k = 0; k < kinds.size(); ++k) n.by_kind[k] = kinds[k] ? idx : -1;

    // Objects.
    if (const auto p = s.find("properties"); p != s.end()) {
        if (!p->is_object()) fail(at_path(path, "properties"), "must be an object");
        if (p->size() > json_schema::max_properties) fail(at_path(path, "properties"), "more than 64 properties");
        for (const auto& [name, sub] : p->items()) {
            if (std::any_of(name.begin(), name.end(), [](char c) {
                    return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
                })) {
                fail(at_path(path, "properties"),
                     fmt::format("the name '{}' has a quote, backslash or control character: not supported", name));
            }
            n.properties.push_back({name, compile(sub, at_path(at_path(path, "properties"), name))});
        }
    }
    if (const auto r = s.find("required"); r != s.end()) {
        if (!r->is_array()) fail(at_path(path, "required"), "must be an array of property names");
        for (const json& name : *r) {
            const auto it = name.is_string() ? std::find_if(n.properties.begin(), n.properties.end(),
                                                             [&](const auto& q) { return q.name == name.get<std::string>(); })
                                             : n.properties.end();
            if (it == n.properties.end()) {
                fail(at_path(path, "required"), fmt::format("{} is not one of the schema's properties", name.dump()));
            }
            n.required |= std::uint64_t{1} << (it - n.properties.begin());
        }
    }
    if (const auto a = s.find("additionalProperties"); a != s.end()) {
        if (a->is_boolean()) {
            n.additional = a->get<bool>() ? json_schema::any : -1;
        } else {
            n.additional = compile(*a, at_path(path, "additionalProperties"));
        }
    }
    if (const auto p = s.find("patternProperties"); p != s.end()) key_pattern(*p, at_path(path, "patternProperties"), n);
    if (const auto p = s.find("propertyNames"); p != s.end()) key_lengths(*p, at_path(path, "propertyNames"), n);
    object_size(s, path, n);
    // Arrays.
    n.min_items = count(s, "minItems", path, 0);
    n.max_items = count(s, "maxItems", path, json_schema::unbounded);
    compile_items(s, path, n);
    if (const auto u = s.find("uniqueItems"); u != s.end()) {
        if (!u->is_boolean()) fail(at_path(path, "uniqueItems"), "must be a boolean");
        if (u->get<bool>()) compile_unique(at_path(path, "uniqueItems"), n);
    }
    if (n.min_items > n.max_items) fail(path, "minItems is above maxItems");
    // Strings.
    n.min_length = count(s, "minLength", path, 0);
    n.max_length = count(s, "maxLength", path, json_schema::unbounded);
    if (n.min_length > n.max_length) fail(path, "minLength is above maxLength");

    if (std::all_of(n.by_kind.begin(), n.by_kind.end(), [](std::int32_t b) { return b < 0; })) {
        fail(path, "the schema accepts no value");
    }
    m_out.m_nodes[idx] = std::move(n);
    m_done[idx] = true;
    return idx;
}

std::uint16_t json_schema_compiler::resolve(const std::string& ref, const std::string& path) {
    if (const auto it = m_refs.find(ref); it != m_refs.end()) return it->second;
    if (ref == "#") fail(path, "'#' refers to a schema that is still being read");
    const json* target = &detail::find_definition(m_doc, ref, path);
    if (!m_resolving.insert(ref).second) fail(path, fmt::format("'{}' refers to itself", ref));
    const std::uint16_t idx = compile(*target, ref, ref);
    m_resolving.erase(ref);
    m_refs[ref] = idx;
    return idx;
}

std::uint32_t json_schema_compiler::count(const json& s, const char* key, const std::string& path,
                                          std::uint32_t fallback) {
    const auto it = s.find(key);
    if (it == s.end()) return fallback;
    if (!it->is_number_integer() && !it->is_number_unsigned()) fail(at_path(path, key), "must be an integer");
    if (it->is_number_integer() && it->get<std::int64_t>() < 0) fail(at_path(path, key), "must not be negative");
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(it->get<std::uint64_t>(), json_schema::unbounded - 1));
}

json_schema json_schema::parse(std::string_view text) {
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::parse_error& e) {
        throw std::invalid_argument(fmt::format("the schema is not valid JSON: {}", e.what()));
    }
    return json_schema_compiler(doc).run();
}

} // namespace weft::serve
