// The engine's token side: sampling a step's logits (speculative drafts,
// JSON masks, prompt log-probabilities included), committing the tokens to
// the scheduler, and delivering them to the requests' mailboxes (text
// decoded and matched against stop strings) while the next step computes.
#include "engine_impl.hpp"

#include <weft/serve/ngram_proposer.hpp>

#include <span>

namespace weft::serve {

using detail::ends_generation;
using detail::plain_greedy;
using detail::seconds_between;

void engine::impl::publish(active_request& r, generated_token* token, std::string_view text,
                           std::optional<finish_reason> finish, std::string error) {
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
    if (!wake) return;
    if (batching_delivery) {
        wakes.emplace_back(r.box->resume_on, wake); // capacity reserved: no throw
    } else {
        r.box->resume_on.post(wake);
    }
}

void engine::impl::finish(seq_id id, finish_reason reason, std::string error, std::size_t run_from) {
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

void engine::impl::sample_step(const step_plan& plan) {
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

token_id engine::impl::greedy_choice(std::size_t row) {
    if (!step_out.argmax.empty()) return step_out.argmax[row];
    const std::span<const float> logits = step_out.row(row);
    return static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void engine::impl::propose_drafts(std::size_t first_new) {
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

void engine::impl::score_prompt(active_request& r, const scheduled_chunk& c, std::size_t first_row, std::size_t rows) {
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

std::optional<finish_reason> engine::impl::deliver_one(active_request& r, pending_token& p) {
    ++r.generated;
    if (!r.first_token) {
        r.first_token = p.sampled_at;
        metrics.time_to_first_token.observe(seconds_between(r.arrival, p.sampled_at));
    } else {
        const double gap = seconds_between(r.last_token, p.sampled_at);
        if (batching_delivery) {
            token_gaps.push_back(gap); // capacity reserved: no throw
        } else {
            metrics.inter_token_latency.observe(gap);
        }
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

void engine::impl::deliver() {
    // A request's reader is woken at most once here: it waits again only
    // after its executor resumed it. Each token gives at most one gap.
    wakes.reserve(active.size());
    wake_run.reserve(active.size());
    token_gaps.reserve(undelivered.size());
    batching_delivery = true;
    try {
        for (std::size_t i = 0; i < undelivered.size(); ++i) {
            pending_token& p = undelivered[i];
            if (p.delivered) continue;
            p.delivered = true;
            auto it = active.find(p.id);
            if (it == active.end()) continue;
            if (const std::optional<finish_reason> reason = deliver_one(it->second, p)) finish(p.id, *reason, {}, i + 1);
        }
    } catch (...) {
        flush_delivery(); // whoever was woken before the failure is woken
        throw;
    }
    flush_delivery();
    undelivered.clear();
}

void engine::impl::flush_delivery() {
    batching_delivery = false;
    metrics.inter_token_latency.observe_many(token_gaps);
    token_gaps.clear();
    // One post_bulk per executor (one per HTTP thread), each in the order
    // the requests were delivered; a posted entry's handle is cleared.
    for (std::size_t i = 0; i < wakes.size(); ++i) {
        if (!wakes[i].second) continue;
        wake_run.clear();
        for (std::size_t j = i; j < wakes.size(); ++j) {
            if (wakes[j].second && wakes[j].first.same_executor(wakes[i].first)) {
                wake_run.push_back(std::exchange(wakes[j].second, {}));
            }
        }
        wakes[i].first.post_bulk(wake_run);
    }
    wakes.clear();
}

void engine::impl::prepare_json_mask(active_request& r) {
    if (!r.json || r.json_allowed_ready || r.json->complete()) return;
    r.json_allowed_count = r.json->allowed(r.json_allowed);
    r.json_allowed_ready = true;
}

} // namespace weft::serve
