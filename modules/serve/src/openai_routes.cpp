#include <weft/serve/openai_routes.hpp>

#include <weft/http/server.hpp>
#include <weft/http/stream_writer.hpp>
#include <weft/serve/kv_cache.hpp>
#include <weft/serve/openai_error.hpp>
#include <weft/serve/openai_request.hpp>
#include <weft/serve/openai_response.hpp>

#include "openai_json.hpp"
#include "openai_reply.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <iterator>
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
using namespace detail;

constexpr std::string_view json_type = "application/json";
constexpr std::string_view metrics_type = "text/plain; version=0.0.4; charset=utf-8";

/// Paths the server knows, with the methods each takes (for 405s).
struct known_path {
    std::string_view path;
    std::string_view allow;
};
constexpr std::array<known_path, 7> known_paths{{
    {"/v1/completions", "POST"},
    {"/v1/chat/completions", "POST"},
    {"/tokenize", "POST"},
    {"/detokenize", "POST"},
    {"/v1/models", "GET, HEAD"},
    {"/health", "GET, HEAD"},
    {"/metrics", "GET, HEAD"},
}};

http::response json_response(int status, std::string body) {
    return http::response(status, std::move(body), std::string(json_type));
}

http::response error_response(const api_error& e) {
    http::response r(e.status(), e.to_json());
    r.headers = error_headers(e);
    return r;
}



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

/// Tokenizes the prompts into r.prompt_ids (chat: through the chat
/// template, whose extra stop strings join the request's).
void encode_prompts(const model_state& m, openai_request& r) {
    const tokenizer& tok = m.eng->vocab();
    r.prompt_ids.clear();
    if (r.endpoint == openai_endpoint::completions) {
        // The whole prompt is the client's: special tokens in it are meant.
        for (completion_prompt& p : r.prompts) {
            r.prompt_ids.push_back(p.is_tokens ? std::move(p.tokens)
                                               : tok.encode(p.text, /*add_special=*/true, /*parse_special=*/true));
        }
    } else {
        if (r.parse_tool_calls && r.tool_syntax == tool_call_syntax::none) {
            // "auto": the calls are in the syntax of the model's family.
            r.tool_syntax = tool_call_syntax_for(m.tmpl.style());
            if (r.tool_syntax == tool_call_syntax::none) {
                throw api_error::invalid(
                    "tool_choice",
                    fmt::format("this model's chat template ({}) has no syntax for tool calls to be parsed from: "
                                "set tool_choice to a named function, 'required' or 'none'",
                                to_string(m.tmpl.style())));
            }
        }
        r.prompt_ids.push_back(m.tmpl.encode(tok, r.messages, r.tools));
        r.generation.stop.insert(r.generation.stop.end(), m.tmpl.extra_stops().begin(), m.tmpl.extra_stops().end());
    }
    for (std::size_t i = 0; i < r.prompt_ids.size(); ++i) {
        if (r.prompt_ids[i].empty()) {
            throw api_error::invalid(r.prompt_ids.size() > 1 ? fmt::format("prompt[{}]", i)
                                                             : std::string(prompt_param(r.endpoint)),
                                     "The prompt is empty: it encodes to no tokens.");
        }
    }
}

/// The server's max_tokens when the request gives none: OpenAI's 16 for
/// completions, what the context leaves for chat.
void settle_max_tokens(const model_state& m, openai_request& r) {
    generation_request& g = r.generation;
    if (r.max_tokens) return;
    if (r.endpoint == openai_endpoint::completions) {
        g.max_tokens = 16; // OpenAI's default for completions
        return;
    }
    const std::size_t prompt = r.prompt_ids.front().size();
    if (prompt >= m.context_limit) {
        throw api_error(400,
                        fmt::format("The messages are {} tokens, which leaves no room for a completion in the context "
                                    "of {} tokens.",
                                    prompt, m.context_limit),
                        "messages", "invalid_request_error", "context_length_exceeded");
    }
    g.max_tokens = m.context_limit - prompt;
}

/// Tokenizes the prompts and settles max_tokens and the stop strings.
void prepare(const model_state& m, openai_request& r) {
    encode_prompts(m, r);
    settle_max_tokens(m, r);
    const generation_request& g = r.generation;
    if (g.sampling.min_tokens > g.max_tokens) {
        throw api_error::invalid("min_tokens", fmt::format("min_tokens ({}) must not exceed the completion's {} tokens",
                                                           g.sampling.min_tokens, g.max_tokens));
    }
}

