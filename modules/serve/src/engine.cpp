// The engine's loop and its public API: requests come in through submit()
// and abort(), the loop on the engine's thread takes them in, schedules a
// step, hands it to the backend and, while it computes, delivers the last
// step's tokens (engine_tokens.cpp).
#include "engine_impl.hpp"

#include <weft/thread_name.hpp>
#include <weft/when_all.hpp>

#include <fmt/format.h>

#include <exception>
#include <limits>

namespace weft::serve {

using clock = std::chrono::steady_clock;
using detail::plain_greedy;
using detail::seconds_between;

scheduler_config engine::impl::scheduler_config_for(scheduler_config c, const model_config& m) {
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

engine::impl::impl(std::unique_ptr<model_backend> b, std::shared_ptr<const tokenizer> t, engine_options o)
    : backend(std::move(b)), tok(std::move(t)), opts(std::move(o)),
      sched(scheduler_config_for(opts.scheduler, backend->config()), backend->num_kv_blocks(),
            backend->kv_block_size()) {
    metrics.kv_blocks_total = sched.blocks().num_blocks();
}

void engine::impl::intake() {
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

void engine::impl::expire() {
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

void engine::impl::wake_locked() {
    if (idle_waiter) ctx.post(std::exchange(idle_waiter, {}));
}

task<void> engine::impl::between_steps() {
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

std::size_t engine::impl::logits_rows_per_request() const {
    return std::max<std::size_t>(16, (std::size_t{16} << 20) / std::max<std::size_t>(1, tok->vocab_size()));
}

void engine::impl::publish_gauges() {
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

void engine::impl::build_batch(const step_plan& plan, clock::time_point now) {
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

task<void> engine::impl::loop() {
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

// --- engine -------------------------------------------------------------------

engine::engine(std::unique_ptr<model_backend> backend, std::shared_ptr<const tokenizer> tok, engine_options opts)
    : m_impl(std::make_unique<impl>(std::move(backend), std::move(tok), std::move(opts))) {
    m_impl->thread = std::thread([this] {
        set_current_thread_name("weft-engine");
        m_impl->ctx.run(m_impl->loop());
    });
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

} // namespace weft::serve
