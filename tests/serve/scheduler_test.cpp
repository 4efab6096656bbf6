#include "scheduler_test_support.hpp"

#include <weft/serve/scheduler.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;

TEST_CASE("scheduler prefills a new sequence and then decodes it", "[scheduler]") {
    scheduler s(limits(512, 256), 64, 16);
    REQUIRE(s.add(request(1, 20, 3)) == admit_result::accepted);
    CHECK(s.num_waiting() == 1);
    auto plan = s.schedule();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].start == 0);
    CHECK(plan.chunks[0].tokens.size() == 20);
    CHECK(plan.chunks[0].blocks.size() == 2);
    CHECK(plan.chunks[0].samples);
    CHECK(s.num_running() == 1);
    const token_id first = 7;
    s.commit(plan, std::vector<token_id>{first});
    CHECK(s.num_generated(1) == 1);
    CHECK(s.tokens(1)->back() == first);

    plan = s.schedule();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].start == 20);
    REQUIRE(plan.chunks[0].tokens.size() == 1);
    CHECK(plan.chunks[0].tokens[0] == first);
    CHECK(plan.chunks[0].samples);
    s.commit(plan, std::vector<token_id>{8});
    s.commit(s.schedule(), std::vector<token_id>{9});
    CHECK(s.num_generated(1) == 3);
    // max_new_tokens reached: nothing more is scheduled until the engine ends it.
    CHECK(s.schedule().empty());
    CHECK(s.finish(1));
    CHECK_FALSE(s.contains(1));
    CHECK(s.blocks().num_used() == 0);
    CHECK_FALSE(s.finish(1));
}

TEST_CASE("scheduler gives prefill a share of a decoding step in proportion to its decodes", "[scheduler]") {
    scheduler_config cfg = limits(512, 64);
    cfg.max_context = 4096;
    cfg.prefill_per_decode = 2.0;
    cfg.min_prefill_tokens = 8;
    scheduler s(cfg, 1024, 16);
    driver d(s, 64);
    for (seq_id id = 1; id <= 20; ++id) d.add(request(id, 4, 200));
    d.step(); // the 20 prompts, then all 20 decode
    d.add(request(100, 1000, 10));
    auto plan = d.step();
    CHECK(chunk_size(plan, 100) == 40); // 2 x 20 decodes
    CHECK(plan.num_tokens == 60);
    // With fewer decoders the floor applies.
    for (seq_id id = 1; id <= 19; ++id) d.finish(id);
    plan = d.step();
    CHECK(chunk_size(plan, 100) == 8);
    CHECK(plan.num_tokens == 9);
    // Without decodes the whole budget is open.
    d.finish(20);
    plan = d.step();
    CHECK(chunk_size(plan, 100) == 512);
}

TEST_CASE("scheduler counts a prompt's later positions as more of a decoding step's prefill share",
          "[scheduler]") {
    scheduler_config cfg = limits(512, 64);
    cfg.max_context = 8192;
    cfg.min_prefill_tokens = 8;
    cfg.prefill_context_cost = 100; // position p counts as 1 + p / 100 tokens
    scheduler s(cfg, 4096, 16);
    driver d(s, 64);
    for (seq_id id = 1; id <= 20; ++id) d.add(request(id, 4, 4000));
    d.step(); // the 20 prompts, then all 20 decode: a share of 20
    d.add(request(100, 6000, 10));
    auto plan = d.step();
    CHECK(chunk_size(plan, 100) == 18); // 18 + (0 + 1 + ... + 17) / 100 = 19.53; 19 would be 20.71
    CHECK(plan.num_tokens == 38);
    std::size_t done = 18;
    while (done < 500) {
        plan = d.step();
        const std::size_t n = chunk_size(plan, 100);
        REQUIRE(n >= 1);
        done += n;
    }
    // From position 500 on (up to 565) 3 fit: 3 + (3 x 500 + 3) / 100 = 18.03; 4 would be 24.06.
    REQUIRE(done <= 565);
    plan = d.step();
    CHECK(chunk_size(plan, 100) == 3);
    // Without decodes the whole budget is open, in plain tokens.
    for (seq_id id = 1; id <= 20; ++id) d.finish(id);
    plan = d.step();
    CHECK(chunk_size(plan, 100) == 512);
}

