// Structured outputs' array, number and string schemas: tuples, uniqueItems
// (over enum values, strings and integers), integer and number bounds,
// multipleOf, unions of scalar kinds, and formats that take any string.
#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using weft::serve::json_matcher;
using weft::serve::json_schema;
using json = nlohmann::json;
using weft::serve::test::check_documents;
using weft::serve::test::takes;
using weft::serve::test::walk_and_validate;

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
