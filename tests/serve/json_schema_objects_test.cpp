// Structured outputs' object schemas: minProperties / maxProperties,
// propertyNames (enum names, a pattern, lengths), patternProperties,
// intersections (allOf, a reference beside other keywords), and unions of
// objects (discriminated by a tag, or one branch taking every object).
#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using weft::serve::json_matcher;
using weft::serve::json_schema;
using json = nlohmann::json;
using weft::serve::test::check_documents;
using weft::serve::test::takes;
using weft::serve::test::valid;
using weft::serve::test::walk_and_validate;

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