TEST_CASE("scheduler still computes one prompt token a step where a single position outweighs the share",
          "[scheduler]") {
    scheduler_config cfg = limits(512, 64);
    cfg.min_prefill_tokens = 8;
    cfg.prefill_context_cost = 1; // position p counts as 1 + p tokens
    scheduler s(cfg, 1024, 16);
    driver d(s, 64);
    for (seq_id id = 1; id <= 4; ++id) d.add(request(id, 4, 1000));
    d.step();
    d.add(request(100, 200, 10));
    auto plan = d.step();
    CHECK(chunk_size(plan, 100) == 3); // 3 + (0 + 1 + 2) = 6 <= 8; 4 would be 10
    for (int i = 0; i < 20; ++i) {
        plan = d.step();
        CHECK(chunk_size(plan, 100) == 1);
    }
}

TEST_CASE("scheduler puts decoding sequences before prefill chunks", "[scheduler]") {
    scheduler_config cfg = limits(64, 16);
    cfg.prefill_per_decode = 0; // the whole budget is open to prefill
    scheduler s(cfg, 64, 16);
    s.add(request(1, 10, 5));
    s.add(request(2, 12, 5));
    auto plan = s.schedule();
    s.commit(plan, std::vector<token_id>{1, 2});
    s.add(request(3, 100, 5));
    plan = s.schedule();
    REQUIRE(plan.chunks.size() == 3);
    CHECK(plan.chunks[0].id == 1);
    CHECK(plan.chunks[0].tokens.size() == 1);
    CHECK(plan.chunks[1].id == 2);
    CHECK(plan.chunks[1].tokens.size() == 1);
    CHECK(plan.chunks[2].id == 3);
    CHECK(plan.chunks[2].tokens.size() == 62); // what the decodes left of the budget
    CHECK_FALSE(plan.chunks[2].samples);
    CHECK(plan.num_tokens == 64);
}

TEST_CASE("scheduler spreads a 2000-token prompt over steps while 16 sequences keep decoding", "[scheduler]") {
    scheduler_config cfg = limits(256, 32);
    cfg.max_context = 4096;
    cfg.prefill_per_decode = 0; // budget-limited chunks only
    scheduler s(cfg, 1024, 16);
    driver d(s, 16);
    for (seq_id id = 1; id <= 16; ++id) {
        d.add(request(id, 8, 100));
    }
    d.step(); // all 16 prefilled and sampled once
    for (seq_id id = 1; id <= 16; ++id) {
        REQUIRE(s.num_generated(id) == 1);
    }
    d.add(request(100, 2000, 10));
    std::size_t prefill_steps = 0;
    while (s.num_computed(100) < 2000) {
        const auto plan = d.step();
        ++prefill_steps;
        REQUIRE(plan.chunks.size() == 17);
        for (std::size_t i = 0; i < 16; ++i) {
            CHECK(plan.chunks[i].id == i + 1);
            CHECK(plan.chunks[i].tokens.size() == 1);
            CHECK(plan.chunks[i].samples);
        }
        CHECK(plan.chunks[16].id == 100);
        CHECK(plan.chunks[16].tokens.size() <= 240);
        CHECK(plan.chunks[16].samples == (s.num_computed(100) == 2000));
        for (seq_id id = 1; id <= 16; ++id) {
            CHECK(s.num_generated(id) == 1 + prefill_steps);
        }
    }
    CHECK(prefill_steps == 9); // ceil(2000 / 240)
    CHECK(s.num_generated(100) == 1);
    const auto plan = d.step();
    CHECK(chunk_size(plan, 100) == 1); // now decoding with the others
    CHECK(plan.num_tokens == 17);
}

