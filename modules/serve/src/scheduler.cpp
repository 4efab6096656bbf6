#include <weft/serve/scheduler.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace weft::serve {

struct scheduler::sequence {
    seq_id id = 0;
    std::vector<token_id> tokens; // prompt + generated
    std::size_t prompt_size = 0;
    std::size_t max_new_tokens = 0;
    int priority = 0;
    bool reuse_prefix = true;
    std::size_t max_chunk = 0;       // 0: the config's
    std::uint64_t arrival = 0;       // add() order: preemption victims are the latest
    std::int64_t queue_key = 0;      // order within a priority class while waiting (m_waiting's key)
    std::size_t computed = 0;        // positions whose KV entries exist
    std::vector<block_id> blocks;
    std::vector<token_id> draft;     // proposed tokens after the last one (see propose)
    std::size_t cached_blocks = 0;   // leading blocks that are prefix-cache entries
    std::optional<std::size_t> cached_prompt; // prompt tokens found cached at first admission
    bool cache_closed = false;       // a block could not be cached: none after it is
    bool running = false;
    std::uint64_t scheduled_step = 0; // last plan that carried a chunk of it

    std::size_t generated() const noexcept { return tokens.size() - prompt_size; }
    bool done() const noexcept { return generated() >= max_new_tokens; }
    std::size_t uncomputed() const noexcept { return tokens.size() - computed; }
    std::size_t chunk_limit(std::size_t cap) const noexcept { return max_chunk != 0 ? std::min(cap, max_chunk) : cap; }
};

// The step being built: chunks chosen so far (withdrawable until the end) and
// the budget they leave.
struct scheduler::build {
    struct entry {
        sequence* seq;
        std::size_t start;
        std::size_t size;
        std::size_t draft = 0;  // of seq->draft, after the size tokens
        std::size_t charge = 0; // taken from the budget for the size tokens
    };
    std::vector<entry> entries;
    std::size_t budget;
    std::vector<seq_id>& preempted;
    std::uint64_t step;
    /// Non-zero once the budget is the prefill share of a decoding step and
    /// prefill_context_cost weighs chunks by their positions.
    double context_cost = 0;

    /// What positions [start, start + n) of a prefill take from the budget:
    /// their count, or with context_cost the decode-token equivalents
    /// sum(1 + p / context_cost), at most what is left.
    std::size_t charge(std::size_t start, std::size_t n) const noexcept {
        if (context_cost <= 0.0) return n;
        return std::min(budget, static_cast<std::size_t>(std::ceil(cost(start, n))));
    }
    double cost(std::size_t start, std::size_t n) const noexcept {
        const auto dn = static_cast<double>(n);
        return dn + (dn * static_cast<double>(start) + dn * (dn - 1.0) / 2.0) / context_cost;
    }
    /// The next prefill chunk of `s`: its uncomputed tokens up to the
    /// budget, `cap` and its own limit, fitted to the weighted budget.
    std::size_t prefill_chunk(const sequence& s, std::size_t cap) const noexcept {
        return fit(s.computed, std::min({s.uncomputed(), budget, s.chunk_limit(cap)}));
    }
    /// Puts tokens [start, start + n) of `s` in the step, charging the budget.
    void add(sequence& s, std::size_t start, std::size_t n) {
        const std::size_t c = charge(start, n);
        entries.push_back({&s, start, n, 0, c});
        budget -= c;
    }
    /// The most of `n` tokens from `start` whose cost fits the budget; at
    /// least one while any budget is left, so a prompt always progresses.
    std::size_t fit(std::size_t start, std::size_t n) const noexcept {
        if (context_cost <= 0.0 || n == 0 || cost(start, n) <= static_cast<double>(budget)) return n;
        std::size_t lo = 1, hi = n; // cost(hi) exceeds the budget; the cost grows with n
        while (hi - lo > 1) {
            const std::size_t mid = lo + (hi - lo) / 2;
            (cost(start, mid) <= static_cast<double>(budget) ? lo : hi) = mid;
        }
        return lo;
    }
};

