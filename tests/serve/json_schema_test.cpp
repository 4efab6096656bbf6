#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <weft/serve/demo_model.hpp>
#include <weft/serve/tokenizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

using weft::serve::json_constraint;
using weft::serve::json_matcher;
using weft::serve::json_schema;
using weft::serve::token_id;
using weft::serve::token_texts;
using json = nlohmann::json;

namespace {

std::size_t code_points(const std::string& s) {
    return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
    }));
}

/// An independent validator for the subset json_schema supports, written from
/// JSON Schema's definitions (not from the compiler).
bool valid(const json& schema, const json& v, const json& root) {
    if (schema.is_boolean()) return schema.get<bool>();
    if (schema.contains("$ref")) {
        const std::string ref = schema["$ref"];
        const std::string name = ref.substr(ref.find('/', 2) + 1);
        if (!valid(ref == "#" ? root : root[ref.starts_with("#/$defs/") ? "$defs" : "definitions"][name], v, root)) {
            return false;
        }
        // Keywords beside the reference apply too (JSON Schema 2019-09).
    }
    for (const json& b : schema.value("allOf", json::array())) {
        if (!valid(b, v, root)) return false;
    }
    for (const char* key : {"anyOf", "oneOf"}) {
        if (!schema.contains(key)) continue;
        int matches = 0;
        for (const json& b : schema[key]) matches += valid(b, v, root) ? 1 : 0;
        if (key == std::string_view("anyOf") ? matches == 0 : matches != 1) return false;
    }
    if (schema.contains("type")) {
        const json types = schema["type"].is_array() ? schema["type"] : json::array({schema["type"]});
        bool ok = false;
        for (const json& t : types) {
            const std::string name = t;
            ok = ok || (name == "object" && v.is_object()) || (name == "array" && v.is_array()) ||
                 (name == "string" && v.is_string()) || (name == "number" && v.is_number()) ||
                 (name == "integer" && (v.is_number_integer() || v.is_number_unsigned())) ||
                 (name == "boolean" && v.is_boolean()) || (name == "null" && v.is_null());
        }
        if (!ok) return false;
    }
    if (schema.contains("const") && v != schema["const"]) return false;
    if (schema.contains("enum")) {
        const json& e = schema["enum"];
        if (std::find(e.begin(), e.end(), v) == e.end()) return false;
    }
    if (v.is_object()) {
        if (v.size() < schema.value("minProperties", 0u) || v.size() > schema.value("maxProperties", ~0u)) return false;
        const json props = schema.value("properties", json::object());
        for (const json& r : schema.value("required", json::array())) {
            if (!v.contains(r.get<std::string>())) return false;
        }
        for (const auto& [k, value] : v.items()) {
            if (schema.contains("propertyNames") && !valid(schema["propertyNames"], json(k), root)) return false;
            // A key that some patternProperties pattern matches meets
            // that pattern's schema and is not an additional one.
            bool patterned = false;
            const json patterns = schema.value("patternProperties", json::object());
            for (const auto& [p, sub] : patterns.items()) {
                if (!std::regex_search(k, std::regex(p))) continue;
                patterned = true;
                if (!valid(sub, value, root)) return false;
            }
            if (props.contains(k)) {
                if (!valid(props[k], value, root)) return false;
            } else if (!patterned && schema.contains("additionalProperties") &&
                       !valid(schema["additionalProperties"], value, root)) {
                return false;
            }
        }
    }
    if (v.is_array()) {
        if (v.size() < schema.value("minItems", 0u) || v.size() > schema.value("maxItems", ~0u)) return false;
        if (schema.value("uniqueItems", false)) {
            for (std::size_t i = 0; i < v.size(); ++i) {
                for (std::size_t j = 0; j < i; ++j) {
                    if (v[i] == v[j]) return false;
                }
            }
        }
        // A tuple: 2020-12's prefixItems then items, or the older drafts'
        // items as a list then additionalItems.
        const bool old_tuple = schema.contains("items") && schema["items"].is_array();
        const json tuple = old_tuple ? schema["items"] : schema.value("prefixItems", json::array());
        const char* rest = old_tuple ? "additionalItems" : "items";
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i < tuple.size() ? !valid(tuple[i], v[i], root)
                                 : schema.contains(rest) && !valid(schema[rest], v[i], root)) {
                return false;
            }
        }
    }
    if (v.is_number()) {
        const double x = v.get<double>();
        if (schema.contains("minimum") && x < schema["minimum"].get<double>()) return false;
        if (schema.contains("maximum") && x > schema["maximum"].get<double>()) return false;
        if (schema.contains("exclusiveMinimum") && x <= schema["exclusiveMinimum"].get<double>()) return false;
        if (schema.contains("exclusiveMaximum") && x >= schema["exclusiveMaximum"].get<double>()) return false;
        if (schema.contains("multipleOf")) {
            const double q = x / schema["multipleOf"].get<double>();
            if (std::fabs(q - std::nearbyint(q)) > 1e-9 * std::max(1.0, std::fabs(q))) return false;
        }
    }
    if (v.is_string()) {
        const std::size_t n = code_points(v.get<std::string>());
        if (n < schema.value("minLength", 0u) || n > schema.value("maxLength", ~0u)) return false;
        // (ASCII patterns here: std::regex reads bytes.)
        if (schema.contains("pattern") &&
            !std::regex_search(v.get<std::string>(), std::regex(schema["pattern"].get<std::string>()))) {
            return false;
        }
    }
    return true;
}

/// Feeds `doc` byte by byte; true when every byte is taken and the object
/// completes at the last one.
bool takes(const json_schema& schema, std::string_view doc) {
    json_matcher m(&schema);
    for (const char c : doc) {
        if (m.complete() || !m.feed(static_cast<std::uint8_t>(c))) return false;
    }
    return m.complete();
}

/// The matcher takes every document of `accepted` (which the schema, by the
/// independent validator, accepts too) and refuses every one of `refused`.
void check_documents(const json& schema_json, std::initializer_list<const char*> accepted,
                     std::initializer_list<const char*> refused) {
    const json_schema s = json_schema::parse(schema_json.dump());
    for (const char* doc : accepted) {
        INFO(doc);
        CHECK(takes(s, doc));
        CHECK(valid(schema_json, json::parse(doc), schema_json));
    }
    for (const char* doc : refused) {
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
}

/// Random walks over accepted bytes, then heading for the end; every walk
/// must finish with an object the schema accepts.
void walk_and_validate(const json& schema_json, int walks, std::uint64_t seed) {
    const json_schema schema = json_schema::parse(schema_json.dump());
    std::mt19937_64 rng(seed);
    // After a digit, ',' before '0' (or a fraction never ends).
    const std::string closers = "\"}]0,", after_digit = "\"}],0";
    for (int walk = 0; walk < walks; ++walk) {
        const std::size_t wander = rng() % 200;
        const std::string doc = weft::serve::test::random_walk(json_matcher(&schema), rng, wander, closers, after_digit);
        INFO(doc);
        const json value = json::parse(weft::serve::test::short_exponents(doc));
        REQUIRE(valid(schema_json, value, schema_json));
    }
}

const json person = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "role": {"enum": ["admin", "user", "guest", 7, null]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
    "active": {"type": "boolean"},
    "nick": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
    "address": {"$ref": "#/$defs/address"},
    "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
    "nothing": {"type": "object", "additionalProperties": false},
    "any": {}
  },
  "required": ["name", "age", "role", "tags"],
  "additionalProperties": false,
  "$defs": {
    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"const": "75001"}},
                "required": ["city"]}
  }
})");

