#include <weft/serve/stop_matcher.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using weft::serve::stop_matcher;

namespace {
// Pushes pieces until a stop; returns everything emitted (plus the flush when
// no stop came) and whether it stopped.
std::pair<std::string, bool> run(stop_matcher& m, const std::vector<std::string>& pieces) {
    std::string out;
    for (const auto& p : pieces) {
        auto r = m.push(p);
        out += r.emit;
        if (r.stopped) {
            return {out, true};
        }
    }
    return {out + m.flush(), false};
}
} // namespace

TEST_CASE("stop matcher finds a stop string across token boundaries", "[stop]") {
    stop_matcher m({"lo w"});
    auto r1 = m.push("Hel");
    CHECK(r1.emit == "He"); // "l" might start "lo w"
    CHECK_FALSE(r1.stopped);
    CHECK(m.held() == "l");
    auto r2 = m.push("lo wor");
    CHECK(r2.emit == "l");
    CHECK(r2.stopped);
    CHECK(m.stopped());
    auto r3 = m.push("ld");
    CHECK(r3.emit.empty());
    CHECK(r3.stopped);
    CHECK(m.flush().empty());
}

TEST_CASE("stop matcher holds a partial match and releases it when it fails", "[stop]") {
    stop_matcher m({"</end>"});
    auto r1 = m.push("abc</e");
    CHECK(r1.emit == "abc");
    CHECK(m.held() == "</e");
    auto r2 = m.push("n");
    CHECK(r2.emit.empty());
    CHECK(m.held() == "</en");
    auto r3 = m.push("x> done");
    CHECK(r3.emit == "</enx> done");
    CHECK_FALSE(r3.stopped);
    CHECK(m.held().empty());
}

TEST_CASE("stop matcher returns the held tail on flush", "[stop]") {
    stop_matcher m({"STOP"});
    CHECK(m.push("the end ST").emit == "the end ");
    CHECK(m.flush() == "ST");
    CHECK(m.flush().empty());
}

TEST_CASE("stop matcher stops at the earliest of several stop strings", "[stop]") {
    stop_matcher m({"world", "o w", "\n\n"});
    auto [text, stopped] = run(m, {"hell", "o wo", "rld"});
    CHECK(stopped);
    CHECK(text == "hell");

    stop_matcher m2({"xyz", "\n\n"});
    auto [text2, stopped2] = run(m2, {"line one\n", "\nline two"});
    CHECK(stopped2);
    CHECK(text2 == "line one");
}

TEST_CASE("stop matcher handles stop strings with overlapping prefixes", "[stop]") {
    SECTION("a failed longer candidate still leaves a shorter one") {
        stop_matcher m({"abcd", "bce"});
        auto r1 = m.push("xab");
        CHECK(r1.emit == "x");
        CHECK(m.held() == "ab");
        auto r2 = m.push("c");
        CHECK(r2.emit.empty());
        CHECK(m.held() == "abc"); // "abcd" still possible; "bc" starts "bce"
        auto r3 = m.push("e!");
        CHECK(r3.stopped);
        CHECK(r3.emit == "a");
    }
    SECTION("a self-overlapping stop string") {
        stop_matcher m({"aab"});
        auto [text, stopped] = run(m, {"a", "a", "a", "a", "b", "c"});
        CHECK(stopped);
        CHECK(text == "aa");
    }
    SECTION("one stop string is a prefix of another") {
        stop_matcher m({"ab", "abc"});
        auto r = m.push("zab");
        CHECK(r.stopped);
        CHECK(r.emit == "z");
    }
}

TEST_CASE("stop matcher with no stop strings emits everything at once", "[stop]") {
    stop_matcher m({});
    CHECK(m.push("anything").emit == "anything");
    CHECK(m.push("").emit.empty());
    CHECK(m.flush().empty());
    stop_matcher empties({"", ""});
    CHECK(empties.push("abc").emit == "abc");
    CHECK_FALSE(empties.stopped());
}

TEST_CASE("stop matcher finds a stop string completed by a single push", "[stop]") {
    stop_matcher m({"END"});
    auto r = m.push("xENDy");
    CHECK(r.stopped);
    CHECK(r.emit == "x");
}

TEST_CASE("stop matcher output equals the text cut at the first stop for any split", "[stop]") {
    const std::string text = "say hello, hello world; then stop here: STOP and more";
    const std::vector<std::string> stops{"world;", "STOP", "hello w"};
    const std::string expected = text.substr(0, text.find("hello w"));
    for (std::size_t step = 1; step <= 7; ++step) {
        stop_matcher m(stops);
        std::vector<std::string> pieces;
        for (std::size_t i = 0; i < text.size(); i += step) {
            pieces.push_back(text.substr(i, step));
        }
        auto [out, stopped] = run(m, pieces);
        INFO("piece size " << step);
        CHECK(stopped);
        CHECK(out == expected);
    }
}