TEST_CASE("scheduler respects the token budget and max_running", "[scheduler]") {
    scheduler_config cfg = limits(100, 8);
    scheduler s(cfg, 512, 16);
    driver d(s, 16);
    for (seq_id id = 1; id <= 50; ++id) {
        d.add(request(id, 30, 6));
    }
    const auto first = d.step();
    REQUIRE(first.chunks.size() == 4);
    CHECK(chunk_size(first, 1) == 30);
    CHECK(chunk_size(first, 2) == 30);
    CHECK(chunk_size(first, 3) == 30);
    CHECK(chunk_size(first, 4) == 10);
    CHECK(first.num_tokens == 100);
    std::size_t max_running_seen = 0;
    for (int i = 0; i < 200 && !d.live.empty(); ++i) {
        const auto plan = d.step(); // check_invariants: budget and max_running
        max_running_seen = std::max(max_running_seen, s.num_running());
    }
    CHECK(d.live.empty());
    CHECK(max_running_seen == 8);
    CHECK(d.outputs.size() == 50);
}

TEST_CASE("scheduler caps prefill chunks at long_prefill_chunk", "[scheduler]") {
    scheduler_config cfg = limits(100, 4);
    cfg.long_prefill_chunk = 24;
    scheduler s(cfg, 64, 8);
    s.add(request(1, 50, 2));
    s.add(request(2, 10, 2));
    const auto plan = s.schedule();
    CHECK(chunk_size(plan, 1) == 24);
    CHECK(chunk_size(plan, 2) == 10);
}

TEST_CASE("scheduler admits first come first served within a priority class", "[scheduler]") {
    scheduler_config cfg;
    cfg.max_running = 1;
    scheduler s(cfg, 64, 16);
    driver d(s, 16);
    for (const seq_id id : {5, 3, 9, 1}) {
        d.add(request(id, 4, 2));
    }
    CHECK(d.admission_order(20) == std::vector<seq_id>{5, 3, 9, 1});
}

TEST_CASE("scheduler admits smaller priority numbers first", "[scheduler]") {
    scheduler_config cfg;
    cfg.max_running = 1;
    scheduler s(cfg, 64, 16);
    driver d(s, 16);
    d.add(request(1, 4, 2, 5));
    d.add(request(2, 4, 2, 0));
    d.add(request(3, 4, 2, 2));
    d.add(request(4, 4, 2, 0));
    d.add(request(5, 4, 2, -1));
    CHECK(d.admission_order(20) == std::vector<seq_id>{5, 2, 4, 3, 1});
}

TEST_CASE("scheduler aging lets a low-priority request in under constant high-priority load", "[scheduler]") {
    const auto admitted_at = [](std::size_t aging_steps) -> std::size_t {
        scheduler_config cfg;
        cfg.max_running = 1;
        cfg.aging_steps = aging_steps;
        scheduler s(cfg, 64, 16);
        driver d(s, 16);
        d.add(request(1, 2, 1, 3)); // priority 3
        for (std::size_t step = 1; step <= 100; ++step) {
            d.add(request(1000 + step, 2, 1, 0)); // always a fresh urgent request
            const auto plan = d.step();
            if (chunk_size(plan, 1) != 0) {
                return step;
            }
        }
        return 0;
    };
    CHECK(admitted_at(0) == 0); // without aging it starves
    // Three classes to climb, four calls each: it ties the urgent class after
    // waiting 12 calls and then wins on arrival order.
    CHECK(admitted_at(4) == 13);
    CHECK(admitted_at(1) == 4);
}