const json tree = json::parse(R"({
  "type": "object",
  "properties": {"root": {"$ref": "#/$defs/node"}},
  "required": ["root"],
  "$defs": {
    "node": {"type": "object",
             "properties": {"label": {"type": "string", "maxLength": 4},
                            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3}},
             "required": ["label"]}
  }
})");

} // namespace

TEST_CASE("json schema names each keyword it does not support", "[json][schema]") {
    const std::vector<std::pair<const char*, const char*>> cases{
        {R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": "1"}}})",
         "properties.n.minimum: must be a number"},
        {R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "exclusiveMaximum": 5}}})",
         "no integer of at most 18 digits"},
        {R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1e19}}})",
         "no integer of at most 18 digits"},
        {R"({"type": "object", "properties": {"x": {"type": "number", "minimum": 0.0000001, "maximum": 0.0000009}}})",
         "no number of at most 18 digits, 6 after the point"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "uniqueItems": true}}})",
         "properties.n.uniqueItems: supported only for arrays whose items are strings, integers, or enum or const values"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": "number"}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: supported only"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: not supported over strings with a format or pattern, or bounded integers"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": ["string", "null"]}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: supported only"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": "string", "format": "date"}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: not supported over strings with a format or pattern, or bounded integers (an enum of the values is)"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": "string", "pattern": "^a"}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: not supported over strings with a format"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "minItems": 33}}})",
         "properties.n.uniqueItems: an array of unique strings or integers holds at most 32 elements (minItems is 33)"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"enum": [1, 1.0]}, "uniqueItems": true}}})",
         "properties.n.uniqueItems: the items' values list 1.0 twice"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "items": {"enum": [1, 2]}, "uniqueItems": true, "minItems": 3}}})",
         "properties.n: minItems is above maxItems"},
        {R"({"type": "object", "properties": {"n": {"type": "array", "uniqueItems": 1}}})",
         "properties.n.uniqueItems: must be a boolean"},
        {R"({"type": "object", "patternProperties": {"^x": {}, "^y": {}}})",
         "patternProperties: more than one pattern is not supported"},
        {R"({"type": "object", "properties": {"a": {}}, "patternProperties": {"^x": {}}})",
         "patternProperties: beside 'properties' is not supported"},
        {R"({"type": "object", "patternProperties": {"^(x": {}}})", "patternProperties.^(x: '^(x' is not a valid regular expression"},
        {R"({"type": "object", "patternProperties": {"^x": {"type": "strin"}}})", "'strin' is not a JSON Schema type"},
        {R"({"type": "object", "patternProperties": []})", "patternProperties: must be an object"},
        {R"({"type": "object", "allOf": [{"patternProperties": {"^x": {}}}, {"additionalProperties": false}]})",
         "allOf[0].patternProperties: not supported in an intersection (allOf, or beside $ref)"},
        {R"({"type": "object", "propertyNames": {"pattern": "^x", "format": "email"}})",
         "propertyNames.format: only a pattern and lengths, or an enum or const of the names, are supported"},
        {R"({"type": "object", "propertyNames": {"maxLength": 3}, "properties": {"a": {}}})",
         "propertyNames: key lengths beside 'properties' are not supported"},
        {R"({"type": "object", "propertyNames": {"minLength": 3, "maxLength": 2}})",
         "propertyNames: minLength is above maxLength"},
        {R"({"type": "object", "properties": {"a": {}}, "propertyNames": {"pattern": "^x"}})",
         "propertyNames: a pattern beside 'properties' or 'patternProperties' is not supported"},
        {R"({"type": "object", "propertyNames": {"type": "string", "enum": ["a"], "minLength": 1}})",
         "propertyNames.minLength: only a pattern and lengths, or an enum or const of the names, are supported"},
        {R"({"type": "object", "propertyNames": {"enum": ["a"]}, "properties": {"b": {}}, "required": ["b"]})",
         "required: \"b\" is not a name propertyNames allows"},
        {R"({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"type": "integer"}]}}})",
         "properties.a: the intersection's schemas have no type in common"},
        {R"({"type": "object", "properties": {"a": {"allOf": [{"pattern": "^a"}, {"pattern": "b$"}]}}})",
         "properties.a.allOf[1].pattern: 'pattern' differs from another schema's in the intersection: not supported"},
        {R"({"type": "object", "properties": {"a": {"allOf": [{"enum": [1, 2]}], "enum": [3]}}})",
         "properties.a.enum: no value is in every schema's 'enum'"},
        {R"({"type": "object", "properties": {"a": {"allOf": [{"properties": {"x": {}}, "additionalProperties": false},
             {"properties": {"y": {}}, "required": ["y"]}]}}})",
         "properties.a.allOf[0].additionalProperties: 'y' is required, but this schema does not declare it"},
        {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
             "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}})",
         "nest too deeply (does a schema include itself?)"},
        {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "$defs": {
             "d0": {"allOf": [{"$ref": "#/$defs/d1"}, {"$ref": "#/$defs/d1"}]},
             "d1": {"allOf": [{"$ref": "#/$defs/d2"}, {"$ref": "#/$defs/d2"}]},
             "d2": {"allOf": [{"$ref": "#/$defs/d3"}, {"$ref": "#/$defs/d3"}]},
             "d3": {"allOf": [{"$ref": "#/$defs/d4"}, {"$ref": "#/$defs/d4"}]},
             "d4": {"allOf": [{"$ref": "#/$defs/d5"}, {"$ref": "#/$defs/d5"}]},
             "d5": {"allOf": [{"$ref": "#/$defs/d6"}, {"$ref": "#/$defs/d6"}]},
             "d6": {"allOf": [{"$ref": "#/$defs/d7"}, {"$ref": "#/$defs/d7"}]},
             "d7": {"allOf": [{"$ref": "#/$defs/d8"}, {"$ref": "#/$defs/d8"}]},
             "d8": {"type": "string"}}})",
         "the intersection gathers more than 256 schemas"},
        {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing", "maxLength": 3}}})",
         "properties.a.$ref: '#/$defs/missing' is not defined"},
        {R"({"type": "object", "properties": {"a": {"type": "object", "minProperties": 2, "maxProperties": 1}}})",
         "properties.a: minProperties is above maxProperties"},
        {R"({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {}, "y": {}},
             "required": ["x", "y"], "maxProperties": 1}}})",
         "properties.a.maxProperties: below the 2 required properties"},
        {R"({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {}}, "minProperties": 2}}})",
         "properties.a.minProperties: above the 1 properties"},
        {R"({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": false, "minProperties": 1}}})",
         "properties.a.minProperties: above 0, but additionalProperties false allows no key"},
        {R"({"type": "object", "properties": {"a": {"type": "object", "minProperties": -1}}})",
         "properties.a.minProperties: must not be negative"},
        {R"({"type": "object", "properties": {"a": {"const": "x", "enum": ["y", "z"]}}})",
         "properties.a: 'const' is not one of the 'enum' values"},
        {R"({"type": "object", "properties": {"a": {"allOf": []}}})", "properties.a.allOf: must be a non-empty array"},
        {R"({"type": "object", "properties": {"a": {"allOf": [{"type": "strin"}]}}})",
         "properties.a.allOf[0].type: 'strin' is not a JSON Schema type"},
        {R"({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2.5}}})",
         "properties.n.multipleOf: must be a whole number"},
        {R"({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0}}})",
         "properties.n.multipleOf: must be a positive number"},
        {R"({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.0000001}}})",
         "properties.n.multipleOf: must be a multiple of 0.000001"},
        {R"({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 6}}})",
         "properties.n: no integer of at most 18 digits lies within its bounds"},
        {R"({"type": "object", "properties": {"id": {"type": "string", "pattern": "a(b"}}})",
         "properties.id.pattern: 'a(b' is not a valid regular expression"},
        {R"({"type": "object", "properties": {"id": {"type": "string", "pattern": "^a{300}$"}}})",
         "more than the 256 bytes"},
        {R"({"type": "object", "properties": {"to": {"type": "string", "format": "iri"}}})",
         "properties.to.format: 'iri' is not supported (date, time"},
        {R"({"type": "object", "properties": {"at": {"type": "string", "format": "date", "minLength": 11}}})",
         "properties.at.minLength: above 10 (the shortest 'date' value)"},
        {R"({"type": "object", "properties": {"at": {"type": "string", "format": "uuid", "maxLength": 35}}})",
         "properties.at.maxLength: no 'uuid' value is this short (the shortest has 36 characters)"},
        {R"({"type": "object", "properties": {"at": {"type": "string", "format": 1}}})",
         "properties.at.format: must be a string"},
        {R"({"type": "string"})", "top-level value must be an object"},
        {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "\"b\" is not one of"},
        {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}})", "is not defined"},
        {R"({"type": "object", "properties": {"a": {"$ref": "http://x/y"}}})", "only references to #/$defs/NAME"},
        {R"({"type": "object", "properties": {"a": {"oneOf": [{"type": "object"}, {"type": "object", "maxProperties": 1}]}}})",
         "both accept a value of the same kind"},
        {R"({"type": "object", "properties": {"a": {"anyOf": [{"type": "object", "minProperties": 1}, {"type": "object", "maxProperties": 1}]}}})",
         "both accept a value of the same kind"},
        {R"({"type": "object", "properties": {"a": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "number", "maximum": 5}]}}})",
         "properties.a.anyOf: branches 0 and 1 both accept a value of the same kind"},
        {R"({"type": "object", "properties": {"a": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}})",
         "properties.a.oneOf: branches 0 and 1 both accept a value of the same kind"},
        {R"({"type": "object", "properties": {"a": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 3}]}}})",
         "properties.a.anyOf: branches 0 and 1 both accept a value of the same kind"},
        {R"({"type": "object", "properties": {"a": {"enum": [{"x": 1}]}}})", "objects or arrays are not supported"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}})",
         "minItems is above maxItems"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "prefixItems": {}}}})",
         "properties.a.prefixItems: must be a non-empty array of schemas"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{}], "items": [{}]}}})",
         "properties.a.items: a list of schemas beside 'prefixItems'"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "additionalItems": false}}})",
         "properties.a.additionalItems: only beside 'items' given as a list"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "strin"}]}}})",
         "properties.a.prefixItems[0].type: 'strin' is not a JSON Schema type"},
        {R"({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{}], "items": false, "minItems": 2}}})",
         "properties.a: minItems is above maxItems"},
        {R"({"type": "object", "properties": {"a": false}})", "accepts no value"},
        {R"({"type": "object", "properties": {"a": {"type": "string", "enum": [1, 2]}}})", "no value of 'enum'"},
        {R"({"type": "object", "properties": {"a": {"type": "strin"}}})", "'strin' is not a JSON Schema type"},
        {R"({"type": "object", "properties": {"a\"b": {}}})", "quote, backslash or control character"},
        {R"({"type": "object")", "not valid JSON"},
    };
    for (const auto& [text, expected] : cases) {
        INFO(text);
        try {
            (void)json_schema::parse(text);
            FAIL("accepted");
        } catch (const std::invalid_argument& e) {
            CHECK_THAT(e.what(), Catch::Contains(expected));
        }
    }
    // Annotations are not constraints and pass.
    CHECK_NOTHROW(json_schema::parse(
        R"({"$schema": "x", "title": "T", "description": "d", "type": "object", "properties": {"a": {"type": "string", "title": "A", "default": "z"}}, "strict": true})"));
}

