// weft-mock-openai-server: an OpenAI-compatible server without a model, for
// testing weft-loadgen and measuring the HTTP ceiling of weft::http under an
// LLM-serving load. POST /v1/completions and /v1/chat/completions answer
// `max_tokens` fake tokens, streamed as Server-Sent Events over chunked
// transfer encoding (one chunk per token, the last token carrying
// finish_reason "length", an optional usage chunk, then [DONE]) or as one
// JSON response; GET /v1/models and /health answer too. Tokens can be paced
// (--first-token-delay-us, --token-delay-us) with weft::io::sleep_for.
//
// One io_context per thread, each with its own SO_REUSEPORT listener and
// http::server (as examples/08_http_hello.cpp). SIGINT/SIGTERM shut down.
//
//   weft-mock-openai-server [--port 8080] [--threads 1] [--token-delay-us 0]
#include <weft/http/router.hpp>
#include <weft/http/server.hpp>
#include <weft/http/stream_writer.hpp>
#include <weft/io/endpoint.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/spawn.hpp>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace http = weft::http;
namespace io = weft::io;
using weft::task;

struct mock_options {
    int port = 8080;
    std::string host = "127.0.0.1";
    unsigned threads = 1;
    long first_token_delay_us = 0;
    long token_delay_us = 0;
    std::string model = "mock";
    std::size_t max_connections = 65536;
};

// Token texts as JSON string contents (already escaped): escapes, quotes and
// UTF-8 keep the client's scanner honest.
constexpr std::array<std::string_view, 8> pieces = {
    " hello", " world", "\\n", " \\\"quoted\\\"", " caf\\u00e9", " weft", ",", " token"};

std::string json_string(std::string_view s) { return nlohmann::json(s).dump(); }

std::string error_json(std::string_view message) {
    return fmt::format(R"({{"error":{{"message":{},"type":"invalid_request_error","code":400}}}})",
                       json_string(message));
}

/// The request fields the mock looks at.
struct completion_request {
    bool chat = false;
    bool stream = false;
    bool usage_chunk = false;
    long max_tokens = 16;
    long prompt_tokens = 0;
    std::string model_json;
    std::string error; ///< non-empty: answer 400 with it
};

long count_words(std::string_view text) {
    long n = 0;
    bool in_word = false;
    for (const char c : text) {
        const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
        n += (!space && !in_word) ? 1 : 0;
        in_word = !space;
    }
    return n;
}

completion_request read_request(const std::string& body, bool chat, const mock_options& opts) {
    completion_request r;
    r.chat = chat;
    const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
        r.error = "the body is not a JSON object";
        return r;
    }
    try {
        r.model_json = json_string(doc.value("model", opts.model));
        r.stream = doc.value("stream", false);
        r.max_tokens = doc.value("max_tokens", 16L);
        if (const auto so = doc.find("stream_options"); so != doc.end() && so->is_object()) {
            r.usage_chunk = so->value("include_usage", false);
        }
        if (chat) {
            const auto messages = doc.find("messages");
            if (messages == doc.end() || !messages->is_array() || messages->empty()) {
                r.error = "'messages' must be a non-empty array";
                return r;
            }
            for (const auto& m : *messages) {
                if (m.is_object() && m.contains("content") && m["content"].is_string()) {
                    r.prompt_tokens += count_words(m["content"].get_ref<const std::string&>());
                }
            }
        } else {
            const auto prompt = doc.find("prompt");
            if (prompt == doc.end() || !prompt->is_string()) {
                r.error = "'prompt' must be a string";
                return r;
            }
            r.prompt_tokens = count_words(prompt->get_ref<const std::string&>());
        }
    } catch (const nlohmann::json::exception& e) {
        r.error = fmt::format("bad field type: {}", e.what());
        return r;
    }
    if (r.max_tokens < 1 || r.max_tokens > 1'000'000) {
        r.error = "'max_tokens' must be between 1 and 1000000";
    }
    return r;
}

std::string usage_json(const completion_request& r) {
    return fmt::format(R"({{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}})", r.prompt_tokens,
                       r.max_tokens, r.prompt_tokens + r.max_tokens);
}

std::string whole_text(long n) {
    std::string text;
    for (long i = 0; i < n; ++i) {
        text += pieces[static_cast<std::size_t>(i) % pieces.size()];
    }
    return text;
}

