// End-to-end tests of the OpenAI-compatible server: the real HTTP server on
// a random port, the engine and CPU backend on the tiny demo model (random
// weights, built in memory), and a plain blocking-socket HTTP client.
#include "server_test_support.hpp"

#include <weft/serve/engine.hpp>
#include <weft/serve/openai_server.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;


TEST_CASE("server health says loading until the model is ready, and the API waits for it", "[server]") {
    setup s;
    s.ready = false;
    test_server srv(s);
    const http_reply loading = srv.get("/health");
    CHECK(loading.status == 503);
    CHECK(loading.body_json() == json({{"status", "loading"}}));
    check_error(srv.post("/v1/completions", {{"prompt", "hi"}}), 503);
    check_error(srv.get("/v1/models"), 503);
    CHECK(srv.get("/metrics").status == 503);

    srv.make_ready();
    const http_reply ok = srv.get("/health");
    CHECK(ok.status == 200);
    CHECK(ok.body_json() == json({{"status", "ok"}}));
}

TEST_CASE("server answers a completion in OpenAI's schema, greedy output repeating", "[server]") {
    test_server srv;
    const json body = {{"model", "tiny"}, {"prompt", "Once upon a time"}, {"max_tokens", 6}, {"temperature", 0},
                       {"ignore_eos", true}};
    const http_reply r = srv.post("/v1/completions", body);
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type").value_or("") == "application/json");
    const json j = r.body_json();
    CHECK(j["object"] == "text_completion");
    CHECK(j["id"].get<std::string>().rfind("cmpl-", 0) == 0);
    CHECK(j["model"] == "tiny");
    REQUIRE(j["choices"].size() == 1);
    CHECK(j["choices"][0]["finish_reason"] == "length");
    CHECK(j["choices"][0]["logprobs"].is_null());
    CHECK(j["usage"]["completion_tokens"] == 6);
    CHECK(j["usage"]["prompt_tokens"] == srv.vocab().encode("Once upon a time", true, true).size());
    CHECK(j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"].get<int>() + 6);

    const json again = srv.post("/v1/completions", body).body_json();
    CHECK(again["choices"][0]["text"] == j["choices"][0]["text"]);
    CHECK(again["id"] != j["id"]);
}

TEST_CASE("server streams a completion whose text matches the whole response", "[server]") {
    test_server srv;
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
    const std::string whole = srv.post("/v1/completions", body).body_json()["choices"][0]["text"];

    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    const http_reply r = srv.post("/v1/completions", body);
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type").value_or("") == "text/event-stream");
    const std::vector<std::string> events = sse_data(r.body);
    REQUIRE(events.size() >= 3);
    CHECK(events.back() == "[DONE]");
    std::string text;
    for (std::size_t i = 0; i + 3 < events.size(); ++i) {
        const json c = json::parse(events[i]);
        CHECK(c["object"] == "text_completion");
        CHECK(c["choices"][0]["finish_reason"].is_null());
        CHECK(c["usage"].is_null());
        text += c["choices"][0]["text"].get<std::string>();
    }
    const json last = json::parse(events[events.size() - 3]);
    CHECK(last["choices"][0]["finish_reason"] == "length");
    const json usage = json::parse(events[events.size() - 2]);
    CHECK(usage["choices"] == json::array());
    CHECK(usage["usage"]["completion_tokens"] == 8);
    CHECK(text == whole);
}

TEST_CASE("server answers chat in OpenAI's schema, streamed and not", "[server]") {
    test_server srv;
    const http_reply r = srv.post("/v1/chat/completions", chat_body("Hello!", 5));
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    CHECK(j["object"] == "chat.completion");
    CHECK(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
    CHECK(j["choices"][0]["message"]["role"] == "assistant");
    CHECK(j["choices"][0]["message"]["content"].is_string());
    CHECK(j["usage"]["completion_tokens"].get<int>() <= 5);
    const std::vector<chat_message> msgs{{chat_role::system, "You are terse."}, {chat_role::user, "Hello!"}};
    CHECK(j["usage"]["prompt_tokens"] == chat_template::for_tokenizer(srv.vocab()).encode(srv.vocab(), msgs).size());

    json body = chat_body("Hello!", 5);
    body["stream"] = true;
    const http_reply s = srv.post("/v1/chat/completions", body);
    REQUIRE(s.status == 200);
    const std::vector<std::string> events = sse_data(s.body);
    REQUIRE(events.size() >= 3);
    CHECK(events.back() == "[DONE]");
    const json first = json::parse(events.front());
    CHECK(first["object"] == "chat.completion.chunk");
    CHECK(first["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
    std::string text;
    for (std::size_t i = 1; i + 2 < events.size(); ++i) {
        const json c = json::parse(events[i]);
        CHECK(c["choices"][0]["finish_reason"].is_null());
        text += c["choices"][0]["delta"]["content"].get<std::string>();
    }
    const json last = json::parse(events[events.size() - 2]);
    CHECK(last["choices"][0]["delta"] == json::object());
    CHECK(last["choices"][0]["finish_reason"] == j["choices"][0]["finish_reason"]);
    CHECK(text == j["choices"][0]["message"]["content"]);
}

TEST_CASE("server reports log-probabilities for completions and chat", "[server]") {
    test_server srv;
    const json c = srv.post("/v1/completions", {{"prompt", "abc"}, {"max_tokens", 4}, {"logprobs", 2},
                                                {"ignore_eos", true}})
                       .body_json();
    const json& lp = c["choices"][0]["logprobs"];
    REQUIRE(lp["tokens"].size() == 4);
    CHECK(lp["token_logprobs"].size() == 4);
    CHECK(lp["top_logprobs"][0].size() <= 2);
    CHECK(lp["text_offset"][0] == 0);
    for (const json& v : lp["token_logprobs"]) CHECK(v.get<double>() <= 0.0);

    json body = chat_body("hi", 3);
    body["logprobs"] = true;
    body["top_logprobs"] = 2;
    body["ignore_eos"] = true;
    const json chat = srv.post("/v1/chat/completions", body).body_json();
    const json& content = chat["choices"][0]["logprobs"]["content"];
    REQUIRE(content.size() == 3);
    CHECK(content[0]["top_logprobs"].size() == 2);
    CHECK(content[0]["bytes"].is_array());
}

TEST_CASE("server lists its model, and serves health and Prometheus metrics", "[server]") {
    test_server srv;
    const json models = srv.get("/v1/models").body_json();
    CHECK(models["object"] == "list");
    REQUIRE(models["data"].size() == 1);
    CHECK(models["data"][0]["id"] == "tiny");
    CHECK(models["data"][0]["object"] == "model");
    CHECK(models["data"][0]["owned_by"] == "weft");

    const http_reply m = srv.get("/metrics");
    CHECK(m.status == 200);
    CHECK(m.header("content-type").value_or("") == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(metric_value(m.body, "weft_kv_blocks_total") == 256);
    CHECK(m.body.find("weft_time_to_first_token_seconds_bucket") != std::string::npos);
    CHECK(metric_value(m.body, "weft_http_accept_pauses_total") == 0); // the HTTP servers' counter, summed
}

TEST_CASE("server reports the prompt tokens it found in the prefix cache in usage and metrics", "[server]") {
    test_server srv;
    const std::string prompt = "The quick brown fox jumps over the lazy dog, again and again, until the dog "
                               "finally gets up and walks away from the fox for good.";
    const std::size_t n = srv.vocab().encode(prompt, true, true).size();
    REQUIRE(n > 32);
    const json body = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
    const json first = srv.post("/v1/completions", body).body_json();
    CHECK(first["usage"]["prompt_tokens"] == n);
    CHECK(first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0);
    const json second = srv.post("/v1/completions", body).body_json();
    // Every full block of 16 but the one holding the last prompt token.
    const std::size_t cached = (n - 1) / 16 * 16;
    CHECK(second["usage"]["prompt_tokens_details"]["cached_tokens"] == cached);
    CHECK(second["choices"][0]["text"] == first["choices"][0]["text"]);
    CHECK(settled_metric(srv, "weft_prefix_cache_hits_total", static_cast<double>(cached)) ==
          static_cast<double>(cached));
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
    CHECK(metric_value(srv.metrics(), "weft_kv_blocks_cached") >= static_cast<double>(cached / 16));
}

TEST_CASE("server refuses hostile bodies with 400s and keeps serving", "[server]") {
    test_server srv;
    struct row {
        const char* path;
        std::string body;
        int status;
        const char* param;
    };
    const std::vector<row> rows = {
        {"/v1/completions", "{not json", 400, ""},
        {"/v1/completions", "[1,2,3]", 400, ""},
        {"/v1/completions", "", 400, ""},
        {"/v1/completions", std::string(5000, '[') + std::string(5000, ']'), 400, ""},
        {"/v1/completions", R"({"prompt": 42})", 400, "prompt"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": -1})", 400, "max_tokens"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": 1e300})", 400, "max_tokens"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": 100000})", 400, "max_tokens"},
        {"/v1/completions", R"({"prompt": "x", "temperature": "warm"})", 400, "temperature"},
        {"/v1/completions", R"({"prompt": [1, 99999]})", 400, "prompt[1]"},
        {"/v1/completions", R"({"prompt": "x", "n": 65})", 400, "n"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": 2, "min_tokens": 3})", 400, "min_tokens"},
        {"/v1/completions", R"({"prompt": "x", "logit_bias": {"100000": 5}})", 400, "logit_bias"},
        {"/v1/completions", R"({"prompt": "x", "model": "gpt-4"})", 404, ""},
        {"/v1/chat/completions", R"({"messages": "hello"})", 400, "messages"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400,
         "messages[0].content[0].type"},
    };
    for (const row& r : rows) {
        INFO(r.path << " " << r.body.substr(0, 80));
        check_error(fetch(srv.port(), "POST", r.path, r.body), r.status, r.param);
    }
    // Unknown fields are ignored, as OpenAI does.
    CHECK(srv.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}, {"frobnicate", {1, 2}}}).status == 200);
    check_error(srv.get("/v1/nothing/here"), 404);
    const http_reply wrong_method = srv.get("/v1/completions");
    check_error(wrong_method, 405);
    CHECK(wrong_method.header("allow").value_or("") == "POST");

    CHECK(srv.get("/health").status == 200);
    CHECK(srv.post("/v1/completions", {{"prompt", "still here"}, {"max_tokens", 2}}).status == 200);
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
}

TEST_CASE("server requires the API key on /v1 when one is set", "[server]") {
    setup s;
    s.api_key = "sesame";
    test_server srv(s);
    const json body = {{"prompt", "x"}, {"max_tokens", 1}};
    const http_reply none = srv.post("/v1/completions", body);
    check_error(none, 401);
    CHECK(none.header("www-authenticate").value_or("") == "Bearer");
    check_error(srv.post("/v1/completions", body, {"Authorization: Bearer wrong"}), 401);
    check_error(srv.get("/v1/models", {"Authorization: Basic c2VzYW1l"}), 401);
    CHECK(srv.post("/v1/completions", body, {"Authorization: Bearer sesame"}).status == 200);
    CHECK(srv.get("/v1/models", {"Authorization: bearer sesame"}).status == 200);
    CHECK(srv.get("/health").status == 200);
    CHECK(srv.get("/metrics").status == 200);
}

TEST_CASE("server answers 429 with Retry-After when the queue is full, then keeps serving", "[server]") {
    setup s;
    s.scheduler.max_running = 1;
    s.scheduler.max_waiting = 1;
    s.scheduler.max_batch_tokens = 64;
    s.scheduler.max_context = 2048;
    test_server srv(s);
    // Short enough that a finished stream fits the client's socket buffer
    // while the test reads the other connections in order.
    const json body = {{"prompt", "busy"}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}};
    std::vector<std::unique_ptr<client_socket>> clients;
    for (int i = 0; i < 6; ++i) {
        auto c = std::make_unique<client_socket>(srv.port());
        c->send_all(request_text("POST", "/v1/completions", body.dump()));
        clients.push_back(std::move(c));
    }
    int rejected = 0;
    int accepted = 0;
    for (auto& c : clients) {
        // Read until the head is complete.
        std::string raw;
        while (raw.find("\r\n\r\n") == std::string::npos) {
            const std::string more = c->read_some();
            REQUIRE_FALSE(more.empty());
            raw += more;
        }
        const int status = std::stoi(raw.substr(9, 3));
        if (status == 429) {
            ++rejected;
            const http_reply r = parse_reply(raw + c->read_all());
            check_error(r, 429);
            CHECK(r.header("retry-after").value_or("") == "1");
        } else {
            CHECK(status == 200);
            ++accepted;
        }
    }
    CHECK(rejected >= 1);
    CHECK(accepted >= 1);
    clients.clear(); // disconnects: the engine aborts the running and waiting requests
    CHECK(metric_value(srv.metrics(), "weft_requests_rejected_total") >= rejected);

    // Whatever was queued is gone soon; then new requests are served.
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
    const http_reply after = srv.post("/v1/completions", {{"prompt", "next"}, {"max_tokens", 2}});
    CHECK(after.status == 200);
}

TEST_CASE("server frees a stream's KV blocks when its client disconnects", "[server]") {
    setup s;
    s.scheduler.max_context = 4096;
    test_server srv(s);
    const json body = {{"prompt", "a long story"}, {"max_tokens", 3500}, {"ignore_eos", true}, {"stream", true}};
    {
        client_socket c(srv.port());
        c.send_all(request_text("POST", "/v1/completions", body.dump()));
        const std::string raw = c.read_until("data: {");
        CHECK(raw.rfind("HTTP/1.1 200", 0) == 0);
        CHECK(metric_value(srv.metrics(), "weft_kv_blocks_used") > 0);
    } // closes the connection mid-stream
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
    CHECK(settled_metric(srv, "weft_requests_running", 0) == 0);
    const std::string m = srv.metrics();
    CHECK(metric_value(m, "weft_requests_finished_total", "reason=\"abort\"") == 1);
    CHECK(metric_value(m, "weft_requests_finished_total", "reason=\"length\"") == 0);
}

TEST_CASE("server reports a request timeout as 504, or as an error event once streaming", "[server]") {
    setup s;
    s.scheduler.max_context = 4096;
    s.request_timeout = std::chrono::milliseconds(30);
    test_server srv(s);
    json body = {{"prompt", "slow"}, {"max_tokens", 3500}, {"ignore_eos", true}};
    const http_reply whole = srv.post("/v1/completions", body);
    check_error(whole, 504);
    CHECK(whole.body_json()["error"]["code"] == "timeout");

    body["stream"] = true;
    const http_reply streamed = srv.post("/v1/completions", body);
    if (streamed.status == 504) {
        check_error(streamed, 504); // timed out before its first token
    } else {
        REQUIRE(streamed.status == 200);
        const json err = last_event_before_done(streamed.body);
        REQUIRE(err.contains("error"));
        CHECK(err["error"]["code"] == "timeout");
        CHECK(err["error"]["type"] == "server_error");
    }
    CHECK(settled_metric(srv, "weft_kv_blocks_used", 0) == 0);
    CHECK(metric_value(srv.metrics(), "weft_requests_finished_total", "reason=\"timeout\"") == 2);
}

namespace {

/// Sends a streaming completion on `c` and reads until its first event.
std::string start_stream(client_socket& c, int max_tokens) {
    const json body = {{"prompt", "a story"}, {"max_tokens", max_tokens}, {"ignore_eos", true}, {"stream", true}};
    c.send_all(request_text("POST", "/v1/completions", body.dump()));
    return c.read_until("data: {");
}

} // namespace

TEST_CASE("server shutdown lets a stream in flight finish, and stops accepting", "[server]") {
    setup s;
    s.http_shutdown_timeout = std::chrono::minutes(2);
    test_server srv(s);
    const std::uint16_t port = srv.port();
    client_socket c(port);
    std::string raw = start_stream(c, 500);
    std::thread stopper([&] { srv.shutdown(std::chrono::steady_clock::now() + std::chrono::minutes(2)); });
    raw += c.read_all();
    stopper.join();
    const http_reply r = parse_reply(raw);
    REQUIRE(r.status == 200);
    CHECK(last_event_before_done(r.body)["choices"][0]["finish_reason"] == "length");
    CHECK_THROWS(client_socket(port));
}

TEST_CASE("server shutdown past its deadline ends streams with an error event", "[server]") {
    setup s;
    s.scheduler.max_context = 4096;
    test_server srv(s);
    client_socket c(srv.port());
    std::string raw = start_stream(c, 3500);
    std::thread stopper([&] { srv.shutdown(std::chrono::steady_clock::now()); });
    raw += c.read_all();
    stopper.join();
    const http_reply r = parse_reply(raw);
    REQUIRE(r.status == 200);
    const json last = last_event_before_done(r.body);
    REQUIRE(last.contains("error"));
    CHECK(last["error"]["type"] == "server_error");
}

TEST_CASE("the server's threads are named for what they run", "[server]") {
    test_server srv; // two HTTP threads, one compute thread
    // Each thread names itself as it starts: look until they all have.
    const std::set<std::string> wanted{"weft-engine", "weft-step", "weft-http-0", "weft-http-1"};
    std::set<std::string> names;
    for (int i = 0; i < 500; ++i) {
        names.clear();
        for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
            std::ifstream comm(task.path() / "comm");
            std::string name;
            if (std::getline(comm, name)) names.insert(name);
        }
        if (std::includes(names.begin(), names.end(), wanted.begin(), wanted.end())) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(names.count("weft-engine") == 1);
    CHECK(names.count("weft-step") == 1);
    CHECK(names.count("weft-http-0") == 1);
    CHECK(names.count("weft-http-1") == 1);
}
