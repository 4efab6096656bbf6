#include <weft/serve/openai_routes.hpp>

#include <weft/http/stream_writer.hpp>
#include <weft/serve/kv_cache.hpp>
#include <weft/serve/openai_error.hpp>
#include <weft/serve/openai_request.hpp>
#include <weft/serve/openai_response.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <utility>

namespace weft::serve {

struct openai_routes::model_state {
    engine* eng = nullptr;
    std::string name;
    chat_template tmpl;
    std::int64_t created = 0;
    openai_parse_options parse;
    /// Longest prompt + completion: the engine's context, within the cache.
    std::size_t context_limit = 0;
};

namespace {

using model_state = openai_routes::model_state;

constexpr std::string_view json_type = "application/json";
constexpr std::string_view metrics_type = "text/plain; version=0.0.4; charset=utf-8";

/// Paths the server knows, with the methods each takes (for 405s).
struct known_path {
    std::string_view path;
    std::string_view allow;
};
constexpr std::array<known_path, 5> known_paths{{
    {"/v1/completions", "POST"},
    {"/v1/chat/completions", "POST"},
    {"/v1/models", "GET, HEAD"},
    {"/health", "GET, HEAD"},
    {"/metrics", "GET, HEAD"},
}};

http::header_map error_headers(const api_error& e) {
    http::header_map h;
    h.add("Content-Type", std::string(json_type));
    if (e.status() == 429) h.add("Retry-After", "1");
    if (e.status() == 401) h.add("WWW-Authenticate", "Bearer");
    return h;
}

http::response json_response(int status, std::string body) {
    return http::response(status, std::move(body), std::string(json_type));
}

http::response error_response(const api_error& e) {
    http::response r(e.status(), e.to_json());
    r.headers = error_headers(e);
    return r;
}

/// Where a response goes: the writer, and whether it must say
/// `Connection: close` (a stream handler chooses that itself): when the
/// request asked for it, or when the server began shutting down, so that
/// the client sends no further request on a connection about to close.
struct reply_to {
    http::chunked_writer& out;
    const http::request& req;
    const openai_routes& routes;

