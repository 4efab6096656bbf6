// End-to-end tests of the OpenAI-compatible server: the real HTTP server on
// a random port, the engine and CPU backend on the tiny demo model (random
// weights, built in memory), and a plain blocking-socket HTTP client.
#include "model_test_support.hpp"

#include <weft/serve/engine.hpp>
#include <weft/serve/openai_server.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace weft::serve;
using json = nlohmann::json;

namespace {

// --- a small blocking HTTP/1.1 client --------------------------------------------

class client_socket {
public:
    explicit client_socket(std::uint16_t port) {
        m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (m_fd < 0) throw std::runtime_error("socket failed");
        timeval tv{30, 0}; // a hung server fails the test instead of hanging it
        ::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ::close(m_fd);
            throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
        }
    }
    ~client_socket() { close(); }
    client_socket(const client_socket&) = delete;
    client_socket& operator=(const client_socket&) = delete;

    void send_all(std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(m_fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw std::runtime_error("send failed");
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    /// Some bytes ("" at end of stream).
    std::string read_some() {
        char buf[16384];
        ssize_t n = 0;
        do {
            n = ::recv(m_fd, buf, sizeof buf, 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0) throw std::runtime_error(std::string("recv failed: ") + std::strerror(errno));
        return std::string(buf, static_cast<std::size_t>(n));
    }
    std::string read_all() {
        std::string out;
        for (std::string s = read_some(); !s.empty(); s = read_some()) out += s;
        return out;
    }
    void close() {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = -1;
    }

private:
    int m_fd = -1;
};

struct http_reply {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::optional<std::string> header(std::string_view name) const {
        for (const auto& [k, v] : headers) {
            if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
                })) {
                return v;
            }
        }
        return std::nullopt;
    }
    json body_json() const { return json::parse(body); }
};

std::string request_text(std::string_view method, std::string_view path, std::string_view body,
                         const std::vector<std::string>& extra_headers = {}) {
    std::string r = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n";
    for (const std::string& h : extra_headers) r += h + "\r\n";
    if (!body.empty() || method == "POST") {
        r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    r += "\r\n";
    r += body;
    return r;
}

std::string dechunk(std::string_view in) {
    std::string out;
    for (;;) {
        const std::size_t eol = in.find("\r\n");
        if (eol == std::string_view::npos) throw std::runtime_error("bad chunked body");
        const std::size_t n = std::stoul(std::string(in.substr(0, eol)), nullptr, 16);
        in.remove_prefix(eol + 2);
        if (n == 0) return out;
        out.append(in.substr(0, n));
        in.remove_prefix(n + 2);
    }
}

http_reply parse_reply(const std::string& raw) {
    http_reply r;
    const std::size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos) throw std::runtime_error("incomplete response: " + raw);
    std::string_view head(raw.data(), end);
    r.status = std::stoi(std::string(head.substr(9, 3)));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos) {
        const std::size_t next = head.find("\r\n", pos + 2);
        const std::string_view line = head.substr(pos + 2, next == std::string_view::npos ? next : next - pos - 2);
        const std::size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
            std::string_view v = line.substr(colon + 1);
            while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
            r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(v));
        }
        pos = next;
    }
    const std::string body = raw.substr(end + 4);
    const auto te = r.header("transfer-encoding");
    r.body = te && *te == "chunked" ? dechunk(body) : body;
    return r;
}

http_reply fetch(std::uint16_t port, std::string_view method, std::string_view path, std::string_view body = {},
                 const std::vector<std::string>& headers = {}) {
    client_socket s(port);
    s.send_all(request_text(method, path, body, headers));
    return parse_reply(s.read_all());
}

/// The data fields of a Server-Sent Events body, in order.
std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t eol = body.find('\n', pos);
        if (eol == std::string::npos) eol = body.size();
        const std::string_view line(body.data() + pos, eol - pos);
        if (line.rfind("data: ", 0) == 0) out.emplace_back(line.substr(6));
        pos = eol + 1;
    }
    return out;
}

/// The last JSON event of a stream that ended properly (a `[DONE]` after
/// at least one event).
json last_event_before_done(const std::string& body) {
    const std::vector<std::string> events = sse_data(body);
    REQUIRE(events.size() >= 2);
    CHECK(events.back() == "[DONE]");
    return json::parse(events[events.size() - 2]);
}

/// The value of the first sample of `metric` in a Prometheus text body.
double metric_value(const std::string& text, std::string_view metric, std::string_view label = {}) {
    std::size_t pos = 0;
    while ((pos = text.find(metric, pos)) != std::string::npos) {
        const bool line_start = pos == 0 || text[pos - 1] == '\n';
        const std::size_t eol = text.find('\n', pos);
        const std::string line = text.substr(pos, eol - pos);
        pos = eol;
        if (!line_start || line.size() <= metric.size() || (line[metric.size()] != '{' && line[metric.size()] != ' ')) {
            continue;
        }
        if (!label.empty() && line.find(label) == std::string::npos) continue;
        return std::stod(line.substr(line.rfind(' ') + 1));
    }
    throw std::runtime_error("no metric " + std::string(metric));
}

