// JSON Schema `pattern` in structured outputs: what the matcher generates is
// checked with std::regex (ECMAScript, the dialect schemas are written in),
// not with the PCRE2 code the matcher runs.
#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <string_view>

using weft::serve::json_matcher;
using weft::serve::json_schema;
using json = nlohmann::json;

namespace {

const json patterns = json::parse(R"({"type": "object", "properties": {
    "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
    "phone": {"type": "string", "pattern": "^\\+?[0-9 ]{7,12}$"},
    "slug": {"type": "string", "pattern": "[a-z]+(-[a-z]+)*"},
    "short": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
    "drink": {"type": "string", "pattern": "^(caf[eé]|t[eé]a)$"}}})"); // ASCII only: cafe, tea

/// Feeds `doc`; true when every byte is taken and the object completes.
bool takes(const json_schema& schema, std::string_view doc) {
    json_matcher m(&schema);
    return m.feed(doc) && m.complete();
}

} // namespace

TEST_CASE("a patterned string takes what begins a match and closes once it matches", "[json][schema][pattern]") {
    const json_schema s = json_schema::parse(patterns.dump());
    for (const char* doc : {R"({"code":"ABC-1234"})", R"({"phone":"+49 30 1234"})", R"({"phone":"5551234"})",
                            R"({"slug":"hello-world"})", R"({"slug":"a"})", R"({"slug":"ok, then: anything"})",
                            R"({"short":"abcde"})", R"({"drink":"cafe"})", R"({"drink":"tea"})"}) {
        INFO(doc);
        CHECK(takes(s, doc));
    }
    for (const char* doc : {R"({"code":"AB-1234"})", R"({"code":"ABC-123"})", R"({"code":"ABC-12345"})",
                            R"({"code":"abc-1234"})", R"({"code":""})", R"({"phone":"++1234567"})",
                            R"({"phone":"123456"})", R"({"slug":"-a"})", R"({"slug":"Hello"})",
                            R"({"short":"abcdef"})", R"({"short":"ab1"})", R"({"drink":"coffee"})",
                            R"({"drink":"café"})", // a patterned string is printable ASCII
                            R"({"code":"\u0041BC-1234"})"}) { // written as itself, never escaped
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
    // Refused at the byte after which no match can follow.
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"code":"AB)"));
    CHECK(json_matcher(m).feed('C'));
    CHECK_FALSE(json_matcher(m).feed('-'));
    CHECK_FALSE(json_matcher(m).feed('c'));
    CHECK_FALSE(json_matcher(m).feed('"'));
    // Several bytes at once (a token's text) are checked as one.
    CHECK(json_matcher(m).feed("C-12"));
    CHECK(json_matcher(m).feed(R"(C-1234"})"));
    CHECK_FALSE(json_matcher(m).feed("C-12a"));
    CHECK_FALSE(json_matcher(m).feed(R"(C-12\u0033)"));
    CHECK_FALSE(json_matcher(m).feed(R"(C-123"})"));
}

TEST_CASE("patterned strings can always finish, and what they finish contains a match", "[json][schema][pattern]") {
    const json_schema s = json_schema::parse(patterns.dump());
    weft::serve::test::walk_strings(json_matcher(&s), 300, 21, 400, [](const std::string& key, const std::string& v) {
        CHECK(std::regex_search(v, std::regex(patterns["properties"][key]["pattern"].get<std::string>())));
        CHECK(v.size() <= json_schema::max_pattern_bytes);
    });
}

TEST_CASE("a pattern keeps only the enum values it matches and constrains strings only", "[json][schema][pattern]") {
    const json_schema s = json_schema::parse(R"({"type": "object", "properties": {
        "size": {"type": "string", "pattern": "^(S|M|L)$", "enum": ["S", "M", "XL"]},
        "n": {"type": ["integer", "string"], "pattern": "^x"},
        "id": {"type": "string", "pattern": "\\u0041\\d"}}})");
    CHECK(takes(s, R"({"size":"M"})"));
    CHECK_FALSE(takes(s, R"({"size":"XL"})"));
    CHECK(takes(s, R"({"n":12})"));
    CHECK(takes(s, R"({"n":"xy"})"));
    CHECK_FALSE(takes(s, R"({"n":"yx"})"));
    CHECK(takes(s, R"({"id":"A7"})")); // \u0041 read as ECMA-262 reads it
}
