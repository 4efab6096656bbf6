// JSON Schema `pattern` in structured outputs: what the matcher generates is
// checked with std::regex (ECMAScript, the dialect schemas are written in),
// not with the PCRE2 code the matcher runs.
#include "json_pattern.hpp"
#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

using weft::serve::json_matcher;
using weft::serve::json_schema;
using json = nlohmann::json;

namespace {

const json patterns = json::parse(R"({"type": "object", "properties": {
    "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
    "phone": {"type": "string", "pattern": "^\\+?[0-9 ]{7,12}$"},
    "slug": {"type": "string", "pattern": "[a-z]+(-[a-z]+)*"},
    "short": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
    "drink": {"type": "string", "pattern": "^(caf[eé]|t[eé]a)$"}}})");

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
                            R"({"short":"abcde"})", R"({"drink":"cafe"})", R"({"drink":"tea"})",
                            R"({"drink":"café"})"}) {
        INFO(doc);
        CHECK(takes(s, doc));
    }
    for (const char* doc : {R"({"code":"AB-1234"})", R"({"code":"ABC-123"})", R"({"code":"ABC-12345"})",
                            R"({"code":"abc-1234"})", R"({"code":""})", R"({"phone":"++1234567"})",
                            R"({"phone":"123456"})", R"({"slug":"-a"})", R"({"slug":"Hello"})",
                            R"({"short":"abcdef"})", R"({"short":"ab1"})", R"({"drink":"coffee"})",
                            R"({"drink":"cafè"})",
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

    // maxLength counts characters, not bytes.
    const json_schema names = json_schema::parse(
        R"({"type": "object", "properties": {"name": {"type": "string", "pattern": "^[А-ЯЁ][а-яё]+$", "maxLength": 4}}})");
    CHECK(takes(names, R"({"name":"Анна"})"));
    CHECK_FALSE(takes(names, R"({"name":"Алёна"})"));
    CHECK_FALSE(takes(names, R"({"name":"анна"})"));

    // A multi-byte character is taken whole, never its bytes one by one: a
    // text ending inside one is refused (PCRE2 matches whole characters).
    json_matcher d(&s);
    REQUIRE(d.feed(R"({"drink":"caf)"));
    CHECK(d.in_pattern());
    CHECK(json_matcher(d).feed("\xc3\xa9"));       // é
    CHECK(json_matcher(d).feed("\xc3\xa9\"}"));   // é, then the quote closes the match
    CHECK(d.accepts("\xc3\xa9"));
    CHECK_FALSE(json_matcher(d).feed(std::uint8_t{0xc3}));
    CHECK_FALSE(d.accepts("\xc3"));
    CHECK_FALSE(d.accepts("\xa9"));
    CHECK_FALSE(d.accepts("\xc3\xa8"));             // è: no match begins so
    CHECK_FALSE(d.accepts("\xc3\xa9\xc3"));        // ends inside a character
    CHECK_FALSE(d.accepts("\xc0\xa9"));             // overlong
    CHECK_FALSE(d.accepts("\xed\xa0\x80"));        // a surrogate
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

namespace {

/// UTF-8 text as code points (wchar_t is 32 bits here), for std::wregex,
/// which compares characters where std::regex would compare bytes.
std::wstring code_points(std::string_view utf8) {
    std::wstring out;
    for (std::size_t i = 0; i < utf8.size();) {
        const auto c = static_cast<unsigned char>(utf8[i]);
        const std::size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        char32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3f);
        out.push_back(static_cast<wchar_t>(cp));
        i += len;
    }
    return out;
}

} // namespace

TEST_CASE("a vocabulary mask offers the tokens that hold a pattern's non-ASCII characters whole",
          "[json][schema][pattern]") {
    static_assert(sizeof(wchar_t) == 4);
    const json schema = json::parse(R"({"type": "object", "additionalProperties": false,
        "required": ["name", "city", "word"], "properties": {
        "name": {"type": "string", "pattern": "^[А-ЯЁ][а-яё]+$", "maxLength": 6},
        "city": {"type": "string", "pattern": "^(Zürich|Genève|Bern)$"},
        "word": {"type": "string", "pattern": "^[\\u4e00-\\u9fff]{2,3}$"}}})");
    const auto compiled = std::make_shared<const json_schema>(json_schema::parse(schema.dump()));
    // Whole characters, runs of them, and pieces that cut one (the lone
    // bytes a byte-fallback vocabulary has, the first two bytes of 中).
    std::vector<std::string> pieces{
        "{", "}", "\"", ",", ":", "\"name\"", "\"city\"", "\"word\"", "\":\"", "\",\"", "\"}",
        "А", "Б", "Ж", "Ё", "а", "б", "ж", "ё", "на", "ан", "A",
        "Z", "ü", "Zür", "rich", "ich", "Gen", "ève", "è", "v", "Bern", "Ber", "r",
        "中", "文", "字", "中文", "\xd0", "\xd1", "\x90", "\xe4\xb8", "\xad", "é"};
    for (char c = 'a'; c <= 'z'; ++c) pieces.emplace_back(1, c);
    const auto vocab = std::make_shared<const weft::serve::token_texts>(pieces);
    std::mt19937_64 rng(5);
    std::size_t non_ascii_docs = 0;
    for (int walk = 0; walk < 200; ++walk) {
        weft::serve::json_constraint c(vocab, compiled);
        std::string doc;
        for (int steps = 0; steps < 400 && !c.complete(); ++steps) {
            std::vector<std::uint64_t> bits;
            REQUIRE(c.allowed(bits) > 0);
            std::vector<weft::serve::token_id> ids;
            for (std::size_t i = 0; i < pieces.size(); ++i) {
                const auto id = static_cast<weft::serve::token_id>(i);
                const bool on = (bits[i / 64] >> (i % 64) & 1) != 0;
                REQUIRE(on == c.allows(id));
                if (pieces[i].size() == 1 && static_cast<unsigned char>(pieces[i][0]) >= 0x80) REQUIRE_FALSE(on);
                if (on) ids.push_back(id);
            }
            const weft::serve::token_id id = ids[rng() % ids.size()];
            REQUIRE(c.advance(id));
            doc += pieces[static_cast<std::size_t>(id)];
        }
        INFO(doc);
        REQUIRE(c.complete());
        const json value = json::parse(doc); // also checks the UTF-8
        for (const auto& [key, v] : value.items()) {
            const std::wstring text = code_points(v.get<std::string>());
            const std::wstring pattern = code_points(schema["properties"][key]["pattern"].get<std::string>());
            CHECK(std::regex_search(text, std::wregex(pattern)));
        }
        CHECK(code_points(value["name"].get<std::string>()).size() <= 6);
        non_ascii_docs += doc.find("\xd0") != std::string::npos ? 1 : 0;
    }
    CHECK(non_ascii_docs == 200);
}

TEST_CASE("a pattern reads as ASCII only when none of its items can match a non-ASCII character",
          "[json][schema][pattern]") {
    using weft::serve::json_pattern;
    for (const char* p : {R"(^[A-Z]{3}-\d{4}$)", R"(^\+?[0-9 ]{7,12}\.?$)", R"(\bword\b\s\w+)", R"((?:ab)+(?=c))"}) {
        INFO(p);
        CHECK(json_pattern(p).ascii_only());
    }
    for (const char* p : {"^caf[eé]$", "a.b", "[^a]", "[[:^alpha:]]", R"(\D)", R"(\h)", R"(\p{L})", R"(\xe9)",
                          R"(\u00e9)", R"(\351)", "(?i)k"}) {
        INFO(p);
        CHECK_FALSE(json_pattern(p).ascii_only());
        // Each of these does match a non-ASCII character somewhere.
        CHECK((json_pattern(p).found_in("caf\xc3\xa9") || json_pattern(p).found_in("\xc3\xa9") ||
               json_pattern(p).found_in("a\xc3\xa9" "b") || json_pattern(p).found_in("\xe2\x84\xaa") ||
               json_pattern(p).found_in("\xc2\xa0"))); // é, the Kelvin sign, a no-break space
    }
}

TEST_CASE("patternProperties keys are generated as matches of the pattern, their values against its schema",
          "[json][schema][pattern]") {
    const json_schema s = json_schema::parse(R"({"type": "object", "properties": {"scores": {"type": "object",
        "patternProperties": {"^[a-z]{2,8}$": {"type": "integer"}}, "maxProperties": 3}}})");
    for (const char* doc : {R"({"scores":{}})", R"({"scores":{"ab":1,"xyz":-2}})", R"({"scores":{"abcdefgh":0}})"}) {
        INFO(doc);
        CHECK(takes(s, doc));
    }
    for (const char* doc : {R"({"scores":{"a":1}})", R"({"scores":{"AB":1}})", R"({"scores":{"ab":"x"}})",
                            R"({"scores":{"abcdefghi":1}})", R"({"scores":{"ab":1,"cd":2,"ef":3,"gh":4}})",
                            R"({"scores":{"a\u0062":1}})"}) {
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
    // A key is refused at the byte after which no match can follow.
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"scores":{"a)"));
    CHECK(m.in_pattern());
    CHECK_FALSE(json_matcher(m).feed('B'));
    CHECK_FALSE(json_matcher(m).feed('"'));
    CHECK(json_matcher(m).feed(R"(b":)"));
    CHECK(m.accepts("bc"));
    CHECK_FALSE(m.accepts("b1"));

    // Random documents: every key a match, every value an integer.
    std::mt19937_64 rng(9);
    const std::regex key("^[a-z]{2,8}$");
    std::size_t keys = 0;
    for (int walk = 0; walk < 200; ++walk) {
        const std::string doc = weft::serve::test::random_walk(json_matcher(&s), rng, rng() % 120, R"(":,}0)", "},");
        INFO(doc);
        const json value = json::parse(doc);
        if (!value.contains("scores")) continue;
        CHECK(value["scores"].size() <= 3);
        for (const auto& [k, v] : value["scores"].items()) {
            CHECK(std::regex_search(k, key));
            CHECK(v.is_number_integer());
            ++keys;
        }
    }
    CHECK(keys > 50);
}
