// Speculative decoding in the scheduler: drafts after a decode token, the
// accepted part kept, the rest dropped — checked against a fake model.
#include "scheduler_test_support.hpp"

#include <weft/serve/ngram_proposer.hpp>
#include <weft/serve/scheduler.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

/// The next `k` tokens of `tokens` as the fake model continues it.
std::vector<token_id> true_continuation(std::vector<token_id> tokens, std::size_t k) {
    std::vector<token_id> out;
    for (std::size_t i = 0; i < k; ++i) {
        out.push_back(next_token(tokens));
        tokens.push_back(out.back());
    }
    return out;
}

} // namespace

TEST_CASE("scheduler computes a draft after the decode token and keeps what was accepted", "[scheduler][draft]") {
    scheduler s(limits(512, 8), 64, 4);
    REQUIRE(s.add(request(1, 5, 10)) == admit_result::accepted);
    step_plan plan = s.schedule();
    s.commit(plan, std::vector<token_id>{42});
    const std::vector<token_id> before = *s.tokens(1);

    s.propose(1, std::vector<token_id>{7, 8, 9});
    plan = s.schedule();
    REQUIRE(plan.chunks.size() == 1);
    const scheduled_chunk& c = plan.chunks[0];
    CHECK(c.start == 5);
    REQUIRE(c.tokens.size() == 1);
    CHECK(c.tokens[0] == 42);
    CHECK(std::vector<token_id>(c.draft.begin(), c.draft.end()) == std::vector<token_id>{7, 8, 9});
    CHECK(c.blocks.size() == block_manager::blocks_for(9, 4));
    CHECK(plan.num_tokens == 4);
    // The model agreed with 7 and 8, then chose 5 where the draft had 9.
    s.commit(plan, std::vector<token_id>{5}, std::vector<std::size_t>{2});
    std::vector<token_id> want = before;
    want.insert(want.end(), {7, 8, 5});
    CHECK(*s.tokens(1) == want);
    CHECK(s.num_computed(1) == 8); // through the accepted 8; 5 is the next to compute
    CHECK(s.num_generated(1) == 4);
    CHECK(s.draft_tokens() == 3);
    CHECK(s.accepted_draft_tokens() == 2);

    // The draft was used up: the next step decodes one token.
    plan = s.schedule();
    REQUIRE(plan.chunks.size() == 1);
    CHECK(plan.chunks[0].draft.empty());
    CHECK(plan.chunks[0].start == 8);
    CHECK_THROWS_AS(s.commit(plan, std::vector<token_id>{1}, std::vector<std::size_t>{1}), std::invalid_argument);
}

TEST_CASE("scheduler trims a draft to max_new_tokens, the budget and the free blocks", "[scheduler][draft]") {
    SECTION("max_new_tokens: accepted drafts plus the next token fit") {
        scheduler s(limits(512, 8), 64, 4);
        REQUIRE(s.add(request(1, 5, 4)) == admit_result::accepted);
        s.commit(s.schedule(), std::vector<token_id>{1});
        s.propose(1, std::vector<token_id>{1, 2, 3, 4, 5});
        const step_plan plan = s.schedule();
        CHECK(plan.chunks[0].draft.size() == 2); // 1 generated + 2 drafts + 1 next = 4
    }
    SECTION("the token budget left after everything else") {
        scheduler s(limits(6, 4), 64, 4);
        REQUIRE(s.add(request(1, 5, 30)) == admit_result::accepted);
        s.commit(s.schedule(), std::vector<token_id>{1});
        REQUIRE(s.add(request(2, 3, 30)) == admit_result::accepted);
        s.propose(1, std::vector<token_id>{1, 2, 3, 4, 5});
        const step_plan plan = s.schedule();
        REQUIRE(plan.chunks.size() == 2);
        CHECK(plan.chunks[1].tokens.size() == 3); // the new prompt first
        CHECK(plan.chunks[0].draft.size() == 2);
        CHECK(plan.num_tokens == 6);
    }
    SECTION("draft_step_tokens: drafts fill a step up to it") {
        scheduler_config cfg = limits(512, 8);
        cfg.draft_step_tokens = 7;
        scheduler s(cfg, 64, 4);
        REQUIRE(s.add(request(1, 5, 30)) == admit_result::accepted);
        REQUIRE(s.add(request(2, 5, 30)) == admit_result::accepted);
        s.commit(s.schedule(), std::vector<token_id>{1, 2});
        s.propose(1, std::vector<token_id>{1, 2, 3, 4});
        s.propose(2, std::vector<token_id>{1, 2, 3, 4});
        const step_plan plan = s.schedule();
        REQUIRE(plan.chunks.size() == 2);
        CHECK(plan.chunks[0].draft.size() == 4); // 2 decodes + 4
        CHECK(plan.chunks[1].draft.size() == 1); // + 1 = 7
        CHECK(plan.num_tokens == 7);
    }
    SECTION("only free blocks: a draft never preempts") {
        scheduler s(limits(512, 8), 3, 4);
        REQUIRE(s.add(request(1, 7, 4)) == admit_result::accepted); // 2 blocks now, 3 at most
        REQUIRE(s.add(request(2, 3, 4)) == admit_result::accepted); // 1 block now, 2 at most
        s.commit(s.schedule(), std::vector<token_id>{1, 2});
        REQUIRE(s.num_running() == 2);
        s.propose(1, std::vector<token_id>{1, 2}); // positions 8, 9: a third block, none free
        s.propose(2, std::vector<token_id>{9});    // position 4: a second block, none free
        const step_plan plan = s.schedule();
        REQUIRE(plan.chunks.size() == 2);
        CHECK(plan.chunks[0].draft.empty());
        CHECK(plan.chunks[1].draft.empty());
        CHECK(plan.preempted.empty());
    }
    SECTION("a sequence that is not decoding takes no draft") {
        scheduler s(limits(512, 8), 64, 4);
        REQUIRE(s.add(request(1, 5, 3)) == admit_result::accepted);
        s.propose(1, std::vector<token_id>{1, 2});
        const step_plan plan = s.schedule();
        CHECK(plan.chunks[0].draft.empty());
        CHECK(plan.chunks[0].tokens.size() == 5);
    }
}