TEST_CASE("schema matcher takes objects the schema accepts and completes at the closing brace", "[json][schema]") {
    const json_schema s = json_schema::parse(person.dump());
    for (const char* doc : {
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"]})",
             R"({ "tags" : [ "x" , "yz" , "" ] , "role" : 7, "age": -4, "name": "Bé" })",
             R"({"name":"A","age":0,"role":null,"tags":["a"],"height":1.5e3,"active":false,"nick":null})",
             R"({"name":"A","age":1,"role":"user","tags":["b"],"nick":"bob","address":{"city":"Paris","zip":"75001"}})",
             R"({"name":"A","age":1,"role":"guest","tags":["b"],"extra":{"x":1,"y":-2},"nothing":{},"any":[1,{"q":null}]})",
             R"({"name":"\u00e9\n","age":1,"role":"user","tags":["\ud83d\ude00"]})",
         }) {
        INFO(doc);
        CHECK(takes(s, doc));
        CHECK(valid(person, json::parse(doc), person));
    }
}

TEST_CASE("schema matcher refuses objects the schema does not accept", "[json][schema]") {
    const json_schema s = json_schema::parse(person.dump());
    for (const char* doc : {
             R"({"age":31,"role":"admin","tags":["a"]})",                          // name missing
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"x":1})",      // not a property
             R"({"name":"Ann","name":"Bob","age":31,"role":"admin","tags":["a"]})", // twice
             R"({"name":"Ann","age":"31","role":"admin","tags":["a"]})",          // a string for an integer
             R"({"name":"Ann","age":31.5,"role":"admin","tags":["a"]})",          // a fraction
             R"({"name":"Ann","age":1e3,"role":"admin","tags":["a"]})",           // an exponent
             R"({"name":"Ann","age":31,"role":"root","tags":["a"]})",             // not in the enum
             R"({"name":"Ann","age":31,"role":70,"tags":["a"]})",                 // 70 is not 7
             R"({"name":"Ann","age":31,"role":"admin","tags":[]})",               // minItems
             R"({"name":"Ann","age":31,"role":"admin","tags":["a","b","c","d"]})", // maxItems
             R"({"name":"Ann","age":31,"role":"admin","tags":["abcd"]})",         // maxLength
             R"({"name":"","age":31,"role":"admin","tags":["a"]})",               // minLength
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"nick":"toolong"})",
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"nick":3})",
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"address":{"zip":"75001"}})",
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"address":{"city":"P","zip":"75002"}})",
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"extra":{"x":"1"}})",
             R"({"name":"Ann","age":31,"role":"admin","tags":["a"],"nothing":{"x":1}})",
             R"({"n\u0061me":"Ann","age":31,"role":"admin","tags":["a"]})", // keys are matched as written
         }) {
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
    // The refused ones really are invalid (the escaped key aside, which is
    // valid JSON Schema but not the spelling the matcher generates).
    CHECK_FALSE(valid(person, json::parse(R"({"name":"Ann","age":31,"role":"admin","tags":[]})"), person));
}