task<void> answer(const completion_request& r, io::io_context& ctx, const mock_options& opts,
                  http::chunked_writer& out) {
    static thread_local unsigned long counter = 0;
    const std::string id = fmt::format("{}-{}-{}", r.chat ? "chatcmpl" : "cmpl", ::getpid(), ++counter);
    const long created = static_cast<long>(std::time(nullptr));
    http::header_map json_headers;
    json_headers.set("Content-Type", "application/json");
    if (!r.error.empty()) {
        co_await out.start(400, json_headers);
        co_await out.write_string(error_json(r.error));
        co_return;
    }
    if (!r.stream) {
        const std::string text = whole_text(r.max_tokens);
        const std::string body =
            r.chat ? fmt::format(R"({{"id":"{}","object":"chat.completion","created":{},"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"logprobs":null,"finish_reason":"length"}}],"usage":{}}})",
                                 id, created, r.model_json, text, usage_json(r))
                   : fmt::format(R"({{"id":"{}","object":"text_completion","created":{},"model":{},"choices":[{{"index":0,"text":"{}","logprobs":null,"finish_reason":"length"}}],"usage":{}}})",
                                 id, created, r.model_json, text, usage_json(r));
        co_await out.start(200, json_headers);
        co_await out.write_string(body);
        co_return;
    }

    co_await out.start(200, http::sse_writer::headers());
    http::sse_writer sse(out);
    const std::string head =
        fmt::format(R"({{"id":"{}","object":"{}","created":{},"model":{},"choices":[{{"index":0,)", id,
                    r.chat ? "chat.completion.chunk" : "text_completion", created, r.model_json);
    const std::string_view open = r.chat ? R"("delta":{"content":")" : R"("text":")";
    const std::string_view close = r.chat ? R"("},"logprobs":null,"finish_reason":)" : R"(","logprobs":null,"finish_reason":)";
    std::string event;
    if (r.chat) {
        event = head + R"("delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]})";
        co_await sse.send(event);
    }
    if (opts.first_token_delay_us > 0) {
        co_await io::sleep_for(ctx, std::chrono::microseconds(opts.first_token_delay_us));
    }
    for (long i = 0; i < r.max_tokens; ++i) {
        if (i > 0 && opts.token_delay_us > 0) {
            co_await io::sleep_for(ctx, std::chrono::microseconds(opts.token_delay_us));
        }
        event.assign(head);
        event += open;
        event += pieces[static_cast<std::size_t>(i) % pieces.size()];
        event += close;
        event += i + 1 == r.max_tokens ? R"("length"}]})" : R"(null}]})";
        co_await sse.send(event);
    }
    if (r.usage_chunk) {
        event = fmt::format(R"({{"id":"{}","object":"{}","created":{},"model":{},"choices":[],"usage":{}}})", id,
                            r.chat ? "chat.completion.chunk" : "text_completion", created, r.model_json,
                            usage_json(r));
        co_await sse.send(event);
    }
    co_await sse.send("[DONE]");
}

struct shard {
    io::io_context ctx;
    http::router routes;
    std::unique_ptr<http::server> server;
};

void add_routes(shard& s, const mock_options& opts) {
    for (const bool chat : {false, true}) {
        s.routes.add_stream(http::method::post, chat ? "/v1/chat/completions" : "/v1/completions",
                            [&s, &opts, chat](http::request& req, http::context&, http::chunked_writer& out) -> task<void> {
                                const completion_request r = read_request(req.body, chat, opts);
                                co_await answer(r, s.ctx, opts, out);
                            });
    }
    s.routes.get("/v1/models", [&opts](http::request&, http::context&) -> task<http::response> {
        co_return http::response(
            200, fmt::format(R"({{"object":"list","data":[{{"id":{},"object":"model","owned_by":"weft"}}]}})",
                             json_string(opts.model)),
            "application/json");
    });
    s.routes.get("/health", [](http::request&, http::context&) -> task<http::response> {
        co_return http::response(200, "ok\n", "text/plain");
    });
}

task<void> stop_server(http::server& s) {
    s.stop(); // on the shard's own loop thread, as server::stop requires
    co_return;
}

} // namespace

int main(int argc, char** argv) {
    mock_options opts;
    CLI::App app{"weft-mock-openai-server: fake OpenAI completions over weft::http"};
    app.add_option("--host", opts.host, "address to listen on")->capture_default_str();
    app.add_option("--port", opts.port, "port")->capture_default_str()->check(CLI::Range(1, 65535));
    app.add_option("--threads", opts.threads, "loop threads (SO_REUSEPORT listeners)")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    app.add_option("--first-token-delay-us", opts.first_token_delay_us, "pause before the first token")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--token-delay-us", opts.token_delay_us, "pause between tokens")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--model", opts.model, "model name of /v1/models and the default")->capture_default_str();
    app.add_option("--max-connections", opts.max_connections, "per thread; beyond it new connections get 503")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    io::endpoint at;
    try {
        at = io::endpoint::parse(fmt::format("{}:{}", opts.host, opts.port));
    } catch (const std::exception& e) {
        fmt::print(stderr, "weft-mock-openai-server: bad --host {}: {}\n", opts.host, e.what());
        return 2;
    }

    // Signals are taken by this thread alone (sigwait), never by the loops.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    http::server_options server_opts;
    server_opts.max_connections = opts.max_connections;
    std::vector<std::unique_ptr<shard>> shards;
    std::vector<std::jthread> loops;
    for (unsigned i = 0; i < opts.threads; ++i) {
        auto& s = *shards.emplace_back(std::make_unique<shard>());
        add_routes(s, opts);
        io::tcp_listener listener;
        try {
            listener = io::tcp_listener::bind(s.ctx, at, 4096, /*reuse_port=*/true);
        } catch (const std::exception& e) {
            fmt::print(stderr, "weft-mock-openai-server: cannot listen on {}: {}\n", at.to_string(), e.what());
            return 1;
        }
        s.server = std::make_unique<http::server>(s.ctx, s.routes, server_opts);
        loops.emplace_back([&s, l = std::move(listener)]() mutable { s.ctx.run(s.server->run(l)); });
    }
    fmt::print("weft-mock-openai-server on http://{}/ with {} loop thread(s), token delay {} us\n", at.to_string(),
               opts.threads, opts.token_delay_us);
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);
    for (auto& s : shards) {
        weft::spawn(s->ctx, stop_server(*s->server));
    }
    loops.clear();
}
