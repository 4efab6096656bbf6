// Internal: the engine's state (engine::impl) and the records its thread
// keeps per request. engine.cpp holds the loop (intake, scheduling, the
// step) and the public engine API; engine_tokens.cpp samples a step's tokens
// and delivers them to the requests' mailboxes; generation_stream.cpp is the
// reading side of a mailbox.
//
// Threading: everything below is the engine thread's, except the fields
// marked as guarded by cmd_mutex, which submitting threads share.
#pragma once

#include <weft/io/io_context.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/stop_matcher.hpp>
#include <weft/serve/tokenizer_stream_decoder.hpp>
#include <weft/task.hpp>

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace weft::serve {

namespace detail {

using clock = std::chrono::steady_clock;

inline double seconds_between(clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

/// A request that arrived but has not been handed to the scheduler yet.
struct incoming_request {
    std::shared_ptr<detail::request_mailbox> box;
    generation_request request;
    clock::time_point arrival;
};

/// True when a request's next token is the argmax of the raw logits: greedy,
/// with nothing that changes or reports the distribution.
inline bool plain_greedy(const generation_request& r) {
    const sampling_params& p = r.sampling;
    return p.temperature == 0.0f && !p.logprobs && p.top_logprobs == 0 && p.logit_bias.empty() &&
           p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
           p.min_tokens == 0 && r.format == output_format::text && !r.prompt_logprobs;
}

/// Whether `t` ends the request's generation: end of generation (unless
/// ignored) or one of its stop token ids.
inline bool ends_generation(const generation_request& r, const tokenizer& tok, token_id t) {
    return (!r.ignore_eos && tok.is_eog(t)) ||
           std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), t) != r.stop_token_ids.end();
}

/// What the engine thread keeps per request.
struct active_request {
    active_request(std::shared_ptr<detail::request_mailbox> b, generation_request r, clock::time_point arrival,
                   const tokenizer& tok, std::uint64_t seed)
        : box(std::move(b)), request(std::move(r)), sampler_(request.sampling, seed), decoder(tok),
          stops(request.stop), arrival(arrival) {}

    std::shared_ptr<detail::request_mailbox> box;
    generation_request request;
    sampler sampler_;
    token_stream_decoder decoder;
    stop_matcher stops;
    std::optional<json_constraint> json; // JSON mode
    std::size_t draft_length = 0;        // speculative: the next draft's length (adapts to the hits)
    std::vector<std::uint64_t> json_allowed; // the tokens it takes next, once computed
    std::size_t json_allowed_count = 0;
    bool json_allowed_ready = false;
    // Prompt log-probabilities: collected as the prompt's chunks compute,
    // published together once complete.
    std::vector<generated_token> prompt_logprobs;
    bool prompt_logprobs_complete = true;
    bool prompt_logprobs_sent = false;
    std::size_t generated = 0;
    std::size_t preemptions = 0;
    std::size_t cached_prompt_tokens = 0; // found in the prefix cache when first scheduled
    clock::time_point arrival;
    std::optional<clock::time_point> deadline;
    std::optional<clock::time_point> first_scheduled;
    std::optional<clock::time_point> first_token;
    clock::time_point last_token;
};

/// A token sampled after one step and delivered (detokenized, matched
/// against stop strings, published) while the next step computes.
struct pending_token {
    seq_id id = 0;
    generated_token token;
    clock::time_point sampled_at;
    bool delivered = false;
    bool closes_json = false; // JSON mode: the token completes the object
    /// The request, for the sampling step that appended the token only
    /// (deliver() looks requests up again: one may have ended since).
    active_request* owner = nullptr;
};

} // namespace detail

struct engine::impl {
    using clock = detail::clock;
    using incoming_request = detail::incoming_request;
    using active_request = detail::active_request;
    using pending_token = detail::pending_token;

    /// The scheduler's configuration for this engine. submit() bounds the
    /// waiting queue exactly, counting requests not yet handed over: the
    /// scheduler itself must not refuse what was accepted. Unless given, the
    /// context at which a prompt position's attention costs what its
    /// projections do: the projections' multiply-adds per token over
    /// attention's per position of context, halved because the attention
    /// kernel reaches about half the F32 products' rate (the attention bench
    /// against the model bench; quantized products are faster still, so for
    /// them this errs towards longer chunks). The small demo model: ~1340.
    static scheduler_config scheduler_config_for(scheduler_config c, const model_config& m);

    impl(std::unique_ptr<model_backend> b, std::shared_ptr<const tokenizer> t, engine_options o);

    std::unique_ptr<model_backend> backend;
    std::shared_ptr<const tokenizer> tok;
    engine_options opts;
    serve_metrics metrics;
    scheduler sched;
    io::io_context ctx;
    std::thread thread;

    // Shared with submitting threads, guarded by cmd_mutex.
    std::mutex cmd_mutex;
    std::vector<incoming_request> incoming;
    std::vector<seq_id> aborts;
    std::coroutine_handle<> idle_waiter;
    bool stopping = false;
    clock::time_point stop_deadline;
    std::size_t waiting_estimate = 0; ///< the scheduler's queue after the last step
    seq_id next_id = 1;

