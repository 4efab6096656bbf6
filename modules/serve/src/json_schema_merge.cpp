#include "json_schema_merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

namespace weft::serve::detail {

[[noreturn]] void fail(const std::string& path, std::string_view why) {
    throw std::invalid_argument(path.empty() ? std::string(why) : fmt::format("{}: {}", path, why));
}

std::string at_path(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

namespace {

using json = nlohmann::json;

const std::set<std::string, std::less<>> annotation_keys{
    "title",  "description", "default", "examples", "$schema",   "$id",   "$comment",
    "strict", "deprecated",  "readOnly", "writeOnly", "$defs", "definitions",
    // OpenAPI's hint beside a oneOf of tagged objects (pydantic writes it for
    // Field(discriminator=...)): the branches' own constant tags already say
    // everything it does.
    "discriminator"};

/// How deep references and nested allOf may go while merging: beyond it
/// one of them refers back to itself (`{"allOf": [{"$ref": "#/$defs/A"}]}`
/// inside A), which no finite merge resolves.
constexpr int max_depth = 32;
/// How many schemas one intersection may gather: each reference is read
/// again where it is used, so nested allOf of references multiply.
constexpr std::size_t max_members = 256;

struct member {
    const json* schema;
    std::string path;
};

/// `s` and everything it intersects with, depth first: its reference's
/// target and its allOf members, then `s` itself (whose `$ref` and `allOf`
/// the merge skips).
void flatten(const json& doc, const json& s, const std::string& path, int depth, std::vector<member>& out) {
    if (depth > max_depth) fail(path, "references or allOf nest too deeply (does a schema include itself?)");
    if (s.is_boolean()) {
        if (!s.get<bool>()) fail(path, "the schema 'false' accepts no value");
        return;
    }
    if (!s.is_object()) fail(path, "a schema must be an object");
    if (const auto r = s.find("$ref"); r != s.end()) {
        if (!r->is_string()) fail(at_path(path, "$ref"), "must be a string");
        const std::string ref = r->get<std::string>();
        flatten(doc, ref == "#" ? doc : find_definition(doc, ref, at_path(path, "$ref")), ref, depth + 1, out);
    }
    if (const auto a = s.find("allOf"); a != s.end()) {
        const std::string all_path = at_path(path, "allOf");
        if (!a->is_array() || a->empty()) fail(all_path, "must be a non-empty array of schemas");
        for (std::size_t i = 0; i < a->size(); ++i) {
            flatten(doc, (*a)[i], fmt::format("{}[{}]", all_path, i), depth + 1, out);
        }
    }
    if (out.size() == max_members) fail(path, fmt::format("the intersection gathers more than {} schemas", max_members));
    out.push_back({&s, path});
}

// Types as bits; number is integer | fraction, so that integer within number
// intersects to integer.
enum type_bit : unsigned {
    object_bit = 1,
    array_bit = 2,
    string_bit = 4,
    boolean_bit = 8,
    null_bit = 16,
    integer_bit = 32,
    fraction_bit = 64,
    all_types = 127,
};

unsigned type_bits(const json& t, const std::string& path) {
    std::vector<json> names;
    if (t.is_string()) names.push_back(t);
    else if (t.is_array() && !t.empty()) names.assign(t.begin(), t.end());
    else fail(path, "must be a type name or a list of them");
    unsigned bits = 0;
    for (const json& name : names) {
        if (!name.is_string()) fail(path, "must be a type name or a list of them");
        const std::string n = name.get<std::string>();
        if (n == "object") bits |= object_bit;
        else if (n == "array") bits |= array_bit;
        else if (n == "string") bits |= string_bit;
        else if (n == "boolean") bits |= boolean_bit;
        else if (n == "null") bits |= null_bit;
        else if (n == "integer") bits |= integer_bit;
        else if (n == "number") bits |= integer_bit | fraction_bit;
        else fail(path, fmt::format("'{}' is not a JSON Schema type", n));
    }
    return bits;
}

json type_names(unsigned bits) {
    json out = json::array();
    constexpr std::array<std::pair<unsigned, const char*>, 5> plain{
        {{object_bit, "object"}, {array_bit, "array"}, {string_bit, "string"}, {boolean_bit, "boolean"}, {null_bit, "null"}}};
    for (const auto& [bit, name] : plain) {
        if ((bits & bit) != 0) out.push_back(name);
    }
    if ((bits & fraction_bit) != 0) out.push_back("number");
    else if ((bits & integer_bit) != 0) out.push_back("integer");
    return out.size() == 1 ? out.front() : out;
}

/// Both schemas, as one: the same schema once, else their allOf.
json both(const json& a, const json& b) {
    if (a == b) return a;
    if (a == json(false) || b == json(false)) return false;
    if (a == json(true)) return b;
    if (b == json(true)) return a;
    json out = json::array();
    for (const json* s : {&a, &b}) {
        // An allOf this merge made is flattened rather than nested.
        const bool made = s->is_object() && s->size() == 1 && s->contains("allOf");
        for (const json& e : made ? s->at("allOf") : json::array({*s})) {
            if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
        }
    }
    if (out.size() == 1) return out.front();
    return json{{"allOf", std::move(out)}};
}

bool is_lower_bound(std::string_view key) {
    return key == "minimum" || key == "exclusiveMinimum" || key == "minLength" || key == "minItems" ||
           key == "minProperties";
}
bool is_upper_bound(std::string_view key) {
    return key == "maximum" || key == "exclusiveMaximum" || key == "maxLength" || key == "maxItems" ||
           key == "maxProperties";
}

} // namespace

bool is_schema_annotation(std::string_view key) { return annotation_keys.contains(key); }

const json& find_definition(const json& doc, const std::string& ref, const std::string& path) {
    for (std::string_view prefix : {"#/$defs/", "#/definitions/"}) {
        if (!ref.starts_with(prefix)) continue;
        std::string name;
        for (std::size_t i = prefix.size(); i < ref.size(); ++i) {
            if (ref[i] == '~' && i + 1 < ref.size() && (ref[i + 1] == '0' || ref[i + 1] == '1')) {
                name += ref[++i] == '0' ? '~' : '/';
            } else if (ref[i] == '/') {
                fail(path, fmt::format("'{}': only references to #/$defs/NAME are supported", ref));
            } else {
                name += ref[i];
            }
        }
        if (doc.is_object()) {
            const auto defs = doc.find(prefix == "#/$defs/" ? "$defs" : "definitions");
            if (defs != doc.end() && defs->is_object()) {
                if (const auto it = defs->find(name); it != defs->end()) return *it;
            }
        }
        fail(path, fmt::format("'{}' is not defined", ref));
    }
    fail(path, fmt::format("'{}': only references to #/$defs/NAME are supported", ref));
}

json merge_all_of(const json& doc, const json& schema, const std::string& path) {
    std::vector<member> members;
    flatten(doc, schema, path, 0, members);

    json out = json::object();
    unsigned types = all_types;
    bool typed = false;
    std::vector<std::string> names;                // properties, in order of first appearance
    std::map<std::string, json> property_schemas;  // name -> the schemas' intersection
    std::vector<std::string> required;
    for (const member& m : members) {
        for (const auto& [key, value] : m.schema->items()) {
            if (key == "$ref" || key == "allOf" || is_schema_annotation(key)) continue;
            const std::string key_path = at_path(m.path, key);
            if (key == "type") {
                types &= type_bits(value, key_path);
                typed = true;
            } else if (key == "properties") {
                if (!value.is_object()) fail(key_path, "must be an object");
                for (const auto& [name, sub] : value.items()) {
                    const auto [it, added] = property_schemas.try_emplace(name, sub);
                    if (added) names.push_back(name);
                    else it->second = both(it->second, sub);
                }
            } else if (key == "required") {
                if (!value.is_array()) fail(key_path, "must be an array of property names");
                for (const json& name : value) {
                    if (!name.is_string()) fail(key_path, "must be an array of property names");
                    if (std::find(required.begin(), required.end(), name) == required.end()) required.push_back(name);
                }
            } else if (key == "additionalProperties") {
                // Applied below, once every schema's properties are known.
            } else if (key == "patternProperties") {
                // Another schema's additionalProperties would hold these
                // keys too, which one merged schema cannot say.
                fail(key_path, "not supported in an intersection (allOf, or beside $ref)");
            } else if (!out.contains(key)) {
                out[key] = value;
            } else if (json& have = out[key]; have == value) {
            } else if (key == "enum" && have.is_array() && value.is_array()) {
                json common = json::array();
                for (const json& v : have) {
                    if (std::find(value.begin(), value.end(), v) != value.end()) common.push_back(v);
                }
                if (common.empty()) fail(key_path, "no value is in every schema's 'enum'");
                have = std::move(common);
            } else if ((is_lower_bound(key) || is_upper_bound(key)) && have.is_number() && value.is_number()) {
                const bool higher = value.get<long double>() > have.get<long double>();
                if (higher == is_lower_bound(key)) have = value;
            } else if (key == "uniqueItems" && have.is_boolean() && value.is_boolean()) {
                have = have.get<bool>() || value.get<bool>();
            } else if ((key == "items" || key == "additionalItems") && !have.is_array() && !value.is_array()) {
                have = both(have, value);
            } else {
                fail(key_path, fmt::format("'{}' differs from another schema's in the intersection: not supported", key));
            }
        }
    }

    // Each property also meets the additionalProperties of every schema
    // that does not declare it; `false` there leaves it out.
    json additional = true;
    for (const std::string& name : names) {
        bool allowed = true;
        for (const member& m : members) {
            const auto a = m.schema->find("additionalProperties");
            if (a == m.schema->end()) continue;
            const auto p = m.schema->find("properties");
            if (p != m.schema->end() && p->is_object() && p->contains(name)) continue;
            if (*a == json(false)) {
                allowed = false;
                if (std::find(required.begin(), required.end(), name) != required.end()) {
                    fail(at_path(m.path, "additionalProperties"),
                         fmt::format("'{}' is required, but this schema does not declare it and allows no other "
                                     "property", name));
                }
                break;
            }
            property_schemas[name] = both(property_schemas[name], *a);
        }
        if (allowed) out["properties"][name] = property_schemas[name];
    }
    for (const member& m : members) {
        if (const auto a = m.schema->find("additionalProperties"); a != m.schema->end()) {
            if (!a->is_boolean() && !a->is_object()) fail(at_path(m.path, "additionalProperties"), "must be a boolean or a schema");
            additional = both(additional, *a);
        }
    }
    if (additional != json(true)) out["additionalProperties"] = additional;
    if (!required.empty()) out["required"] = required;
    if (typed) {
        if (types == 0) fail(path, "the intersection's schemas have no type in common");
        out["type"] = type_names(types);
    }
    // const and enum from different schemas: the const, if the enum has it.
    if (out.contains("const") && out.contains("enum")) {
        const json& e = out["enum"];
        if (!e.is_array() || std::find(e.begin(), e.end(), out["const"]) == e.end()) {
            fail(path, "the intersection's 'const' is not one of its 'enum' values");
        }
        out.erase("enum");
    }
    return out;
}

} // namespace weft::serve::detail
