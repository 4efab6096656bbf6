#include "scheduler_test_support.hpp"

#include <weft/serve/scheduler.hpp>

#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

scheduler_config with_prefix_cache(std::size_t max_batch_tokens, std::size_t max_running) {
    scheduler_config cfg = limits(max_batch_tokens, max_running);
    cfg.prefix_caching = true;
    return cfg;
}

// A shared "system prompt" of `shared` tokens, then `own` tokens of its own.
sequence_request with_prefix(seq_id id, std::size_t shared, std::size_t own, std::size_t max_new) {
    std::vector<token_id> p(shared);
    std::iota(p.begin(), p.end(), 500);
    for (std::size_t i = 0; i < own; ++i) p.push_back(static_cast<token_id>(id * 100 + i));
    return sequence_request{id, std::move(p), max_new, 0};
}

} // namespace

TEST_CASE("scheduler reuses the cached blocks of a common prompt prefix", "[scheduler][prefix]") {
    scheduler s(with_prefix_cache(512, 16), 64, 4);
    driver d(s, 4);
    d.add(with_prefix(1, 10, 3, 4));
    d.run(100);
    REQUIRE(d.outputs.contains(1));
    CHECK(s.num_blocks_in_use() == 0);
    CHECK(s.prefix()->num_cached() == 4); // 13 prompt + 3 fed-back tokens = 16 positions
    CHECK(s.prefix()->num_idle() == 4);

    d.add(with_prefix(2, 10, 5, 4));
    const step_plan plan = d.step();
    REQUIRE(plan.chunks.size() == 1);
    // Blocks 0 and 1 (positions 0-7) are the shared prefix; block 2 holds
    // positions 8-11, of which only 8 and 9 are shared: computed again.
    CHECK(plan.chunks[0].start == 8);
    CHECK(plan.chunks[0].tokens.size() == 7);
    CHECK(s.num_cached_prompt_tokens(2) == 8);
    CHECK(s.prefix_hit_tokens() == 8);
    CHECK(s.prefix_queried_tokens() == 13 + 15);
    d.run(100);
    CHECK(d.outputs[2] == run_alone(with_prefix(2, 10, 5, 4).prompt, 4));
}

TEST_CASE("scheduler computes the last prompt token even when the whole prompt is cached", "[scheduler][prefix]") {
    scheduler s(with_prefix_cache(512, 16), 64, 4);
    driver d(s, 4);
    d.add(with_prefix(1, 8, 0, 2));
    d.run(100);
    d.add(with_prefix(2, 8, 0, 2));
    const step_plan plan = d.step();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].start == 4); // block 1 is cached too, but position 7 gives the logits
    CHECK(plan.chunks[0].tokens.size() == 4);
    CHECK(plan.chunks[0].samples);
    d.run(100);
    CHECK(d.outputs[2] == run_alone(with_prefix(2, 8, 0, 2).prompt, 2));
}

TEST_CASE("scheduler prefills a prompt two sequences share once, the second waiting a step for it",
          "[scheduler][prefix]") {
    scheduler s(with_prefix_cache(512, 16), 64, 4);
    driver d(s, 4);
    d.add(with_prefix(1, 12, 1, 8));
    d.add(with_prefix(2, 12, 1, 8));
    step_plan plan = d.step();
    REQUIRE(plan.chunks.size() == 1); // the second waits: the first computes blocks 0-2
    CHECK(plan.chunks[0].id == 1);
    CHECK(s.num_waiting() == 1);
    plan = d.step();
    REQUIRE(plan.chunks.size() == 2);
    CHECK(plan.chunks[1].id == 2);
    CHECK(plan.chunks[1].start == 12); // blocks 0-2 from the cache
    CHECK(s.num_cached_prompt_tokens(2) == 12);
    const auto t1 = s.block_table(1), t2 = s.block_table(2);
    CHECK(std::equal(t1.begin(), t1.begin() + 3, t2.begin()));
    d.run(100);
    CHECK(d.outputs[1] == run_alone(with_prefix(1, 12, 1, 8).prompt, 8));
    CHECK(d.outputs[2] == run_alone(with_prefix(2, 12, 1, 8).prompt, 8));
}