TEST_CASE("schema matcher can always finish, and what it finishes the schema accepts", "[json][schema]") {
    walk_and_validate(person, 300, 3);
    walk_and_validate(tree, 200, 4);
    walk_and_validate(json::parse(R"({"type": "object", "properties": {"v": {"enum": [1, 10, 100, -1, 1.5]}},
                                      "required": ["v"]})"),
                      100, 5);
}

TEST_CASE("a tuple matches element i against schema i and later elements against the rest's schema",
          "[json][schema]") {
    // pydantic's Tuple[int, str] (2020-12), with a rest of booleans.
    const json modern = json::parse(R"({"type": "object", "properties": {"t": {"type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string", "maxLength": 2}], "items": {"type": "boolean"},
        "minItems": 1}}, "required": ["t"]})");
    check_documents(modern, {R"({"t":[1]})", R"({"t":[1,"ab"]})", R"({"t":[-3,"",true,false]})"},
                    {R"({"t":[]})", R"({"t":["1"]})", R"({"t":[1,2]})", R"({"t":[1,"abc"]})", R"({"t":[1,"a",0]})"});
    walk_and_validate(modern, 200, 11);
    // `items: false`: nothing past the tuple.
    const json closed = json::parse(R"({"type": "object", "properties": {"p": {"type": "array",
        "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false, "minItems": 2}}, "required": ["p"]})");
    check_documents(closed, {R"({"p":[1.5,2]})"}, {R"({"p":[1]})", R"({"p":[1,2,3]})", R"({"p":[1,"2"]})"});
    walk_and_validate(closed, 100, 12);
    // The older drafts' spelling.
    const json old = json::parse(R"({"type": "object", "properties": {"o": {"type": "array",
        "items": [{"type": "null"}, {"enum": ["x", "y"]}], "additionalItems": {"type": "integer"}}}})");
    check_documents(old, {R"({"o":[]})", R"({"o":[null,"y",4,5]})"},
                    {R"({"o":[1]})", R"({"o":[null,"z"]})", R"({"o":[null,"x","5"]})"});
    walk_and_validate(old, 100, 13);
    const json_schema s = json_schema::parse(old.dump());
    CHECK_FALSE(takes(s, R"({"o":[null,"x",1.5]})")); // additionalItems' integers
}

TEST_CASE("allOf of one schema is that schema, as pydantic v1 writes a described reference", "[json][schema]") {
    const json v1 = json::parse(R"({"title": "Order", "type": "object", "properties": {
        "ship_to": {"title": "Ship To", "description": "where it goes", "allOf": [{"$ref": "#/definitions/Address"}]},
        "kind": {"allOf": [{"$ref": "#/definitions/Kind"}], "default": "parcel"}},
        "required": ["ship_to"],
        "definitions": {"Address": {"title": "Address", "type": "object",
                                    "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]},
                        "Kind": {"title": "Kind", "enum": ["parcel", "letter"], "type": "string"}}})");
    check_documents(v1, {R"({"ship_to":{"city":"Lyon"}})", R"({"kind":"letter","ship_to":{"city":""}})"},
                    {R"({"ship_to":{}})", R"({"ship_to":{"city":"Lyon"},"kind":"box"})", R"({"kind":"letter"})"});
    walk_and_validate(v1, 200, 15);
}

TEST_CASE("allOf of several schemas, and a reference beside other keywords, take what all of them accept",
          "[json][schema]") {
    // A model extending a base (OpenAPI's and zod's `.and()` style), a
    // reference narrowed beside it, nested intersections and bounds.
    const json shop = json::parse(R"({"type": "object", "properties": {
        "item": {"allOf": [{"$ref": "#/$defs/base"},
                           {"type": "object", "properties": {"price": {"type": "number", "minimum": 0},
                                                             "id": {"maximum": 99}},
                            "required": ["price"]}]},
        "code": {"$ref": "#/$defs/code", "maxLength": 3, "description": "short"},
        "size": {"allOf": [{"type": "number"}, {"type": ["integer", "null"], "minimum": 1},
                           {"allOf": [{"maximum": 5}, {"maximum": 9}]}]},
        "colour": {"allOf": [{"enum": ["red", "green", "blue"]}, {"enum": ["blue", "red", "black"]}]},
        "tags": {"allOf": [{"type": "array", "items": {"type": "string"}},
                           {"items": {"maxLength": 2}, "maxItems": 2}]}},
        "required": ["item"],
        "$defs": {"base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
                           "required": ["id"]},
                  "code": {"type": "string", "minLength": 2}}})");
    check_documents(shop,
                    {R"({"item":{"id":1,"price":0}})", R"({"item":{"id":99,"price":2.5},"code":"AB"})",
                     R"({"item":{"id":5,"price":1},"size":5,"colour":"blue","tags":["ab",""]})",
                     R"({"item":{"id":5,"price":1},"colour":"red"})"},
                    {R"({"item":{"id":1}})", R"({"item":{"price":1}})", R"({"item":{"id":0,"price":1}})",
                     R"({"item":{"id":100,"price":1}})", R"({"item":{"id":1,"price":-1}})",
                     R"({"item":{"id":1,"price":1},"code":"A"})", R"({"item":{"id":1,"price":1},"code":"ABCD"})",
                     R"({"item":{"id":1,"price":1},"size":6})", R"({"item":{"id":1,"price":1},"size":1.5})",
                     R"({"item":{"id":1,"price":1},"size":0})", R"({"item":{"id":1,"price":1},"size":null})",
                     R"({"item":{"id":1,"price":1},"colour":"green"})",
                     R"({"item":{"id":1,"price":1},"tags":["abc"]})", R"({"item":{"id":1,"price":1},"tags":[1]})",
                     R"({"item":{"id":1,"price":1},"tags":["a","b","c"]})"});
    walk_and_validate(shop, 300, 16);

    // A closed schema in an intersection shuts out what only the others
    // declare, and every schema's additionalProperties holds for the rest.
    const json closed = json::parse(R"({"type": "object", "properties": {
        "o": {"allOf": [{"properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                         "additionalProperties": false},
                        {"properties": {"a": {"minimum": 3}, "c": {"type": "string"}}, "required": ["a"]}]},
        "m": {"allOf": [{"type": "object", "additionalProperties": {"type": "integer"}},
                        {"additionalProperties": {"maximum": 10}}]},
        "p": {"allOf": [{"type": "object", "additionalProperties": {"type": "integer"}},
                        {"properties": {"n": {"type": "number"}}}]}},
        "required": ["o"]})");
    check_documents(closed,
                    {R"({"o":{"a":3}})", R"({"o":{"a":4,"b":"x"}})", R"({"o":{"a":3},"m":{"k":10,"j":-3}})",
                     R"({"o":{"a":3},"p":{"n":2}})"},
                    {R"({"o":{"a":2}})", R"({"o":{"a":3,"c":"x"}})", R"({"o":{"b":"x"}})",
                     R"({"o":{"a":3},"m":{"k":11}})", R"({"o":{"a":3},"m":{"k":1.5}})",
                     R"({"o":{"a":3},"p":{"n":2.5}})"});
    walk_and_validate(closed, 300, 17);
}

