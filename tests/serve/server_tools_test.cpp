// Forced tool calls on the server: the reply is a call of the function, its
// arguments generated under the function's parameters schema.
#include "server_test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <string>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

namespace {

json weather_tool() {
    return json::parse(R"({"type": "function", "function": {"name": "get_weather", "description": "The weather now",
      "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
        "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"], "additionalProperties": false}}})");
}

json tool_chat(const json& tool_choice, bool stream) {
    json body = chat_body("What is the weather in Paris?", 300);
    body["tools"] = json::array({weather_tool()});
    body["tool_choice"] = tool_choice;
    body["temperature"] = 1.0;
    body["seed"] = 21;
    body["n"] = 4;
    body["stream"] = stream;
    return body;
}

json named_choice() { return json::parse(R"({"type": "function", "function": {"name": "get_weather"}})"); }

struct streamed_call {
    std::string id, name, arguments, finish_reason, content;
};

/// Each choice's call, the deltas of a streamed chat put together.
std::map<int, streamed_call> streamed_calls(const std::string& body) {
    std::map<int, streamed_call> out;
    for (const std::string& data : sse_data(body)) {
        if (data == "[DONE]") continue;
        const json event = json::parse(data);
        for (const json& c : event["choices"]) {
            streamed_call& call = out[c["index"].get<int>()];
            if (c["finish_reason"].is_string()) call.finish_reason = c["finish_reason"];
            const json& delta = c["delta"];
            if (delta.contains("content") && delta["content"].is_string()) call.content += delta["content"];
            if (!delta.contains("tool_calls")) continue;
            REQUIRE(delta["tool_calls"].size() == 1);
            const json& tc = delta["tool_calls"][0];
            CHECK(tc["index"] == 0);
            if (tc.contains("id")) {
                CHECK(call.id.empty()); // the id and name open the call once
                call.id = tc["id"];
                call.name = tc["function"]["name"];
                CHECK(tc["type"] == "function");
            }
            call.arguments += tc["function"]["arguments"].get<std::string>();
        }
    }
    return out;
}

/// The schema's rules, checked on a finished call's arguments.
void check_arguments(const std::string& arguments) {
    INFO(arguments);
    const json v = json::parse(arguments);
    REQUIRE(v.is_object());
    CHECK(v.size() == 2);
    REQUIRE(v.contains("city"));
    CHECK(v["city"].is_string());
    CHECK((v["unit"] == "c" || v["unit"] == "f"));
}

} // namespace

TEST_CASE("server answers a named tool choice with a call whose arguments keep to the schema, streamed or not",
          "[server][tools]") {
    test_server srv;
    const http_reply whole = srv.post("/v1/chat/completions", tool_chat(named_choice(), false));
    REQUIRE(whole.status == 200);
    const json j = whole.body_json();
    REQUIRE(j["choices"].size() == 4);
    std::map<int, std::string> arguments;
    std::map<int, std::string> ids;
    std::size_t complete = 0;
    for (const json& c : j["choices"]) {
        const json& msg = c["message"];
        CHECK(msg["role"] == "assistant");
        CHECK(msg["content"].is_null());
        REQUIRE(msg["tool_calls"].size() == 1);
        const json& call = msg["tool_calls"][0];
        CHECK(call["type"] == "function");
        CHECK(call["function"]["name"] == "get_weather");
        const std::string id = call["id"];
        CHECK(id.rfind("call_", 0) == 0);
        CHECK(ids.count(c["index"].get<int>()) == 0);
        ids[c["index"].get<int>()] = id;
        arguments[c["index"].get<int>()] = call["function"]["arguments"];
        if (c["finish_reason"] == "stop") { // named: "stop", as OpenAI's
            ++complete;
            check_arguments(call["function"]["arguments"]);
        } else {
            CHECK(c["finish_reason"] == "length");
        }
    }
    CHECK(complete > 0);
    // Every choice has its own call id.
    CHECK(ids.size() == 4);
    CHECK(ids[0] != ids[1]);

    const http_reply streamed = srv.post("/v1/chat/completions", tool_chat(named_choice(), true));
    REQUIRE(streamed.status == 200);
    const std::map<int, streamed_call> calls = streamed_calls(streamed.body);
    REQUIRE(calls.size() == 4);
    for (const auto& [index, call] : calls) {
        INFO("choice " << index);
        CHECK(call.id.rfind("call_", 0) == 0);
        CHECK(call.name == "get_weather");
        CHECK(call.content.empty());
        CHECK(call.arguments == arguments[index]); // the same seed: the same arguments
        CHECK(call.finish_reason == j["choices"][index]["finish_reason"].get<std::string>());
    }
}

