// Helpers shared by the scheduler tests: request builders, a fake model
// that reads its context back through the block tables, an invariant check
// of the scheduler's bookkeeping, and a driver that runs steps to the end.
#pragma once

#include <weft/serve/scheduler.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <vector>

namespace weft::serve::test {


// Without the prefix cache: these tests count blocks exactly.
inline scheduler_config limits(std::size_t max_batch_tokens, std::size_t max_running) {
    scheduler_config cfg;
    cfg.max_batch_tokens = max_batch_tokens;
    cfg.max_running = max_running;
    cfg.prefix_caching = false;
    return cfg;
}

inline sequence_request request(seq_id id, std::size_t prompt, std::size_t max_new, int priority = 0) {
    std::vector<token_id> p(prompt);
    std::iota(p.begin(), p.end(), static_cast<token_id>(id * 7 % 13 + 1));
    return sequence_request{id, std::move(p), max_new, priority};
}

// The next token the fake model predicts after `tokens`.
inline token_id next_token(const std::vector<token_id>& tokens) {
    return static_cast<token_id>(std::accumulate(tokens.begin(), tokens.end(), std::int64_t{0}) % 1000);
}

// What a sequence generates when it runs alone without interruption.
inline std::vector<token_id> run_alone(std::vector<token_id> tokens, std::size_t max_new) {
    for (std::size_t i = 0; i < max_new; ++i) {
        tokens.push_back(next_token(tokens));
    }
    return tokens;
}

// A model over a paged KV cache that "stores" each token at its position's
// slot through the block table and predicts the next token from what the
// cache holds, so a wrong block table or a wrong computed count shows up as
// a wrong output.
class fake_model {
public:
    explicit fake_model(std::size_t block_size) : m_block_size(block_size) {}

    std::vector<token_id> run(const step_plan& plan) {
        std::vector<token_id> sampled;
        for (const scheduled_chunk& c : plan.chunks) {
            const std::size_t end = c.start + c.tokens.size();
            REQUIRE(c.blocks.size() >= block_manager::blocks_for(end, m_block_size));
            for (std::size_t i = 0; i < c.tokens.size(); ++i) {
                slot(c.blocks, c.start + i) = c.tokens[i];
            }
            if (c.samples) {
                std::vector<token_id> context;
                for (std::size_t pos = 0; pos < end; ++pos) {
                    context.push_back(slot(c.blocks, pos));
                }
                sampled.push_back(next_token(context));
            }
        }
        return sampled;
    }

    /// run() for a plan with drafts: each draft token is checked against the
    /// model's prediction from what the cache holds, as the engine does;
    /// `accepted` gets how many of each sampling chunk's draft were right.
    void run(const step_plan& plan, std::vector<token_id>& sampled, std::vector<std::size_t>& accepted) {
        sampled.clear();
        accepted.clear();
        for (const scheduled_chunk& c : plan.chunks) {
            const std::size_t end = c.start + c.tokens.size();
            REQUIRE(c.blocks.size() >= block_manager::blocks_for(end + c.draft.size(), m_block_size));
            for (std::size_t i = 0; i < c.tokens.size(); ++i) slot(c.blocks, c.start + i) = c.tokens[i];
            for (std::size_t i = 0; i < c.draft.size(); ++i) slot(c.blocks, end + i) = c.draft[i];
            if (!c.samples) {
                REQUIRE(c.draft.empty());
                continue;
            }
            std::vector<token_id> context;
            for (std::size_t pos = 0; pos < end; ++pos) context.push_back(slot(c.blocks, pos));
            std::size_t good = 0;
            token_id next = next_token(context);
            while (good < c.draft.size() && next == c.draft[good]) {
                context.push_back(slot(c.blocks, end + good));
                ++good;
                next = next_token(context);
            }
            sampled.push_back(next);
            accepted.push_back(good);
        }
    }

private:
    token_id& slot(std::span<const block_id> blocks, std::size_t pos) {
        auto& block = m_cache[blocks[pos / m_block_size]];
        block.resize(m_block_size, -1);
        return block[pos % m_block_size];
    }