TEST_CASE("minProperties and maxProperties bound an object's keys, leaving room for the required ones",
          "[json][schema]") {
    // pydantic's dict[str, int] = Field(min_length=1, max_length=2), and
    // declared properties of which at most two (one of them required).
    const json sized = json::parse(R"({"type": "object", "properties": {
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 1,
                   "maxProperties": 2},
        "pick": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                                  "c": {"type": "integer"}},
                 "required": ["c"], "maxProperties": 2, "minProperties": 2},
        "none": {"type": "object", "maxProperties": 0}},
        "required": ["counts", "pick"]})");
    check_documents(sized,
                    {R"({"counts":{"x":1},"pick":{"a":1,"c":2}})", R"({"counts":{"x":1,"y":2},"pick":{"c":2,"b":1}})",
                     R"({"counts":{"x":1},"pick":{"a":1,"c":2},"none":{}})"},
                    {R"({"counts":{},"pick":{"a":1,"c":2}})", R"({"counts":{"x":1,"y":2,"z":3},"pick":{"a":1,"c":2}})",
                     R"({"counts":{"x":1},"pick":{"c":2}})", R"({"counts":{"x":1},"pick":{"a":1,"b":2}})",
                     R"({"counts":{"x":1},"pick":{"a":1,"c":2,"b":3}})", R"({"counts":{"x":1},"pick":{"a":1,"c":2},"none":{"k":1}})"});
    walk_and_validate(sized, 300, 18);
    // After a non-required key, the last place goes to the required one.
    const json_schema s = json_schema::parse(sized.dump());
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"counts":{"x":1},"pick":{"a":1,")"));
    CHECK_FALSE(m.accepts("b"));
    CHECK(m.accepts("c"));
}

TEST_CASE("uniqueItems over enum values offers each value once per array", "[json][schema]") {
    // pydantic's set[Literal["red", "green", "blue"]], and a set of numbers where one is a prefix of another.
    const json colours = json::parse(R"({"type": "object", "properties": {
        "c": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "uniqueItems": true},
        "n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "uniqueItems": true, "minItems": 2},
        "any": {"type": "array", "uniqueItems": false}},
        "required": ["c", "n"], "$defs": {"n": {"enum": [1, 10, 100]}}})");
    check_documents(colours,
                    {R"({"c":[],"n":[1,10]})", R"({"c":["blue","red","green"],"n":[100,1,10]})",
                     R"({"c":["red"],"n":[10,1],"any":[1,1]})"},
                    {R"({"c":["red","red"],"n":[1,10]})", R"({"c":["red","green","red"],"n":[1,10]})",
                     R"({"c":[],"n":[1,1]})", R"({"c":[],"n":[10,10]})", R"({"c":[],"n":[1]})",
                     R"({"c":["red","green","blue","red"],"n":[1,10]})"});
    walk_and_validate(colours, 300, 14);
    // Once every value is used the array can only close.
    const json_schema s = json_schema::parse(colours.dump());
    json_matcher full(&s);
    REQUIRE(full.feed(R"({"c":["red","green","blue")"));
    CHECK_FALSE(full.accepts(","));
    CHECK(full.accepts("]"));
}

TEST_CASE("propertyNames of enum names allows those keys only, each once, with additionalProperties' values",
          "[json][schema]") {
    // pydantic's dict[Literal["a", "b"], int], dict[Color, str] (the enum
    // under a $ref), and names that narrow declared properties.
    const json named = json::parse(R"({"type": "object", "properties": {
        "d": {"type": "object", "additionalProperties": {"type": "integer"}, "propertyNames": {"enum": ["a", "b"]}},
        "c": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3},
              "propertyNames": {"$ref": "#/$defs/Color"}, "maxProperties": 1},
        "p": {"type": "object", "properties": {"a": {"type": "boolean"}, "z": {"type": "null"}},
              "additionalProperties": false, "propertyNames": {"type": "string", "const": "a", "title": "A"}},
        "any": {"type": "object", "propertyNames": true}},
        "$defs": {"Color": {"type": "string", "enum": ["red", "green"], "title": "Color"}}})");
    check_documents(named,
                    {R"({"d":{"a":1,"b":2}})", R"({"d":{}})", R"({"d":{"b":-3},"c":{"green":"abc"}})",
                     R"({"p":{"a":true}})", R"({"p":{}})", R"({"any":{"x":[1]}})"},
                    {R"({"d":{"c":1}})", R"({"d":{"a":"x"}})", R"({"d":{"a":1,"a":2}})", R"({"c":{"blue":"x"}})",
                     R"({"c":{"red":"x","green":"y"}})", R"({"c":{"red":"long"}})", R"({"p":{"z":null}})",
                     R"({"p":{"b":true}})"});
    walk_and_validate(named, 300, 16);
}

TEST_CASE("uniqueItems over strings refuses to close an element as an earlier one's text", "[json][schema]") {
    // pydantic's set[str], and a set of codes of at most two characters
    // (the empty one included).
    const json sets = json::parse(R"({"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
        "codes": {"type": "array", "items": {"type": "string", "maxLength": 2}, "uniqueItems": true, "minItems": 2}},
        "required": ["codes"]})");
    check_documents(sets,
                    {R"({"codes":["","a"]})", R"({"tags":["a","ab","a\n","b","x/y","\"a"],"codes":["a","b"]})",
                     R"({"codes":["ab","a","é","b\n"],"tags":[]})"},
                    {R"({"codes":["a","a"]})", R"({"codes":["",""]})", R"({"codes":["a"],"tags":["ab","ab"]})",
                     R"({"codes":["a","b"],"tags":["a","b","a"]})", R"({"codes":["a","b"],"tags":["\n","\n"]})",
                     R"({"codes":["a","b"],"tags":["a\/b"]})", R"({"codes":["a","b"],"tags":["\u0061"]})",
                     R"({"codes":["ab","ab"]})", R"({"codes":["é","é"]})", R"({"codes":["a\n","a\n"]})"});
    walk_and_validate(sets, 300, 15);

    const json_schema s = json_schema::parse(sets.dump());
    // A duplicate may still grow into a new text.
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"tags":["a","a)"));
    CHECK_FALSE(m.accepts("\""));
    CHECK(m.accepts("b\""));
    // Each array remembers its own elements only.
    REQUIRE(m.feed(R"(b"],"codes":["a)"));
    CHECK(m.accepts(R"(","ab"]})"));
    // At the greatest length a duplicate is refused at its last character
    // (a quote is all that could follow it).
    REQUIRE(m.feed(R"(b","a)"));
    CHECK(m.accepts("\""));
    CHECK_FALSE(m.accepts("b"));
    CHECK(m.accepts("c"));
    // At most max_unique_values elements: then the array can only close.
    json_matcher full(&s);
    std::string doc = R"({"codes":["a","b"],"tags":[)";
    for (std::size_t i = 0; i < json_schema::max_unique_values; ++i) {
        doc += (i == 0 ? "\"t" : ",\"t") + std::to_string(i) + "\"";
    }
    REQUIRE(full.feed(doc));
    CHECK_FALSE(full.accepts(","));
    CHECK(full.accepts("]}"));
}