/// Polls `metric` on /metrics until it reads `want` (gauges are published
/// by the engine after a step, a moment after the response went out) or
/// ten seconds passed; the last value read.
template <class Server>
double settled_metric(const Server& srv, std::string_view metric, double want) {
    double v = metric_value(srv.metrics(), metric);
    for (int i = 0; i < 1000 && v != want; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        v = metric_value(srv.metrics(), metric);
    }
    return v;
}

// --- the server under test --------------------------------------------------------

struct setup {
    scheduler_config scheduler;
    std::string api_key;
    std::size_t http_threads = 2;
    std::size_t kv_blocks = 256;
    std::chrono::milliseconds request_timeout{0};
    /// How long the HTTP side lets requests in flight run once shutdown began.
    std::chrono::milliseconds http_shutdown_timeout{2000};
    bool ready = true;
};

class test_server {
public:
    explicit test_server(setup s = {}) {
        const model_config config = demo_model("tiny").config;
        m_model = test::random_model(config, ggml_type::f32, 3);
        m_tokenizer = std::make_shared<const tokenizer>(demo_tokenizer(config.n_vocab));
        cpu_backend_options bo;
        bo.threads = 1;
        bo.kv_blocks = s.kv_blocks;
        engine_options eo;
        eo.scheduler = s.scheduler;
        eo.request_timeout = s.request_timeout;
        m_engine = std::make_unique<engine>(std::make_unique<cpu_backend>(m_model, bo), m_tokenizer, eo);
        openai_server_options so;
        so.host = "127.0.0.1";
        so.port = 0;
        so.http_threads = s.http_threads;
        so.routes.api_key = s.api_key;
        so.http.shutdown_timeout = s.http_shutdown_timeout;
        m_server = std::make_unique<openai_server>(so);
        if (s.ready) make_ready();
    }
    ~test_server() { shutdown(std::chrono::steady_clock::now()); }

    /// weft-serve's shutdown: stop accepting, let the engine finish what
    /// runs until `deadline`, wait for the HTTP loops. Idempotent.
    void shutdown(std::chrono::steady_clock::time_point deadline) {
        m_server->begin_shutdown();
        m_engine->shutdown(deadline);
        m_server->join();
    }

    void make_ready() { m_server->set_ready(*m_engine, "tiny", chat_template::for_tokenizer(*m_tokenizer)); }
    [[nodiscard]] std::uint16_t port() const { return m_server->port(); }
    [[nodiscard]] const tokenizer& vocab() const { return *m_tokenizer; }

    http_reply post(std::string_view path, const json& body, const std::vector<std::string>& headers = {}) const {
        return fetch(port(), "POST", path, body.dump(), headers);
    }
    http_reply get(std::string_view path, const std::vector<std::string>& headers = {}) const {
        return fetch(port(), "GET", path, {}, headers);
    }
    std::string metrics() const { return get("/metrics").body; }

private:
    std::shared_ptr<const model> m_model;
    std::shared_ptr<const tokenizer> m_tokenizer;
    std::unique_ptr<engine> m_engine;
    std::unique_ptr<openai_server> m_server;
};

void check_error(const http_reply& r, int status, std::string_view param = {}) {
    INFO("body: " << r.body);
    CHECK(r.status == status);
    CHECK(r.header("content-type").value_or("") == "application/json");
    const json j = r.body_json();
    REQUIRE(j.contains("error"));
    const json& e = j["error"];
    CHECK(e.size() == 4);
    CHECK(e["message"].is_string());
    CHECK(e["type"].is_string());
    if (!param.empty()) CHECK(e["param"] == param);
}

json chat_body(std::string content, int max_tokens) {
    return {{"model", "tiny"},
            {"messages", json::array({{{"role", "system"}, {"content", "You are terse."}},
                                      {{"role", "user"}, {"content", std::move(content)}}})},
            {"max_tokens", max_tokens},
            {"temperature", 0}};
}

} // namespace

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
        {"/v1/completions", R"({"prompt": "x", "n": 2})", 400, "n"},
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
        std::string raw;
        while (raw.find("data: {") == std::string::npos) {
            const std::string more = c.read_some();
            REQUIRE_FALSE(more.empty());
            raw += more;
        }
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
    std::string raw;
    while (raw.find("data: {") == std::string::npos) {
        const std::string more = c.read_some();
        if (more.empty()) throw std::runtime_error("the stream ended early: " + raw);
        raw += more;
    }
    return raw;
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
