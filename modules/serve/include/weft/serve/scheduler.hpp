/// \file
/// `scheduler`: iteration-level ("continuous") batching over a paged KV cache.
/// Each `schedule()` builds the next model step, a ragged batch of token
/// chunks under a token budget; `commit()` records that the step ran and
/// appends the sampled tokens. Sequences join and leave between steps.
///
/// A step is built in three passes, each in a fixed order:
///  1. every running sequence that is decoding (one uncomputed token: the last
///     one it sampled) gets that token, so streams never stall;
///  2. running sequences still prefilling get their next chunk;
///  3. waiting sequences are admitted (up to `max_running`) by priority class,
///     smaller first, arrival order within a class. A waiting sequence's
///     class improves by one every `aging_steps` schedule() calls it waited,
///     so low-priority work cannot starve. Nothing is admitted in a step that
///     preempted, and admission stops at the first sequence whose chunk does
///     not find free blocks (so a later one cannot overtake it).
/// A prefill chunk is min(uncomputed tokens, budget left, `long_prefill_chunk`
/// when non-zero), so a long prompt is spread over several steps. In a step
/// that decodes D sequences, passes 2 and 3 together take at most
/// max(`prefill_per_decode` * D, `min_prefill_tokens`) tokens (when
/// `prefill_per_decode` is non-zero): a step's cost grows with its tokens,
/// so this bounds how much a prompt arriving among decoding streams slows
/// their next token (with the default 1.0, a step at most about doubles).
/// With `prefill_context_cost` C non-zero, a prefill position p counts there
/// as 1 + p / C tokens: attention makes the late chunks of a long prompt
/// cost more than its first, and the share bounds the step's time, not its
/// token count (at least one prompt token still goes into each step).
///
/// Before a chunk is added, the sequence's block table is grown to cover all
/// its positions up to the end of the chunk. When blocks run out, the running
/// sequence with the lowest priority (largest number), latest arrival, is
/// preempted — possibly the one being scheduled, possibly one already put in
/// this step (its chunk is withdrawn): its blocks are freed, its computed
/// count reset to zero and it waits at the head of its class, to be
/// recomputed later over prompt + generated tokens. The most urgent running
/// sequence therefore always progresses. `add()` refuses (too_long) a request
/// whose full context could never fit the cache, so a sequence alone always
/// fits and no sequence can be stuck.
///
/// The scheduler never schedules a sequence that has generated
/// `max_new_tokens`; the engine ends it with `finish()` (or earlier, on a stop
/// condition). Calling `schedule()` again without `commit()` abandons the
/// previous plan (its tokens are scheduled again); committing a plan other
/// than the latest is a `std::logic_error`. Everything is deterministic: the
/// same calls give the same plans.
///
/// Spans in a `step_plan` point into scheduler-owned storage and stay valid
/// until the next mutating call (`add`, `schedule`, `commit`, `finish`,
/// `abort`).
///
/// With `prefix_caching` (the default), full computed blocks go to a
/// `prefix_cache` as a sequence's step is committed, and a sequence admitted
/// from the waiting queue (new, or preempted) first takes the longest cached
/// chain matching the start of its tokens, always leaving its last token to
/// compute (it gives the logits to sample from): its first chunk then starts
/// past the cached positions. A waiting sequence whose next block a running
/// one is still computing (same tokens after the same cached blocks) waits
/// for it rather than computing it too, without holding up the sequences
/// behind it: a prompt that several requests share is prefilled once. A
/// block computed twice all the same is kept once: the later sequence
/// switches to the cached twin at commit. Cached blocks no sequence uses are
/// evicted, least recently used first, before any sequence is preempted.
///
/// Speculative decoding: a decoding sequence given a draft (`propose`) gets
/// the draft's tokens after its decode token in the next step, when the step
/// has room (`draft_step_tokens`, the budget) and free blocks; `commit` then
/// takes how many of them the model agreed with. Their positions count as
/// computed, the rest are left to be written again.
///
/// Threading: not synchronized; one owner (the engine loop) uses it.
#pragma once

#include <weft/serve/block_manager.hpp>
#include <weft/serve/prefix_cache.hpp>
#include <weft/serve/token.hpp>
#include <weft/serve/waiting_queue.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