TEST_CASE("uniqueItems over integers refuses to end an element as an earlier one's digits", "[json][schema]") {
    // pydantic's set[int].
    const json ints = json::parse(R"({"type": "object", "properties": {
        "n": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true, "minItems": 3}},
        "required": ["n"]})");
    check_documents(ints, {R"({"n":[0,1,-1]})", R"({"n":[1,10,100,-10]})", R"({"n":[5, 55 ,555]})"},
                    {R"({"n":[1,2,1]})", R"({"n":[0,0,1]})", R"({"n":[-0,1,2]})", R"({"n":[12,3,12]})",
                     R"({"n":[-7,1,-7]})", R"({"n":[1.0,2,3]})"});
    walk_and_validate(ints, 300, 17);
    // Strings of no characters have one value: the array holds it once.
    const json empty = json::parse(R"({"type": "object", "properties": {
        "e": {"type": "array", "items": {"type": "string", "maxLength": 0}, "uniqueItems": true}}})");
    check_documents(empty, {R"({"e":[""]})", R"({"e":[]})"}, {R"({"e":["",""]})"});
    const json_schema es = json_schema::parse(empty.dump());
    json_matcher one(&es);
    REQUIRE(one.feed(R"({"e":["")"));
    CHECK_FALSE(one.accepts(",")); // no second element could start
    CHECK(one.accepts("]}"));
    const json_schema s = json_schema::parse(ints.dump());
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"n":[0,12,-3,)"));
    // 0 can only end, so a second one is refused at its digit; 12 may grow.
    CHECK_FALSE(m.accepts("0"));
    CHECK_FALSE(m.accepts("12,"));
    CHECK(m.accepts("12"));
    CHECK(m.accepts("120,"));
    CHECK(m.accepts("3,"));
    CHECK_FALSE(m.accepts("-3]"));
}

TEST_CASE("integer bounds let every integer in range through and refuse each digit that leaves it",
          "[json][schema]") {
    const json bounded = json::parse(R"({"type": "object", "properties": {
        "n": {"type": "integer", "minimum": -5, "maximum": 120},
        "m": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13.5},
        "big": {"type": "integer", "minimum": 1000000},
        "neg": {"type": "integer", "maximum": -20.5},
        "pick": {"type": "integer", "enum": [1, 5, 50], "maximum": 10}}})");
    check_documents(bounded,
                    {R"({"n":120})", R"({"n":-5})", R"({"n":0})", R"({"n":-0})", R"({"n":7,"m":11})", R"({"m":13})",
                     R"({"big":1000000})", R"({"big":123456789012345678})", R"({"neg":-21})", R"({"neg":-987654})",
                     R"({"pick":5})"},
                    {R"({"n":121})", R"({"n":-6})", R"({"n":1200})", R"({"n":-10})", R"({"m":10})", R"({"m":14})",
                     R"({"big":999999})", R"({"big":-1})", R"({"big":0})", R"({"big":1234567890123456789})",
                     R"({"neg":-20})", R"({"neg":5})", R"({"pick":50})"});
    // Refused at the digit that leaves the range, not only at the end.
    const json_schema s = json_schema::parse(bounded.dump());
    json_matcher m(&s);
    for (const char c : std::string_view(R"({"n":12)")) REQUIRE(m.feed(static_cast<std::uint8_t>(c)));
    for (const char c : std::string_view("0,}")) CHECK(json_matcher(m).feed(static_cast<std::uint8_t>(c)));
    for (const char c : std::string_view("1239")) CHECK_FALSE(json_matcher(m).feed(static_cast<std::uint8_t>(c)));
    walk_and_validate(bounded, 200, 6);
}

TEST_CASE("number bounds hold numbers to their range with at most 6 digits after the point and no exponent",
          "[json][schema]") {
    const json bounded = json::parse(R"({"type": "object", "properties": {
        "p": {"type": "number", "minimum": 0, "maximum": 1},
        "t": {"type": "number", "exclusiveMinimum": -2.5, "maximum": 100.25},
        "tiny": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.00001},
        "any": {"minimum": 3}}})");
    check_documents(bounded,
                    {R"({"p":0})", R"({"p":1})", R"({"p":0.5})", R"({"p":1.0})", R"({"p":1.000000})",
                     R"({"p":0.000001})", R"({"t":-2.4})", R"({"t":100.25})", R"({"t":-2.499999})",
                     R"({"tiny":0.000009})", R"({"any":"x"})", R"({"any":3})", R"({"any":3.5})",
                     R"({"any":123456789012})"},
                    {R"({"p":1.000001})", R"({"p":-0.1})", R"({"p":2})", R"({"p":10})", R"({"p":1e0})",
                     R"({"p":0.0000001})", R"({"t":-2.5})", R"({"t":100.26})", R"({"t":-3})", R"({"tiny":0})",
                     R"({"tiny":0.00001})", R"({"any":2.999999})", R"({"any":-3})", R"({"any":1234567890123})",
                     R"({"p":-0.0})"}); // a sign only where some number below zero is allowed
    walk_and_validate(bounded, 300, 7);
}

TEST_CASE("multipleOf lets multiples through and refuses each digit after which none in range can follow",
          "[json][schema]") {
    const json stepped = json::parse(R"({"type": "object", "properties": {
        "five": {"type": "integer", "multipleOf": 5},
        "even": {"type": "integer", "multipleOf": 2, "minimum": -7, "maximum": 9},
        "big": {"type": "integer", "multipleOf": 1000, "exclusiveMinimum": 1000},
        "cents": {"type": "number", "multipleOf": 0.01, "minimum": 0},
        "half": {"type": "number", "multipleOf": 0.5, "maximum": 3},
        "pick": {"type": "integer", "multipleOf": 3, "enum": [3, 4, 9]}}})");
    check_documents(stepped,
                    {R"({"five":0})", R"({"five":-15})", R"({"five":123456789012345675})", R"({"even":-6})",
                     R"({"even":8})", R"({"even":0})", R"({"big":2000})", R"({"big":98765000})", R"({"cents":19.99})",
                     R"({"cents":0})", R"({"cents":3.5})", R"({"cents":3.500000})", R"({"half":-0.5})",
                     R"({"half":2.5})", R"({"half":3})", R"({"pick":9})"},
                    {R"({"five":7})", R"({"five":-1})", R"({"five":1.0})", R"({"even":9})", R"({"even":-8})",
                     R"({"even":10})", R"({"big":1000})", R"({"big":1500})", R"({"cents":0.001})",
                     R"({"cents":-0.01})", R"({"cents":1.005})", R"({"half":0.25})", R"({"half":3.5})",
                     R"({"pick":4})"});
    // An integer whose digits end off the step takes more digits, not the end.
    const json_schema s = json_schema::parse(stepped.dump());
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"big":12)"));
    CHECK_FALSE(json_matcher(m).feed('}'));
    CHECK(json_matcher(m).feed('0'));
    json_matcher even(&s);
    REQUIRE(even.feed(R"({"even":)"));
    CHECK_FALSE(json_matcher(even).feed('1')); // 1 is odd, and 10 and above are out of range
    CHECK(json_matcher(even).feed('2'));
    walk_and_validate(stepped, 300, 8);
}