/// Submits choice `index` of the request: choice index % n of prompt
/// index / n; throws api_error when the engine refuses it.
generation_stream submit(const model_state& m, const openai_request& r, std::size_t index, io::io_context& loop) {
    const bool max_given = r.max_tokens.has_value();
    const std::string param = max_given ? r.max_tokens_param : std::string(prompt_param(r.endpoint));
    generation_request g = r.generation;
    g.prompt = r.prompt_ids[index / r.n];
    // With a seed, choice i of a prompt draws from seed + i: reproducible,
    // and the choices differ from each other (without one, each request has
    // its own).
    if (g.sampling.seed) g.sampling.seed = *g.sampling.seed + index % r.n;
    submit_result s = m.eng->submit(std::move(g), resume_target(loop));
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

void openai_routes::add_http_server(const http::server& s) { m_http_servers.push_back(&s); }

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
            std::vector<generation_stream> streams;
            try {
                check_auth(req, m_options.api_key);
                m = &ready_model();
                r = ep == openai_endpoint::completions ? parse_completion_request(req.body, m->parse)
                                                       : parse_chat_request(req.body, m->parse);
                prepare(*m, r);
                const std::size_t choices = r.prompt_ids.size() * r.n;
                streams.reserve(choices);
                for (std::size_t i = 0; i < choices; ++i) streams.push_back(submit(*m, r, i, loop));
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
            // The first updates decide the status: a request that fails
            // before producing anything gets an error status, not a stream.
            // (Leaving early destroys the streams, which aborts them.)
            std::vector<generation_update> firsts;
            for (generation_stream& s : streams) {
                std::optional<generation_update> first = co_await s.next();
                if (!first) {
                    co_await send_error(to, api_error(500, "The generation ended without output.", {}, "server_error"));
                    co_return;
                }
                if (first->finish && is_failure(*first->finish) && first->text.empty()) {
                    co_await send_error(to, failure_error(*first));
                    co_return;
                }
                firsts.push_back(std::move(*first));
            }
            const reply_model rm{m->eng->vocab(), m->name};
            if (r.stream) {
                co_await send_events(rm, r, streams, std::move(firsts), to);
            } else {
                co_await send_whole(rm, r, streams, std::move(firsts), to);
            }
        };
    };
    routes.add_stream(http::method::post, "/v1/completions", generation(openai_endpoint::completions));
    routes.add_stream(http::method::post, "/v1/chat/completions", generation(openai_endpoint::chat_completions));

    // A JSON route on the ready model: the API key, 503 while loading, and
    // an api_error as OpenAI's error JSON; `body` makes the 200 answer.
    const auto model_route = [this, ready_model](auto body) {
        return [this, ready_model, body](http::request& req, http::context&) -> task<http::response> {
            try {
                check_auth(req, m_options.api_key);
                co_return json_response(200, body(ready_model(), req));
            } catch (const api_error& e) {
                co_return error_response(e);
            }
        };
    };

    // vLLM's token utilities: the tokens a prompt (or a chat, through the
    // chat template) becomes — the count a completion's usage reports — and
    // the text of token ids.
    routes.post("/tokenize", model_route([](const model_state& m, const http::request& req) {
        openai_request r = parse_tokenize_request(req.body, m.parse);
        encode_prompts(m, r); // only the tokens: nothing about a completion is checked
        const std::vector<token_id>& ids = r.prompt_ids.front();
        std::string body = "{\"count\":";
        json_out::append_uint(body, ids.size());
        body += ",\"max_model_len\":";
        json_out::append_uint(body, m.context_limit);
        body += ",\"tokens\":[";
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (i > 0) body += ',';
            json_out::append_int(body, ids[i]);
        }
        body += "]}";
        return body;
    }));
    routes.post("/detokenize", model_route([](const model_state& m, const http::request& req) {
        const std::vector<token_id> ids = parse_detokenize_request(req.body, m.parse);
        std::string body = "{\"prompt\":";
        json_out::append_string(body, m.eng->vocab().decode(ids));
        body += '}';
        return body;
    }));
    routes.get("/v1/models", model_route([this](const model_state& m, const http::request&) {
        return models_list_json(m.name, m.created, m_options.owned_by);
    }));

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
        std::string body = m->eng->metrics().render(m->name);
        std::uint64_t pauses = 0;
        for (const http::server* s : m_http_servers) pauses += s->accept_pauses();
        fmt::format_to(std::back_inserter(body),
                       "# HELP weft_http_accept_pauses_total Times accepting paused for 20 ms, the process or system "
                       "being out of file descriptors.\n# TYPE weft_http_accept_pauses_total counter\n"
                       "weft_http_accept_pauses_total {}\n",
                       pauses);
        co_return http::response(200, std::move(body), std::string(metrics_type));
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