scheduler::scheduler(const scheduler_config& config, std::size_t num_blocks, std::size_t block_size)
    : m_config(config), m_blocks(num_blocks, block_size),
      m_prefix(config.prefix_caching ? std::make_unique<prefix_cache>(m_blocks) : nullptr) {
    if (config.max_batch_tokens == 0 || config.max_running == 0 || config.max_context == 0) {
        throw std::invalid_argument("scheduler: max_batch_tokens, max_running and max_context must be at least 1");
    }
    if (config.max_running > config.max_batch_tokens) {
        throw std::invalid_argument("scheduler: max_running (" + std::to_string(config.max_running) +
                                    ") exceeds max_batch_tokens (" + std::to_string(config.max_batch_tokens) +
                                    "): every running sequence's decode must fit one step");
    }
}

scheduler::~scheduler() = default;

admit_result scheduler::add(sequence_request request) {
    if (request.max_new_tokens == 0) {
        throw std::invalid_argument("scheduler::add: max_new_tokens must be at least 1");
    }
    const std::size_t prompt = request.prompt.size();
    if (prompt == 0 || prompt > m_config.max_context || request.max_new_tokens > m_config.max_context - prompt) {
        return admit_result::too_long;
    }
    // The last sampled token is never fed back, so the cache holds at most
    // prompt + max_new_tokens - 1 positions.
    if (block_manager::blocks_for(prompt + request.max_new_tokens - 1, m_blocks.block_size()) >
        m_blocks.num_blocks()) {
        return admit_result::too_long;
    }
    if (contains(request.id)) {
        return admit_result::duplicate_id;
    }
    if (m_waiting.size() >= m_config.max_waiting) {
        return admit_result::queue_full;
    }
    auto s = std::make_unique<sequence>();
    s->id = request.id;
    s->tokens = std::move(request.prompt);
    s->prompt_size = prompt;
    s->max_new_tokens = request.max_new_tokens;
    s->priority = request.priority;
    s->reuse_prefix = request.reuse_prefix;
    s->max_chunk = request.max_chunk;
    s->arrival = m_arrivals++;
    s->queue_key = ++m_queue_back;
    m_waiting.push(s->priority, s->queue_key, m_steps, s.get()); // waiting since m_steps schedule() calls
    m_sequences.emplace(request.id, std::move(s));
    return admit_result::accepted;
}

step_plan scheduler::schedule() {
    step_plan plan;
    plan.step = ++m_steps;
    build b{{}, m_config.max_batch_tokens, plan.preempted, plan.step};
    const std::size_t chunk_cap = prefill_cap();

    // Preemption edits m_running; iterate over the sequences running at the start.
    const std::vector<sequence*> running = m_running;
    std::size_t decoding = 0;
    for (sequence* s : running) {
        if (s->running && !s->done() && s->uncomputed() == 1) {
            schedule_running(*s, 1, b); // fits: max_running <= max_batch_tokens
            ++decoding;
        }
    }
    if (decoding > 0 && m_config.prefill_per_decode > 0.0) {
        // Keep the streams' next token close to a pure decode step's time.
        const auto share = static_cast<std::size_t>(m_config.prefill_per_decode * static_cast<double>(decoding));
        b.budget = std::min(b.budget, std::max(share, m_config.min_prefill_tokens));
        b.context_cost = static_cast<double>(m_config.prefill_context_cost);
    }
    for (sequence* s : running) {
        if (b.budget == 0) {
            break;
        }
        if (s->running && !s->done() && s->uncomputed() > 1) {
            schedule_running(*s, b.prefill_chunk(*s, chunk_cap), b);
        }
    }
    // Blocks just ran out: admitting now would only preempt again.
    if (plan.preempted.empty()) {
        admit_waiting(b);
    }
    // Drafts last: they only take what the step leaves.
    schedule_drafts(b);

    plan.chunks.reserve(b.entries.size());
    for (const auto& e : b.entries) {
        sequence& s = *e.seq;
        s.scheduled_step = plan.step;
        const auto tokens = std::span<const token_id>(s.tokens).subspan(e.start, e.size);
        const auto draft = std::span<const token_id>(s.draft).first(e.draft);
        plan.chunks.push_back(
            scheduled_chunk{s.id, e.start, tokens, s.blocks, e.start + e.size == s.tokens.size(), draft});
        plan.num_tokens += e.size + e.draft;
    }
    return plan;
}