TEST_CASE("schema matcher does not offer containers past its depth bound", "[json][schema]") {
    // {"root": {"children": [{"children": [ ... — each level two deep.
    const json_schema s = json_schema::parse(tree.dump());
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"root":)"));
    std::string path;
    while (true) {
        json_matcher t = m;
        if (!t.feed(R"({"label":"a","children":[)")) break;
        m = t;
        REQUIRE(m.depth() <= json_matcher::schema_depth);
    }
    // Here a node may still open, but not its children: the key is not offered.
    REQUIRE(m.feed(R"({"label":"a")"));
    json_matcher t = m;
    CHECK_FALSE(t.feed(R"(,"children")"));
    CHECK(m.feed('}'));
}

TEST_CASE("schema constraint masks exactly the tokens the matcher refuses", "[json][schema]") {
    const weft::serve::tokenizer tok(weft::serve::demo_tokenizer(512));
    const auto vocab = std::make_shared<const token_texts>(tok);
    const auto person_schema = std::make_shared<const json_schema>(json_schema::parse(person.dump()));
    // Unique strings of at most 3 characters: a plain token that would end
    // an element at that length as an earlier one's text is refused.
    const auto set_schema = std::make_shared<const json_schema>(json_schema::parse(
        R"({"type": "object", "properties": {"s": {"type": "array", "items": {"type": "string", "maxLength": 3},
            "uniqueItems": true}}})"));
    // Walk valid documents token by token through texts that exist in the
    // vocabulary; the second fills `name` to its bound of 12 characters
    // (and a tag to 3), where the mask decides plain tokens by their length.
    const std::pair<std::shared_ptr<const json_schema>, std::string> walks[] = {
        {person_schema, R"({"name":"Ann","age":31,"role":"admin","tags":["a"]})"},
        {person_schema, R"({"name":"the cat sat.","age":31,"role":"admin","tags":["the"]})"},
        {set_schema, R"({"s":["the","th","cat","ca","he","at"]})"}};
    for (const auto& [schema, doc] : walks) {
    INFO(doc);
    json_constraint c(vocab, schema);
    std::size_t i = 0;
    std::vector<std::uint64_t> bits;
    while (i < doc.size()) {
        const std::size_t allowed = c.allowed(bits);
        std::size_t counted = 0;
        for (std::size_t t = 0; t < vocab->size(); ++t) {
            const bool in = (bits[t / 64] >> (t % 64) & 1) != 0;
            REQUIRE(in == c.allows(static_cast<token_id>(t)));
            counted += in ? 1 : 0;
        }
        REQUIRE(counted == allowed);
        // Take the longest token that continues the document.
        token_id best = -1;
        std::size_t best_len = 0;
        for (std::size_t t = 0; t < vocab->size(); ++t) {
            const std::string_view text = (*vocab)[static_cast<token_id>(t)];
            if (!text.empty() && text.size() > best_len && std::string_view(doc).substr(i).starts_with(text)) {
                best = static_cast<token_id>(t);
                best_len = text.size();
            }
        }
        REQUIRE(best >= 0);
        REQUIRE(c.advance(best));
        i += best_len;
    }
    CHECK(c.complete());
    }
}

namespace {

/// A discriminated union (as pydantic writes Union[Cat, Dog] with Literal
/// tags), beside null, in an array and under a $ref.
const json pets = json::parse(R"({
  "type": "object",
  "$defs": {
    "cat": {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}},
            "required": ["kind", "lives"], "additionalProperties": false},
    "dog": {"type": "object", "properties": {"good": {"type": "boolean"}, "kind": {"enum": ["dog"]}},
            "required": ["kind"], "additionalProperties": false}
  },
  "properties": {
    "pet": {"anyOf": [{"$ref": "#/$defs/cat"}, {"$ref": "#/$defs/dog"}, {"type": "null"}]},
    "more": {"type": "array", "maxItems": 3, "items": {"oneOf": [{"$ref": "#/$defs/dog"}, {"$ref": "#/$defs/cat"}]}}
  },
  "required": ["pet"],
  "additionalProperties": false
})");

} // namespace

TEST_CASE("a discriminated union takes its tag first and goes on as the branch it names", "[json][schema]") {
    const json_schema s = json_schema::parse(pets.dump());
    for (const char* doc : {
             R"({"pet":{"kind":"cat","lives":9}})",
             R"({"pet":{"kind":"dog"}})",
             R"({"pet": {"kind" : "dog" , "good": true}, "more": [{"kind":"cat","lives":1},{"kind":"dog"}]})",
             R"({"pet":null,"more":[]})",
         }) {
        INFO(doc);
        CHECK(takes(s, doc));
        CHECK(valid(pets, json::parse(doc), pets));
    }
    for (const char* doc : {
             R"({"pet":{"lives":9,"kind":"cat"}})",            // the tag comes first
             R"({"pet":{"kind":"cow"}})",                      // no such branch
             R"({"pet":{"kind":"cat","good":true,"lives":1}})", // a dog's property
             R"({"pet":{"kind":"cat"}})",                      // lives is required
             R"({"pet":{"kind":"dog","kind":"dog"}})",         // the tag twice
             R"({"pet":{}})",
         }) {
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
    walk_and_validate(pets, 300, 6);
}

TEST_CASE("a discriminated union as pydantic writes it, with OpenAPI's discriminator beside the oneOf",
          "[json][schema]") {
    // Model(pet: Union[Cat, Dog] = Field(discriminator="pet_type"), n: int),
    // from pydantic 2's model_json_schema().
    const json model = json::parse(R"({"$defs": {
        "Cat": {"properties": {"pet_type": {"const": "cat", "title": "Pet Type", "type": "string"},
                               "meows": {"title": "Meows", "type": "integer"}},
                "required": ["pet_type", "meows"], "title": "Cat", "type": "object"},
        "Dog": {"properties": {"pet_type": {"const": "dog", "title": "Pet Type", "type": "string"},
                               "barks": {"title": "Barks", "type": "number"}},
                "required": ["pet_type", "barks"], "title": "Dog", "type": "object"}},
      "properties": {
        "pet": {"discriminator": {"mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}, "propertyName": "pet_type"},
                "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "title": "Pet"},
        "n": {"title": "N", "type": "integer"}},
      "required": ["pet", "n"], "title": "Model", "type": "object"})");
    check_documents(model, {R"({"pet":{"pet_type":"cat","meows":3},"n":1})", R"({"n":0,"pet":{"pet_type":"dog","barks":0.5}})"},
                    {R"({"pet":{"pet_type":"cow","meows":3},"n":1})", R"({"pet":{"pet_type":"cat","barks":1},"n":1})",
                     R"({"pet":{"pet_type":"dog"},"n":1})"});
    walk_and_validate(model, 300, 18);
}

TEST_CASE("a union whose branch takes every value of a kind is that branch for the kind", "[json][schema]") {
    // pydantic's Union[int, float], a string or a date (any string), and a
    // list of anything or of integers.
    const json unions = json::parse(R"({"type": "object", "properties": {
        "x": {"anyOf": [{"type": "integer"}, {"type": "number"}]},
        "s": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string"}, {"type": "null"}]},
        "l": {"anyOf": [{"type": "array"}, {"type": "array", "items": {"type": "integer"}}]},
        "b": {"anyOf": [{"type": "boolean"}, {"const": true}]}}})");
    check_documents(unions,
                    {R"({"x":1})", R"({"x":1.5})", R"({"x":-2e3})", R"({"s":"2024-01-01"})", R"({"s":"any"})",
                     R"({"s":null})", R"({"l":[1,"a",{}]})", R"({"b":false})"},
                    {R"({"x":"1"})", R"({"s":1})", R"({"l":{}})", R"({"b":null})"});
    walk_and_validate(unions, 300, 19);
}

