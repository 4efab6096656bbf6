#include <weft/serve/json_schema.hpp>

#include "json_format.hpp"
#include "json_pattern.hpp"
#include "json_schema_merge.hpp"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>

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

class json_schema_compiler {
public:
    explicit json_schema_compiler(const json& doc) : m_doc(doc) {
        json_schema::node any_node;
        any_node.by_kind.fill(json_schema::any);
        m_out.m_nodes.push_back(std::move(any_node));
        m_done.push_back(true);
    }

    json_schema run() {
        const std::uint16_t root = compile(m_doc, "", "#");
        const std::int32_t object = m_out.m_nodes[root].by_kind[json_schema::object_kind];
        if (object < 0) fail("", "the top-level value must be an object (\"type\": \"object\")");
        m_out.m_root = static_cast<std::uint16_t>(object);
        return std::move(m_out);
    }

private:
    std::uint16_t allocate(const std::string& memo_key) {
        if (m_out.m_nodes.size() >= 65535) fail("", "the schema has too many parts");
        const auto idx = static_cast<std::uint16_t>(m_out.m_nodes.size());
        m_out.m_nodes.emplace_back();
        m_done.push_back(false);
        if (!memo_key.empty()) m_refs[memo_key] = idx;
        return idx;
    }

    std::uint16_t compile(const json& s, const std::string& path, const std::string& memo_key = {}) {
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

    /// `items` alone: every element. A tuple, as 2020-12 writes it
    /// (`prefixItems`, then `items` for the rest) or as drafts 4-2019 did
    /// (`items` a list, then `additionalItems`): element i < the list's
    /// length takes schema i, later ones the rest's schema; a rest of
    /// `false` caps the array at the list's length.
    void compile_items(const json& s, const std::string& path, json_schema::node& n) {
        const auto prefix = s.find("prefixItems");
        const auto items = s.find("items");
        const auto additional = s.find("additionalItems");
        const bool old_tuple = items != s.end() && items->is_array();
        if (prefix != s.end() && old_tuple) {
            fail(at_path(path, "items"), "a list of schemas beside 'prefixItems' (use one tuple form)");
        }
        if (additional != s.end() && !old_tuple) {
            fail(at_path(path, "additionalItems"), "only beside 'items' given as a list of schemas");
        }
        const auto tuple = old_tuple ? items : prefix;
        const auto rest = old_tuple ? additional : items;
        const std::string tuple_path = at_path(path, old_tuple ? "items" : "prefixItems");
        if (tuple != s.end()) {
            if (!tuple->is_array() || tuple->empty()) fail(tuple_path, "must be a non-empty array of schemas");
            if (tuple->size() > json_schema::max_tuple_items) {
                fail(tuple_path, fmt::format("more than {} schemas", json_schema::max_tuple_items));
            }
            for (std::size_t i = 0; i < tuple->size(); ++i) {
                n.prefix_items.push_back(compile((*tuple)[i], fmt::format("{}[{}]", tuple_path, i)));
            }
        }
        if (rest == s.end()) return;
        const std::string rest_path = at_path(path, old_tuple ? "additionalItems" : "items");
        if (rest->is_boolean() && !rest->get<bool>()) {
            // No element past the tuple (or, without one, none at all).
            n.max_items = std::min<std::uint32_t>(n.max_items, static_cast<std::uint32_t>(n.prefix_items.size()));
            return;
        }
        n.items = compile(*rest, rest_path);
    }

    /// `s` with `propertyNames` given as an enum / const of names (what
    /// pydantic writes for `dict[Literal[...], V]` and `dict[SomeEnum, V]`)
    /// rewritten as the properties it allows: each name allowed is a
    /// property, with its schema in `properties` or else
    /// `additionalProperties` (left out where that is false), and no other
    /// key is. A pattern of names (and lengths) is read as
    /// patternProperties (with_pattern_names); lengths alone are read by
    /// key_lengths; names of other forms (a format) are refused.
    json with_named_properties(const json& s, const std::string& path) const {
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
    static json with_pattern_names(const json& s, const json& names, json out, const std::string& path) {
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

    /// `uniqueItems: true` over enum / const items: the matcher offers
    /// each value once per array, so an array holds at most as many
    /// elements as there are values. Over strings or integers: the matcher
    /// refuses to end an element as an earlier one's text, remembering at
    /// most max_unique_values of them.
    void compile_unique(const std::string& path, json_schema::node& n) {
        const auto unsupported = [&] {
            fail(path, "supported only for arrays whose items are strings, integers, or enum or const values");
        };
        if (!n.prefix_items.empty() || n.items == json_schema::any || !m_done[n.items]) unsupported();
        const json_schema::node& e = m_out.m_nodes[n.items];
        std::size_t kinds = 0;
        for (const std::int32_t b : e.by_kind) {
            if (b >= 0 && b != n.items) unsupported(); // an anyOf of several nodes
            kinds += b >= 0 ? 1 : 0;
        }
        if (e.literals.empty()) {
            const bool strings = e.by_kind[json_schema::string_kind] >= 0;
            const bool integers = e.by_kind[json_schema::number_kind] >= 0 && e.integer_only;
            if (kinds != 1 || (!strings && !integers)) unsupported();
            if (e.format != json_schema::string_format::none || e.pattern != nullptr || e.bounded) {
                // Their values can run out (every date of a month used, every
                // integer in range): an enum of them says so to the matcher.
                fail(path, "not supported over strings with a format or pattern, or bounded integers "
                           "(an enum of the values is)");
            }
            if (n.min_items > json_schema::max_unique_values) {
                fail(path, fmt::format("an array of unique strings or integers holds at most {} elements "
                                       "(minItems is {})",
                                       json_schema::max_unique_values, n.min_items));
            }
            n.unique_items = true;
            // Strings of no characters: the one value, "".
            const std::uint32_t values = strings && e.max_length == 0 ? 1 : json_schema::max_unique_values;
            n.max_items = std::min<std::uint32_t>(n.max_items, values);
            return;
        }
        std::vector<json> values;
        for (const std::string& text : e.literals) {
            json v = json::parse(text);
            if (std::find(values.begin(), values.end(), v) != values.end()) {
                fail(path, fmt::format("the items' values list {} twice", text));
            }
            values.push_back(std::move(v));
        }
        n.unique_items = true;
        n.max_items = std::min<std::uint32_t>(n.max_items, static_cast<std::uint32_t>(values.size()));
    }

    /// anyOf, or oneOf (`exclusive`: a value may match one branch only).
    std::uint16_t compile_union(const json& branches, const std::string& path, const std::string& memo_key,
                                bool exclusive) {
        if (!branches.is_array() || branches.empty()) fail(path, "must be a non-empty array of schemas");
        const std::uint16_t idx = allocate(memo_key);
        json_schema::node n;
        std::array<std::size_t, json_schema::kind_count> owner{};
        std::vector<std::uint16_t> objects; // the object nodes of the branches that accept objects
        std::vector<std::size_t> object_branches;
        for (std::size_t i = 0; i < branches.size(); ++i) {
            const std::string bpath = fmt::format("{}[{}]", path, i);
            const std::uint16_t b = compile(branches[i], bpath);
            if (!m_done[b]) fail(bpath, "a branch that refers back to its own anyOf is not supported");
            const json_schema::node& bn = m_out.m_nodes[b];
            for (std::size_t k = 0; k < json_schema::kind_count; ++k) {
                if (bn.by_kind[k] < 0) continue;
                if (k == json_schema::object_kind) {
                    const auto o = static_cast<std::uint16_t>(bn.by_kind[k]);
                    if (std::find(objects.begin(), objects.end(), o) == objects.end()) {
                        objects.push_back(o);
                        object_branches.push_back(i);
                    }
                    continue;
                }
                if (n.by_kind[k] >= 0 && n.by_kind[k] != bn.by_kind[k]) {
                    // In an anyOf, one branch taking every value of the kind
                    // is the union of both there (pydantic's Union[int,
                    // float]); a oneOf would refuse the values both take.
                    if (!exclusive && takes_every(n.by_kind[k], k)) continue;
                    if (!exclusive && takes_every(bn.by_kind[k], k)) {
                        n.by_kind[k] = bn.by_kind[k];
                        owner[k] = i;
                        continue;
                    }
                    fail(path, fmt::format("branches {} and {} both accept a value of the same kind: only branches "
                                           "that start differently (object, array, string, number, boolean, null) "
                                           "are supported",
                                           owner[k], i));
                }
                n.by_kind[k] = bn.by_kind[k];
                owner[k] = i;
            }
        }
        if (objects.size() > 1 && !exclusive) {
            // As for the other kinds: an anyOf branch that takes every
            // object (`Union[Model, dict]`) is the union of them all.
            const auto every = std::find_if(objects.begin(), objects.end(),
                                            [&](std::uint16_t o) { return takes_every(o, json_schema::object_kind); });
            if (every != objects.end()) objects = {*every};
        }
        if (objects.size() == 1) n.by_kind[json_schema::object_kind] = objects[0];
        if (objects.size() > 1) n.by_kind[json_schema::object_kind] = discriminated(objects, object_branches, path);
        m_out.m_nodes[idx] = std::move(n);
        m_done[idx] = true;
        return idx;
    }

    /// Whether `node` accepts every value of kind `k` (a finished node with
    /// no constraint on that kind).
    bool takes_every(std::int32_t node, std::size_t k) const {
        if (node < 0 || !m_done[static_cast<std::size_t>(node)]) return false;
        const json_schema::node& n = m_out.m_nodes[static_cast<std::size_t>(node)];
        if (!n.literals.empty()) return false;
        switch (k) {
        case json_schema::string_kind:
            return n.min_length == 0 && n.max_length == json_schema::unbounded &&
                   n.format == json_schema::string_format::none && n.pattern == nullptr;
        case json_schema::number_kind: return !n.integer_only && !n.bounded;
        case json_schema::array_kind:
            return n.items == json_schema::any && n.prefix_items.empty() && n.min_items == 0 &&
                   n.max_items == json_schema::unbounded && !n.unique_items;
        case json_schema::object_kind:
            return n.properties.empty() && n.additional == json_schema::any && n.key_pattern == nullptr &&
                   n.key_min_length == 0 && n.key_max_length == json_schema::unbounded && n.min_properties == 0 &&
                   n.max_properties == json_schema::unbounded && n.branches.empty();
        case json_schema::boolean_kind:
        case json_schema::null_kind: return true;
        default: return false;
        }
    }

    /// The constant string of `node`'s property `name`, when it is required
    /// and has exactly one value, a string.
    const std::string* tag_of(std::uint16_t node, const std::string& name) const {
        const json_schema::node& n = m_out.m_nodes[node];
        for (std::size_t i = 0; i < n.properties.size(); ++i) {
            if (n.properties[i].name != name) continue;
            if ((n.required >> i & 1) == 0) return nullptr;
            const json_schema::node& v = m_out.m_nodes[n.properties[i].node];
            if (v.literals.size() != 1 || v.literals[0].front() != '"') return nullptr;
            return &v.literals[0];
        }
        return nullptr;
    }

    /// A union node over several object branches, told apart by the first
    /// property of the first that every branch requires with a different
    /// constant string; fails when there is none.
    std::int32_t discriminated(const std::vector<std::uint16_t>& objects, const std::vector<std::size_t>& branch_of,
                               const std::string& path) {
        for (std::uint16_t o : objects) {
            if (!m_done[o]) fail(path, "an object branch that refers back to its own anyOf is not supported");
        }
        const std::vector<json_schema::property> first = m_out.m_nodes[objects[0]].properties;
        for (const json_schema::property& candidate : first) {
            std::vector<std::string> tags;
            for (std::uint16_t o : objects) {
                const std::string* t = tag_of(o, candidate.name);
                if (t == nullptr || std::find(tags.begin(), tags.end(), *t) != tags.end()) break;
                tags.push_back(*t);
            }
            if (tags.size() != objects.size()) continue;
            if (tags.size() > json_schema::max_literals) fail(path, "more than 64 object branches");
            const std::uint16_t values = allocate({});
            json_schema::node v;
            v.literals = tags;
            v.by_kind[json_schema::string_kind] = values;
            m_out.m_nodes[values] = std::move(v);
            m_done[values] = true;
            const std::uint16_t u = allocate({});
            json_schema::node un;
            un.by_kind[json_schema::object_kind] = u;
            un.properties.push_back({candidate.name, values});
            un.required = 1;
            un.branches = objects;
            m_out.m_nodes[u] = std::move(un);
            m_done[u] = true;
            return u;
        }
        fail(path, fmt::format("branches {} and {} both accept a value of the same kind: only branches that start "
                               "differently (object, array, string, number, boolean, null) are supported, or objects "
                               "told apart by a property each requires with a different constant string",
                               branch_of[0], branch_of[1]));
    }

    std::uint16_t resolve(const std::string& ref, const std::string& path) {
        if (const auto it = m_refs.find(ref); it != m_refs.end()) return it->second;
        if (ref == "#") fail(path, "'#' refers to a schema that is still being read");
        const json* target = &detail::find_definition(m_doc, ref, path);
        if (!m_resolving.insert(ref).second) fail(path, fmt::format("'{}' refers to itself", ref));
        const std::uint16_t idx = compile(*target, ref, ref);
        m_resolving.erase(ref);
        m_refs[ref] = idx;
        return idx;
    }

    /// Units per 1 when bounds count in units of 10^-fraction_digits.
    static std::int64_t unit_of(int fraction_digits) {
        std::int64_t u = 1;
        while (fraction_digits-- > 0) u *= 10;
        return u;
    }

    /// `scaled` as a whole number of units where it is one (0.1 * 10 is,
    /// though no double is 0.1).
    static std::optional<long double> whole_units(long double scaled) {
        const long double whole = std::nearbyintl(scaled);
        if (std::fabs(scaled - whole) > 1e-9L * std::max(1.0L, std::fabs(whole))) return std::nullopt;
        return whole;
    }

    /// Whether the number `v` (an enum / const value) lies within n's bounds
    /// and is a multiple of its step.
    static bool within_bounds(const json& v, const json_schema::node& n) {
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
    static void number_bounds(const json& s, const std::string& path, json_schema::node& n) {
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
    static void string_format(const json& s, const std::string& path, bool strings, json_schema::node& n) {
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

    /// patternProperties: its one pattern's keys, each value against its
    /// schema. Keys that match no pattern would be additionalProperties':
    /// none is generated, so that needs no node.
    void key_pattern(const json& p, const std::string& path, json_schema::node& n) {
        if (!p.is_object()) fail(path, "must be an object");
        if (p.empty()) return;
        if (p.size() > 1) fail(path, "more than one pattern is not supported");
        if (!n.properties.empty()) fail(path, "beside 'properties' is not supported");
        const std::string& pattern = p.begin().key();
        n.key_pattern = compile_pattern(pattern, at_path(path, pattern));
        n.additional = compile(p.begin().value(), at_path(path, pattern));
    }

    /// propertyNames left with lengths only (see lengths_only): each key's.
    static void key_lengths(const json& names, const std::string& path, json_schema::node& n) {
        if (!n.properties.empty()) fail(path, "key lengths beside 'properties' are not supported");
        n.key_min_length = count(names, "minLength", path, 0);
        n.key_max_length = count(names, "maxLength", path, json_schema::unbounded);
        if (n.key_min_length > n.key_max_length) fail(path, "minLength is above maxLength");
    }

    /// A propertyNames schema that bounds the keys' lengths and nothing
    /// else, read by key_lengths where the others are rewritten.
    static bool lengths_only(const json& names) {
        if (!names.is_object()) return false;
        for (const auto& [key, value] : names.items()) {
            if (!is_length(key) && !(key == "type" && value == "string") && !detail::is_schema_annotation(key)) {
                return false;
            }
        }
        return true;
    }

    static bool is_length(std::string_view key) { return key == "minLength" || key == "maxLength"; }

    static std::shared_ptr<const json_pattern> compile_pattern(const std::string& pattern, const std::string& path) {
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
    static void string_pattern(const json& s, const std::string& path, bool strings, json_schema::node& n) {
        const auto it = s.find("pattern");
        if (it == s.end()) return;
        if (!it->is_string()) fail(at_path(path, "pattern"), "must be a string");
        if (!strings) return;
        if (n.format != json_schema::string_format::none) fail(path, "'pattern' beside 'format' is not supported");
        n.pattern = compile_pattern(it->get<std::string>(), at_path(path, "pattern"));
    }

    /// minProperties / maxProperties, checked against what the object can
    /// hold: an object generated with properties has only those keys.
    static void object_size(const json& s, const std::string& path, json_schema::node& n) {
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

    static std::uint32_t count(const json& s, const char* key, const std::string& path, std::uint32_t fallback) {
        const auto it = s.find(key);
        if (it == s.end()) return fallback;
        if (!it->is_number_integer() && !it->is_number_unsigned()) fail(at_path(path, key), "must be an integer");
        if (it->is_number_integer() && it->get<std::int64_t>() < 0) fail(at_path(path, key), "must not be negative");
        return static_cast<std::uint32_t>(std::min<std::uint64_t>(it->get<std::uint64_t>(), json_schema::unbounded - 1));
    }

    const json& m_doc;
    json_schema m_out;
    std::vector<bool> m_done;
    std::map<std::string, std::uint16_t> m_refs;
    std::set<std::string> m_resolving;
};

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