void scheduler::schedule_drafts(build& b) {
    std::size_t step_tokens = 0;
    for (const auto& e : b.entries) step_tokens += e.size;
    for (auto& e : b.entries) {
        sequence& s = *e.seq;
        if (b.budget == 0 || step_tokens >= m_config.draft_step_tokens) {
            break;
        }
        if (s.draft.empty() || e.size != 1 || e.start + 1 != s.tokens.size()) {
            continue; // only a decode step carries a draft
        }
        // Accepted drafts plus the token sampled after them stay within max_new_tokens.
        const std::size_t room = s.max_new_tokens - s.generated() - 1;
        std::size_t k = std::min({s.draft.size(), room, b.budget, m_config.draft_step_tokens - step_tokens});
        const std::size_t need = block_manager::blocks_for(s.tokens.size() + k, m_blocks.block_size());
        if (need > s.blocks.size() && !m_blocks.allocate(need - s.blocks.size(), s.blocks)) {
            // Only free blocks: a guess never evicts or preempts.
            k = std::min(k, s.blocks.size() * m_blocks.block_size() - s.tokens.size());
        }
        e.draft = k;
        b.budget -= k;
        step_tokens += k;
    }
}

void scheduler::propose(seq_id id, std::span<const token_id> draft) {
    sequence* s = find(id);
    if (s == nullptr || !s->running || s->uncomputed() != 1) {
        return;
    }
    s->draft.assign(draft.begin(), draft.end());
}

std::size_t scheduler::prefill_cap() const noexcept {
    return m_config.long_prefill_chunk != 0 ? m_config.long_prefill_chunk : m_config.max_batch_tokens;
}

void scheduler::schedule_running(sequence& s, std::size_t n, build& b) {
    const std::size_t start = s.computed;
    if (reserve(s, start + n, b)) {
        b.add(s, start, n);
    }
}

bool scheduler::reserve(sequence& s, std::size_t positions, build& b) {
    const std::size_t need = block_manager::blocks_for(positions, m_blocks.block_size());
    while (s.blocks.size() < need) {
        if (allocate_blocks(need - s.blocks.size(), s.blocks)) {
            return true;
        }
        // Lowest priority (largest number), then latest arrival.
        const auto lower = [](const sequence* x, const sequence* y) {
            return std::pair(x->priority, x->arrival) < std::pair(y->priority, y->arrival);
        };
        sequence* victim = *std::max_element(m_running.begin(), m_running.end(), lower);
        preempt(*victim, b);
        if (victim == &s) {
            return false;
        }
    }
    return true;
}

void scheduler::preempt(sequence& s, build& b) {
    auto entry = std::find_if(b.entries.begin(), b.entries.end(), [&](const auto& e) { return e.seq == &s; });
    if (entry != b.entries.end()) {
        b.budget += entry->charge;
        b.entries.erase(entry);
    }
    release_blocks(s);
    s.computed = 0;
    s.draft.clear();
    s.running = false;
    std::erase(m_running, &s);
    s.queue_key = --m_queue_front; // head of its class
    m_waiting.push(s.priority, s.queue_key, b.step, &s); // waiting from this call on
    b.preempted.push_back(s.id);
    ++m_preemptions;
}