namespace weft::serve {

struct scheduler_config {
    std::size_t max_batch_tokens = 512; ///< tokens per step; must be >= max_running
    std::size_t max_running = 256;      ///< sequences holding KV blocks at once
    std::size_t max_waiting = 1024;     ///< queued requests before add() says queue_full
    std::size_t max_context = 2048;     ///< prompt + max_new_tokens limit
    std::size_t aging_steps = 64;       ///< schedule() calls per class of aging (0: no aging)
    std::size_t long_prefill_chunk = 0; ///< largest prefill chunk (0: budget-limited only)
    /// In a step that decodes, prefill tokens per decoding sequence (0: no limit).
    double prefill_per_decode = 1.0;
    /// ...but at least this many prefill tokens per step, so prompts progress.
    std::size_t min_prefill_tokens = 32;
    /// In that share, prefill position p counts as 1 + p / this many tokens
    /// (0: every position as one): the context length at which a position's
    /// attention costs about what its projections do. The engine sets it
    /// from the model when left at 0.
    std::size_t prefill_context_cost = 0;
    /// Reuse the KV blocks of common prompt prefixes (see the file comment).
    bool prefix_caching = true;
    /// Drafts (`propose`) only fill a step up to this many tokens in all: a
    /// step of a few tokens costs what one token does (the weights' reads
    /// bound it), beyond that its cost grows with its tokens and the guesses
    /// that miss cost more than the right ones save.
    std::size_t draft_step_tokens = 8;
};

struct sequence_request {
    seq_id id = 0;
    std::vector<token_id> prompt;
    std::size_t max_new_tokens = 0; ///< at least 1
    int priority = 0;               ///< smaller = more urgent
    /// Take cached blocks for the start of the prompt (prefix caching). A
    /// request that needs the logits of every prompt position computes them all.
    bool reuse_prefix = true;
    /// At most this many tokens of it per step (0: the config's chunk limit);
    /// bounds the logits rows of a request that wants one per position.
    std::size_t max_chunk = 0;
};

enum class admit_result { accepted, queue_full, too_long, duplicate_id };

struct scheduled_chunk {
    seq_id id = 0;
    std::size_t start = 0;              ///< position of the first token
    std::span<const token_id> tokens;   ///< the tokens at [start, start + size)
    std::span<const block_id> blocks;   ///< block table covering [0, start + tokens.size() + draft.size())
    bool samples = false;               ///< ends at the sequence's last token: sample its next one
    /// Speculative decoding: proposed tokens that follow `tokens` (at
    /// positions start + tokens.size() ...), computed in the same step to be
    /// checked against the model's own choices (see `propose`).
    std::span<const token_id> draft;
};

struct step_plan {
    std::vector<scheduled_chunk> chunks;
    std::vector<seq_id> preempted; ///< sequences sent back to waiting by this step
    std::size_t num_tokens = 0;    ///< sum of chunk sizes, <= max_batch_tokens
    std::uint64_t step = 0;        ///< which schedule() call built it (for commit)
    bool empty() const noexcept { return chunks.empty(); }
};

class scheduler {
public:
    /// Throws `std::invalid_argument` for a zero budget, running or context
    /// limit, or `max_running > max_batch_tokens` (every decode must fit a
    /// step), and for a cache geometry `block_manager` refuses.
    scheduler(const scheduler_config& config, std::size_t num_blocks, std::size_t block_size);
    ~scheduler();
    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    /// Queues a request. too_long: empty prompt, prompt + max_new_tokens over
    /// max_context, or more KV blocks than the cache has. Throws
    /// `std::invalid_argument` for max_new_tokens == 0.
    admit_result add(sequence_request request);

    /// The next step (possibly empty when nothing can run).
    step_plan schedule();

    /// The step `plan` (the latest one) ran: its chunk tokens are computed and
    /// `sampled` holds one token per chunk with `samples`, in chunk order,
    /// each appended to its sequence. Sequences finished or aborted since are
    /// skipped. Throws `std::invalid_argument` when the count of sampled
    /// tokens is wrong, `std::logic_error` for a stale or repeated plan.
    void commit(const step_plan& plan, std::span<const token_id> sampled);
    /// The same for a plan with drafts: `accepted[i]` of sampling chunk i's
    /// draft tokens were right (the model chose each of them), so the
    /// sequence gains those and then `sampled[i]`, and the positions of the
    /// accepted ones count as computed. Throws `std::invalid_argument` when
    /// an accepted count exceeds its draft.
    void commit(const step_plan& plan, std::span<const token_id> sampled, std::span<const std::size_t> accepted);