TEST_CASE("scheduler preempts the lowest-priority sequence when blocks run out", "[scheduler]") {
    scheduler_config cfg = limits(64, 4);
    scheduler s(cfg, 4, 4); // 16 positions
    driver d(s, 4);
    d.add(request(1, 8, 4, 0));
    d.add(request(2, 8, 4, 1));
    auto plan = d.step(); // both prefilled: all four blocks used
    CHECK(plan.chunks.size() == 2);
    CHECK(s.blocks().num_free() == 0);
    const auto b_tokens = *s.tokens(2);

    plan = d.step(); // 1 needs a third block: 2 is the victim
    CHECK(plan.preempted == std::vector<seq_id>{2});
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 1);
    CHECK(s.total_preemptions() == 1);
    CHECK_FALSE(s.is_running(2));
    CHECK(s.num_computed(2) == 0);
    CHECK(s.block_table(2).empty());
    CHECK(s.blocks().num_used() == 3);
    CHECK(*s.tokens(2) == b_tokens); // keeps its generated token

    d.run(2); // 1 finishes (4 tokens); 2 waits for blocks meanwhile
    CHECK_FALSE(s.contains(1));
    plan = d.step();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 2);
    CHECK(plan.chunks[0].start == 0);
    CHECK(plan.chunks[0].tokens.size() == 9); // prompt + the token it had generated
    CHECK(plan.chunks[0].samples);
    d.run(10);
    CHECK(d.outputs[2] == run_alone(request(2, 8, 4).prompt, 4));
    CHECK(d.outputs[1] == run_alone(request(1, 8, 4).prompt, 4));
}

TEST_CASE("scheduler preempts the sequence being scheduled when it is the lowest", "[scheduler]") {
    scheduler_config cfg = limits(64, 4);
    scheduler s(cfg, 4, 4);
    driver d(s, 4);
    d.add(request(1, 7, 4, 1)); // admitted first, so it decodes first
    d.step();
    d.add(request(2, 8, 4, 0));
    d.step(); // 2 takes the last two blocks
    CHECK(s.blocks().num_free() == 0);
    const auto plan = d.step(); // 1 needs a block and is itself the victim
    CHECK(plan.preempted == std::vector<seq_id>{1});
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 2);
    CHECK(s.block_table(1).empty());
}

TEST_CASE("scheduler withdraws the chunk of a victim already put in the step", "[scheduler]") {
    scheduler_config cfg = limits(64, 4);
    scheduler s(cfg, 5, 4);
    driver d(s, 4);
    d.add(request(1, 7, 10, 5)); // low priority, admitted alone
    d.step();
    d.add(request(2, 8, 10, 0));
    auto plan = d.step(); // 1 decodes at position 7, 2 prefills 8 (2 blocks)
    REQUIRE(plan.chunks.size() == 2);
    CHECK(s.blocks().num_free() == 1);
    plan = d.step(); // 1 takes the last block for position 8, then 2 needs one
    CHECK(plan.preempted == std::vector<seq_id>{1});
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 2);
    CHECK(plan.num_tokens == 1);
    CHECK(s.num_computed(1) == 0);
}

TEST_CASE("scheduler admits nothing in a step that preempted", "[scheduler]") {
    scheduler_config cfg = limits(64, 4);
    scheduler s(cfg, 4, 4);
    driver d(s, 4);
    d.add(request(1, 8, 4, 0));
    d.add(request(2, 8, 4, 1));
    d.step();
    d.add(request(3, 2, 2, 0)); // would fit the block left over below
    auto plan = d.step();
    CHECK(plan.preempted == std::vector<seq_id>{2});
    CHECK(s.blocks().num_free() == 1);
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 1);
    plan = d.step();
    REQUIRE(plan.chunks.size() == 2);
    CHECK(plan.chunks[1].id == 3);
}

TEST_CASE("scheduler puts a preempted sequence at the head of its class", "[scheduler]") {
    scheduler_config cfg = limits(64, 2);
    scheduler s(cfg, 4, 4);
    driver d(s, 4);
    d.add(request(1, 8, 4, 0));
    d.add(request(2, 8, 4, 1));
    d.add(request(3, 4, 2, 1)); // same class as 2, arrived later; max_running holds it
    d.step();
    auto plan = d.step();
    CHECK(plan.preempted == std::vector<seq_id>{2});
    // 2 now leads its class: it needs three blocks, one is free, and 3 may
    // not overtake it.
    plan = d.step();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].id == 1);
    d.step(); // 1 generates its last token
    CHECK_FALSE(s.contains(1));
    plan = d.step();
    REQUIRE(plan.chunks.size() == 2);
    CHECK(plan.chunks[0].id == 2);
    CHECK(plan.chunks[0].tokens.size() == 9);
    CHECK(plan.chunks[1].id == 3);
}