    std::size_t m_block_size;
    std::map<block_id, std::vector<token_id>> m_cache;
};

// Checks a plan and the scheduler's bookkeeping against each other.
inline void check_invariants(const scheduler& s, const step_plan& plan, const std::set<seq_id>& live) {
    std::size_t tokens = 0;
    std::set<seq_id> in_plan;
    for (const scheduled_chunk& c : plan.chunks) {
        REQUIRE(in_plan.insert(c.id).second);
        REQUIRE(s.is_running(c.id));
        const auto* all = s.tokens(c.id);
        REQUIRE(all != nullptr);
        REQUIRE(!c.tokens.empty());
        REQUIRE(c.start + c.tokens.size() <= all->size());
        REQUIRE(std::equal(c.tokens.begin(), c.tokens.end(), all->begin() + static_cast<std::ptrdiff_t>(c.start)));
        REQUIRE(c.samples == (c.start + c.tokens.size() == all->size()));
        REQUIRE(c.start == s.num_computed(c.id));
        tokens += c.tokens.size();
    }
    REQUIRE(tokens == plan.num_tokens);
    REQUIRE(plan.num_tokens <= s.config().max_batch_tokens);
    REQUIRE(s.num_running() <= s.config().max_running);

    // A block is referenced once by each table holding it, and once more
    // by the prefix cache when cached; only cached blocks are shared.
    std::map<block_id, std::uint32_t> holders;
    for (const seq_id id : live) {
        REQUIRE(s.contains(id));
        std::set<block_id> own;
        for (const block_id b : s.block_table(id)) {
            REQUIRE(own.insert(b).second); // never twice in one table
            ++holders[b];
        }
        if (!s.is_running(id)) {
            REQUIRE(s.block_table(id).empty());
        }
    }
    const prefix_cache* cache = s.prefix();
    std::size_t cached_only = 0;
    for (block_id b = 0; b < s.blocks().num_blocks(); ++b) {
        const bool cached = cache != nullptr && cache->contains(b);
        const std::uint32_t tables = holders.contains(b) ? holders[b] : 0;
        REQUIRE(s.blocks().ref_count(b) == tables + (cached ? 1 : 0));
        if (!cached) {
            REQUIRE(tables <= 1);
        } else if (tables == 0) {
            ++cached_only;
        }
    }
    REQUIRE(holders.size() == s.num_blocks_in_use());
    REQUIRE(holders.size() + cached_only == s.blocks().num_used());
    // Every cached-only block is evictable or leads to one that is (chains
    // are evicted from their end).
    REQUIRE((cached_only == 0) == (cache == nullptr || cache->num_evictable() == 0));
    REQUIRE(cached_only == (cache != nullptr ? cache->num_idle() : 0));
    REQUIRE(s.num_running() + s.num_waiting() == live.size());
}

// Runs the engine loop until every sequence finished (or `max_steps`),
// ending each sequence at max_new_tokens. Returns the final token lists.
struct driver {
    scheduler& sched;
    fake_model model;
    std::map<seq_id, std::size_t> max_new;
    std::set<seq_id> live;
    std::map<seq_id, std::vector<token_id>> outputs;
    bool preempted_after_generating = false;

    driver(scheduler& s, std::size_t block_size) : sched(s), model(block_size) {}

    void add(sequence_request r) {
        const seq_id id = r.id;
        const std::size_t n = r.max_new_tokens;
        REQUIRE(sched.add(std::move(r)) == admit_result::accepted);
        max_new[id] = n;
        live.insert(id);
    }

    step_plan step() {
        step_plan plan = sched.schedule();
        check_invariants(sched, plan, live);
        for (const seq_id id : plan.preempted) {
            preempted_after_generating |= sched.num_generated(id) > 0;
        }
        sched.commit(plan, model.run(plan));
        for (const scheduled_chunk& c : plan.chunks) {
            if (c.samples && sched.num_generated(c.id) == max_new[c.id]) {
                outputs[c.id] = *sched.tokens(c.id);
                finish(c.id);
            }
        }
        return plan;
    }

    /// Ends sequence `id` as the engine does (finish), whatever it generated.
    void finish(seq_id id) {
        REQUIRE(sched.finish(id));
        live.erase(id);
    }

    void run(std::size_t max_steps) {
        for (std::size_t i = 0; i < max_steps && !live.empty(); ++i) {
            step();
        }
    }

    // Runs to the end, listing sequences in the order of their first chunk.
    std::vector<seq_id> admission_order(std::size_t max_steps) {
        std::vector<seq_id> order;
        for (std::size_t i = 0; i < max_steps && !live.empty(); ++i) {
            for (const auto& c : step().chunks) {
                if (c.start == 0) {
                    order.push_back(c.id);
                }
            }
        }
        return order;
    }
};

inline std::size_t chunk_size(const step_plan& plan, seq_id id) {
    for (const auto& c : plan.chunks) {
        if (c.id == id) {
            return c.tokens.size();
        }
    }
    return 0;
}


} // namespace weft::serve::test