TEST_CASE("scheduler with drafts right, wrong and cut short gives what each sequence gives alone",
          "[scheduler][draft]") {
    std::mt19937_64 rng(99);
    std::uint64_t drafted = 0, kept = 0;
    for (int round = 0; round < 40; ++round) {
        const std::size_t blocks = 10 + rng() % 30; // small enough to preempt now and then
        scheduler_config cfg = limits(24, 6);
        cfg.draft_step_tokens = 24;
        scheduler s(cfg, blocks, 4);
        fake_model model(4);
        std::map<seq_id, std::pair<std::vector<token_id>, std::size_t>> expected;
        for (seq_id id = 1; id <= 8; ++id) {
            const std::size_t prompt = 1 + rng() % 9, max_new = 1 + rng() % 14;
            sequence_request r = request(id, prompt, max_new);
            expected[id] = {r.prompt, max_new};
            REQUIRE(s.add(std::move(r)) == admit_result::accepted);
        }
        std::vector<token_id> sampled;
        std::vector<std::size_t> accepted;
        for (int step = 0; step < 400 && (s.num_running() + s.num_waiting()) > 0; ++step) {
            const step_plan plan = s.schedule();
            model.run(plan, sampled, accepted);
            s.commit(plan, sampled, accepted);
            for (auto& [id, e] : expected) {
                if (!s.contains(id)) continue;
                if (s.num_generated(id) >= e.second) {
                    REQUIRE(s.num_generated(id) == e.second); // never past max_new_tokens
                    REQUIRE(*s.tokens(id) == run_alone(e.first, e.second));
                    s.finish(id);
                    continue;
                }
                // Propose the true continuation, sometimes with a wrong token.
                std::vector<token_id> draft = true_continuation(*s.tokens(id), rng() % 6);
                if (!draft.empty() && rng() % 2 == 0) draft[rng() % draft.size()] += 1;
                s.propose(id, draft);
            }
        }
        CHECK(s.num_running() + s.num_waiting() == 0);
        drafted += s.draft_tokens();
        kept += s.accepted_draft_tokens();
    }
    CHECK(kept > 0);
    CHECK(kept < drafted);
}

TEST_CASE("n-gram proposer continues the latest earlier occurrence of the longest suffix", "[draft]") {
    using v = std::vector<token_id>;
    CHECK(propose_ngram(v{1, 2, 3, 9, 1, 2, 3}, 3, 4) == v{9, 1, 2, 3});
    CHECK(propose_ngram(v{1, 2, 3, 9, 1, 2, 3}, 3, 2) == v{9, 1});
    // The latest occurrence wins: 2 3 was followed by 5 last.
    CHECK(propose_ngram(v{2, 3, 4, 2, 3, 5, 7, 2, 3}, 2, 3) == v{5, 7, 2});
    // A longer match beats a later shorter one.
    CHECK(propose_ngram(v{1, 2, 3, 8, 0, 3, 6, 1, 2, 3}, 3, 1) == v{8});
    // Falls back to shorter n-grams, then to nothing.
    CHECK(propose_ngram(v{5, 6, 7, 6}, 3, 2) == v{7, 6});
    CHECK(propose_ngram(v{1, 2, 3, 4}, 3, 2).empty());
    CHECK(propose_ngram(v{4, 4, 4}, 2, 3) == v{4});
    CHECK(propose_ngram(v{}, 3, 2).empty());
    CHECK(propose_ngram(v{1}, 3, 2).empty());
    CHECK(propose_ngram(v{1, 1}, 3, 0).empty());
    // With a minimum n-gram, a lone repeated token is not enough.
    CHECK(propose_ngram(v{5, 6, 7, 6}, 3, 2, 2).empty());
    CHECK(propose_ngram(v{5, 6, 7, 5, 6}, 3, 2, 2) == v{7, 5});
}
