/// \file
/// `engine`: the serving loop. Requests come in from any thread; one engine
/// thread runs continuous batching over a `model_backend`; each request's
/// tokens flow back to the coroutine that submitted it.
///
/// `submit(request, executor)` checks the request, queues it and returns a
/// `generation_stream` at once (or a refusal: waiting queue full, prompt plus
/// max_tokens beyond the context). The engine thread runs a coroutine that,
/// every step, takes new requests and cancellations, asks the `scheduler`
/// for a batch (decodes first, then chunked prefill, preempting when the KV
/// cache is full), awaits `backend.step`, samples each sequence's next token
/// with its own `sampler` (in JSON mode after a `json_constraint` masked
/// the logits), and turns tokens into text (a streaming UTF-8
/// decoder, then stop strings matched across token boundaries). While a step
/// computes, the engine thread hands the previous step's text to the
/// requests and takes in new ones: it is never what the backend waits for.
///
/// Each stream is a mailbox: the engine appends updates under a small mutex
/// and, when the request's coroutine waits in `next()`, posts it to the
/// executor given at submission (an `io_context` or `thread_pool`: anything
/// with `post(coroutine_handle)`), so the request continues on its own
/// thread. A slow reader gets several tokens in one update; the engine never
/// waits for a reader.
///
/// Cancellation: a stop request on the coroutine waiting in `next()` (the
/// HTTP server's, when the client disconnects) aborts the request, and so
/// does destroying the stream; the engine frees its KV blocks before the next
/// step is scheduled. A request past its deadline finishes with `timeout`.
///
/// Lifetime: the engine must outlive its streams' use of `next()`; `shutdown`
/// (or the destructor) finishes what runs, up to a deadline, then aborts the
/// rest. Threading: `submit`, `metrics`, `shutdown` are thread-safe; a stream
/// belongs to one coroutine.
#pragma once

#include <weft/serve/json_schema.hpp>
#include <weft/serve/metrics.hpp>
#include <weft/serve/model_backend.hpp>
#include <weft/serve/sampler.hpp>
#include <weft/serve/scheduler.hpp>
#include <weft/serve/token.hpp>
#include <weft/serve/tokenizer.hpp>
#include <weft/stop.hpp>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

namespace weft::serve {

/// What the engine reports about each finished request.
struct request_summary {
    seq_id id = 0;
    finish_reason reason = finish_reason::stop;
    std::size_t prompt_tokens = 0;
    std::size_t cached_prompt_tokens = 0; ///< of prompt_tokens, found in the prefix cache
    std::size_t completion_tokens = 0;
    std::size_t preemptions = 0;
    double queue_seconds = 0;  ///< arrival to first scheduled
    double ttft_seconds = 0;   ///< arrival to first token (0 if none)
    double e2e_seconds = 0;    ///< arrival to finish
};

struct engine_options {
    scheduler_config scheduler;
    /// Called on the engine thread for each finished request (logging).
    std::function<void(const request_summary&)> on_finish;
    /// Longest a request may take from arrival to its last token (0: no limit).
    std::chrono::milliseconds request_timeout{0};
    /// Mixed into each request's sampling seed when the request gives none.
    std::uint64_t seed = 0x5eed;
    /// Speculative decoding by prompt lookup: up to this many draft tokens
    /// per step for each plain-greedy request (`propose_ngram` over its
    /// prompt and output, n-grams of up to `speculative_ngram` tokens),
    /// checked in the same step against the model's own greedy choices. A
    /// request's drafts shrink after a miss (to what was right, plus one)
    /// and grow back after a full hit. The output is bitwise what it is
    /// without (the forward pass is batch invariant); only its speed
    /// changes. 0: off.
    std::size_t speculative_tokens = 0;
    std::size_t speculative_ngram = 3;
    std::size_t speculative_min_ngram = 2;
};

/// What the generated text must be: free text, or one JSON object (JSON
/// mode: every token is masked to keep the text a valid prefix of an object,
/// and the request ends, finish reason stop, when the object closes), or one
/// object that `generation_request::schema` accepts (structured outputs).
enum class output_format : unsigned char { text, json_object, json_schema };

struct generation_request {
    std::vector<token_id> prompt;
    std::size_t max_tokens = 16; ///< 0: compute the prompt only (for prompt_logprobs)
    sampling_params sampling;
    std::vector<std::string> stop;
    /// Tokens that end the generation like end-of-generation does (finish
    /// reason stop; the token's text is not part of the output).
    std::vector<token_id> stop_token_ids;
    bool ignore_eos = false;
    output_format format = output_format::text;
    /// The schema of output_format::json_schema.
    std::shared_ptr<const json_schema> schema;
    /// Report the log-probability of each prompt token after the first
    /// (given the tokens before it, from the raw logits), with this many most
    /// likely alternatives each. Such a request computes its whole prompt (no
    /// prefix-cache reuse), a bounded number of positions per step.
    std::optional<std::size_t> prompt_logprobs;
    int priority = 0;
    /// Finishes with `timeout` at this point (the engine's request_timeout
    /// applies too, whichever comes first).
    std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct generated_token {
    token_id id = 0;
    float logprob = 0.0f;
    std::vector<token_logprob> top;
};

/// What a request got since its previous update.
struct generation_update {
    /// With `prompt_logprobs`: entry i is prompt token i + 1's; all of them,
    /// in the first update after the prompt is computed (before any token).
    std::vector<generated_token> prompt_logprobs;
    std::vector<generated_token> tokens;
    std::string text;                     ///< text released by these tokens
    std::optional<finish_reason> finish;  ///< set on the last update
    std::string error;                    ///< why, when finish is error
    std::size_t prompt_tokens = 0;
    std::size_t cached_prompt_tokens = 0; ///< of prompt_tokens, found in the prefix cache
    std::size_t completion_tokens = 0;    ///< so far
};

/// Posts a coroutine handle to an executor: the type-erased `post` of an
/// io_context, a thread_pool or anything with `post(std::coroutine_handle<>)`.
/// An executor that also has `post_bulk(std::span<const std::coroutine_handle<>>)`
/// takes a batch in one call (the engine wakes a step's readers that way);
/// for the others `post_bulk` posts the handles one by one.
class resume_target {
public:
    resume_target() = default;
    template <class Executor>
        requires requires(Executor& e, std::coroutine_handle<> h) { e.post(h); }
    resume_target(Executor& e) noexcept // NOLINT: implicit on purpose
        : m_ctx(&e), m_post([](void* c, std::coroutine_handle<> h) { static_cast<Executor*>(c)->post(h); }),
          m_post_bulk([](void* c, std::span<const std::coroutine_handle<>> hs) {
              if constexpr (requires(Executor& x) { x.post_bulk(hs); }) {
                  static_cast<Executor*>(c)->post_bulk(hs);
              } else {
                  for (std::coroutine_handle<> h : hs) static_cast<Executor*>(c)->post(h);
              }
          }) {}
    void post(std::coroutine_handle<> h) const { m_post(m_ctx, h); }
    void post_bulk(std::span<const std::coroutine_handle<>> hs) const { m_post_bulk(m_ctx, hs); }
    [[nodiscard]] explicit operator bool() const noexcept { return m_post != nullptr; }
    /// Whether both post to the same executor.
    [[nodiscard]] bool same_executor(const resume_target& o) const noexcept { return m_ctx == o.m_ctx; }

private:
    void* m_ctx = nullptr;
    void (*m_post)(void*, std::coroutine_handle<>) = nullptr;
    void (*m_post_bulk)(void*, std::span<const std::coroutine_handle<>>) = nullptr;
};

namespace detail {
struct request_mailbox;
}

class engine;

class generation_stream {
public:
    generation_stream(std::shared_ptr<detail::request_mailbox> box, engine& e) noexcept;
    generation_stream(generation_stream&&) noexcept;
    generation_stream& operator=(generation_stream&&) = delete;
    generation_stream(const generation_stream&) = delete;
    generation_stream& operator=(const generation_stream&) = delete;
    /// Aborts the request if it has not finished.
    ~generation_stream();

