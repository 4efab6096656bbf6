/// \file
/// `openai_routes`: the HTTP routes of the OpenAI-compatible server, over an
/// `engine` that may not exist yet.
///
/// Routes: POST /v1/completions and POST /v1/chat/completions (streaming as
/// Server-Sent Events ending with `data: [DONE]`, or one JSON body), GET
/// /v1/models, GET /health (503 {"status":"loading"} until `set_ready`, 200
/// {"status":"ok"} then, 503 {"status":"shutting_down"} after
/// `set_shutting_down`), GET /metrics (Prometheus text format). Every other
/// path or method gets a 404 / 405 in OpenAI's error JSON.
///
/// Errors (OpenAI's error JSON): 400 invalid parameters, or a prompt plus
/// max_tokens beyond the context (code context_length_exceeded); 401 on
/// /v1/* when an API key is set and `Authorization: Bearer <key>` does not
/// carry it; 404 unknown route or model; 429 with `Retry-After: 1` when the
/// engine's waiting queue is full; 503 while loading or shutting down; 500
/// when the engine fails a request before it produced anything; 504 when a
/// request times out before it produced anything. The response head is
/// therefore sent with the request's first update (its first token, or its
/// failure). A streamed request that fails or times out after its first
/// token ends with an error event (`data: {"error":...}`) and `data: [DONE]`.
///
/// Prompts are tokenized on the HTTP thread: completions prompts with
/// special-token parsing on (the whole prompt is the client's), chat
/// messages through the model's `chat_template` (their content never
/// becomes special tokens). Default max_tokens: 16 for completions (as
/// OpenAI), the rest of the context for chat.
///
/// Cancellation: each handler awaits the engine's updates with its
/// connection's stop token, so a client that disconnects aborts its request
/// (the engine frees its KV blocks before its next step).
///
/// Lifetime: must outlive the HTTP servers using its routes; the engine
/// given to `set_ready` must outlive every request in flight.
/// Threading: handlers run on their loop threads; `set_ready` and
/// `set_shutting_down` may be called from any thread.
#pragma once

#include <weft/http/router.hpp>
#include <weft/io/io_context.hpp>
#include <weft/serve/chat_template.hpp>
#include <weft/serve/engine.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace weft::http {
class server;
} // namespace weft::http

namespace weft::serve {

struct openai_routes_options {
    /// When not empty, /v1/* requires `Authorization: Bearer <api_key>`.
    std::string api_key;
    /// `owned_by` in /v1/models.
    std::string owned_by = "weft";
};

class openai_routes {
public:
    enum class phase : unsigned char { loading, ready, shutting_down };

    explicit openai_routes(openai_routes_options opts = {});
    ~openai_routes();
    openai_routes(const openai_routes&) = delete;
    openai_routes& operator=(const openai_routes&) = delete;

    /// Registers every route on `routes`; the handlers resume engine updates
    /// on `loop`, the context whose thread serves `routes`.
    void add_to(http::router& routes, io::io_context& loop);

    /// /metrics also reports `s`'s accept pauses (summed over every server
    /// added). Call before any request arrives; `s` must outlive the routes.
    void add_http_server(const http::server& s);

    /// Serves `e` under `model_name` from now on (once; std::logic_error after).
    void set_ready(engine& e, std::string model_name, chat_template tmpl);
    /// New requests get 503 from now on; requests in flight continue.
    void set_shutting_down() noexcept;

    [[nodiscard]] phase current_phase() const noexcept { return m_phase.load(std::memory_order_acquire); }

    struct model_state;

private:
    openai_routes_options m_options;
    std::unique_ptr<model_state> m_model;
    std::vector<const http::server*> m_http_servers; // fixed before the first request
    std::atomic<const model_state*> m_published{nullptr};
    std::atomic<phase> m_phase{phase::loading};
};

} // namespace weft::serve