TEST_CASE("OpenAPI's password and binary formats take any string", "[json][schema]") {
    // pydantic's SecretStr and bytes fields.
    const json secrets = json::parse(R"({"type": "object", "properties": {
        "key": {"format": "password", "title": "Key", "type": "string", "writeOnly": true},
        "blob": {"format": "binary", "title": "Blob", "type": "string", "maxLength": 4}}})");
    check_documents(secrets, {R"({"key":"hunter2","blob":"a\nb"})", R"({"key":""})"},
                    {R"({"key":1})", R"({"blob":"12345"})"});
    walk_and_validate(secrets, 100, 20);
}

TEST_CASE("object branches without a distinct constant tag are refused", "[json][schema]") {
    for (const char* schema : {
             R"({"type": "object", "properties": {"a": {"anyOf": [
                 {"type": "object", "properties": {"t": {"const": "x"}}, "required": ["t"]},
                 {"type": "object", "properties": {"t": {"const": "x"}}, "required": ["t"]}]}}})",
             R"({"type": "object", "properties": {"a": {"anyOf": [
                 {"type": "object", "properties": {"t": {"const": "x"}}},
                 {"type": "object", "properties": {"t": {"const": "y"}}, "required": ["t"]}]}}})",
             R"({"type": "object", "properties": {"a": {"anyOf": [
                 {"type": "object", "properties": {"t": {"const": 1}}, "required": ["t"]},
                 {"type": "object", "properties": {"t": {"const": 2}}, "required": ["t"]}]}}})",
         }) {
        INFO(schema);
        CHECK_THROWS_WITH(json_schema::parse(schema), Catch::Contains("both accept a value of the same kind"));
    }
}

TEST_CASE("keys under patternProperties or a propertyNames pattern match it, their values meet its schema",
          "[json][schema][pattern]") {
    const json schema = json::parse(R"({"type": "object", "properties": {
        "scores": {"type": "object", "patternProperties": {"^[a-z]{1,4}$": {"type": "integer"}}, "maxProperties": 4},
        "labels": {"type": "object", "propertyNames": {"type": "string", "pattern": "^L[0-9]+$"},
                   "additionalProperties": {"type": "string", "maxLength": 3}},
        "none": {"type": "object", "propertyNames": {"pattern": "^x"}, "additionalProperties": false},
        "free": {"type": "object", "propertyNames": {"pattern": "^[A-Z]+$"}}}})");
    check_documents(schema,
                    {R"({"scores":{"a":1,"bcd":-20}})", R"({"labels":{"L1":"abc","L22":""}})", R"({"none":{}})",
                     R"({"free":{"AB":[true,{"x":null}]}})"},
                    {R"({"scores":{"abcde":1}})", R"({"scores":{"a":"1"}})", R"({"labels":{"l1":"a"}})",
                     R"({"labels":{"L1":"abcd"}})", R"({"labels":{"L":"a"}})", R"({"none":{"x":1}})",
                     R"({"free":{"Ab":1}})"});
    walk_and_validate(schema, 300, 17);
}

TEST_CASE("an anyOf branch that takes every object stands for all the object branches", "[json][schema]") {
    // Union[Point, dict[str, Any]], as pydantic writes it.
    const json schema = json::parse(R"({"type": "object", "$defs": {"Point": {"type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}, "required": ["x", "y"]}},
        "properties": {"p": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "object", "additionalProperties": true},
                                       {"type": "null"}]}}})");
    check_documents(schema, {R"({"p":{"x":1,"y":2}})", R"({"p":{"z":[1,"a"]}})", R"({"p":{}})", R"({"p":null})"},
                    {R"({"p":[]})", R"({"p":1})"});
    walk_and_validate(schema, 200, 23);
}

TEST_CASE("propertyNames lengths bound each key, in characters", "[json][schema]") {
    // dict[constr(max_length=3), int], and with a pattern too, as pydantic writes them.
    const json schema = json::parse(R"({"type": "object", "properties": {
        "short": {"type": "object", "propertyNames": {"maxLength": 3, "minLength": 1},
                  "additionalProperties": {"type": "integer"}},
        "coded": {"type": "object", "patternProperties": {"^[a-z]+$": {"type": "boolean"}},
                  "propertyNames": {"maxLength": 2}},
        "named": {"type": "object", "propertyNames": {"type": "string", "pattern": "^k", "maxLength": 3}},
        "any": {"type": "object", "propertyNames": {"type": "string"}}}})");
    check_documents(schema,
                    {R"({"short":{"a":1,"bcd":2,"é€x":3}})", R"({"short":{"\u00e9":1}})", R"({"coded":{"ab":true}})",
                     R"({"named":{"k":1,"kab":[]}})", R"({"any":{"":1,"anything at all":null}})"},
                    {R"({"short":{"":1}})", R"({"short":{"abcd":1}})", R"({"short":{"é€xy":1}})",
                     R"({"short":{"a":"x"}})", R"({"coded":{"abc":true}})", R"({"coded":{"A":true}})",
                     R"({"named":{"kabc":1}})", R"({"named":{"ab":1}})"});
    walk_and_validate(schema, 300, 29);
    // A bounded key takes no plain token unchecked.
    const json_schema compiled = json_schema::parse(schema.dump());
    json_matcher m(&compiled);
    REQUIRE(m.feed(R"({"short":{"ab)"));
    CHECK_FALSE(m.in_plain_string());
    CHECK(m.accepts("c"));
    CHECK_FALSE(m.accepts("cd"));
}