TEST_CASE("scheduler outputs under preemption equal each sequence run alone", "[scheduler]") {
    scheduler_config cfg = limits(16, 6);
    cfg.max_context = 64;
    scheduler s(cfg, 10, 4); // 40 positions for six sequences that want up to 31 each
    driver d(s, 4);
    std::vector<sequence_request> requests;
    for (seq_id id = 1; id <= 6; ++id) {
        requests.push_back(request(id, 5 + 2 * id, 10 + 2 * id, static_cast<int>(id % 3)));
        d.add(requests.back());
    }
    d.run(1000);
    CHECK(d.live.empty());
    CHECK(s.total_preemptions() > 0);
    CHECK(d.preempted_after_generating);
    for (const auto& r : requests) {
        INFO("sequence " << r.id);
        CHECK(d.outputs[r.id] == run_alone(r.prompt, r.max_new_tokens));
    }
    CHECK(s.blocks().num_used() == 0);
}

TEST_CASE("scheduler frees blocks when a sequence is aborted mid-prefill", "[scheduler]") {
    scheduler_config cfg = limits(64, 4);
    scheduler s(cfg, 64, 16);
    s.add(request(1, 300, 5));
    s.add(request(2, 3, 5));
    auto plan = s.schedule();
    s.commit(plan, {});
    plan = s.schedule();
    CHECK(s.num_computed(1) == 64);
    CHECK(s.blocks().num_used() > 0);
    CHECK(s.abort(1)); // between schedule() and commit()
    CHECK_FALSE(s.contains(1));
    CHECK(s.blocks().num_used() == 0);
    CHECK(s.num_running() == 0);
    s.commit(plan, {}); // the aborted sequence's chunk is skipped
    CHECK(s.abort(2)); // still waiting: the 300-token prompt took the budget
    CHECK(s.num_waiting() == 0);
    CHECK(s.schedule().empty());
    CHECK_FALSE(s.abort(1));
}

TEST_CASE("scheduler commit skips the sampled token of a finished sequence", "[scheduler]") {
    scheduler s({}, 64, 16);
    s.add(request(1, 4, 5));
    s.add(request(2, 4, 5));
    s.add(request(3, 4, 5));
    const auto plan = s.schedule();
    REQUIRE(plan.chunks.size() == 3);
    s.finish(2);
    s.commit(plan, std::vector<token_id>{11, 22, 33});
    CHECK(s.tokens(1)->back() == 11);
    CHECK(s.tokens(3)->back() == 33);
    CHECK_FALSE(s.contains(2));
}

TEST_CASE("scheduler rejects wrong sampled counts and stale or repeated plans", "[scheduler]") {
    scheduler s({}, 64, 16);
    s.add(request(1, 4, 5));
    const auto old_plan = s.schedule();
    const auto plan = s.schedule(); // abandons old_plan: same tokens again
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].start == 0);
    CHECK(plan.chunks[0].tokens.size() == 4);
    CHECK_THROWS_AS(s.commit(old_plan, std::vector<token_id>{1}), std::logic_error);
    CHECK_THROWS_AS(s.commit(plan, {}), std::invalid_argument);
    CHECK_THROWS_AS(s.commit(plan, std::vector<token_id>{1, 2}), std::invalid_argument);
    s.commit(plan, std::vector<token_id>{1});
    CHECK_THROWS_AS(s.commit(plan, std::vector<token_id>{1}), std::logic_error);
    CHECK(s.num_generated(1) == 1);
    CHECK_THROWS_AS(s.commit(step_plan{}, {}), std::logic_error);
}