TEST_CASE("scheduler lets a sequence wait for a shared prompt prefilled in chunks, not the ones behind it",
          "[scheduler][prefix]") {
    scheduler_config cfg = with_prefix_cache(512, 16);
    cfg.long_prefill_chunk = 4; // one block per step
    scheduler s(cfg, 64, 4);
    driver d(s, 4);
    d.add(with_prefix(1, 16, 1, 3));
    d.add(with_prefix(2, 16, 1, 3));
    d.add(with_prefix(3, 0, 5, 3)); // another prompt: not held up
    step_plan plan = d.step();
    REQUIRE(plan.chunks.size() == 2);
    CHECK(plan.chunks[0].id == 1);
    CHECK(plan.chunks[1].id == 3);
    for (int i = 0; i < 3; ++i) CHECK(chunk_size(d.step(), 2) == 0); // blocks 1-3 still coming
    plan = d.step();                                                    // block 3 cached now
    bool admitted = false;
    for (const scheduled_chunk& c : plan.chunks) {
        if (c.id == 2) {
            admitted = true;
            CHECK(c.start == 16);
        }
    }
    CHECK(admitted);
    d.run(100);
    for (seq_id id = 1; id <= 2; ++id) CHECK(d.outputs[id] == run_alone(with_prefix(id, 16, 1, 3).prompt, 3));
    CHECK(d.outputs[3] == run_alone(with_prefix(3, 0, 5, 3).prompt, 3));
}

TEST_CASE("scheduler evicts idle cached blocks before it preempts anything", "[scheduler][prefix]") {
    scheduler s(with_prefix_cache(512, 16), 8, 4); // 32 positions
    driver d(s, 4);
    d.add(with_prefix(1, 0, 20, 4)); // 23 positions: 5 blocks cached at the end
    d.run(100);
    CHECK(s.prefix()->num_idle() == 5);
    CHECK(s.blocks().num_free() == 3);
    d.add(with_prefix(2, 0, 24, 4)); // a different prompt needs 7 blocks
    d.run(100);
    CHECK(d.outputs[2] == run_alone(with_prefix(2, 0, 24, 4).prompt, 4));
    CHECK(s.total_preemptions() == 0);
}

TEST_CASE("scheduler gives a preempted sequence back its cached blocks", "[scheduler][prefix]") {
    // Two sequences that cannot both hold their full context: the later one
    // is preempted and, readmitted, finds its computed full blocks cached.
    scheduler s(with_prefix_cache(64, 4), 6, 4); // 24 positions
    driver d(s, 4);
    d.add(with_prefix(1, 0, 8, 12));
    d.add(with_prefix(2, 0, 8, 12));
    d.run(200);
    CHECK(s.total_preemptions() > 0);
    CHECK(d.preempted_after_generating);
    CHECK(s.prefix_hit_tokens() > 0);
    CHECK(d.outputs[1] == run_alone(with_prefix(1, 0, 8, 12).prompt, 12));
    CHECK(d.outputs[2] == run_alone(with_prefix(2, 0, 8, 12).prompt, 12));
}

TEST_CASE("scheduler outputs with a shared system prompt under preemption equal each sequence run alone",
          "[scheduler][prefix]") {
    scheduler s(with_prefix_cache(48, 8), 20, 4); // 80 positions for 12 sequences of up to 38
    driver d(s, 4);
    for (seq_id id = 1; id <= 12; ++id) d.add(with_prefix(id, 17, id % 5, 6 + id % 7 * 2));
    d.run(2000);
    CHECK(d.live.empty());
    CHECK(s.total_preemptions() > 0);
    CHECK(s.prefix_hit_tokens() >= 11 * 16);
    for (seq_id id = 1; id <= 12; ++id) {
        INFO("sequence " << id);
        CHECK(d.outputs[id] == run_alone(with_prefix(id, 17, id % 5, 6 + id % 7 * 2).prompt, 6 + id % 7 * 2));
    }
    CHECK(s.num_blocks_in_use() == 0);
}
