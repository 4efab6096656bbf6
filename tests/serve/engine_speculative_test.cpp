// Speculative decoding by prompt lookup: the output is bitwise the output
// without it, whatever the batch, chunking or preemption; only the number of
// steps changes.
#include "engine_test_support.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

/// config() with drafts allowed to fill a whole step, so that batches carry them.
scheduler_config drafting(std::size_t budget, std::size_t running) {
    scheduler_config sc = config(budget, running);
    sc.draft_step_tokens = budget;
    return sc;
}

/// Prompts that repeat themselves (lookup finds drafts at once) and random
/// ones; some end at a stop token or at end of generation.
std::vector<generation_request> workload(const std::vector<std::vector<token_id>>& stops_from) {
    std::vector<generation_request> reqs;
    for (std::size_t i = 0; i < 24; ++i) {
        std::vector<token_id> prompt = random_tokens(4 + i % 5, 512, 700 + i);
        if (i % 2 == 0) {
            const std::vector<token_id> unit = prompt;
            for (int k = 0; k < 3; ++k) prompt.insert(prompt.end(), unit.begin(), unit.end());
        }
        generation_request r = greedy(std::move(prompt), 20 + i % 7);
        if (i % 5 == 1) r.ignore_eos = false;
        if (i % 6 == 3 && !stops_from.empty() && stops_from[i].size() > 9) r.stop_token_ids = {stops_from[i][9]};
        reqs.push_back(std::move(r));
    }
    return reqs;
}

} // namespace

TEST_CASE("speculative decoding gives bitwise the same greedy output, in fewer steps", "[engine][speculative]") {
    // Without speculation, each request alone.
    std::vector<std::vector<token_id>> plain_tokens;
    std::vector<outcome> alone;
    {
        auto e = make_engine(512, config(512, 64));
        for (generation_request& r : workload({})) plain_tokens.push_back(run_all(*e, {std::move(r)})[0].tokens);
        for (generation_request& r : workload(plain_tokens)) alone.push_back(run_all(*e, {std::move(r)})[0]);
    }
    const auto check_same = [&](engine& e) {
        const std::vector<outcome> out = run_all(e, workload(plain_tokens));
        for (std::size_t i = 0; i < out.size(); ++i) {
            INFO("request " << i);
            CHECK(out[i].tokens == alone[i].tokens);
            CHECK(out[i].text == alone[i].text);
            CHECK(out[i].finish == alone[i].finish);
        }
        CHECK(e.metrics().spec_draft_tokens.load() > 0);
        CHECK(e.metrics().spec_accepted_tokens.load() > 0);
    };
    SECTION("all at once") {
        auto e = make_speculative_engine(512, drafting(512, 64), 4);
        check_same(*e);
    }
    SECTION("one at a time with the default step cap, in fewer steps than tokens") {
        auto e = make_speculative_engine(512, config(512, 64), 5);
        std::size_t tokens = 0;
        for (generation_request& r : workload(plain_tokens)) tokens += run_all(*e, {std::move(r)})[0].tokens.size();
        CHECK(e->metrics().spec_accepted_tokens.load() > 0);
        CHECK(e->metrics().steps.load() < tokens);
    }
    SECTION("a small token budget") {
        auto e = make_speculative_engine(512, drafting(24, 8), 4);
        check_same(*e);
    }
    SECTION("a KV cache small enough to force preemption") {
        auto e = make_speculative_engine(60, drafting(512, 64), 4);
        check_same(*e);
        CHECK(e->metrics().preemptions.load() > 0);
    }
}