TEST_CASE("scheduler refuses too long, duplicate and over-queue requests", "[scheduler]") {
    scheduler_config cfg;
    cfg.max_waiting = 2;
    cfg.max_context = 100;
    scheduler s(cfg, 8, 16); // 128 positions
    CHECK(s.add(request(1, 0, 5)) == admit_result::too_long);
    CHECK(s.add(request(1, 90, 11)) == admit_result::too_long);
    CHECK(s.add(request(1, 90, 10)) == admit_result::accepted);
    CHECK(s.add(request(1, 5, 5)) == admit_result::duplicate_id);
    CHECK(s.add(request(2, 5, 5)) == admit_result::accepted);
    CHECK(s.add(request(3, 5, 5)) == admit_result::queue_full);
    CHECK(s.num_waiting() == 2);
    CHECK_THROWS_AS(s.add(request(4, 5, 0)), std::invalid_argument);

    scheduler small(cfg, 2, 16); // 32 positions: the context could never fit
    CHECK(small.add(request(1, 20, 14)) == admit_result::too_long);
    CHECK(small.add(request(1, 20, 13)) == admit_result::accepted); // 32 positions cached
}

TEST_CASE("scheduler rejects a configuration it cannot run", "[scheduler]") {
    scheduler_config cfg;
    cfg.max_running = 600; // more decodes than the 512-token budget
    CHECK_THROWS_AS(scheduler(cfg, 64, 16), std::invalid_argument);
    cfg = {};
    cfg.max_batch_tokens = 0;
    CHECK_THROWS_AS(scheduler(cfg, 64, 16), std::invalid_argument);
    CHECK_THROWS_AS(scheduler({}, 64, 0), std::invalid_argument);
}

TEST_CASE("scheduler keeps its invariants over random add, abort, schedule and commit", "[scheduler]") {
    scheduler_config cfg = limits(32, 6);
    cfg.max_waiting = 12;
    cfg.max_context = 80;
    cfg.aging_steps = 8;
    cfg.long_prefill_chunk = 20;
    cfg.prefix_caching = GENERATE(false, true);
    INFO("prefix caching " << cfg.prefix_caching);
    scheduler s(cfg, 24, 4);
    driver d(s, 4);
    std::mt19937_64 rng(2024); // raw engine output only: the same on every platform
    const auto below = [&](std::uint64_t n) { return rng() % n; };
    seq_id next_id = 1;
    std::map<seq_id, std::vector<token_id>> prompts;
    std::size_t aborted = 0;
    for (int op = 0; op < 1000; ++op) {
        const auto kind = below(10);
        if (kind < 3) {
            sequence_request r = request(next_id, 1 + below(50), 1 + below(30), static_cast<int>(below(4)));
            const seq_id dup = below(10) == 0 && !d.live.empty() ? *d.live.begin() : next_id++;
            r.id = dup;
            const auto prompt = r.prompt;
            const auto max_new = r.max_new_tokens;
            const auto result = s.add(std::move(r));
            if (result == admit_result::accepted) {
                d.max_new[dup] = max_new;
                d.live.insert(dup);
                prompts[dup] = prompt;
            } else if (d.live.contains(dup)) {
                CHECK(result == admit_result::duplicate_id);
            } else {
                CHECK(result == admit_result::queue_full); // every request fits context and cache
            }
        } else if (kind == 3 && !d.live.empty()) {
            auto it = d.live.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(below(d.live.size())));
            CHECK(s.abort(*it));
            d.live.erase(it);
            ++aborted;
        } else {
            d.step();
        }
        check_invariants(s, step_plan{}, d.live);
    }
    CHECK(d.outputs.size() > 20);
    d.run(2000);
    CHECK(d.live.empty());
    CHECK(s.num_blocks_in_use() == 0);
    CHECK(s.blocks().num_used() == (cfg.prefix_caching ? s.prefix()->num_idle() : 0));
    if (cfg.prefix_caching) {
        CHECK(s.prefix_hit_tokens() > 0); // prompts of ids equal modulo 13 share their start
    }
    CHECK(aborted > 20);
    CHECK(s.total_preemptions() > 0);
    for (const auto& [id, out] : d.outputs) {
        INFO("sequence " << id);
        CHECK(out == run_alone(prompts[id], d.max_new[id]));
    }
}