    /// Speculative decoding: tokens that may follow a decoding sequence's
    /// last one (a guess, e.g. from an earlier occurrence of its last
    /// tokens). The next `schedule()` computes them after the sequence's
    /// decode token when the token budget and free blocks allow — never
    /// preempting or evicting for them — trimmed so that the tokens a step
    /// can add stay within max_new_tokens. Ignored for a sequence that is not
    /// decoding; replaced by the next call; dropped at commit or preemption.
    void propose(seq_id id, std::span<const token_id> draft);
    /// Draft tokens scheduled and accepted over all commits.
    std::uint64_t draft_tokens() const noexcept { return m_draft_tokens; }
    std::uint64_t accepted_draft_tokens() const noexcept { return m_accepted_draft_tokens; }

    /// Removes a sequence (running or waiting) and frees its blocks at once.
    /// False when the id is unknown.
    bool finish(seq_id id);
    bool abort(seq_id id);

    std::size_t num_running() const noexcept { return m_running.size(); }
    std::size_t num_waiting() const noexcept { return m_waiting.size(); }
    std::uint64_t total_preemptions() const noexcept { return m_preemptions; }
    bool contains(seq_id id) const { return m_sequences.contains(id); }
    bool is_running(seq_id id) const;
    /// Prompt + generated tokens, or nullptr for an unknown id.
    const std::vector<token_id>* tokens(seq_id id) const;
    /// Tokens generated so far; throws `std::out_of_range` for an unknown id.
    std::size_t num_generated(seq_id id) const;
    /// Tokens whose KV entries are computed; throws `std::out_of_range`.
    std::size_t num_computed(seq_id id) const;
    /// The sequence's block table (empty while waiting or unknown).
    std::span<const block_id> block_table(seq_id id) const;
    const block_manager& blocks() const noexcept { return m_blocks; }
    /// Blocks held by sequences (blocks only the prefix cache holds are free
    /// to take, so they do not count).
    std::size_t num_blocks_in_use() const noexcept;
    /// The prefix cache, or nullptr without `prefix_caching`.
    const prefix_cache* prefix() const noexcept { return m_prefix.get(); }
    /// Tokens of admitted sequences looked up in the prefix cache, and those
    /// found (every admission counts, a preempted sequence's again).
    std::uint64_t prefix_queried_tokens() const noexcept { return m_prefix_queried; }
    std::uint64_t prefix_hit_tokens() const noexcept { return m_prefix_hits; }
    /// Prompt tokens the sequence found cached when first admitted (0 while
    /// it waits); throws `std::out_of_range` for an unknown id.
    std::size_t num_cached_prompt_tokens(seq_id id) const;
    const scheduler_config& config() const noexcept { return m_config; }

private:
    struct sequence;
    struct build;

    sequence* find(seq_id id) const;
    std::size_t prefill_cap() const noexcept;
    bool reserve(sequence& s, std::size_t positions, build& b);
    void schedule_running(sequence& s, std::size_t n, build& b);
    void schedule_drafts(build& b);
    void preempt(sequence& s, build& b);
    void admit_waiting(build& b);
    void release_blocks(sequence& s);
    bool allocate_blocks(std::size_t n, std::vector<block_id>& out);
    void cache_computed_blocks(sequence& s);
    bool next_block_in_progress(const sequence& s) const;
    bool remove(seq_id id);

    scheduler_config m_config;
    block_manager m_blocks;
    std::unique_ptr<prefix_cache> m_prefix; // after m_blocks: it refers to it
    std::unordered_map<seq_id, std::unique_ptr<sequence>> m_sequences;
    std::vector<sequence*> m_running; // admission order
    waiting_queue<sequence> m_waiting; // by priority class with aging, then queue key
    std::vector<sequence*> m_admitted; // admit_waiting's scratch: taken off m_waiting after its pass
    std::uint64_t m_steps = 0;        // schedule() calls so far
    std::uint64_t m_committed = 0;    // step of the last committed plan
    std::uint64_t m_draft_tokens = 0;
    std::uint64_t m_accepted_draft_tokens = 0;
    std::uint64_t m_arrivals = 0;
    std::int64_t m_queue_back = 0;    // queue keys: new arrivals count up,
    std::int64_t m_queue_front = 0;   // preempted sequences count down
    std::uint64_t m_preemptions = 0;
    std::uint64_t m_prefix_queried = 0;
    std::uint64_t m_prefix_hits = 0;
};

} // namespace weft::serve
