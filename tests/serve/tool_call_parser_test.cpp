// Tool calls found in free text (tool_choice "auto"), whole and streamed.
#include <weft/serve/tool_call_parser.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace weft::serve;

namespace {

struct parsed {
    std::string content;
    std::vector<chat_tool_call> calls;
};

/// `text` fed in pieces of `step` bytes (0: whole), then finished.
parsed run(tool_call_syntax syntax, const std::string& text, std::size_t step = 0, std::size_t max_calls = 0) {
    tool_call_parser p(syntax, {"get_weather", "get_time"}, max_calls);
    parsed out;
    const auto take = [&](tool_call_parser::output o) {
        out.content += o.content;
        for (auto& c : o.calls) out.calls.push_back(std::move(c));
    };
    if (step == 0) {
        take(p.feed(text));
    } else {
        for (std::size_t i = 0; i < text.size(); i += step) take(p.feed(text.substr(i, step)));
    }
    take(p.finish());
    CHECK(p.called() == !out.calls.empty());
    return out;
}

/// The same result whole and fed one to seven bytes at a time.
parsed run_every_split(tool_call_syntax syntax, const std::string& text, std::size_t max_calls = 0) {
    const parsed whole = run(syntax, text, 0, max_calls);
    for (std::size_t step = 1; step <= 7; ++step) {
        INFO("pieces of " << step << " bytes");
        const parsed split = run(syntax, text, step, max_calls);
        CHECK(split.content == whole.content);
        REQUIRE(split.calls.size() == whole.calls.size());
        for (std::size_t i = 0; i < split.calls.size(); ++i) {
            CHECK(split.calls[i].name == whole.calls[i].name);
            CHECK(split.calls[i].arguments == whole.calls[i].arguments);
        }
    }
    return whole;
}

} // namespace

TEST_CASE("hermes tool calls are found around content, however the text is split", "[tools][parser]") {
    const parsed p = run_every_split(
        tool_call_syntax::hermes,
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"CET\\\"}\"}\n</tool_call>");
    CHECK(p.content == "Let me check.\n");
    REQUIRE(p.calls.size() == 2);
    CHECK(p.calls[0].name == "get_weather");
    CHECK(p.calls[0].arguments == "{\"city\":\"Paris\"}");
    CHECK(p.calls[1].name == "get_time");
    CHECK(p.calls[1].arguments == "{\"zone\":\"CET\"}"); // arguments given as a string of JSON
}

TEST_CASE("hermes text that only looks like a call stays content", "[tools][parser]") {
    // An unknown function, JSON that does not parse, a block never closed,
    // a partial tag at the end, a '<' of plain text.
    for (const std::string text : {"<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>",
                                   "a <tool_call>{\"name\": \"get_time\", </tool_call> b",
                                   "x<tool_call>{\"name\": \"get_time\"", "1 < 2 and <tool_"}) {
        CHECK(run_every_split(tool_call_syntax::hermes, text).content == text);
    }
    const parsed none = run_every_split(tool_call_syntax::hermes, "Just text.");
    CHECK(none.content == "Just text.");
    CHECK(none.calls.empty());
}

TEST_CASE("hermes content streams at once unless it may start a tag", "[tools][parser]") {
    tool_call_parser p(tool_call_syntax::hermes, {"get_time"});
    CHECK(p.feed("Hello <").content == "Hello ");
    CHECK(p.feed("b>").content == "<b>");
    CHECK(p.feed("<tool_call>{\"name\": \"get_time\", \"arguments\": {}}").content.empty());
    const tool_call_parser::output o = p.feed("</tool_call>");
    REQUIRE(o.calls.size() == 1);
    CHECK(o.calls[0].arguments == "{}");
}

TEST_CASE("a Llama 3 reply of JSON call objects is calls, any other reply content", "[tools][parser]") {
    const parsed one = run_every_split(tool_call_syntax::llama3_json,
                                       " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}");
    REQUIRE(one.calls.size() == 1);
    CHECK(one.content.empty());
    CHECK(one.calls[0].arguments == "{\"city\":\"Rome\"}");
    const parsed two = run_every_split(tool_call_syntax::llama3_json,
                                       "{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", "
                                       "\"parameters\": {\"city\": \"}{\"}}");
    REQUIRE(two.calls.size() == 2);
    CHECK(two.calls[1].arguments == "{\"city\":\"}{\"}");
    // Text before the object, an object that is not a call, a call cut short.
    for (const std::string text : {"It is sunny. {\"name\": \"get_time\", \"parameters\": {}}", "{\"answer\": 42}",
                                   "{\"name\": \"get_time\", \"parameters\": {"}) {
        CHECK(run_every_split(tool_call_syntax::llama3_json, text).content == text);
    }
}

