#include "json_test_support.hpp"

#include <weft/serve/json_constraint.hpp>

#include <weft/serve/demo_model.hpp>
#include <weft/serve/tokenizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

using weft::serve::json_constraint;
using weft::serve::json_matcher;
using weft::serve::token_id;
using weft::serve::token_texts;
using weft::serve::tokenizer;

namespace {

/// Feeds `doc` a byte at a time; true when every byte is taken and the
/// object completes at the last one and not before.
bool completes_exactly(std::string_view doc) {
    json_matcher m;
    for (std::size_t i = 0; i < doc.size(); ++i) {
        if (m.complete() || !m.feed(static_cast<std::uint8_t>(doc[i]))) return false;
    }
    return m.complete();
}

bool strict_parse_object(const std::string& doc) {
    try {
        return nlohmann::json::parse(doc).is_object();
    } catch (const nlohmann::json::exception&) { // a syntax error, or a number beyond a double
        return false;
    }
}

/// A random JSON value of at most `depth` more levels, with strings over
/// ASCII, control characters, and 2-, 3- and 4-byte UTF-8 characters.
nlohmann::json random_value(std::mt19937_64& rng, int depth) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
    auto random_string = [&] {
        static const std::vector<std::string> pieces{"a", "Z", " ", "\"", "\\", "/", "\n", "\t", std::string(1, '\x01'),
                                                     "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\x7f", "key"};
        std::string s;
        for (int i = pick(6); i > 0; --i) s += pieces[static_cast<std::size_t>(pick(static_cast<int>(pieces.size())))];
        return s;
    };
    const int kind = depth > 0 ? pick(8) : pick(6);
    switch (kind) {
    case 0: return nullptr;
    case 1: return pick(2) == 0;
    case 2: return static_cast<std::int64_t>(rng()) >> pick(64);
    case 3: return std::ldexp(static_cast<double>(static_cast<std::int64_t>(rng())), pick(200) - 160);
    case 4:
    case 5: return random_string();
    case 6: {
        nlohmann::json a = nlohmann::json::array();
        for (int i = pick(4); i > 0; --i) a.push_back(random_value(rng, depth - 1));
        return a;
    }
    default: {
        nlohmann::json o = nlohmann::json::object();
        for (int i = pick(4); i > 0; --i) o[random_string()] = random_value(rng, depth - 1);
        return o;
    }
    }
}

nlohmann::json random_object(std::mt19937_64& rng) {
    nlohmann::json o = nlohmann::json::object();
    for (int i = static_cast<int>(rng() % 4); i > 0; --i) o["k" + std::to_string(i)] = random_value(rng, 4);
    return o;
}

} // namespace

TEST_CASE("json matcher takes a valid object byte by byte and completes at its closing brace", "[json]") {
    const std::vector<std::string> docs{
        "{}",
        " \n{ } ",
        R"({"a":1})",
        R"({"a":[1,-2.5e+3,0,0.0,1E5,-0,12e-07,true,false,null,"x",[],{}],"b":{"c":{"d":[[[]]]}}})",
        R"({"k":"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00 \uffff"})",
        "{\"\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xed\x9f\xbf\"}",
        "{\n  \"a\" : [ 1 , 2 ],\r\n\t\"b\":\"\"\n}",
    };
    for (const std::string& d : docs) {
        // The trailing whitespace of the second is past the end: trim it.
        const std::string doc = d.substr(0, d.find_last_not_of(' ') + 1);
        INFO(doc);
        CHECK(completes_exactly(doc));
        CHECK(strict_parse_object(doc));
    }
}

