// The shapes of a completion beyond one plain choice: `n` choices per
// request, batches of prompts and `echo`; each choice its own engine
// request, in one JSON body or interleaved in one event stream.
#include "server_test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

TEST_CASE("server returns n choices, choice i drawn as a request with seed + i", "[server][choices]") {
    test_server srv;
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 1.0},
                 {"seed", 7},                    {"n", 3},           {"ignore_eos", true}};
    const http_reply r = srv.post("/v1/completions", body);
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    REQUIRE(j["choices"].size() == 3);
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < 3; ++i) {
        const json& c = j["choices"][i];
        CHECK(c["index"] == i);
        CHECK(c["finish_reason"] == "length");
        texts.push_back(c["text"]);
    }
    CHECK(texts[0] != texts[1]);
    CHECK(texts[1] != texts[2]);
    CHECK(j["usage"]["completion_tokens"] == 36);
    CHECK(j["usage"]["prompt_tokens"] == srv.vocab().encode("Once upon a time", true, true).size());

    // Batch invariance: each choice is exactly what one request with its seed gives.
    body["n"] = 1;
    for (std::size_t i = 0; i < 3; ++i) {
        body["seed"] = 7 + i;
        CHECK(srv.post("/v1/completions", body).body_json()["choices"][0]["text"] == texts[i]);
    }
}

TEST_CASE("server streams n chat choices interleaved, each with its index, then usage and [DONE]",
          "[server][choices]") {
    test_server srv;
    json body = chat_body("Tell me a story.", 10);
    body["n"] = 4;
    body["seed"] = 11;
    body["temperature"] = 0.8;
    body["ignore_eos"] = true;
    const json whole = srv.post("/v1/chat/completions", body).body_json();
    REQUIRE(whole["choices"].size() == 4);

    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    const http_reply r = srv.post("/v1/chat/completions", body);
    REQUIRE(r.status == 200);
    const std::vector<std::string> events = sse_data(r.body);
    REQUIRE(events.size() >= 4 + 4 + 2);
    CHECK(events.back() == "[DONE]");
    std::map<int, std::string> text;
    std::map<int, int> roles, finishes;
    for (std::size_t e = 0; e + 2 < events.size(); ++e) {
        const json c = json::parse(events[e]);
        CHECK(c["object"] == "chat.completion.chunk");
        CHECK(c["id"] == json::parse(events[0])["id"]);
        REQUIRE(c["choices"].size() == 1);
        const json& ch = c["choices"][0];
        const int i = ch["index"];
        CHECK(finishes[i] == 0); // nothing of a choice after its finish chunk
        if (ch["delta"].contains("role")) ++roles[i];
        if (ch["delta"].contains("content")) text[i] += ch["delta"]["content"].get<std::string>();
        if (!ch["finish_reason"].is_null()) {
            CHECK(ch["finish_reason"] == "length");
            ++finishes[i];
        }
    }
    const json usage = json::parse(events[events.size() - 2]);
    CHECK(usage["choices"] == json::array());
    CHECK(usage["usage"]["completion_tokens"] == 40);
    for (int i = 0; i < 4; ++i) {
        INFO("choice " << i);
        CHECK(roles[i] == 1);
        CHECK(finishes[i] == 1);
        CHECK(text[i] == whole["choices"][i]["message"]["content"]);
    }
}

TEST_CASE("server frees every choice's KV blocks when the client of an n-choice stream disconnects",
          "[server][choices]") {
    setup s;
    s.scheduler.max_context = 4096;
    test_server srv(s);
    const json body = {{"prompt", "a long story"}, {"max_tokens", 3000}, {"ignore_eos", true},
                       {"stream", true},           {"n", 3}};
    {
        client_socket c(srv.port());
        c.send_all(request_text("POST", "/v1/completions", body.dump()));
        c.read_until("\"index\":2");
        CHECK(metric_value(srv.metrics(), "weft_requests_running") == 3);
    } // closes the connection mid-stream
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
    CHECK(settled_metric(srv, "weft_requests_running", 0) == 0);
    const http_reply after = srv.post("/v1/completions", {{"prompt", "next"}, {"max_tokens", 2}, {"n", 2}});
    CHECK(after.status == 200);
    CHECK(after.body_json()["choices"].size() == 2);
}

TEST_CASE("server answers a batch of prompts with n choices each, choice p * n + i", "[server][choices]") {
    test_server srv;
    const std::vector<std::string> prompts = {"Once upon a time", "The quick brown fox", "x"};
    json body = {{"prompt", prompts}, {"max_tokens", 5}, {"temperature", 0}, {"n", 2}, {"ignore_eos", true}};
    const json j = srv.post("/v1/completions", body).body_json();
    REQUIRE(j["choices"].size() == 6);
    std::size_t prompt_tokens = 0;
    for (std::size_t p = 0; p < prompts.size(); ++p) {
        INFO("prompt " << p);
        const json alone = srv.post("/v1/completions", {{"prompt", prompts[p]},
                                                        {"max_tokens", 5},
                                                        {"temperature", 0},
                                                        {"ignore_eos", true}})
                               .body_json();
        for (std::size_t i = 0; i < 2; ++i) {
            CHECK(j["choices"][p * 2 + i]["index"] == p * 2 + i);
            CHECK(j["choices"][p * 2 + i]["text"] == alone["choices"][0]["text"]);
        }
        prompt_tokens += alone["usage"]["prompt_tokens"].get<std::size_t>();
    }
    CHECK(j["usage"]["prompt_tokens"] == prompt_tokens);
    CHECK(j["usage"]["completion_tokens"] == 30);

    body["stream"] = true;
    const std::vector<std::string> events = sse_data(srv.post("/v1/completions", body).body);
    REQUIRE_FALSE(events.empty());
    CHECK(events.back() == "[DONE]");
    std::map<int, std::string> text;
    for (std::size_t e = 0; e + 1 < events.size(); ++e) {
        const json c = json::parse(events[e]);
        text[c["choices"][0]["index"].get<int>()] += c["choices"][0]["text"].get<std::string>();
    }
    REQUIRE(text.size() == 6);
    for (int i = 0; i < 6; ++i) CHECK(text[i] == j["choices"][i]["text"]);
}

TEST_CASE("server echoes the prompt before each choice's text, streamed and not", "[server][choices]") {
    test_server srv;
    const std::string prompt = "Once upon a time";
    json body = {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}};
    const std::string plain = srv.post("/v1/completions", body).body_json()["choices"][0]["text"];
    body["echo"] = true;
    body["n"] = 2;
    const json j = srv.post("/v1/completions", body).body_json();
    REQUIRE(j["choices"].size() == 2);
    for (const json& c : j["choices"]) CHECK(c["text"] == prompt + plain);

    body["stream"] = true;
    const std::vector<std::string> events = sse_data(srv.post("/v1/completions", body).body);
    std::map<int, std::string> text;
    for (std::size_t e = 0; e + 1 < events.size(); ++e) {
        const json c = json::parse(events[e]);
        text[c["choices"][0]["index"].get<int>()] += c["choices"][0]["text"].get<std::string>();
    }
    CHECK(text[0] == prompt + plain);
    CHECK(text[1] == prompt + plain);

    // Token ids echo as their text.
    const std::vector<token_id> ids = srv.vocab().encode("The fox", false, false);
    const json t = srv.post("/v1/completions", {{"prompt", ids}, {"max_tokens", 2}, {"echo", true}}).body_json();
    CHECK(t["choices"][0]["text"].get<std::string>().rfind("The fox", 0) == 0);
}
