// JSON mode and structured outputs on the server: response_format
// {"type": "json_object"} and {"type": "json_schema"}.
#include "server_test_support.hpp"

#include <weft/serve/json_constraint.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

namespace {

json json_mode_chat(bool stream) {
    json body = chat_body("Describe a cat as JSON.", 300);
    body["response_format"] = {{"type", "json_object"}};
    body["temperature"] = 1.0;
    body["seed"] = 11;
    body["n"] = 6;
    body["stream"] = stream;
    return body;
}

/// Each choice's content, the deltas of a streamed chat put together.
std::map<int, std::string> streamed_contents(const std::string& body) {
    std::map<int, std::string> out;
    for (const std::string& data : sse_data(body)) {
        if (data == "[DONE]") continue;
        const json event = json::parse(data);
        for (const json& c : event["choices"]) {
            if (c["delta"].contains("content")) out[c["index"].get<int>()] += c["delta"]["content"].get<std::string>();
        }
    }
    return out;
}

} // namespace

TEST_CASE("server in JSON mode replies with JSON objects, streamed or not", "[server][json]") {
    test_server srv;
    const http_reply whole = srv.post("/v1/chat/completions", json_mode_chat(false));
    REQUIRE(whole.status == 200);
    const json j = whole.body_json();
    REQUIRE(j["choices"].size() == 6);
    std::map<int, std::string> texts;
    std::size_t complete = 0;
    for (const json& c : j["choices"]) {
        const std::string content = c["message"]["content"];
        INFO(content);
        texts[c["index"].get<int>()] = content;
        json_matcher m;
        REQUIRE(m.feed(content));
        if (c["finish_reason"] == "stop") {
            ++complete;
            CHECK(json::parse(content).is_object());
        } else {
            CHECK(c["finish_reason"] == "length");
        }
    }
    CHECK(complete > 0);

    const http_reply streamed = srv.post("/v1/chat/completions", json_mode_chat(true));
    REQUIRE(streamed.status == 200);
    CHECK(streamed_contents(streamed.body) == texts);
}

TEST_CASE("a logit bias cannot make JSON mode take a token that breaks the object", "[server][json]") {
    test_server srv;
    const std::vector<token_id> brace = srv.vocab().encode("}", false, false);
    REQUIRE(brace.size() == 1);
    // Enough tokens that the bound on whitespace in a row must end any run of it.
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", 30}, {"temperature", 0},
                 {"logit_bias", {{std::to_string(brace[0]), 100}}}};
    // Free text takes the biased token at once.
    const json free = srv.post("/v1/completions", body).body_json();
    CHECK(free["choices"][0]["text"].get<std::string>().rfind('}', 0) == 0);

    body["response_format"] = {{"type", "json_object"}};
    const json constrained = srv.post("/v1/completions", body).body_json();
    const std::string text = constrained["choices"][0]["text"];
    INFO(text);
    json_matcher m;
    CHECK(m.feed(text));
    CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos);
    CHECK(text[text.find_first_not_of(" \t\r\n")] == '{');
}

TEST_CASE("server refuses unsupported schemas and unknown response formats with 400, naming what", "[server][json]") {
    test_server srv;
    json body = chat_body("hi", 4);
    body["response_format"] = json::parse(R"({"type": "json_schema", "json_schema": {"name": "x",
        "schema": {"type": "object", "properties": {"n": {"type": "array", "uniqueItems": true}}}}})");
    const http_reply r = srv.post("/v1/chat/completions", body);
    check_error(r, 400, "response_format.json_schema.schema");
    CHECK_THAT(r.body, Catch::Contains("properties.n.uniqueItems"));
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "x"}}}};
    check_error(srv.post("/v1/chat/completions", body), 400, "response_format.json_schema.schema");
    body["response_format"] = {{"type", "json_schema"}};
    check_error(srv.post("/v1/chat/completions", body), 400, "response_format.json_schema");
    body["response_format"] = {{"type", "xml"}};
    check_error(srv.post("/v1/chat/completions", body), 400, "response_format.type");
    // The server keeps serving.
    CHECK(srv.post("/v1/chat/completions", chat_body("hi", 4)).status == 200);
}

TEST_CASE("server with a JSON schema replies with objects the schema accepts, streamed or not", "[server][json]") {
    test_server srv;
    const json schema = json::parse(R"({
      "type": "object",
      "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "pet": {"enum": ["cat", "dog", null]},
        "born": {"type": "string", "format": "date"},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}$"},
        "site": {"type": "string", "format": "uri", "minLength": 1, "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
        "where": {"type": "array", "prefixItems": [{"type": "integer", "minimum": -90, "maximum": 90},
                  {"type": "integer", "minimum": -180, "maximum": 180}], "items": false, "minItems": 2},
        "colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "uniqueItems": true}
      },
      "required": ["name", "age", "pet", "born", "code", "site", "where"],
      "additionalProperties": false
    })");
    json body = chat_body("Describe a person as JSON.", 400);
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "person"}, {"schema", schema}, {"strict", true}}}};
    body["temperature"] = 1.0;
    body["seed"] = 5;
    body["n"] = 4;
    const json j = srv.post("/v1/chat/completions", body).body_json();
    REQUIRE(j["choices"].size() == 4);
    std::map<int, std::string> texts;
    std::size_t complete = 0;
    for (const json& c : j["choices"]) {
        const std::string content = c["message"]["content"];
        INFO(content);
        texts[c["index"].get<int>()] = content;
        if (c["finish_reason"] != "stop") continue;
        ++complete;
        const json v = json::parse(content);
        REQUIRE(v.is_object());
        CHECK(v.size() <= 10);
        CHECK(v["name"].is_string());
        CHECK(v["name"].get<std::string>().size() <= 8 * 4);
        CHECK((v["age"].is_number_integer() || v["age"].is_number_unsigned()));
        CHECK(v["age"].get<std::int64_t>() >= 0);
        CHECK(v["age"].get<std::int64_t>() <= 130);
        if (v.contains("score")) CHECK((v["score"].get<double>() > 0 && v["score"].get<double>() <= 1));
        CHECK((v["pet"] == "cat" || v["pet"] == "dog" || v["pet"].is_null()));
        if (v.contains("tags")) CHECK(v["tags"].size() <= 2);
        const std::string born = v["born"];
        CHECK(std::regex_match(born, std::regex(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))")));
        CHECK(std::regex_match(v["code"].get<std::string>(), std::regex("[A-Z]{2}[0-9]{2}")));
        REQUIRE(v["where"].size() == 2);
        CHECK(std::abs(v["where"][0].get<std::int64_t>()) <= 90);
        CHECK(std::abs(v["where"][1].get<std::int64_t>()) <= 180);
        if (v.contains("colours")) {
            std::set<std::string> distinct;
            for (const json& c : v["colours"]) distinct.insert(c.get<std::string>());
            CHECK(distinct.size() == v["colours"].size());
        }
        const std::string site = v["site"];
        CHECK(site.size() <= 40);
        CHECK(std::regex_match(site, std::regex(R"(https?://[A-Za-z0-9.-]+(:[0-9]+)?([/?#][!-~]*)?)")));
    }
    CHECK(complete > 0);

    body["stream"] = true;
    const http_reply streamed = srv.post("/v1/chat/completions", body);
    REQUIRE(streamed.status == 200);
    CHECK(streamed_contents(streamed.body) == texts);
}
