// Prompt log-probabilities (generation_request::prompt_logprobs) and
// prompt-only requests (max_tokens 0).
#include "engine_test_support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

constexpr std::size_t top_n = 3;

generation_request scoring(std::vector<token_id> prompt, std::size_t max_tokens) {
    generation_request r = greedy(std::move(prompt), max_tokens);
    r.prompt_logprobs = top_n;
    return r;
}

/// What the engine reports for the token after prefix[0 .. k) when it
/// samples it greedily with top_logprobs: the same logits row, by batch
/// invariance, as prompt position k - 1's.
std::vector<generated_token> next_token_reports(engine& e, const std::vector<token_id>& prompt) {
    std::vector<generation_request> reqs;
    for (std::size_t k = 1; k < prompt.size(); ++k) {
        generation_request r = greedy({prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(k)}, 1);
        r.sampling.logprobs = true;
        r.sampling.top_logprobs = static_cast<int>(top_n);
        reqs.push_back(std::move(r));
    }
    std::vector<generated_token> out;
    for (const outcome& o : run_all(e, std::move(reqs))) {
        REQUIRE(o.logprobs.size() == 1);
        out.push_back(o.logprobs[0]);
    }
    return out;
}

void check_prompt_logprobs(const outcome& o, const std::vector<token_id>& prompt,
                           const std::vector<generated_token>& reference) {
    REQUIRE(o.prompt_logprobs.size() == prompt.size() - 1);
    for (std::size_t i = 0; i < o.prompt_logprobs.size(); ++i) {
        INFO("prompt token " << i + 1);
        const generated_token& got = o.prompt_logprobs[i];
        CHECK(got.id == prompt[i + 1]);
        CHECK(got.logprob <= 0.0f);
        REQUIRE(got.top.size() == top_n);
        const generated_token& want = reference[i];
        for (std::size_t k = 0; k < top_n; ++k) {
            CHECK(got.top[k].token == want.top[k].token);
            CHECK(got.top[k].logprob == want.top[k].logprob); // bitwise: the same row
            if (got.top[k].token == got.id) CHECK(got.logprob == got.top[k].logprob);
        }
    }
}

} // namespace

TEST_CASE("prompt log-probabilities score each prompt token by the logits before it", "[engine][prompt_logprobs]") {
    // The prompt's tail is the model's own greedy continuation, so those
    // tokens are the top alternative of their row.
    auto e = make_engine(256, config(512, 64));
    std::vector<token_id> prompt = random_tokens(9, 512, 404);
    const outcome cont = run_all(*e, {greedy(prompt, 8)})[0];
    prompt.insert(prompt.end(), cont.tokens.begin(), cont.tokens.end());
    const std::vector<generated_token> reference = next_token_reports(*e, prompt);

    const outcome o = run_all(*e, {scoring(prompt, 2)})[0];
    CHECK(o.finish == finish_reason::length);
    CHECK(o.tokens.size() == 2);
    check_prompt_logprobs(o, prompt, reference);
    for (std::size_t i = 9; i < prompt.size(); ++i) CHECK(o.prompt_logprobs[i - 1].top[0].token == prompt[i]);

    SECTION("computed in chunks, beside other requests, after the prompt was cached") {
        auto chunked = make_engine(256, config(6, 4));
        run_all(*chunked, {greedy(prompt, 1)}); // the prompt's blocks are in the prefix cache now
        std::vector<generation_request> reqs;
        reqs.push_back(scoring(prompt, 2));
        for (int i = 0; i < 4; ++i) reqs.push_back(greedy(random_tokens(7, 512, 60 + i), 6));
        const std::vector<outcome> out = run_all(*chunked, std::move(reqs));
        check_prompt_logprobs(out[0], prompt, reference);
        CHECK(out[0].tokens == o.tokens);
    }
    SECTION("under preemption") {
        // Four prompts that differ in their first token: one request needs
        // 7 blocks, two at once 14.
        std::vector<std::vector<token_id>> prompts;
        std::vector<generation_request> reqs;
        for (token_id i = 0; i < 4; ++i) {
            std::vector<token_id> p = prompt;
            p[0] = (p[0] + 1 + i) % 512;
            prompts.push_back(p);
            reqs.push_back(scoring(p, 12));
        }
        auto tight = make_engine(12, config(512, 64));
        const std::vector<outcome> out = run_all(*tight, std::move(reqs));
        CHECK(tight->metrics().preemptions.load() > 0);
        for (std::size_t i = 0; i < out.size(); ++i) check_prompt_logprobs(out[i], prompts[i], next_token_reports(*e, prompts[i]));
    }
}

TEST_CASE("max_tokens 0 computes the prompt and finishes without a token", "[engine][prompt_logprobs]") {
    auto e = make_engine(64, config(512, 64));
    const std::vector<token_id> prompt = random_tokens(12, 512, 5);
    const outcome scored = run_all(*e, {scoring(prompt, 0)})[0];
    CHECK(scored.finish == finish_reason::length);
    CHECK(scored.tokens.empty());
    CHECK(scored.text.empty());
    CHECK(scored.prompt_logprobs.size() == prompt.size() - 1);

    const outcome plain = run_all(*e, {greedy(prompt, 0)})[0];
    CHECK(plain.finish == finish_reason::length);
    CHECK(plain.tokens.empty());
    CHECK(plain.prompt_logprobs.empty());
    // A one-token prompt has nothing to score.
    const outcome single = run_all(*e, {scoring({prompt[0]}, 0)})[0];
    CHECK(single.finish == finish_reason::length);
    CHECK(single.prompt_logprobs.empty());
    // The gauge is published by the engine loop after the finish.
    for (int i = 0; i < 200 && e->metrics().kv_blocks_used.load() != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(e->metrics().kv_blocks_used.load() == 0);
}