    // Engine thread only.
    std::unordered_map<seq_id, active_request> active;
    std::size_t json_requests = 0; ///< active requests under a JSON constraint
    /// No active request's deadline is earlier (it may be a finished one's).
    std::optional<clock::time_point> earliest_deadline;
    batch step_batch;
    // The batch's tokens and block tables, copied out of the scheduler: a
    // request finished while its step computes frees its scheduler state.
    std::vector<token_id> batch_tokens;
    std::vector<block_id> batch_blocks;
    step_output step_out;
    std::vector<token_id> sampled;
    std::vector<std::size_t> accepted; // draft tokens accepted, per sampling chunk
    std::vector<pending_token> undelivered;
    /// While deliver() runs, the readers it wakes and the inter-token
    /// latencies it measures wait here and go out together at its end: one
    /// post_bulk per executor and one histogram lock, not a lock, a
    /// sleeping check and a possible wake-up per token (the HTTP loop takes
    /// the same locks, so each of those moves a cache line between cores).
    bool batching_delivery = false;
    std::vector<std::pair<resume_target, std::coroutine_handle<>>> wakes;
    std::vector<std::coroutine_handle<>> wake_run; // one executor's share of wakes
    std::vector<double> token_gaps;
    std::shared_ptr<const token_texts> json_vocabulary; // built for the first JSON-mode request

    // --- the loop (engine.cpp) --------------------------------------------
    /// New requests and aborts from other threads.
    void intake();

    /// Finishes the requests past their deadlines. Each step calls it: the
    /// walk over every active request runs only once the earliest deadline
    /// known has passed (thousands of streams make it a cost otherwise).
    void expire();

    struct wait_for_work {
        impl* self;
        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> h) {
            std::lock_guard lock(self->cmd_mutex);
            if (!self->incoming.empty() || !self->aborts.empty() || self->stopping) return false;
            self->idle_waiter = h;
            return true;
        }
        void await_resume() const noexcept {}
    };

    /// Wakes the loop if it is idle. Called with cmd_mutex held.
    void wake_locked();

    /// What the engine thread does while a step computes: deliver the
    /// previous step's tokens, take new requests and aborts, expire
    /// deadlines. None of it touches the batch being computed (its tokens
    /// and block tables are the engine's own copies).
    task<void> between_steps();

    /// The most positions a request for prompt log-probabilities computes in
    /// one step: their logits rows stay within 16 M floats (64 MB; 128
    /// positions of a 128k-token vocabulary).
    std::size_t logits_rows_per_request() const;

    /// The scheduler's counts into the metrics' gauges.
    void publish_gauges();

    /// Copies the plan into step_batch, tokens and block tables included.
    void build_batch(const step_plan& plan, clock::time_point now);

    /// The engine loop: deliver the last step's tokens and take in requests,
    /// schedule, compute the step, sample. It starts on the engine's thread;
    /// with a backend that allows it (the CPU backend) it stays on the step
    /// thread that resumed it, so the next step starts as soon as its batch
    /// is built instead of after two threads have woken. Otherwise it hops
    /// back after each step and between_steps overlaps the next one. Only
    /// one thread runs it at a time: each hop is a hand-over (the step's
    /// mutex, when_all's counter, the context's queue), so the engine's
    /// state needs no lock of its own.
    task<void> loop();

    // --- sampling and delivery (engine_tokens.cpp) --------------------------
    /// Appends to the request's pending update and wakes its reader.
    void publish(active_request& r, generated_token* token, std::string_view text,
                 std::optional<finish_reason> finish, std::string error = {});

    /// Ends request `id`. `run_from`: deliver() finishing it at its token
    /// undelivered[run_from - 1]; the request's other undelivered tokens are
    /// then the run that follows (a step's tokens are grouped by request),
    /// so a step with thousands of tokens is not walked once per request
    /// that ends in it.
    void finish(seq_id id, finish_reason reason, std::string error = {}, std::size_t run_from = 0);

    /// Samples the step's tokens and commits them to the scheduler; a
    /// sequence that ends with its token (EOS, max_tokens) leaves the
    /// scheduler at once, so the next step does not compute it. The tokens
    /// are delivered by deliver(), while the next step computes.
    void sample_step(const step_plan& plan);

    /// The argmax of a logits row (first maximum: the lowest id, as the
    /// sampler's greedy pick), or the backend's when it gave only argmaxes.
    token_id greedy_choice(std::size_t row);

    /// Speculative decoding: the next step's guesses for the plain-greedy
    /// requests that got tokens in this one and go on.
    void propose_drafts(std::size_t first_new);

    /// Prompt log-probabilities from a chunk's `rows` logits rows (its last
    /// tokens'; the logits at position p score prompt token p + 1). A chunk
    /// computed again after a preemption scores what was scored already:
    /// those rows are skipped.
    void score_prompt(active_request& r, const scheduled_chunk& c, std::size_t first_row, std::size_t rows);

    /// Publishes one sampled token of `r`; returns why the request ends with
    /// it, if it does (the caller finishes it).
    std::optional<finish_reason> deliver_one(active_request& r, pending_token& p);

    /// Delivers every sampled token not delivered yet, finishing the
    /// requests that end with theirs.
    void deliver();

    /// Posts the wakes and observes the token gaps deliver() gathered.
    void flush_delivery();

    /// JSON mode: the set of tokens the request's next sample may take. It
    /// depends only on the tokens so far, so it is computed while the step
    /// that gives the next logits runs (a pass over the vocabulary: about a
    /// millisecond for 128k tokens), not after.
    static void prepare_json_mask(active_request& r);
};

} // namespace weft::serve