TEST_CASE("tool_choice required finishes a complete call with finish_reason tool_calls", "[server][tools]") {
    test_server srv;
    const json j = srv.post("/v1/chat/completions", tool_chat("required", false)).body_json();
    REQUIRE(j["choices"].size() == 4);
    std::size_t complete = 0;
    for (const json& c : j["choices"]) {
        if (c["finish_reason"] == "length") continue;
        CHECK(c["finish_reason"] == "tool_calls");
        check_arguments(c["message"]["tool_calls"][0]["function"]["arguments"]);
        ++complete;
    }
    CHECK(complete > 0);
}

TEST_CASE("with tool_choice auto a reply in the template's call syntax becomes tool calls, streamed or not",
          "[server][tools]") {
    // The demo model's template is Llama 3's, whose models call a function by
    // replying {"name": .., "parameters": {..}}. A response_format holds the
    // random model to that shape, so that its reply is a call to parse.
    test_server srv;
    json body = tool_chat("auto", false);
    const json call_schema = json::parse(R"({"type": "object", "properties": {
        "name": {"const": "get_weather"},
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                       "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"], "additionalProperties": false}},
        "required": ["name", "parameters"], "additionalProperties": false})");
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "call"}, {"schema", call_schema}}}};
    const json j = srv.post("/v1/chat/completions", body).body_json();
    REQUIRE(j["choices"].size() == 4);
    std::map<int, std::string> arguments;
    std::size_t called = 0;
    for (const json& c : j["choices"]) {
        const json& msg = c["message"];
        if (c["finish_reason"] == "length") {
            // Cut short: not a call, the text is the content.
            CHECK(msg["content"].is_string());
            CHECK_FALSE(msg.contains("tool_calls"));
            continue;
        }
        INFO(c.dump());
        REQUIRE(c["finish_reason"] == "tool_calls");
        CHECK(msg["content"].is_null());
        REQUIRE(msg["tool_calls"].size() == 1);
        CHECK(msg["tool_calls"][0]["function"]["name"] == "get_weather");
        CHECK(msg["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0) == 0);
        const std::string args = msg["tool_calls"][0]["function"]["arguments"];
        check_arguments(args);
        arguments[c["index"].get<int>()] = args;
        ++called;
    }
    CHECK(called > 0);

    body["stream"] = true;
    const http_reply streamed = srv.post("/v1/chat/completions", body);
    REQUIRE(streamed.status == 200);
    const std::map<int, streamed_call> calls = streamed_calls(streamed.body);
    for (const auto& [index, args] : arguments) {
        INFO("choice " << index);
        const auto it = calls.find(index);
        REQUIRE(it != calls.end());
        CHECK(it->second.name == "get_weather");
        CHECK(it->second.content.empty());
        CHECK(it->second.arguments == args);
        CHECK(it->second.finish_reason == "tool_calls");
    }
}

TEST_CASE("with tool_choice auto a plain reply stays content", "[server][tools]") {
    test_server srv;
    json body = chat_body("What is the weather in Paris?", 12);
    body["tools"] = json::array({weather_tool()});
    const json j = srv.post("/v1/chat/completions", body).body_json();
    const json& c = j["choices"][0];
    INFO(c.dump());
    CHECK(c["message"]["content"].is_string());
    CHECK_FALSE(c["message"].contains("tool_calls"));
    CHECK(c["finish_reason"] != "tool_calls");
}

TEST_CASE("server takes a conversation with tool calls and results", "[server][tools]") {
    test_server srv;
    json body = chat_body("unused", 8);
    body["messages"] = json::parse(R"([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"c\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"}])");
    body["tools"] = json::array({weather_tool()});
    body["tool_choice"] = "none";
    const http_reply r = srv.post("/v1/chat/completions", body);
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    CHECK(j["choices"][0]["message"]["content"].is_string());
    CHECK_FALSE(j["choices"][0]["message"].contains("tool_calls"));
    CHECK(j["usage"]["prompt_tokens"].get<int>() > 100); // the tools and the history are in the prompt

    body["tool_choice"] = "sometimes";
    check_error(srv.post("/v1/chat/completions", body), 400, "tool_choice");
    // The server keeps serving.
    CHECK(srv.post("/v1/chat/completions", chat_body("hi", 4)).status == 200);
}

TEST_CASE("tool_choice required with several tools replies with a call of one of them, streamed or not",
          "[server][tools]") {
    test_server srv;
    json body = tool_chat("required", false);
    body["tools"].push_back(json::parse(R"({"type": "function", "function": {"name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"],
        "additionalProperties": false}}})"));
    const json j = srv.post("/v1/chat/completions", body).body_json();
    REQUIRE(j["choices"].size() == 4);
    std::map<int, std::pair<std::string, std::string>> calls; // name, arguments
    for (const json& c : j["choices"]) {
        if (c["finish_reason"] == "length") continue;
        INFO(c.dump());
        REQUIRE(c["finish_reason"] == "tool_calls");
        CHECK(c["message"]["content"].is_null());
        REQUIRE(c["message"]["tool_calls"].size() == 1);
        const json& f = c["message"]["tool_calls"][0]["function"];
        const std::string name = f["name"], args = f["arguments"];
        if (name == "get_weather") {
            check_arguments(args);
        } else {
            REQUIRE(name == "get_time");
            const json v = json::parse(args);
            CHECK(v.size() == 1);
            CHECK((v["zone"] == "utc" || v["zone"] == "cet"));
        }
        calls[c["index"].get<int>()] = {name, args};
    }
    CHECK_FALSE(calls.empty());

    body["stream"] = true;
    const std::map<int, streamed_call> streamed = streamed_calls(srv.post("/v1/chat/completions", body).body);
    for (const auto& [index, call] : calls) {
        INFO("choice " << index);
        const auto it = streamed.find(index);
        REQUIRE(it != streamed.end());
        CHECK(it->second.name == call.first);
        CHECK(it->second.arguments == call.second);
        CHECK(it->second.content.empty());
        CHECK(it->second.finish_reason == "tool_calls");
    }
}

TEST_CASE("tool_choice auto needs a template family with call syntax: Mistral v0.3 has one, Llama 2 and earlier "
          "Mistral do not", "[server][tools]") {
    for (const chat_template_style style : {chat_template_style::llama2, chat_template_style::mistral}) {
        INFO(to_string(style));
        setup s;
        s.chat_style = style;
        test_server srv(s);
        const http_reply r = srv.post("/v1/chat/completions", tool_chat("auto", false));
        check_error(r, 400, "tool_choice");
        CHECK(r.body.find(std::string(to_string(style))) != std::string::npos);
        // A named call needs no syntax to parse.
        CHECK(srv.post("/v1/chat/completions", tool_chat(named_choice(), false)).status == 200);
    }
    setup s;
    s.chat_style = chat_template_style::mistral_v3;
    test_server srv(s);
    const http_reply r = srv.post("/v1/chat/completions", tool_chat("auto", false));
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    for (const json& c : j["choices"]) {
        // The random model writes no [TOOL_CALLS]: its reply is content.
        CHECK(c["message"]["content"].is_string());
        CHECK(c["finish_reason"] != "tool_calls");
    }
}