TEST_CASE("json matcher refuses a byte that no valid object can follow", "[json]") {
    const std::vector<std::string> bad{
        "[]",                         // the top level is an object
        "\"a\"",
        "1",
        "{,",
        R"({"a" 1)",
        R"({"a":})",
        R"({"a":1,})",
        R"({"a":01)",
        R"({"a":1.})",
        R"({"a":1.e5)",
        R"({"a":-})",
        R"({"a":+1)",
        R"({"a":1e})",
        R"({"a":tru})",
        R"({"a":nul1)",
        R"({"a":"\x"})",
        R"({"a":"\u12G"})",
        R"({"a":"\uDC00"})",          // a low surrogate alone
        R"({"a":"\uD800x"})",         // a high surrogate alone
        R"({"a":"\uD800\u0041"})",    // a high surrogate with no low one
        "{\"a\":\"\x01\"}",           // a control character unescaped
        "{\"a\":\"\xc0\x80\"}",       // overlong
        "{\"a\":\"\xe0\x80\xaf\"}",   // overlong
        "{\"a\":\"\xed\xa0\x80\"}",   // a surrogate in UTF-8
        "{\"a\":\"\xf4\x90\x80\x80\"}", // above U+10FFFF
        "{\"a\":\"\x80\"}",           // a continuation byte alone
        "{\"a\":\"\xc3\"}",           // a lead byte cut short
        R"({"a":])",
        R"({"a":[1})",
        R"({"a":{]})",
        R"({1:2})",
        "{}{}",
    };
    for (const std::string& doc : bad) {
        INFO(doc);
        json_matcher m;
        CHECK_FALSE(m.feed(doc));
        CHECK_FALSE(completes_exactly(doc));
        CHECK_FALSE(strict_parse_object(doc));
        // A refused feed leaves the state as it was.
        CHECK(m.depth() == 0);
        CHECK(m.feed('{'));
    }
    // Whitespace after the object is valid JSON, but a generator ends at the brace.
    json_matcher done;
    REQUIRE(done.feed("{}"));
    CHECK(done.complete());
    CHECK_FALSE(done.feed(' '));
}

TEST_CASE("json matcher bounds nesting and runs of whitespace", "[json]") {
    json_matcher m;
    REQUIRE(m.feed(R"({"a":)"));
    for (std::size_t d = 1; d < json_matcher::max_depth; ++d) REQUIRE(m.feed('['));
    CHECK(m.depth() == json_matcher::max_depth);
    json_matcher at_limit = m;
    CHECK_FALSE(at_limit.feed('['));
    CHECK_FALSE(at_limit.feed('{'));
    CHECK(at_limit.feed("1]"));

    json_matcher ws;
    REQUIRE(ws.feed(std::string(json_matcher::max_whitespace, ' ')));
    CHECK_FALSE(ws.feed('\n'));
    REQUIRE(ws.feed('{'));
    REQUIRE(ws.feed(std::string(json_matcher::max_whitespace, '\n')));
    CHECK_FALSE(ws.feed(' '));
    // Whitespace inside a string is text, not counted.
    CHECK(ws.feed('"'));
    CHECK(ws.feed(std::string(100, ' ')));
}

TEST_CASE("json matcher agrees with a strict parser on objects and their mutations", "[json]") {
    std::mt19937_64 rng(20261202);
    const std::string alphabet = "{}[]:,\"\\/ \n0123456789.eE+-tfnrulsabuUD\x01\x80\xc3\xed\xf4";
    std::size_t mutants_accepted = 0;
    for (int i = 0; i < 3000; ++i) {
        const nlohmann::json value = random_object(rng);
        for (const std::string& doc : {value.dump(), value.dump(2), value.dump(-1, ' ', true)}) {
            INFO(doc);
            REQUIRE(completes_exactly(doc));
            for (int k = 0; k < 4; ++k) {
                std::string mutant = doc;
                const std::size_t at = rng() % (mutant.size() + 1);
                const char c = alphabet[rng() % alphabet.size()];
                switch (rng() % 3) {
                case 0: mutant.insert(at, 1, c); break;
                case 1: if (at < mutant.size()) mutant[at] = c; break;
                default: if (at < mutant.size()) mutant.erase(at, 1); break;
                }
                INFO(mutant);
                const bool ours = completes_exactly(mutant);
                // Whitespace after the object is valid JSON; a generator ends at the brace.
                const bool trailing_space = std::isspace(static_cast<unsigned char>(mutant.back())) != 0;
                REQUIRE(ours == (strict_parse_object(mutant) && weft::serve::test::numbers_within_scale(mutant) &&
                                 !trailing_space));
                mutants_accepted += ours ? 1 : 0;
            }
        }
    }
    // The mutations must sometimes keep the document valid, or the check above proves little.
    CHECK(mutants_accepted > 1000);
}