    struct next_awaiter;
    /// The next update (tokens since the last one); std::nullopt once the
    /// final update was taken. Throws operation_cancelled on a stop request
    /// (the request is then aborted).
    next_awaiter next() noexcept;

    /// Aborts the request (idempotent); a final update with finish = aborted follows.
    void cancel();
    [[nodiscard]] seq_id id() const noexcept;

private:
    std::shared_ptr<detail::request_mailbox> m_box;
    engine* m_engine;
};

enum class submit_status : unsigned char { accepted, queue_full, too_long, invalid, shutting_down };

struct submit_result {
    submit_status status = submit_status::invalid;
    std::string message;                         ///< why, when refused
    std::optional<generation_stream> stream;     ///< when accepted
};

class engine {
public:
    engine(std::unique_ptr<model_backend> backend, std::shared_ptr<const tokenizer> tok, engine_options opts = {});
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    /// Queues `req`; its updates resume the `next()` caller through `resume_on`.
    submit_result submit(generation_request req, resume_target resume_on);

    /// Stops accepting, lets running requests finish until `deadline`, then
    /// aborts the rest and stops the engine thread. Idempotent.
    void shutdown(std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now());

    [[nodiscard]] const serve_metrics& metrics() const noexcept;
    [[nodiscard]] serve_metrics& metrics() noexcept;
    [[nodiscard]] const model_config& config() const noexcept;
    [[nodiscard]] const tokenizer& vocab() const noexcept;
    [[nodiscard]] const model_backend& backend() const noexcept;
    [[nodiscard]] const engine_options& options() const noexcept;

    struct impl;

private:
    friend class generation_stream;
    void abort(seq_id id);
    std::unique_ptr<impl> m_impl;
};

namespace detail {

/// Shared by a stream (its coroutine) and the engine thread.
struct request_mailbox {
    seq_id id = 0;
    resume_target resume_on;
    std::mutex mutex;
    generation_update pending;          ///< accumulated since the last take
    bool has_pending = false;
    bool finished = false;              ///< the final update is in `pending` or taken
    bool final_taken = false;
    bool cancelled = false;             ///< the waiter was woken by a stop request
    std::coroutine_handle<> waiter;
};

} // namespace detail

struct generation_stream::next_awaiter {
    generation_stream* m_stream;
    std::optional<std::stop_callback<std::function<void()>>> m_on_stop;

    bool await_ready();
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
        const std::stop_token& token = weft::detail::stop_token_of(h.promise());
        return suspend(h, token);
    }
    std::optional<generation_update> await_resume();

private:
    bool suspend(std::coroutine_handle<> h, const std::stop_token& token);
};

} // namespace weft::serve
