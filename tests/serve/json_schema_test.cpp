// Structured outputs' schemas (json_schema) and the matcher under them: the
// keywords and values the compiler refuses, documents over a schema of
// every kind of value (accepted, refused, random walks), the depth bound,
// and the vocabulary mask. Objects, intersections and unions:
// json_schema_objects_test.cpp; arrays, numbers and strings:
// json_schema_values_test.cpp.
#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <weft/serve/demo_model.hpp>
#include <weft/serve/tokenizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using weft::serve::json_constraint;
using weft::serve::json_matcher;
using weft::serve::json_schema;
using weft::serve::token_id;
using weft::serve::token_texts;
using json = nlohmann::json;
using weft::serve::test::takes;
using weft::serve::test::valid;
using weft::serve::test::walk_and_validate;

namespace {

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