TEST_CASE("template families map to the call syntax their models write", "[tools][parser]") {
    CHECK(tool_call_syntax_for(chat_template_style::chatml) == tool_call_syntax::hermes);
    CHECK(tool_call_syntax_for(chat_template_style::fallback) == tool_call_syntax::hermes);
    CHECK(tool_call_syntax_for(chat_template_style::llama3) == tool_call_syntax::llama3_json);
    CHECK(tool_call_syntax_for(chat_template_style::llama2) == tool_call_syntax::none);
    CHECK(tool_call_syntax_for(chat_template_style::mistral) == tool_call_syntax::none);
    CHECK(tool_call_syntax_for(chat_template_style::mistral_v3) == tool_call_syntax::mistral);
}

TEST_CASE("with parallel tool calls off a reply ends with its first call", "[tools][parser]") {
    // Hermes: the text after the first call, a second call included, is dropped.
    const parsed h = run_every_split(
        tool_call_syntax::hermes,
        "On it.<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call> and also "
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call> done",
        1);
    CHECK(h.content == "On it.");
    REQUIRE(h.calls.size() == 1);
    CHECK(h.calls[0].name == "get_time");
    // Llama 3: the first of the reply's call objects.
    const parsed l = run_every_split(tool_call_syntax::llama3_json,
                                     "{\"name\": \"get_weather\", \"parameters\": {}}; {\"name\": \"get_time\", "
                                     "\"parameters\": {}}",
                                     1);
    REQUIRE(l.calls.size() == 1);
    CHECK(l.calls[0].name == "get_weather");
    // A block that is not a call does not count: the next one is the call.
    const parsed n = run_every_split(
        tool_call_syntax::hermes,
        "<tool_call>{\"name\": \"launch\"}</tool_call><tool_call>{\"name\": \"get_time\"}</tool_call>x", 1);
    CHECK(n.content == "<tool_call>{\"name\": \"launch\"}</tool_call>");
    REQUIRE(n.calls.size() == 1);
    // Once done, the parser says so and lets nothing more out.
    tool_call_parser p(tool_call_syntax::hermes, {"get_time"}, 1);
    CHECK_FALSE(p.done());
    CHECK(p.feed("<tool_call>{\"name\": \"get_time\"}</tool_call>").calls.size() == 1);
    CHECK(p.done());
    CHECK(p.feed("more <tool_call>").content.empty());
    CHECK(p.finish().content.empty());
}

TEST_CASE("a Mistral reply is content up to [TOOL_CALLS], then a JSON array of calls", "[tools][parser]") {
    const parsed p = run_every_split(
        tool_call_syntax::mistral,
        R"(Checking.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, )"
        R"({"name": "get_time", "arguments": {}, "id": "abcDEF123"}])");
    CHECK(p.content == "Checking.");
    REQUIRE(p.calls.size() == 2);
    CHECK(p.calls[0].arguments == R"({"city":"Paris"})");
    CHECK(p.calls[1].name == "get_time");
    // One object rather than an array is a call too.
    CHECK(run_every_split(tool_call_syntax::mistral, R"([TOOL_CALLS]{"name": "get_time", "arguments": {}})")
              .calls.size() == 1);
    // Not calls: an unknown function, JSON that does not parse, a partial marker, plain brackets.
    for (const std::string text : {R"([TOOL_CALLS] [{"name": "launch", "arguments": {}}])",
                                   R"([TOOL_CALLS] [{"name": "get_time", )", "a [TOOL_CA", "[1, 2] [x]"}) {
        const parsed n = run_every_split(tool_call_syntax::mistral, text);
        CHECK(n.content == text);
        CHECK(n.calls.empty());
    }
    // With parallel calls off, the first of the array.
    const parsed one = run_every_split(
        tool_call_syntax::mistral,
        R"([TOOL_CALLS] [{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {}}])", 1);
    REQUIRE(one.calls.size() == 1);
    CHECK(one.calls[0].name == "get_time");
}