void scheduler::admit_waiting(build& b) {
    if (m_waiting.empty() || m_running.size() >= m_config.max_running || b.budget == 0) {
        return; // no room: skip ordering a queue that may hold thousands
    }
    // Aging counts the schedule() calls before this one (a sequence preempted
    // by this very call has not waited at all yet). Thousands may wait and
    // only the first few fit: the queue yields them in order one at a time.
    auto order = m_waiting.order(b.step - 1, m_config.aging_steps);
    const std::size_t chunk_cap = prefill_cap();
    m_admitted.clear();
    while (sequence* s = order.next()) {
        if (m_running.size() >= m_config.max_running || b.budget == 0) {
            break;
        }
        if (s->done()) {
            continue;
        }
        if (m_prefix && s->reuse_prefix) {
            // Cached blocks for the start of its tokens; the last token is
            // always computed, for its logits.
            const std::size_t bs = m_blocks.block_size();
            s->cached_blocks = m_prefix->acquire(s->tokens, (s->tokens.size() - 1) / bs, s->blocks);
            s->computed = s->cached_blocks * bs;
            if (next_block_in_progress(*s)) {
                // A running sequence is computing the very block this one
                // would compute next: wait a step and take it from the cache
                // (n choices of one prompt, or a burst of requests with one
                // system prompt, prefill it once).
                release_blocks(*s);
                s->computed = 0;
                continue;
            }
        }
        const std::size_t n = b.prefill_chunk(*s, chunk_cap);
        const std::size_t need = block_manager::blocks_for(s->computed + n, m_blocks.block_size());
        if (!allocate_blocks(need - s->blocks.size(), s->blocks)) {
            release_blocks(*s);
            s->computed = 0;
            break;
        }
        if (m_prefix && s->reuse_prefix) {
            m_prefix_queried += s->tokens.size();
            m_prefix_hits += s->computed;
            if (!s->cached_prompt) s->cached_prompt = s->computed;
        }
        s->running = true;
        m_running.push_back(s);
        m_admitted.push_back(s);
        b.add(*s, s->computed, n);
    }
    for (const sequence* s : m_admitted) m_waiting.erase(s->priority, s->queue_key);
}

void scheduler::commit(const step_plan& plan, std::span<const token_id> sampled) {
    commit(plan, sampled, {});
}

void scheduler::commit(const step_plan& plan, std::span<const token_id> sampled, std::span<const std::size_t> accepted) {
    if (plan.step == 0 || plan.step != m_steps || plan.step == m_committed) {
        throw std::logic_error("scheduler::commit: plan of step " + std::to_string(plan.step) +
                               " is not the latest uncommitted one (latest: " + std::to_string(m_steps) + ")");
    }
    const auto samples = static_cast<std::size_t>(
        std::count_if(plan.chunks.begin(), plan.chunks.end(), [](const scheduled_chunk& c) { return c.samples; }));
    if (sampled.size() != samples) {
        throw std::invalid_argument("scheduler::commit: " + std::to_string(sampled.size()) +
                                    " sampled tokens for " + std::to_string(samples) + " sampling chunks");
    }
    if (!accepted.empty() && accepted.size() != samples) {
        throw std::invalid_argument("scheduler::commit: " + std::to_string(accepted.size()) +
                                    " accepted counts for " + std::to_string(samples) + " sampling chunks");
    }
    std::size_t next = 0;
    for (const scheduled_chunk& c : plan.chunks) {
        if (c.samples && !accepted.empty() && accepted[next] > c.draft.size()) {
            throw std::invalid_argument("scheduler::commit: " + std::to_string(accepted[next]) +
                                        " draft tokens accepted of " + std::to_string(c.draft.size()));
        }
        next += c.samples ? 1 : 0;
    }
    m_committed = plan.step;
    next = 0;
    for (const scheduled_chunk& c : plan.chunks) {
        const token_id token = c.samples ? sampled[next] : token_id{0};
        const std::size_t good = c.samples && !accepted.empty() ? accepted[next] : 0;
        next += c.samples ? 1 : 0;
        sequence* s = find(c.id);
        // Gone, or a new sequence that reuses the id.
        if (s == nullptr || s->scheduled_step != plan.step) {
            continue;
        }
        // The draft's positions past the accepted ones hold entries of
        // tokens the sequence does not have: not computed, rewritten later.
        s->computed = c.start + c.tokens.size() + good;
        m_draft_tokens += c.draft.size();
        m_accepted_draft_tokens += good;
        if (c.samples) {
            s->tokens.insert(s->tokens.end(), c.draft.begin(), c.draft.begin() + static_cast<std::ptrdiff_t>(good));
            s->tokens.push_back(token);
        }
        s->draft.clear();
        cache_computed_blocks(*s);
    }
}