    task<void> start(int status, http::header_map h) const {
        if (!req.keep_alive() || routes.current_phase() == openai_routes::phase::shutting_down) {
            h.set("Connection", "close");
        }
        co_await out.start(status, std::move(h));
    }
};

task<void> send_error(const reply_to& to, const api_error& e) {
    const std::string body = e.to_json();
    co_await to.start(e.status(), error_headers(e));
    co_await to.out.write_string(body);
}

api_error unavailable(const std::string& why) { return api_error(503, why, {}, "server_error"); }

/// Constant-time comparison, so the key cannot be guessed a byte at a time.
bool same_secret(std::string_view a, std::string_view b) noexcept {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const char x = i < a.size() ? a[i] : '\0';
        const char y = i < b.size() ? b[i] : '\0';
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

void check_auth(const http::request& req, const std::string& key) {
    if (key.empty()) return;
    const std::optional<std::string_view> h = req.headers.get("authorization");
    if (!h) {
        throw api_error(401,
                        "You didn't provide an API key. You need to provide your API key in an Authorization header "
                        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                        {}, "invalid_request_error", "invalid_api_key");
    }
    std::string_view v = *h;
    constexpr std::string_view scheme = "bearer ";
    if (v.size() < scheme.size() || !http::iequals(v.substr(0, scheme.size()), scheme)) {
        throw api_error(401, "The Authorization header must use the Bearer scheme: Authorization: Bearer YOUR_KEY.",
                        {}, "invalid_request_error", "invalid_api_key");
    }
    v.remove_prefix(scheme.size());
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (!same_secret(v, key)) {
        throw api_error(401, "Incorrect API key provided.", {}, "invalid_request_error", "invalid_api_key");
    }
}

std::string_view prompt_param(openai_endpoint ep) {
    return ep == openai_endpoint::completions ? "prompt" : "messages";
}

/// Tokenizes the prompt and settles max_tokens and the stop strings.
void prepare(const model_state& m, openai_request& r) {
    generation_request& g = r.generation;
    const tokenizer& tok = m.eng->vocab();
    if (r.endpoint == openai_endpoint::completions) {
        // The whole prompt is the client's: special tokens in it are meant.
        g.prompt = r.prompt_is_tokens ? std::move(r.prompt_tokens)
                                      : tok.encode(r.prompt_text, /*add_special=*/true, /*parse_special=*/true);
    } else {
        g.prompt = m.tmpl.encode(tok, r.messages);
        g.stop.insert(g.stop.end(), m.tmpl.extra_stops().begin(), m.tmpl.extra_stops().end());
    }
    if (g.prompt.empty()) {
        throw api_error::invalid(std::string(prompt_param(r.endpoint)), "The prompt is empty: it encodes to no tokens.");
    }
    if (r.max_tokens) return;
    if (r.endpoint == openai_endpoint::completions) {
        g.max_tokens = 16; // OpenAI's default for completions
        return;
    }
    if (g.prompt.size() >= m.context_limit) {
        throw api_error(400,
                        fmt::format("The messages are {} tokens, which leaves no room for a completion in the context "
                                    "of {} tokens.",
                                    g.prompt.size(), m.context_limit),
                        "messages", "invalid_request_error", "context_length_exceeded");
    }
    g.max_tokens = m.context_limit - g.prompt.size();
}

generation_stream submit(const model_state& m, openai_request& r, io::io_context& loop) {
    const bool max_given = r.max_tokens.has_value();
    const std::string param = max_given ? r.max_tokens_param : std::string(prompt_param(r.endpoint));
    submit_result s = m.eng->submit(std::move(r.generation), resume_target(loop));
    switch (s.status) {
    case submit_status::accepted: return std::move(*s.stream);
    case submit_status::queue_full:
        throw api_error(429, fmt::format("The server is at capacity: {}. Retry shortly.", s.message), {},
                        "rate_limit_error", "rate_limit_exceeded");
    case submit_status::too_long:
        throw api_error(400, fmt::format("This model's maximum context length was exceeded: {}.", s.message), param,
                        "invalid_request_error", "context_length_exceeded");
    case submit_status::invalid:
        throw api_error::invalid(std::string(prompt_param(r.endpoint)), s.message);
    case submit_status::shutting_down: throw unavailable("The server is shutting down.");
    }
    throw api_error(500, "unexpected engine answer", {}, "server_error");
}

std::string_view finish_text(finish_reason f) noexcept {
    return f == finish_reason::length ? "length" : "stop";
}

bool is_failure(finish_reason f) noexcept {
    return f == finish_reason::error || f == finish_reason::timeout || f == finish_reason::aborted;
}

api_error failure_error(const generation_update& u) {
    // The engine re-checks the queue bound when it takes a request in; a
    // request that lost that race is refused like one refused at submit.
    if (u.finish == finish_reason::error && u.completion_tokens == 0 && u.error.find("queue is full") != std::string::npos) {
        return api_error(429, fmt::format("The server is at capacity: {}. Retry shortly.", u.error), {},
                         "rate_limit_error", "rate_limit_exceeded");
    }
    switch (u.finish.value_or(finish_reason::error)) {
    case finish_reason::timeout:
        return api_error(504, fmt::format("The request timed out after {} generated tokens.", u.completion_tokens),
                         {}, "server_error", "timeout");
    case finish_reason::aborted:
        return unavailable(u.error.empty() ? "The request was aborted: the server is shutting down."
                                           : fmt::format("The request was aborted: {}.", u.error));
    default:
        return api_error(500, fmt::format("The model failed: {}", u.error.empty() ? "unknown error" : u.error), {},
                         "server_error");
    }
}

void add_logprobs(const tokenizer& tok, const generation_update& u, std::vector<openai_logprob>& out) {
    for (const generated_token& t : u.tokens) {
        openai_logprob lp;
        lp.token = tok.token_to_piece(t.id);
        lp.logprob = t.logprob;
        lp.top.reserve(t.top.size());
        for (const token_logprob& alt : t.top) lp.top.emplace_back(tok.token_to_piece(alt.token), alt.logprob);
        out.push_back(std::move(lp));
    }
}

void append_event(std::string& out, std::string_view data) {
    out += "data: ";
    out += data;
    out += "\n\n";
}

task<void> send_whole(const model_state& m, const openai_request& r, generation_stream& stream,
                      generation_update first, const reply_to& to) {
    const tokenizer& tok = m.eng->vocab();
    std::string text;
    std::vector<openai_logprob> lps;
    openai_usage usage;
    std::optional<generation_update> u = std::move(first);
    for (;;) {
        text += u->text;
        if (r.logprobs) add_logprobs(tok, *u, lps);
        usage = {u->prompt_tokens, u->completion_tokens, u->cached_prompt_tokens};
        if (u->finish) break;
        u = co_await stream.next();
        if (!u) break;
    }
    if (!u || !u->finish) {
        co_await send_error(to, api_error(500, "The generation ended without a finish reason.", {}, "server_error"));
        co_return;
    }
    if (is_failure(*u->finish)) {
        co_await send_error(to, failure_error(*u));
        co_return;
    }
    const openai_response resp(r.endpoint, m.name, r.logprobs, false);
    const std::string body = resp.complete(text, lps, finish_text(*u->finish), usage);
    http::header_map h;
    h.add("Content-Type", std::string(json_type));
    co_await to.start(200, std::move(h));
    co_await to.out.write_string(body);
}

task<void> send_events(const model_state& m, const openai_request& r, generation_stream& stream,
                       generation_update first, const reply_to& to) {
    const tokenizer& tok = m.eng->vocab();
    openai_response resp(r.endpoint, m.name, r.logprobs, r.include_usage);
    http::chunked_writer& out = to.out;
    co_await to.start(200, http::sse_writer::headers());
    std::string buf;
    if (r.endpoint == openai_endpoint::chat_completions) append_event(buf, resp.first_chunk());
    std::vector<openai_logprob> lps;
    std::optional<generation_update> u = std::move(first);
    for (;;) {
        lps.clear();
        if (r.logprobs) add_logprobs(tok, *u, lps);
        if (!u->text.empty() || !lps.empty()) append_event(buf, resp.text_chunk(u->text, lps));
        if (u->finish) {
            if (is_failure(*u->finish)) {
                append_event(buf, failure_error(*u).to_json());
            } else {
                append_event(buf, resp.final_chunk(finish_text(*u->finish)));
                if (r.include_usage) append_event(buf, resp.usage_chunk({u->prompt_tokens, u->completion_tokens, u->cached_prompt_tokens}));
            }
            append_event(buf, "[DONE]");
        }
        if (!buf.empty()) {
            co_await out.write_string(buf);
            buf.clear();
        }
        if (u->finish) co_return;
        u = co_await stream.next();
        if (!u) break;
    }
    // The engine always sends a final update; this is a safety net.
    append_event(buf, api_error(500, "The generation ended without a finish reason.", {}, "server_error").to_json());
    append_event(buf, "[DONE]");
    co_await out.write_string(buf);
}

} // namespace

openai_routes::openai_routes(openai_routes_options opts) : m_options(std::move(opts)) {}

openai_routes::~openai_routes() = default;

void openai_routes::set_ready(engine& e, std::string model_name, chat_template tmpl) {
    if (m_model) throw std::logic_error("openai_routes::set_ready called twice");
    auto m = std::make_unique<model_state>();
    m->eng = &e;
    m->name = std::move(model_name);
    m->tmpl = std::move(tmpl);
    m->created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    m->parse.served_model = m->name;
    m->parse.vocab_size = e.vocab().vocab_size();
    const std::size_t cache_tokens = e.backend().num_kv_blocks() * e.backend().kv_block_size();
    m->context_limit = std::min(e.options().scheduler.max_context, cache_tokens);
    m_model = std::move(m);
    m_published.store(m_model.get(), std::memory_order_release);
    phase expected = phase::loading;
    m_phase.compare_exchange_strong(expected, phase::ready, std::memory_order_acq_rel);
}

void openai_routes::set_shutting_down() noexcept { m_phase.store(phase::shutting_down, std::memory_order_release); }

void openai_routes::add_to(http::router& routes, io::io_context& loop) {
    // The model, for /v1/*: 503 while loading or shutting down.
    const auto ready_model = [this]() -> const model_state& {
        switch (current_phase()) {
        case phase::loading: throw unavailable("The model is still loading. Retry when /health says ok.");
        case phase::shutting_down: throw unavailable("The server is shutting down.");
        case phase::ready: break;
        }
        return *m_published.load(std::memory_order_acquire);
    };

    const auto generation = [this, ready_model, &loop](openai_endpoint ep) {
        return [this, ready_model, &loop, ep](http::request& req, http::context&,
                                               http::chunked_writer& out) -> task<void> {
            std::optional<api_error> refused;
            const model_state* m = nullptr;
            openai_request r;
            std::optional<generation_stream> stream;
            try {
                check_auth(req, m_options.api_key);
                m = &ready_model();
                r = ep == openai_endpoint::completions ? parse_completion_request(req.body, m->parse)
                                                       : parse_chat_request(req.body, m->parse);
                prepare(*m, r);
                stream.emplace(submit(*m, r, loop));
            } catch (const api_error& e) {
                refused = e;
            } catch (const std::exception& e) {
                refused = api_error(500, fmt::format("Internal error: {}", e.what()), {}, "server_error");
            }
            const reply_to to{out, req, *this};
            if (refused) {
                co_await send_error(to, *refused);
                co_return;
            }
            // The first update decides the status: a request that fails
            // before producing anything gets an error status, not a stream.
            std::optional<generation_update> first = co_await stream->next();
            if (!first) {
                co_await send_error(to, api_error(500, "The generation ended without output.", {}, "server_error"));
                co_return;
            }
            if (first->finish && is_failure(*first->finish) && first->text.empty()) {
                co_await send_error(to, failure_error(*first));
                co_return;
            }
            if (r.stream) {
                co_await send_events(*m, r, *stream, std::move(*first), to);
            } else {
                co_await send_whole(*m, r, *stream, std::move(*first), to);
            }
        };
    };
    routes.add_stream(http::method::post, "/v1/completions", generation(openai_endpoint::completions));
    routes.add_stream(http::method::post, "/v1/chat/completions", generation(openai_endpoint::chat_completions));

    routes.get("/v1/models", [this, ready_model](http::request& req, http::context&) -> task<http::response> {
        try {
            check_auth(req, m_options.api_key);
            const model_state& m = ready_model();
            co_return json_response(200, models_list_json(m.name, m.created, m_options.owned_by));
        } catch (const api_error& e) {
            co_return error_response(e);
        }
    });

    routes.get("/health", [this](http::request&, http::context&) -> task<http::response> {
        switch (current_phase()) {
        case phase::loading: co_return json_response(503, R"({"status":"loading"})");
        case phase::shutting_down: co_return json_response(503, R"({"status":"shutting_down"})");
        case phase::ready: break;
        }
        co_return json_response(200, R"({"status":"ok"})");
    });

    routes.get("/metrics", [this](http::request&, http::context&) -> task<http::response> {
        const model_state* m = m_published.load(std::memory_order_acquire);
        if (m == nullptr) co_return error_response(unavailable("The model is still loading: no metrics yet."));
        co_return http::response(200, m->eng->metrics().render(m->name), std::string(metrics_type));
    });

    // Everything else: OpenAI's error JSON rather than the router's plain text.
    const auto unknown = [](http::request& req, http::context&) -> task<http::response> {
        const std::string_view path = req.path();
        for (const known_path& k : known_paths) {
            if (k.path == path) {
                http::response r = error_response(api_error(
                    405, fmt::format("Method {} is not allowed on {}: use {}.", req.method_name, path, k.allow)));
                r.headers.add("Allow", std::string(k.allow));
                co_return r;
            }
        }
        co_return error_response(
            api_error(404, fmt::format("Invalid URL ({} {})", req.method_name, path), {}, "invalid_request_error",
                      "unknown_url"));
    };
    std::string pattern;
    for (int depth = 0; depth <= 8; ++depth) {
        if (depth > 0) pattern += fmt::format("/{{p{}}}", depth);
        for (std::string_view method : {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
            routes.add(method, depth == 0 ? std::string_view("/") : std::string_view(pattern), unknown);
        }
    }
}

} // namespace weft::serve
