#include <weft/io/io_context.hpp>
#include <weft/when_all.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/ngram_proposer.hpp>
#include <weft/serve/stop_matcher.hpp>
#include <weft/serve/tokenizer_stream_decoder.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

namespace weft::serve {

using clock = std::chrono::steady_clock;

namespace {

double seconds_between(clock::time_point a, clock::time_point b) {
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
bool plain_greedy(const generation_request& r) {
    const sampling_params& p = r.sampling;
    return p.temperature == 0.0f && !p.logprobs && p.top_logprobs == 0 && p.logit_bias.empty() &&
           p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
           p.min_tokens == 0 && r.format == output_format::text && !r.prompt_logprobs;
}

/// Whether `t` ends the request's generation: end of generation (unless
/// ignored) or one of its stop token ids.
bool ends_generation(const generation_request& r, const tokenizer& tok, token_id t) {
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

} // namespace

struct engine::impl {
    /// The scheduler's configuration for this engine. submit() bounds the
    /// waiting queue exactly, counting requests not yet handed over: the
    /// scheduler itself must not refuse what was accepted. Unless given, the
    /// context at which a prompt position's attention costs what its
    /// projections do: the projections' multiply-adds per token over
    /// attention's per position of context, halved because the attention
    /// kernel reaches about half the F32 products' rate (the attention bench
    /// against the model bench; quantized products are faster still, so for
    /// them this errs towards longer chunks). The small demo model: ~1340.
    static scheduler_config scheduler_config_for(scheduler_config c, const model_config& m) {
        c.max_waiting = std::numeric_limits<std::size_t>::max();
        if (c.prefill_context_cost == 0) {
            const double projections = static_cast<double>(m.n_layer) *
                static_cast<double>(m.n_embd * (2 * m.q_dim() + 2 * m.kv_dim()) + 3 * m.n_embd * m.n_ff);
            const double attention = 2.0 * static_cast<double>(m.n_layer * m.n_head * m.head_dim);
            if (attention > 0) {
                const auto context = static_cast<std::size_t>(projections / attention / 2);
                c.prefill_context_cost = std::max<std::size_t>(1, context);
            }
        }
        return c;
    }

    impl(std::unique_ptr<model_backend> b, std::shared_ptr<const tokenizer> t, engine_options o)
        : backend(std::move(b)), tok(std::move(t)), opts(std::move(o)),
          sched(scheduler_config_for(opts.scheduler, backend->config()), backend->num_kv_blocks(),
                backend->kv_block_size()) {
        metrics.kv_blocks_total = sched.blocks().num_blocks();
    }

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
    std::shared_ptr<const token_texts> json_vocabulary; // built for the first JSON-mode request

    // --- mailbox side (engine thread) -------------------------------------
    /// Appends to the request's pending update and wakes its reader.
    void publish(active_request& r, generated_token* token, std::string_view text,
                 std::optional<finish_reason> finish, std::string error = {}) {
        std::coroutine_handle<> wake;
        {
            std::lock_guard lock(r.box->mutex);
            generation_update& u = r.box->pending;
            if (r.prompt_logprobs_complete && !r.prompt_logprobs_sent && r.request.prompt_logprobs) {
                u.prompt_logprobs = std::move(r.prompt_logprobs);
                r.prompt_logprobs_sent = true;
            }
            if (token != nullptr) u.tokens.push_back(std::move(*token));
            u.text.append(text);
            u.prompt_tokens = r.request.prompt.size();
            u.cached_prompt_tokens = r.cached_prompt_tokens;
            u.completion_tokens = r.generated;
            if (finish) {
                u.finish = finish;
                u.error = std::move(error);
                r.box->finished = true;
            }
            r.box->has_pending = true;
            wake = std::exchange(r.box->waiter, {});
        }
        if (wake) r.box->resume_on.post(wake);
    }

    /// Ends request `id`. `run_from`: deliver() finishing it at its token
    /// undelivered[run_from - 1]; the request's other undelivered tokens are
    /// then the run that follows (a step's tokens are grouped by request),
    /// so a step with thousands of tokens is not walked once per request
    /// that ends in it.
    void finish(seq_id id, finish_reason reason, std::string error = {}, std::size_t run_from = 0) {
        auto it = active.find(id);
        if (it == active.end()) return;
        active_request& r = it->second;
        // A token sampled but not delivered yet goes out first; if it ended
        // the request by itself (a stop, the length), that came first.
        for (std::size_t j = run_from; j < undelivered.size(); ++j) {
            pending_token& p = undelivered[j];
            if (p.id != id && run_from != 0) break;
            if (p.id != id || p.delivered) continue;
            p.delivered = true;
            if (const std::optional<finish_reason> natural = deliver_one(r, p)) {
                reason = *natural;
                error.clear();
            }
        }
        std::string tail;
        if (reason == finish_reason::length || reason == finish_reason::stop) {
            // Whatever text was held back (an incomplete character, a partial
            // stop string that never completed) is released now.
            const stop_matcher::result last = r.stops.push(r.decoder.finish());
            tail = last.emit;
            if (!last.stopped) tail += r.stops.flush();
        }
        const clock::time_point now = clock::now();
        publish(r, nullptr, tail, reason, std::move(error));
        sched.abort(id); // frees its blocks (finish and abort both release everything)
        metrics.count_finished(reason);
        metrics.e2e_latency.observe(seconds_between(r.arrival, now));
        if (opts.on_finish) {
            request_summary s;
            s.id = id;
            s.reason = reason;
            s.prompt_tokens = r.request.prompt.size();
            s.cached_prompt_tokens = r.cached_prompt_tokens;
            s.completion_tokens = r.generated;
            s.preemptions = r.preemptions;
            s.queue_seconds = r.first_scheduled ? seconds_between(r.arrival, *r.first_scheduled) : 0.0;
            s.ttft_seconds = r.first_token ? seconds_between(r.arrival, *r.first_token) : 0.0;
            s.e2e_seconds = seconds_between(r.arrival, now);
            opts.on_finish(s);
        }
        if (r.json) --json_requests;
        active.erase(it);
    }

    // --- the loop (engine thread) -----------------------------------------
    /// New requests and aborts from other threads.
    void intake() {
        std::vector<incoming_request> in;
        std::vector<seq_id> ab;
        {
            std::lock_guard lock(cmd_mutex);
            in.swap(incoming);
            ab.swap(aborts);
            // They wait in the scheduler now; publish_gauges recounts.
            waiting_estimate += in.size();
        }
        for (incoming_request& r : in) {
            const seq_id id = r.box->id;
            // max_tokens 0 computes the prompt, then finishes instead of sampling.
            sequence_request sr{id, r.request.prompt, std::max<std::size_t>(r.request.max_tokens, 1),
                                r.request.priority};
            if (r.request.prompt_logprobs) {
                sr.reuse_prefix = false;
                sr.max_chunk = logits_rows_per_request();
            }
            const admit_result admitted = sched.add(std::move(sr));
            const std::uint64_t seed = r.request.sampling.seed.value_or(opts.seed ^ (id * 0x9e3779b97f4a7c15ull));
            if (sampling_params& sp = r.request.sampling; sp.min_tokens > 0) {
                // Until min_tokens, nothing that would end the generation.
                if (!r.request.ignore_eos) sp.held_back = tok->eog_ids();
                sp.held_back.insert(sp.held_back.end(), r.request.stop_token_ids.begin(),
                                    r.request.stop_token_ids.end());
            }
            auto [it, inserted] = active.try_emplace(id, r.box, std::move(r.request), r.arrival, *tok, seed);
            active_request& a = it->second;
            a.prompt_logprobs_complete = !a.request.prompt_logprobs || a.request.prompt.size() <= 1;
            if (a.request.format != output_format::text) {
                if (!json_vocabulary) json_vocabulary = std::make_shared<const token_texts>(*tok);
                a.json.emplace(json_vocabulary,
                               a.request.format == output_format::json_schema ? a.request.schema : nullptr);
                ++json_requests;
            }
            if (opts.request_timeout.count() > 0) a.deadline = a.arrival + opts.request_timeout;
            if (a.request.deadline && (!a.deadline || *a.request.deadline < *a.deadline)) a.deadline = a.request.deadline;
            if (a.deadline && (!earliest_deadline || *a.deadline < *earliest_deadline)) earliest_deadline = a.deadline;
            if (admitted != admit_result::accepted) {
                // submit() checked both already; a race with the queue bound lands here.
                finish(id, finish_reason::error,
                       admitted == admit_result::queue_full ? "the waiting queue is full" : "request does not fit");
                continue;
            }
            metrics.prompt_tokens.fetch_add(a.request.prompt.size(), std::memory_order_relaxed);
        }
        for (seq_id id : ab) finish(id, finish_reason::aborted);
    }

    /// Finishes the requests past their deadlines. Each step calls it: the
    /// walk over every active request runs only once the earliest deadline
    /// known has passed (thousands of streams make it a cost otherwise).
    void expire() {
        if (!earliest_deadline) return;
        const clock::time_point now = clock::now();
        if (now < *earliest_deadline) return;
        std::vector<seq_id> late;
        earliest_deadline.reset();
        for (auto& [id, r] : active) {
            if (!r.deadline) continue;
            if (now >= *r.deadline) {
                late.push_back(id);
            } else if (!earliest_deadline || *r.deadline < *earliest_deadline) {
                earliest_deadline = r.deadline;
            }
        }
        for (seq_id id : late) finish(id, finish_reason::timeout, "request timed out");
    }

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
    void wake_locked() {
        if (idle_waiter) ctx.post(std::exchange(idle_waiter, {}));
    }

    /// Samples the step's tokens and commits them to the scheduler; a
    /// sequence that ends with its token (EOS, max_tokens) leaves the
    /// scheduler at once, so the next step does not compute it. The tokens
    /// are delivered by deliver(), while the next step computes.
    void sample_step(const step_plan& plan) {
        const clock::time_point now = clock::now();
        sampled.clear();
        accepted.clear();
        std::size_t row = 0;
        const std::size_t first_new = undelivered.size();
        for (std::size_t ci = 0; ci < plan.chunks.size(); ++ci) {
            const scheduled_chunk& c = plan.chunks[ci];
            const std::size_t rows = step_batch.chunks[ci].logits; // build_batch's copy of this chunk
            const std::size_t first_row = row;
            row += rows;
            if (rows == 0) continue;
            // A request finished since the step was planned has left both
            // `active` and the scheduler (finish() removes it from each).
            auto it = active.find(c.id);
            if (it == active.end()) {
                if (c.samples) sampled.push_back(0); // finished meanwhile; commit skips it
                continue;
            }
            active_request& r = it->second;
            if (!r.prompt_logprobs_complete) score_prompt(r, c, first_row, rows);
            if (!c.samples) continue;
            if (r.request.max_tokens == 0) {
                // The prompt was all it asked for.
                sampled.push_back(0);
                finish(c.id, finish_reason::length);
                continue;
            }
            if (!c.draft.empty()) {
                // Speculative: row i holds the model's choice after the
                // decode token and i draft tokens. Drafts go to plain-greedy
                // requests only, whose choice is the argmax: keep the draft
                // tokens it agrees with, then its own next choice.
                std::size_t good = 0;
                while (good < c.draft.size() && greedy_choice(first_row + good) == c.draft[good]) ++good;
                // A missed guess shortens the next draft to what was right
                // plus one (a miss costs a position, not a step); a full hit
                // lengthens it again.
                r.draft_length = good == c.draft.size() ? std::min(opts.speculative_tokens, good + 1) : good + 1;
                const token_id next = greedy_choice(first_row + good);
                sampled.push_back(next);
                accepted.resize(sampled.size());
                accepted.back() = good;
                for (std::size_t i = 0; i <= good; ++i) {
                    const token_id t = i < good ? c.draft[i] : next;
                    undelivered.push_back({c.id, generated_token{t, 0.0f, {}}, now, false, false, &r});
                    if (ends_generation(r.request, *tok, t)) break; // nothing after the end
                }
                continue;
            }
            const std::size_t sample_row = first_row + rows - 1; // the chunk's last token
            const std::span<float> logits = step_out.logits.empty() ? std::span<float>{} : step_out.row(sample_row);
            if (!step_out.argmax.empty()) {
                // The backend picked the greedy token itself (argmax_only).
                const token_id t = step_out.argmax[sample_row];
                sampled.push_back(t);
                undelivered.push_back({c.id, generated_token{t, 0.0f, {}}, now, false, false, &r});
                continue;
            }
            if (r.json) {
                prepare_json_mask(r); // usually done while this step computed
                if (r.json_allowed_count == 0) {
                    // Cannot happen with a vocabulary that spells every byte.
                    sampled.push_back(0);
                    finish(c.id, finish_reason::error, "no token of the vocabulary continues the JSON object");
                    continue;
                }
                json_constraint::apply(r.json_allowed, logits);
                r.json_allowed_ready = false;
            }
            const std::size_t prompt_len = r.request.prompt.size();
            const std::span<const token_id> tokens(*sched.tokens(c.id)); // the penalties read them
            const sample_result s = r.sampler_.sample(logits, tokens.first(prompt_len), tokens.subspan(prompt_len));
            sampled.push_back(s.token);
            // The mask left only tokens the constraint takes.
            const bool closes_json = r.json && r.json->advance(s.token) && r.json->complete();
            undelivered.push_back({c.id, generated_token{s.token, s.logprob, s.top}, now, false, closes_json, &r});
        }
        accepted.resize(sampled.size(), 0);
        sched.commit(plan, sampled, accepted);
        metrics.generation_tokens.fetch_add(undelivered.size() - first_new, std::memory_order_relaxed);
        std::size_t nth = 0; // the token's place among its request's tokens of this step
        for (std::size_t i = first_new; i < undelivered.size(); ++i) {
            const pending_token& p = undelivered[i];
            nth = i > first_new && undelivered[i - 1].id == p.id ? nth + 1 : 0;
            const active_request& r = *p.owner; // alive: nothing ended it since it was sampled
            // The previous step's tokens are delivered: r.generated counts
            // every token before this step's.
            if (ends_generation(r.request, *tok, p.token.id) || r.generated + nth + 1 >= r.request.max_tokens ||
                p.closes_json) {
                sched.finish(p.id);
            }
        }
        if (opts.speculative_tokens > 0) propose_drafts(first_new);
    }

    /// The argmax of a logits row (first maximum: the lowest id, as the
    /// sampler's greedy pick), or the backend's when it gave only argmaxes.
    token_id greedy_choice(std::size_t row) {
        if (!step_out.argmax.empty()) return step_out.argmax[row];
        const std::span<const float> logits = step_out.row(row);
        return static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }

    /// Speculative decoding: the next step's guesses for the plain-greedy
    /// requests that got tokens in this one and go on.
    void propose_drafts(std::size_t first_new) {
        seq_id last = 0;
        for (std::size_t i = first_new; i < undelivered.size(); ++i) {
            const seq_id id = undelivered[i].id;
            if (id == last) continue;
            last = id;
            const std::vector<token_id>* all = sched.tokens(id);
            if (all == nullptr) continue; // ended with this step's tokens
            active_request& r = *undelivered[i].owner;
            if (!plain_greedy(r.request)) continue;
            if (r.draft_length == 0) r.draft_length = opts.speculative_tokens;
            const std::vector<token_id> draft =
                propose_ngram(*all, opts.speculative_ngram, r.draft_length, opts.speculative_min_ngram);
            if (!draft.empty()) sched.propose(id, draft);
        }
    }

    /// Prompt log-probabilities from a chunk's `rows` logits rows (its last
    /// tokens'; the logits at position p score prompt token p + 1). A chunk
    /// computed again after a preemption scores what was scored already:
    /// those rows are skipped.
    void score_prompt(active_request& r, const scheduled_chunk& c, std::size_t first_row, std::size_t rows) {
        const std::vector<token_id>& prompt = r.request.prompt;
        const std::size_t first_pos = c.start + c.tokens.size() - rows;
        for (std::size_t j = 0; j < rows; ++j) {
            const std::size_t target = first_pos + j + 1;
            if (target >= prompt.size() || target != r.prompt_logprobs.size() + 1) continue;
            const sample_result s = sampler::score(step_out.row(first_row + j), prompt[target], *r.request.prompt_logprobs);
            r.prompt_logprobs.push_back(generated_token{s.token, s.logprob, s.top});
        }
        r.prompt_logprobs_complete = r.prompt_logprobs.size() + 1 >= prompt.size();
    }

    /// Publishes one sampled token of `r`; returns why the request ends with
    /// it, if it does (the caller finishes it).
    std::optional<finish_reason> deliver_one(active_request& r, pending_token& p) {
        ++r.generated;
        if (!r.first_token) {
            r.first_token = p.sampled_at;
            metrics.time_to_first_token.observe(seconds_between(r.arrival, p.sampled_at));
        } else {
            metrics.inter_token_latency.observe(seconds_between(r.last_token, p.sampled_at));
        }
        r.last_token = p.sampled_at;
        const token_id t = p.token.id;
        if (ends_generation(r.request, *tok, t)) {
            publish(r, &p.token, {}, std::nullopt);
            return finish_reason::stop;
        }
        const stop_matcher::result text = r.stops.push(r.decoder.push(t));
        publish(r, &p.token, text.emit, std::nullopt);
        if (text.stopped) {
            // The stop string ends the text; nothing after it is released.
            r.decoder = token_stream_decoder(*tok);
            r.stops = stop_matcher({});
            return finish_reason::stop;
        }
        if (p.closes_json) return finish_reason::stop;
        if (r.generated >= r.request.max_tokens) return finish_reason::length;
        return std::nullopt;
    }

    /// Delivers every sampled token not delivered yet, finishing the
    /// requests that end with theirs.
    void deliver() {
        for (std::size_t i = 0; i < undelivered.size(); ++i) {
            pending_token& p = undelivered[i];
            if (p.delivered) continue;
            p.delivered = true;
            auto it = active.find(p.id);
            if (it == active.end()) continue;
            if (const std::optional<finish_reason> reason = deliver_one(it->second, p)) finish(p.id, *reason, {}, i + 1);
        }
        undelivered.clear();
    }

    /// What the engine thread does while a step computes: deliver the
    /// previous step's tokens, take new requests and aborts, expire
    /// deadlines. None of it touches the batch being computed (its tokens
    /// and block tables are the engine's own copies).
    task<void> between_steps() {
        // When the loop runs on the backend's step thread, this work comes
        // before the step starts unless it hops to the engine's thread. The
        // hop wakes that thread, which costs more than delivering a step's
        // tokens and taking in requests (goal 1's tiny model: 5-9% fewer
        // requests/s with the hop), so it is taken only for JSON masks, a
        // pass over the vocabulary per request.
        if (json_requests != 0 && backend->continues_on_step_thread()) co_await ctx.schedule();
        deliver();
        intake();
        expire();
        if (json_requests != 0) {
            for (auto& [id, r] : active) prepare_json_mask(r);
        }
        co_return;
    }

    /// The most positions a request for prompt log-probabilities computes in
    /// one step: their logits rows stay within 16 M floats (64 MB; 128
    /// positions of a 128k-token vocabulary).
    std::size_t logits_rows_per_request() const {
        return std::max<std::size_t>(16, (std::size_t{16} << 20) / std::max<std::size_t>(1, tok->vocab_size()));
    }

    /// JSON mode: the set of tokens the request's next sample may take. It
    /// depends only on the tokens so far, so it is computed while the step
    /// that gives the next logits runs (a pass over the vocabulary: about a
    /// millisecond for 128k tokens), not after.
    static void prepare_json_mask(active_request& r) {
        if (!r.json || r.json_allowed_ready || r.json->complete()) return;
        r.json_allowed_count = r.json->allowed(r.json_allowed);
        r.json_allowed_ready = true;
    }

    void publish_gauges() {
        metrics.requests_running = sched.num_running();
        metrics.requests_waiting = sched.num_waiting();
        metrics.kv_blocks_used = sched.num_blocks_in_use();
        metrics.spec_draft_tokens = sched.draft_tokens();
        metrics.spec_accepted_tokens = sched.accepted_draft_tokens();
        if (const prefix_cache* cache = sched.prefix()) {
            metrics.kv_blocks_cached = cache->num_idle();
            metrics.prefix_cache_queries = sched.prefix_queried_tokens();
            metrics.prefix_cache_hits = sched.prefix_hit_tokens();
        }
        std::lock_guard lock(cmd_mutex);
        waiting_estimate = sched.num_waiting();
    }

    /// Copies the plan into step_batch, tokens and block tables included.
    void build_batch(const step_plan& plan, clock::time_point now) {
        std::size_t tokens = 0, blocks = 0;
        for (const scheduled_chunk& c : plan.chunks) {
            tokens += c.tokens.size() + c.draft.size();
            blocks += c.blocks.size();
        }
        batch_tokens.clear();
        batch_blocks.clear();
        batch_tokens.reserve(tokens); // no reallocation below: the spans stay valid
        batch_blocks.reserve(blocks);
        step_batch.chunks.clear();
        step_batch.argmax_only = true;
        for (const scheduled_chunk& c : plan.chunks) {
            auto it = active.find(c.id);
            // Logits for the token to sample; for every prompt position while
            // a request's prompt log-probabilities are incomplete.
            // A draft's positions each get a row too: each is checked.
            std::size_t rows = c.samples ? 1 + c.draft.size() : 0;
            if (it != active.end() && !it->second.prompt_logprobs_complete) rows = c.tokens.size();
            if (rows > 0) {
                step_batch.argmax_only = step_batch.argmax_only && it != active.end() && plain_greedy(it->second.request);
            }
            const std::size_t t0 = batch_tokens.size(), b0 = batch_blocks.size();
            batch_tokens.insert(batch_tokens.end(), c.tokens.begin(), c.tokens.end());
            batch_tokens.insert(batch_tokens.end(), c.draft.begin(), c.draft.end());
            batch_blocks.insert(batch_blocks.end(), c.blocks.begin(), c.blocks.end());
            const std::size_t n = c.tokens.size() + c.draft.size();
            step_batch.chunks.push_back({c.id, c.start, std::span<const token_id>(batch_tokens).subspan(t0, n),
                                         std::span<const block_id>(batch_blocks).subspan(b0, c.blocks.size()), rows});
            if (it != active.end() && !it->second.first_scheduled) {
                it->second.first_scheduled = now;
                it->second.cached_prompt_tokens = sched.num_cached_prompt_tokens(c.id);
                metrics.queue_time.observe(seconds_between(it->second.arrival, now));
            }
        }
    }

    /// The engine loop: deliver the last step's tokens and take in requests,
    /// schedule, compute the step, sample. It starts on the engine's thread;
    /// with a backend that allows it (the CPU backend) it stays on the step
    /// thread that resumed it, so the next step starts as soon as its batch
    /// is built instead of after two threads have woken. Otherwise it hops
    /// back after each step and between_steps overlaps the next one. Only
    /// one thread runs it at a time: each hop is a hand-over (the step's
    /// mutex, when_all's counter, the context's queue), so the engine's
    /// state needs no lock of its own.
    task<void> loop() {
        std::size_t idle_plans = 0;
        for (;;) {
            intake();
            expire();
            bool stop_now = false;
            {
                std::lock_guard lock(cmd_mutex);
                // A request submitted just before shutdown may still wait in
                // `incoming` (it arrived after this turn's intake): it is in
                // flight too, so the engine does not stop before taking it.
                stop_now = stopping && ((active.empty() && incoming.empty()) || clock::now() >= stop_deadline);
            }
            if (stop_now) {
                // The loop ends on the engine's thread, which run() watches.
                co_await ctx.schedule();
                intake(); // stragglers, past the deadline: aborted below with the rest
                deliver();
                std::vector<seq_id> ids;
                for (auto& [id, r] : active) ids.push_back(id);
                for (seq_id id : ids) finish(id, finish_reason::aborted, "server shutting down");
                publish_gauges();
                co_return;
            }
            if (active.empty()) {
                publish_gauges();
                co_await wait_for_work{this};
                continue;
            }

            const step_plan plan = sched.schedule();
            const clock::time_point now = clock::now();
            for (seq_id id : plan.preempted) {
                metrics.preemptions.fetch_add(1, std::memory_order_relaxed);
                if (auto it = active.find(id); it != active.end()) ++it->second.preemptions;
            }
            if (plan.empty()) {
                if (!undelivered.empty()) {
                    // Only requests ending with their last tokens are left.
                    deliver();
                    continue;
                }
                // Nothing fits although requests wait: with a cache that holds
                // every admitted request alone, this only happens if the
                // scheduler is stuck; fail the waiting ones rather than spin.
                if (++idle_plans >= 2) {
                    std::vector<seq_id> ids;
                    for (auto& [id, r] : active) ids.push_back(id);
                    for (seq_id id : ids) finish(id, finish_reason::error, "request could not be scheduled");
                    idle_plans = 0;
                }
                continue;
            }
            idle_plans = 0;

            build_batch(plan, now);
            publish_gauges();
            std::exception_ptr failure;
            step_out.compute_seconds = 0; // this step's, if the backend measures it and the step succeeds
            try {
                // The step first: it hands the batch to the backend's threads
                // and suspends; between_steps then runs here meanwhile.
                co_await when_all(backend->step(step_batch, step_out), between_steps());
            } catch (...) {
                failure = std::current_exception();
            }
            if (!backend->continues_on_step_thread()) {
                co_await ctx.schedule(); // back from the backend's thread
            }
            metrics.steps.fetch_add(1, std::memory_order_relaxed);
            metrics.step_tokens.observe(static_cast<double>(step_batch.num_tokens()));
            if (step_out.compute_seconds > 0) metrics.step_compute.observe(step_out.compute_seconds);
            if (failure) {
                std::string why = "model step failed";
                try {
                    std::rethrow_exception(failure);
                } catch (const std::exception& e) {
                    why = fmt::format("model step failed: {}", e.what());
                }
                deliver();
                for (const scheduled_chunk& c : plan.chunks) finish(c.id, finish_reason::error, why);
                continue;
            }
            sample_step(plan);
        }
    }
};

// --- engine -------------------------------------------------------------------

engine::engine(std::unique_ptr<model_backend> backend, std::shared_ptr<const tokenizer> tok, engine_options opts)
    : m_impl(std::make_unique<impl>(std::move(backend), std::move(tok), std::move(opts))) {
    m_impl->thread = std::thread([this] { m_impl->ctx.run(m_impl->loop()); });
}

engine::~engine() { shutdown(); }

void engine::shutdown(clock::time_point deadline) {
    {
        std::lock_guard lock(m_impl->cmd_mutex);
        if (!m_impl->stopping) {
            m_impl->stopping = true;
            m_impl->stop_deadline = deadline;
        } else {
            m_impl->stop_deadline = std::min(m_impl->stop_deadline, deadline);
        }
        m_impl->wake_locked();
    }
    if (m_impl->thread.joinable() && m_impl->thread.get_id() != std::this_thread::get_id()) {
        m_impl->thread.join();
    }
}

submit_result engine::submit(generation_request req, resume_target resume_on) {
    submit_result out;
    const model_config& c = m_impl->backend->config();
    const scheduler_config& sc = m_impl->opts.scheduler;
    if (req.prompt.empty()) {
        out.status = submit_status::invalid;
        out.message = "the prompt is empty";
        return out;
    }
    for (token_id t : req.prompt) {
        if (t < 0 || static_cast<std::size_t>(t) >= c.n_vocab) {
            out.status = submit_status::invalid;
            out.message = fmt::format("token {} is outside the vocabulary of {} tokens", t, c.n_vocab);
            return out;
        }
    }
    // max_tokens 0 still holds the place of one token in the scheduler.
    const std::size_t total = req.prompt.size() + std::max<std::size_t>(req.max_tokens, 1);
    const std::size_t cache_tokens = m_impl->sched.blocks().num_blocks() * m_impl->sched.blocks().block_size();
    if (total > sc.max_context || total > cache_tokens) {
        out.status = submit_status::too_long;
        out.message = fmt::format(
            "the prompt ({} tokens) plus max_tokens ({}) is {} tokens, more than the context of {} tokens",
            req.prompt.size(), req.max_tokens, total, std::min(sc.max_context, cache_tokens));
        return out;
    }
    auto box = std::make_shared<detail::request_mailbox>();
    box->resume_on = resume_on;
    {
        std::lock_guard lock(m_impl->cmd_mutex);
        if (m_impl->stopping) {
            out.status = submit_status::shutting_down;
            out.message = "the server is shutting down";
            return out;
        }
        if (m_impl->waiting_estimate + m_impl->incoming.size() >= sc.max_waiting) {
            m_impl->metrics.rejected.fetch_add(1, std::memory_order_relaxed);
            out.status = submit_status::queue_full;
            out.message = fmt::format("the waiting queue is full ({} requests)", sc.max_waiting);
            return out;
        }
        box->id = m_impl->next_id++;
        m_impl->incoming.push_back({box, std::move(req), clock::now()});
        m_impl->wake_locked();
    }
    out.status = submit_status::accepted;
    out.stream.emplace(std::move(box), *this);
    return out;
}

void engine::abort(seq_id id) {
    std::lock_guard lock(m_impl->cmd_mutex);
    m_impl->aborts.push_back(id);
    m_impl->wake_locked();
}

const serve_metrics& engine::metrics() const noexcept { return m_impl->metrics; }
serve_metrics& engine::metrics() noexcept { return m_impl->metrics; }
const model_config& engine::config() const noexcept { return m_impl->backend->config(); }
const tokenizer& engine::vocab() const noexcept { return *m_impl->tok; }
const model_backend& engine::backend() const noexcept { return *m_impl->backend; }
const engine_options& engine::options() const noexcept { return m_impl->opts; }

// --- generation_stream ----------------------------------------------------------

generation_stream::generation_stream(std::shared_ptr<detail::request_mailbox> box, engine& e) noexcept
    : m_box(std::move(box)), m_engine(&e) {}

generation_stream::generation_stream(generation_stream&& o) noexcept
    : m_box(std::move(o.m_box)), m_engine(o.m_engine) {}

generation_stream::~generation_stream() {
    if (m_box) cancel();
}

seq_id generation_stream::id() const noexcept { return m_box ? m_box->id : 0; }

void generation_stream::cancel() {
    {
        std::lock_guard lock(m_box->mutex);
        if (m_box->finished) return;
    }
    m_engine->abort(m_box->id);
}

generation_stream::next_awaiter generation_stream::next() noexcept { return next_awaiter{this, std::nullopt}; }

bool generation_stream::next_awaiter::await_ready() {
    detail::request_mailbox& b = *m_stream->m_box;
    std::lock_guard lock(b.mutex);
    return b.has_pending || b.final_taken;
}

bool generation_stream::next_awaiter::suspend(std::coroutine_handle<> h, const std::stop_token& token) {
    detail::request_mailbox* b = m_stream->m_box.get();
    if (token.stop_possible()) {
        // Armed before the waiter is published, so no wake-up can race with
        // arming it; if stop is already requested it runs here and marks the
        // box, and we do not suspend.
        m_on_stop.emplace(token, std::function<void()>([b] {
            std::coroutine_handle<> wake;
            {
                std::lock_guard lock(b->mutex);
                b->cancelled = true;
                wake = std::exchange(b->waiter, {});
            }
            if (wake) b->resume_on.post(wake);
        }));
    }
    std::lock_guard lock(b->mutex);
    if (b->cancelled || b->has_pending || b->final_taken) return false;
    b->waiter = h;
    return true;
}

std::optional<generation_update> generation_stream::next_awaiter::await_resume() {
    m_on_stop.reset(); // waits for a stop callback running elsewhere
    detail::request_mailbox& b = *m_stream->m_box;
    // Room for the engine's next tokens, allocated here: the engine thread
    // then appends without allocating (it would once per token otherwise,
    // as each update takes the vector away).
    std::vector<generated_token> spare;
    spare.reserve(2);
    std::unique_lock lock(b.mutex);
    if (b.cancelled) {
        lock.unlock();
        m_stream->cancel();
        throw operation_cancelled();
    }
    if (b.has_pending) {
        generation_update u = std::move(b.pending);
        b.pending = generation_update{};
        if (!b.finished) b.pending.tokens = std::move(spare);
        b.has_pending = false;
        if (b.finished) b.final_taken = true;
        return u;
    }
    return std::nullopt;
}

} // namespace weft::serve
