// Tools on the chat endpoint: function definitions, tool_choice, and the
// tool calls and results of a conversation's history.
#include "openai_test_support.hpp"

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/openai_request.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

namespace {

const char* const weather_tool = R"({"type": "function", "function": {"name": "get_weather",
    "description": "The weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
    "required": ["city"]}}})";
const char* const time_tool = R"({"type": "function", "function": {"name": "get_time"}})";

/// A chat body asking "hi" with `extra` fields (a JSON object's members).
std::string body_with(const std::string& extra) {
    return R"({"messages": [{"role": "user", "content": "hi"}], )" + extra + "}";
}

api_error refusal(const std::string& body) { return test::refusal(openai_endpoint::chat_completions, body); }

} // namespace

TEST_CASE("a named tool choice generates the function's arguments under its schema", "[openai][tools]") {
    const openai_request r = parse_chat_request(
        body_with(std::string("\"tools\": [") + weather_tool + ", " + time_tool +
                  R"(], "tool_choice": {"type": "function", "function": {"name": "get_weather"}})"),
        options());
    REQUIRE(r.tools.size() == 2);
    CHECK(r.tools[0].name == "get_weather");
    CHECK(r.tools[0].description == "The weather now");
    CHECK(json::parse(r.tools[0].parameters)["required"] == json::array({"city"}));
    CHECK(r.tools[1].parameters == "{}");
    CHECK(r.tool_call == "get_weather");
    CHECK_FALSE(r.tool_choice_required);
    CHECK(r.generation.format == output_format::json_schema);
    REQUIRE(r.generation.schema != nullptr);
}

TEST_CASE("tool_choice required with one tool forces it, and a schema without a type is an object's", "[openai][tools]") {
    const openai_request r = parse_chat_request(
        body_with(std::string("\"tools\": [") + time_tool + R"(], "tool_choice": "required", "parallel_tool_calls": false)"),
        options());
    CHECK(r.tool_call == "get_time");
    CHECK(r.tool_choice_required);
    CHECK_FALSE(r.parallel_tool_calls);
    REQUIRE(r.generation.schema != nullptr);
    CHECK(r.generation.format == output_format::json_schema);
    CHECK(parse_chat_request(body_with(std::string("\"tools\": [") + time_tool + "]"), options()).parallel_tool_calls);
}

TEST_CASE("tool_choice auto, the default with tools, leaves the model free and parses its calls", "[openai][tools]") {
    const std::string tools = std::string("\"tools\": [") + weather_tool + ", " + time_tool + "]";
    for (const std::string& extra : {tools, tools + R"(, "tool_choice": "auto")"}) {
        const openai_request r = parse_chat_request(body_with(extra), options());
        CHECK(r.parse_tool_calls);
        CHECK(r.tool_call.empty());
        CHECK(r.generation.format == output_format::text);
        CHECK(r.tools.size() == 2);
    }
}

TEST_CASE("tool_choice required with several tools generates one call object, its name first", "[openai][tools]") {
    // A function whose parameters use $defs: they move to the document's
    // $defs under the function's own prefix.
    const char* const shop_tool = R"({"type": "function", "function": {"name": "buy",
        "parameters": {"type": "object", "$defs": {"item": {"type": "string", "maxLength": 8}},
        "properties": {"what": {"$ref": "#/$defs/item"}}, "required": ["what"]}}})";
    const openai_request r = parse_chat_request(
        body_with(std::string("\"tools\": [") + weather_tool + ", " + time_tool + ", " + shop_tool +
                  R"(], "tool_choice": "required")"),
        options());
    CHECK(r.tool_call.empty());
    CHECK(r.tool_choice_required);
    CHECK(r.parse_tool_calls);
    CHECK(r.tool_syntax == tool_call_syntax::llama3_json);
    REQUIRE(r.generation.schema != nullptr);
    CHECK(r.generation.format == output_format::json_schema);
    // The schema takes a call of each function, and nothing else.
    const auto takes = [&](std::string_view doc) {
        json_matcher m(r.generation.schema.get());
        return m.feed(doc) && m.complete();
    };
    CHECK(takes(R"({"name":"get_weather","arguments":{"city":"Oslo"}})"));
    CHECK(takes(R"({"name":"get_time","arguments":{"any":[1]}})"));
    CHECK(takes(R"({"name":"buy","arguments":{"what":"milk"}})"));
    CHECK_FALSE(takes(R"({"name":"buy","arguments":{"what":"a long shopping list"}})"));
    CHECK_FALSE(takes(R"({"name":"get_weather","arguments":{}})"));
    CHECK_FALSE(takes(R"({"arguments":{},"name":"get_time"})"));
    CHECK_FALSE(takes(R"({"name":"launch","arguments":{}})"));
}