TEST_CASE("json matcher keeps a number below 10^308, where every parser reads it as a double", "[json]") {
    const std::size_t max = json_matcher::max_number_scale;
    json_matcher m;
    REQUIRE(m.feed(R"({"a":)"));
    json_matcher digits = m;
    CHECK(digits.feed(std::string(max, '9')));
    CHECK_FALSE(digits.feed('9')); // a 309-digit integer
    CHECK(digits.feed(".5e-99999}"));
    CHECK(digits.complete());
    json_matcher exponent = m;
    CHECK(exponent.feed("-12.5e306"));
    CHECK_FALSE(exponent.feed('0')); // 12.5e3060
    CHECK(exponent.feed('}'));
    json_matcher plus = m;
    CHECK(plus.feed("0.5E+30"));
    CHECK_FALSE(plus.feed('8')); // 0.5e308: the bound counts the 0 before the point
    CHECK(plus.feed("7}"));
    json_matcher small = m;
    CHECK(small.feed("1e-4000000000}")); // underflows to zero: still a double
    CHECK(small.complete());
    for (json_matcher* done : {&digits, &plus}) CHECK_FALSE(done->feed(' '));
}

TEST_CASE("json matcher can always finish what it accepted", "[json]") {
    // Random walks over accepted bytes: wander for a while, then head for the
    // end by preferring bytes that close things. Every walk must reach a
    // complete object that a strict parser takes.
    std::mt19937_64 rng(7);
    const std::string closers = "\"}]0eDc";
    for (int walk = 0; walk < 500; ++walk) {
        const std::size_t wander = rng() % 300;
        const std::string doc = weft::serve::test::random_walk(json_matcher(), rng, wander, closers, closers);
        INFO(doc);
        REQUIRE(strict_parse_object(doc));
    }
}

TEST_CASE("token texts mark plain string content", "[json]") {
    const token_texts t(std::vector<std::string>{"abc", "a\"", "\\n", "\xc3\xa9", "\xc3", "\x01", "", " ", "\xed\xa0\x80"});
    REQUIRE(t.size() == 9);
    CHECK(t[0] == "abc");
    const std::vector<bool> plain{true, false, false, true, false, false, false, true, false};
    for (std::size_t i = 0; i < plain.size(); ++i) {
        INFO(i);
        CHECK(t.plain(static_cast<token_id>(i)) == plain[i]);
    }
}

TEST_CASE("json constraint masks exactly the tokens the matcher refuses, special ones always", "[json]") {
    const tokenizer tok(weft::serve::demo_tokenizer(512));
    auto texts = std::make_shared<const token_texts>(tok);
    REQUIRE(texts->size() == tok.vocab_size());
    json_constraint c(texts);
    std::mt19937_64 rng(3);
    std::vector<float> logits(tok.vocab_size());
    std::string out;
    std::size_t steps = 0;
    while (!c.complete() && steps < 4000) {
        for (float& l : logits) l = static_cast<float>(rng() % 1000) / 100.0f;
        const std::size_t left = c.mask(logits);
        REQUIRE(left > 0);
        std::size_t finite = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            const auto id = static_cast<token_id>(i);
            const bool kept = std::isfinite(logits[i]);
            finite += kept ? 1 : 0;
            REQUIRE(kept == c.allows(id));
            if (tok.is_special(id)) REQUIRE_FALSE(kept);
        }
        REQUIRE(finite == left);
        // Late on, favour the tokens that close things, as a model would.
        token_id best = -1;
        float best_score = 0.0f;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (!std::isfinite(logits[i])) continue;
            const std::string_view t = (*texts)[static_cast<token_id>(i)];
            const bool closes = t.find_first_of("}\"") != std::string_view::npos;
            const float score = logits[i] + (steps > 200 && closes ? 100.0f : 0.0f);
            if (best < 0 || score > best_score) {
                best = static_cast<token_id>(i);
                best_score = score;
            }
        }
        REQUIRE(c.advance(best));
        out += (*texts)[best];
        ++steps;
    }
    INFO(out);
    REQUIRE(c.complete());
    CHECK(strict_parse_object(out));
    for (const token_id eog : tok.eog_ids()) CHECK_FALSE(c.allows(eog));
    // After the object nothing is allowed.
    CHECK(c.mask(logits) == 0);
}