bool scheduler::next_block_in_progress(const sequence& s) const {
    const std::size_t bs = m_blocks.block_size();
    const std::size_t next = s.cached_blocks;
    if (next + 1 > (s.tokens.size() - 1) / bs) {
        return false; // no further block it could take from the cache
    }
    const std::size_t end = (next + 1) * bs;
    const auto shared = std::span<const token_id>(s.tokens).subspan(next * bs, bs);
    for (const sequence* t : m_running) {
        // t computes block `next` in a step to come, after the same cached
        // blocks, with the same tokens.
        if (t->cache_closed || t->computed >= end || t->tokens.size() < end || t->cached_blocks < next ||
            !std::equal(s.blocks.begin(), s.blocks.begin() + static_cast<std::ptrdiff_t>(next), t->blocks.begin())) {
            continue;
        }
        if (std::equal(shared.begin(), shared.end(), t->tokens.begin() + static_cast<std::ptrdiff_t>(next * bs))) {
            return true;
        }
    }
    return false;
}

void scheduler::cache_computed_blocks(sequence& s) {
    if (!m_prefix || s.cache_closed) {
        return;
    }
    const std::size_t bs = m_blocks.block_size();
    for (std::size_t i = s.cached_blocks; i < s.computed / bs; ++i) {
        const std::optional<block_id> previous = i > 0 ? std::optional(s.blocks[i - 1]) : std::nullopt;
        const auto tokens = std::span<const token_id>(s.tokens).subspan(i * bs, bs);
        const std::optional<block_id> held = m_prefix->insert(previous, tokens, s.blocks[i]);
        if (!held) {
            s.cache_closed = true;
            return;
        }
        if (*held != s.blocks[i]) {
            // The same content is cached already (computed at the same time
            // by another sequence): hold that one, free this copy.
            m_blocks.release(s.blocks[i]);
            s.blocks[i] = *held;
        }
        s.cached_blocks = i + 1;
    }
}

bool scheduler::allocate_blocks(std::size_t n, std::vector<block_id>& out) {
    while (m_blocks.num_free() < n && m_prefix && m_prefix->evict_one()) {
    }
    return m_blocks.allocate(n, out);
}

std::size_t scheduler::num_blocks_in_use() const noexcept {
    return m_blocks.num_used() - (m_prefix ? m_prefix->num_idle() : 0);
}

bool scheduler::finish(seq_id id) { return remove(id); }

bool scheduler::abort(seq_id id) { return remove(id); }

bool scheduler::remove(seq_id id) {
    const auto it = m_sequences.find(id);
    if (it == m_sequences.end()) {
        return false;
    }
    sequence* s = it->second.get();
    release_blocks(*s);
    if (s->running) {
        std::erase(m_running, s);
    } else {
        m_waiting.erase(s->priority, s->queue_key);
    }
    m_sequences.erase(it);
    return true;
}

void scheduler::release_blocks(sequence& s) {
    for (const block_id blk : s.blocks) {
        m_blocks.release(blk);
        if (m_prefix) {
            m_prefix->released(blk);
        }
    }
    s.blocks.clear();
    s.cached_blocks = 0;
    s.cache_closed = false;
}

scheduler::sequence* scheduler::find(seq_id id) const {
    const auto it = m_sequences.find(id);
    return it == m_sequences.end() ? nullptr : it->second.get();
}

bool scheduler::is_running(seq_id id) const {
    const sequence* s = find(id);
    return s != nullptr && s->running;
}

const std::vector<token_id>* scheduler::tokens(seq_id id) const {
    const sequence* s = find(id);
    return s != nullptr ? &s->tokens : nullptr;
}

std::size_t scheduler::num_generated(seq_id id) const {
    const sequence* s = find(id);
    if (s == nullptr) {
        throw std::out_of_range("scheduler::num_generated: unknown sequence " + std::to_string(id));
    }
    return s->generated();
}

std::size_t scheduler::num_computed(seq_id id) const {
    const sequence* s = find(id);
    if (s == nullptr) {
        throw std::out_of_range("scheduler::num_computed: unknown sequence " + std::to_string(id));
    }
    return s->computed;
}

std::size_t scheduler::num_cached_prompt_tokens(seq_id id) const {
    const sequence* s = find(id);
    if (s == nullptr) {
        throw std::out_of_range("scheduler::num_cached_prompt_tokens: unknown sequence " + std::to_string(id));
    }
    return s->cached_prompt.value_or(0);
}

std::span<const block_id> scheduler::block_table(seq_id id) const {
    const sequence* s = find(id);
    return s != nullptr ? std::span<const block_id>(s->blocks) : std::span<const block_id>();
}

} // namespace weft::serve
