#include <weft/serve/sampler.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <vector>

using namespace weft::serve;

namespace {

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
    const double max = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p;
    double sum = 0.0;
    for (const float l : logits) {
        p.push_back(std::exp((l - max) / temperature));
        sum += p.back();
    }
    for (double& x : p) {
        x /= sum;
    }
    return p;
}

// Token counts over `draws` samples of the same logits.
std::vector<int> histogram(sampler& s, const std::vector<float>& logits, int draws) {
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < draws; ++i) {
        std::vector<float> row = logits;
        ++counts[static_cast<std::size_t>(s.sample(row, {}, {}).token)];
    }
    return counts;
}

double chi_square(const std::vector<int>& observed, const std::vector<double>& p, int draws) {
    double chi = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const double expected = p[i] * draws;
        chi += (observed[i] - expected) * (observed[i] - expected) / expected;
    }
    return chi;
}

std::vector<float> log_probs(const std::vector<double>& p) {
    std::vector<float> l;
    for (const double x : p) {
        l.push_back(static_cast<float>(std::log(x)));
    }
    return l;
}

sampling_params greedy() {
    sampling_params p;
    p.temperature = 0.0f;
    return p;
}

} // namespace

TEST_CASE("sampler at temperature zero picks the argmax, lowest id on ties", "[sampler]") {
    sampler s(greedy(), 1);
    std::vector<float> logits{0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    CHECK(s.sample(logits, {}, {}).token == 1);
    std::vector<float> negative{-5.0f, -2.0f, -3.0f};
    CHECK(s.sample(negative, {}, {}).token == 1);
    std::vector<float> one{7.0f};
    CHECK(s.sample(one, {}, {}).token == 0);
}

TEST_CASE("sampler holds back the listed tokens until min_tokens were generated", "[sampler]") {
    sampling_params p = greedy();
    p.min_tokens = 2;
    p.held_back = {1, 3};
    sampler s(p, 1);
    const std::vector<float> base{0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    const std::vector<token_id> one{7}, two{7, 8};
    std::vector<float> logits = base;
    CHECK(s.sample(logits, {}, {}).token == 4);
    logits = base;
    CHECK(s.sample(logits, {}, one).token == 4);
    logits = base;
    CHECK(s.sample(logits, {}, two).token == 1); // two generated: free again
    p.held_back = {9};
    sampler bad(p, 1);
    logits = base;
    CHECK_THROWS_WITH(bad.sample(logits, {}, {}), Catch::Contains("held_back token 9 is outside the vocabulary"));
}

TEST_CASE("sampler gives the same tokens for the same seed", "[sampler]") {
    const std::vector<float> logits{1.0f, 1.2f, 0.8f, 1.1f, 0.9f, 1.0f, 0.7f, 1.3f};
    sampling_params p;
    p.seed = 1234;
    sampler a(p, 1), b(p, 2); // the explicit seed wins over the fallback
    sampling_params unseeded;
    sampler c(unseeded, 1234), d(unseeded, 99);
    std::vector<token_id> ta, tb, tc, td;
    for (int i = 0; i < 200; ++i) {
        std::vector<float> r1 = logits, r2 = logits, r3 = logits, r4 = logits;
        ta.push_back(a.sample(r1, {}, {}).token);
        tb.push_back(b.sample(r2, {}, {}).token);
        tc.push_back(c.sample(r3, {}, {}).token);
        td.push_back(d.sample(r4, {}, {}).token);
    }
    CHECK(ta == tb);
    CHECK(ta == tc); // seed 1234 either way
    CHECK(ta != td);
}

TEST_CASE("sampler draws match softmax of logits over temperature", "[sampler]") {
    const std::vector<float> logits{1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 1.5f, 2.5f};
    constexpr int draws = 40000;
    // Chi-square with 7 degrees of freedom: 24.3 is the 0.1% critical value.
    for (const float t : {1.0f, 0.7f, 2.0f}) {
        sampling_params p;
        p.temperature = t;
        p.seed = 42;
        sampler s(p, 0);
        const auto counts = histogram(s, logits, draws);
        INFO("temperature " << t);
        CHECK(chi_square(counts, softmax(logits, t), draws) < 24.3);
    }
}

TEST_CASE("sampler with top_k 1 equals greedy", "[sampler]") {
    sampling_params p;
    p.top_k = 1;
    p.temperature = 1.5f;
    sampler s(p, 5), g(greedy(), 5);
    std::uint32_t x = 17;
    for (int i = 0; i < 50; ++i) {
        std::vector<float> logits(100);
        for (float& l : logits) {
            x = x * 1664525u + 1013904223u;
            l = static_cast<float>(x >> 8) / static_cast<float>(1 << 24) * 10.0f;
        }
        std::vector<float> copy = logits;
        CHECK(s.sample(logits, {}, {}).token == g.sample(copy, {}, {}).token);
    }
}

TEST_CASE("sampler top_k keeps the k most likely tokens in proportion", "[sampler]") {
    const std::vector<double> p{0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
    sampling_params params;
    params.top_k = 3;
    params.seed = 3;
    sampler s(params, 0);
    constexpr int draws = 20000;
    const auto counts = histogram(s, log_probs(p), draws);
    CHECK(counts[0] == 0);
    CHECK(counts[2] == 0);
    CHECK(counts[5] == 0);
    // Among {1, 3, 4}: 0.4, 0.333, 0.267; 2 degrees of freedom, 13.8 at 0.1%.
    const std::vector<int> kept{counts[1], counts[3], counts[4]};
    CHECK(chi_square(kept, {0.3 / 0.75, 0.25 / 0.75, 0.2 / 0.75}, draws) < 13.8);
}

TEST_CASE("sampler top_p keeps the smallest set reaching p", "[sampler]") {
    const std::vector<double> p{0.15, 0.5, 0.05, 0.3};
    SECTION("two tokens reach 0.75") {
        sampling_params params;
        params.top_p = 0.75f;
        params.seed = 11;
        sampler s(params, 0);
        const auto counts = histogram(s, log_probs(p), 10000);
        CHECK(counts[0] == 0);
        CHECK(counts[2] == 0);
        CHECK(counts[1] > 0);
        CHECK(counts[3] > 0);
        CHECK(counts[1] + counts[3] == 10000);
        // 0.5 / 0.8 of the draws go to token 1.
        CHECK(std::abs(counts[1] / 10000.0 - 0.625) < 0.03);
    }
    SECTION("the most likely token alone reaches 0.4") {
        sampling_params params;
        params.top_p = 0.4f;
        sampler s(params, 0);
        CHECK(histogram(s, log_probs(p), 500)[1] == 500);
    }
    SECTION("over a flat vocabulary the cut falls after the lowest ids") {
        // 1000 equal tokens: the ordering breaks ties towards lower ids, and
        // the set spans far more than the first sorted batch.
        sampling_params params;
        params.top_p = 0.5f;
        params.seed = 8;
        sampler s(params, 0);
        const auto counts = histogram(s, std::vector<float>(1000, 0.25f), 4000);
        CHECK(std::all_of(counts.begin() + 500, counts.end(), [](int c) { return c == 0; }));
        CHECK(std::count_if(counts.begin(), counts.begin() + 500, [](int c) { return c > 0; }) > 450);
    }
    SECTION("after top_k the mass is renormalized") {
        sampling_params params;
        params.top_k = 2;     // keeps 0.5 and 0.3: 0.625 and 0.375 of the rest
        params.top_p = 0.6f;  // 0.625 alone reaches it
        sampler s(params, 0);
        CHECK(histogram(s, log_probs(p), 500)[1] == 500);
    }
}

TEST_CASE("sampler min_p drops tokens below a fraction of the best one", "[sampler]") {
    const std::vector<double> p{0.5, 0.3, 0.15, 0.05};
    sampling_params params;
    params.min_p = 0.2f; // keeps probabilities >= 0.1
    params.seed = 4;
    sampler s(params, 0);
    auto counts = histogram(s, log_probs(p), 10000);
    CHECK(counts[3] == 0);
    CHECK(counts[2] > 0);
    params.min_p = 0.5f; // keeps >= 0.25
    sampler s2(params, 0);
    counts = histogram(s2, log_probs(p), 10000);
    CHECK(counts[2] == 0);
    CHECK(counts[3] == 0);
    CHECK(counts[0] > counts[1]);
    CHECK(counts[1] > 0);
}

TEST_CASE("sampler applies bias, repetition, frequency and presence penalties exactly", "[sampler]") {
    sampling_params params = greedy();
    params.logit_bias = {{2, 1.0f}};
    params.repetition_penalty = 2.0f;
    params.frequency_penalty = 0.5f;
    params.presence_penalty = 0.25f;
    sampler s(params, 0);
    std::vector<float> logits{2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
    const std::vector<token_id> prompt{0, 1, 0};
    const std::vector<token_id> generated{1, 3, 3};
    const auto r = s.sample(logits, prompt, generated);
    // bias: l2 = 1.5; repetition over {0, 1, 3}: 2 -> 1, -1 -> -2, 3 -> 1.5;
    // token 1 seen once: -2 - 0.5 - 0.25; token 3 twice: 1.5 - 1.0 - 0.25.
    CHECK(logits == std::vector<float>{1.0f, -2.75f, 1.5f, 0.25f, -2.0f});
    CHECK(r.token == 2);
}

TEST_CASE("sampler repetition penalty applies once per distinct token", "[sampler]") {
    sampling_params params = greedy();
    params.repetition_penalty = 1.5f; // once per distinct token, however often it occurs
    sampler s(params, 0);
    std::vector<float> logits{3.0f, -3.0f, 1.0f};
    const std::vector<token_id> prompt{0, 0, 0, 1, 1};
    s.sample(logits, prompt, {});
    CHECK(logits == std::vector<float>{2.0f, -4.5f, 1.0f});
}

TEST_CASE("sampler logit bias of -100 bans a token", "[sampler]") {
    sampling_params params;
    params.logit_bias = {{2, -100.0f}};
    params.seed = 9;
    sampler s(params, 0);
    const std::vector<float> logits{0.0f, 0.0f, 50.0f, 0.0f};
    const auto counts = histogram(s, logits, 2000);
    CHECK(counts[2] == 0);
    CHECK(counts[0] > 0);

    sampling_params g = greedy();
    g.logit_bias = {{2, -100.0f}, {1, 0.5f}};
    g.logprobs = true;
    sampler sg(g, 0);
    std::vector<float> row = logits;
    const auto r = sg.sample(row, {}, {});
    CHECK(r.token == 1);
    CHECK(row[2] == -std::numeric_limits<float>::infinity());
}

TEST_CASE("sampler logprobs equal log_softmax and top_logprobs are sorted", "[sampler]") {
    sampling_params params;
    params.logprobs = true;
    params.top_logprobs = 3;
    params.temperature = 0.5f; // logprobs ignore temperature
    params.seed = 1;
    sampler s(params, 0);
    const std::vector<float> logits{1.0f, 4.0f, 2.0f, 4.0f, -1.0f, 3.5f};
    const auto p = softmax(logits);
    for (int i = 0; i < 20; ++i) {
        std::vector<float> row = logits;
        const auto r = s.sample(row, {}, {});
        CHECK(r.logprob == Approx(std::log(p[static_cast<std::size_t>(r.token)])).margin(1e-5));
        REQUIRE(r.top.size() == 3);
        CHECK(r.top[0].token == 1); // tie with 3: lower id first
        CHECK(r.top[1].token == 3);
        CHECK(r.top[2].token == 5);
        for (const auto& t : r.top) {
            CHECK(t.logprob == Approx(std::log(p[static_cast<std::size_t>(t.token)])).margin(1e-5));
        }
        CHECK(r.top[0].logprob >= r.top[1].logprob);
        CHECK(r.top[1].logprob >= r.top[2].logprob);
    }
}

TEST_CASE("sampler reports no more top logprobs than the vocabulary", "[sampler]") {
    sampling_params params = greedy();
    params.top_logprobs = 5;
    sampler s(params, 0);
    std::vector<float> logits{0.0f, 1.0f};
    const auto r = s.sample(logits, {}, {});
    REQUIRE(r.top.size() == 2);
    CHECK(r.top[0].token == 1);
    CHECK(r.logprob == Approx(std::log(std::exp(1.0) / (1.0 + std::exp(1.0)))));
}

TEST_CASE("sampler handles a 150k vocabulary with a small top_k", "[sampler]") {
    sampling_params params;
    params.top_k = 40;
    params.top_p = 0.9f;
    params.seed = 77;
    sampler s(params, 0);
    std::vector<float> logits(150000);
    std::uint32_t x = 3;
    for (float& l : logits) {
        x = x * 1664525u + 1013904223u;
        l = static_cast<float>(x >> 8) / static_cast<float>(1 << 24) * 20.0f;
    }
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + 39, sorted.end(), std::greater<>());
    const float fortieth = sorted[39];
    for (int i = 0; i < 10; ++i) {
        std::vector<float> row = logits;
        const auto r = s.sample(row, {}, {});
        CHECK(logits[static_cast<std::size_t>(r.token)] >= fortieth);
    }
}

TEST_CASE("sampler rejects bad parameters and bad input", "[sampler]") {
    const auto make = [](auto change) {
        sampling_params p;
        change(p);
        return sampler(p, 0);
    };
    CHECK_THROWS_AS(make([](auto& p) { p.temperature = -1.0f; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.temperature = std::numeric_limits<float>::quiet_NaN(); }),
                    std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.top_k = -2; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.top_p = 0.0f; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.top_p = 1.5f; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.min_p = -0.1f; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.repetition_penalty = 0.0f; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](auto& p) { p.top_logprobs = -1; }), std::invalid_argument);

    sampler s(sampling_params{}, 0);
    std::vector<float> empty;
    CHECK_THROWS_AS(s.sample(empty, {}, {}), std::invalid_argument);
    std::vector<float> nan{0.0f, std::numeric_limits<float>::quiet_NaN()};
    CHECK_THROWS_AS(s.sample(nan, {}, {}), std::invalid_argument);

    sampling_params banned;
    banned.logit_bias = {{0, -100.0f}, {1, -100.0f}};
    sampler sb(banned, 0);
    std::vector<float> two{1.0f, 2.0f};
    CHECK_THROWS_AS(sb.sample(two, {}, {}), std::invalid_argument);

    sampling_params biased;
    biased.logit_bias = {{5, 1.0f}};
    sampler sbias(biased, 0);
    std::vector<float> three{1.0f, 2.0f, 3.0f};
    CHECK_THROWS_AS(sbias.sample(three, {}, {}), std::out_of_range);

    sampling_params penalized;
    penalized.frequency_penalty = 1.0f;
    sampler sp(penalized, 0);
    const std::vector<token_id> bad{1, 3};
    CHECK_THROWS_AS(sp.sample(three, {}, bad), std::out_of_range);
}