TEST_CASE("tool_choice none shows the tools and generates text", "[openai][tools]") {
    const openai_request r =
        parse_chat_request(body_with(std::string("\"tools\": [") + weather_tool + R"(], "tool_choice": "none")"), options());
    CHECK(r.tools.size() == 1);
    CHECK(r.tool_call.empty());
    CHECK(r.generation.format == output_format::text);
}

TEST_CASE("a conversation's tool calls and results are read into its messages", "[openai][tools]") {
    const openai_request r = parse_chat_request(R"({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})",
                                                options());
    REQUIRE(r.messages.size() == 3);
    REQUIRE(r.messages[1].tool_calls.size() == 1);
    CHECK(r.messages[1].tool_calls[0].id == "call_1");
    CHECK(r.messages[1].tool_calls[0].name == "get_weather");
    CHECK(r.messages[1].tool_calls[0].arguments == R"({"city": "Paris"})");
    CHECK(r.messages[2].role == chat_role::tool);
    CHECK(r.messages[2].tool_call_id == "call_1");
    CHECK(r.messages[2].content == "sunny");
}

TEST_CASE("tool requests weft cannot honour or that are malformed get 400 naming the field", "[openai][tools]") {
    const std::string weather = std::string("\"tools\": [") + weather_tool + "]";
    struct row {
        std::string body;
        const char* param;
    };
    const row rows[] = {
        {body_with(R"("tool_choice": "required")"), "tool_choice"},
        {body_with(R"("tool_choice": "auto")"), "tool_choice"},
        {body_with(weather + R"(, "tool_choice": "sometimes")"), "tool_choice"},
        {body_with(weather + R"(, "tool_choice": 3)"), "tool_choice"},
        {body_with(weather + R"(, "tool_choice": {"type": "function", "function": {"name": "nope"}})"),
         "tool_choice.function.name"},
        {body_with(weather + R"(, "tool_choice": {"type": "function"})"), "tool_choice.function"},
        {body_with(R"("tools": {}, "tool_choice": "none")"), "tools"},
        {body_with(R"("tools": [{"type": "retrieval"}], "tool_choice": "none")"), "tools[0].type"},
        {body_with(R"("tools": [{"type": "function", "function": {"name": "a b"}}], "tool_choice": "none")"),
         "tools[0].function.name"},
        {body_with(R"("tools": [{"type": "function", "function": {}}], "tool_choice": "none")"),
         "tools[0].function.name"},
        {body_with(std::string("\"tools\": [") + time_tool + "," + time_tool + R"(], "tool_choice": "none")"),
         "tools[1].function.name"},
        {body_with(R"("tools": [{"type": "function", "function": {"name": "f", "parameters": []}}], "tool_choice": "none")"),
         "tools[0].function.parameters"},
        {body_with(R"("tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "properties": {"n": {"type": "array", "uniqueItems": true}}}}}], "tool_choice": "required")"),
         "tools[0].function.parameters"},
        {body_with(weather + R"(, "tool_choice": "required", "response_format": {"type": "json_object"})"),
         "response_format"},
        {body_with(R"("functions": [{"name": "f"}])"), "functions"},
        {body_with(weather + R"(, "tool_choice": "none", "parallel_tool_calls": "yes")"), "parallel_tool_calls"},
        {R"({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "not json"}}]}]})",
         "messages[0].tool_calls[0].function.arguments"},
        {R"({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": {"a": 1}}}]}]})",
         "messages[0].tool_calls[0].function.arguments"},
        {R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})", "messages[0].tool_calls"},
        {R"({"messages": [{"role": "tool", "tool_call_id": 5, "content": "x"}]})", "messages[0].tool_call_id"},
    };
    for (const row& r : rows) {
        INFO("body: " << r.body);
        const api_error e = refusal(r.body);
        CHECK(e.status() == 400);
        CHECK(e.param() == r.param);
    }
}

TEST_CASE("a tool's parameters keep the client's key order for the prompt", "[openai][tools]") {
    const openai_request r = parse_chat_request(
        body_with(R"("tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "properties": {"zone": {"type": "string"}, "area": {"type": "string"}}, "required": ["zone"]}}}])"),
        options());
    REQUIRE(r.tools.size() == 1);
    CHECK(r.tools[0].parameters ==
          R"({"type":"object","properties":{"zone":{"type":"string"},"area":{"type":"string"}},"required":["zone"]})");
    // A tool without parameters keeps the default.
    CHECK(parse_chat_request(body_with(std::string("\"tools\": [") + time_tool + "]"), options()).tools[0].parameters ==
          "{}");
}
