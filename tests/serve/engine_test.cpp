#include "engine_test_support.hpp"

#include <weft/serve/engine.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/tokenizer_stream_decoder.hpp>
#include <weft/sync_wait.hpp>
#include <weft/thread_pool.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

using namespace weft::serve;
using namespace weft::serve::test;
using namespace std::chrono_literals;


TEST_CASE("greedy output is the same alone, in a batch of 32, chunked and under preemption", "[engine]") {
    std::vector<std::vector<token_id>> prompts;
    for (std::size_t i = 0; i < 32; ++i) prompts.push_back(random_tokens(5 + 3 * i, 512, 50 + i));
    const std::size_t max_tokens = 12;

    // Alone, one request at a time, roomy cache and budget, nothing reused.
    std::vector<std::vector<token_id>> alone;
    {
        scheduler_config no_reuse = config(512, 64);
        no_reuse.prefix_caching = false;
        auto e = make_engine(256, no_reuse);
        for (const auto& p : prompts) {
            auto r = run_all(*e, {greedy(p, max_tokens)});
            REQUIRE(r[0].finish == finish_reason::length);
            REQUIRE(r[0].tokens.size() == max_tokens);
            alone.push_back(r[0].tokens);
        }
    }
    auto check_all = [&](engine& e) {
        std::vector<generation_request> reqs;
        for (const auto& p : prompts) reqs.push_back(greedy(p, max_tokens));
        const auto results = run_all(e, std::move(reqs));
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            INFO("request " << i);
            CHECK(results[i].finish == finish_reason::length);
            CHECK(results[i].tokens == alone[i]);
        }
    };
    SECTION("all 32 at once in shared steps") {
        auto e = make_engine(256, config(512, 64));
        check_all(*e);
    }
    SECTION("prompts chunked by a small token budget") {
        auto e = make_engine(256, config(40, 8));
        check_all(*e);
    }
    SECTION("a KV cache small enough to force preemption") {
        auto e = make_engine(48, config(512, 64));
        check_all(*e);
        CHECK(e->metrics().preemptions.load() > 0);
    }
}

/// A backend that forwards everything to another one; the test backends
/// below change only step().
class wrapping_backend : public model_backend {
public:
    explicit wrapping_backend(std::unique_ptr<model_backend> inner) : m_inner(std::move(inner)) {}
    const model_config& config() const noexcept override { return m_inner->config(); }
    std::size_t num_kv_blocks() const noexcept override { return m_inner->num_kv_blocks(); }
    std::size_t kv_block_size() const noexcept override { return m_inner->kv_block_size(); }
    std::string describe() const override { return "wrapped(" + m_inner->describe() + ")"; }

protected:
    model_backend& inner() noexcept { return *m_inner; }

private:
    std::unique_ptr<model_backend> m_inner;
};

/// A backend that answers `argmax_only` steps the way a GPU does: the
/// token ids alone, no logits. It counts the steps of each kind.
class argmax_backend final : public wrapping_backend {
public:
    using wrapping_backend::wrapping_backend;
    weft::task<void> step(const batch& b, step_output& out) override {
        co_await inner().step(b, out);
        if (!b.argmax_only) {
            ++full_steps;
            co_return;
        }
        ++argmax_steps;
        out.argmax.clear();
        for (std::size_t r = 0; r < out.rows(); ++r) {
            const std::span<float> row = out.row(r);
            out.argmax.push_back(static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin()));
        }
        out.logits.clear();
    }
    std::atomic<int> argmax_steps{0};
    std::atomic<int> full_steps{0};
};

TEST_CASE("greedy output is bitwise the same when a prompt's prefix comes from the prefix cache", "[engine]") {
    // 16 prompts sharing a 23-token "system prompt" (5 full blocks of 4).
    const std::vector<token_id> shared = random_tokens(23, 512, 7);
    std::vector<std::vector<token_id>> prompts;
    for (std::size_t i = 0; i < 16; ++i) {
        std::vector<token_id> p = shared;
        const std::vector<token_id> own = random_tokens(1 + i % 6, 512, 300 + i);
        p.insert(p.end(), own.begin(), own.end());
        prompts.push_back(std::move(p));
    }
    const std::size_t max_tokens = 10;
    std::vector<std::vector<token_id>> reference;
    {
        scheduler_config no_reuse = config(512, 64);
        no_reuse.prefix_caching = false;
        auto e = make_engine(256, no_reuse);
        for (const auto& p : prompts) reference.push_back(run_all(*e, {greedy(p, max_tokens)})[0].tokens);
        CHECK(e->metrics().prefix_cache_hits.load() == 0);
    }
    auto e = make_engine(256, config(512, 64));
    // The first request computes the prefix; the others find it cached.
    CHECK(run_all(*e, {greedy(prompts[0], max_tokens)})[0].tokens == reference[0]);
    std::vector<generation_request> reqs;
    for (const auto& p : prompts) reqs.push_back(greedy(p, max_tokens));
    const auto results = run_all(*e, std::move(reqs));
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        INFO("request " << i);
        CHECK(results[i].tokens == reference[i]);
    }
    // Each of the 16 found at least the 5 shared blocks. (The gauges are
    // published when the engine goes idle, just after the streams end.)
    for (int i = 0; i < 200 && e->metrics().kv_blocks_used.load() != 0; ++i) std::this_thread::sleep_for(5ms);
    CHECK(e->metrics().prefix_cache_hits.load() >= 16 * 20);
    CHECK(e->metrics().kv_blocks_used.load() == 0);
    CHECK(e->metrics().kv_blocks_cached.load() > 0);
}

TEST_CASE("requests that share a prompt and arrive together prefill it once", "[engine]") {
    auto e = make_engine(256, config(512, 64));
    const std::vector<token_id> prompt = random_tokens(30, 512, 21);
    std::vector<generation_request> reqs;
    for (int i = 0; i < 4; ++i) reqs.push_back(greedy(prompt, 4));
    const auto results = run_all(*e, std::move(reqs));
    for (const auto& r : results) CHECK(r.tokens == results[0].tokens);
    // One computes the prompt; each other finds its 7 full blocks of 4
    // cached (the block holding the last prompt token is computed).
    for (int i = 0; i < 200 && e->metrics().prefix_cache_hits.load() < 3 * 28; ++i) std::this_thread::sleep_for(5ms);
    CHECK(e->metrics().prefix_cache_hits.load() == 3 * 28);
}

TEST_CASE("a stop token id ends generation, and min_tokens holds it back until then", "[engine]") {
    auto e = make_engine(256, config(512, 64));
    const std::vector<token_id> prompt = random_tokens(9, 512, 31);
    const std::vector<token_id> free_run = run_all(*e, {greedy(prompt, 12)})[0].tokens;
    REQUIRE(free_run.size() == 12);

    auto stopping = greedy(prompt, 12);
    stopping.stop_token_ids = {free_run[3]};
    const outcome stopped = run_all(*e, {stopping})[0];
    CHECK(stopped.finish == finish_reason::stop);
    const auto first = std::find(free_run.begin(), free_run.end(), free_run[3]);
    CHECK(stopped.tokens == std::vector<token_id>(free_run.begin(), first + 1));

    auto held = greedy(prompt, 12);
    held.stop_token_ids = {free_run[0]};
    held.sampling.min_tokens = 5;
    const outcome r = run_all(*e, {held})[0];
    REQUIRE(r.tokens.size() >= 5);
    for (std::size_t i = 0; i < 5; ++i) CHECK(r.tokens[i] != free_run[0]);
    CHECK(r.tokens.front() != free_run.front()); // the greedy pick was held back
}

TEST_CASE("JSON mode gives a JSON object, or a prefix of one when max_tokens cuts it", "[engine][json]") {
    auto e = make_engine(512, config(512, 64));
    std::vector<generation_request> reqs;
    for (int i = 0; i < 24; ++i) {
        generation_request r = greedy(random_tokens(6, 512, 900 + i), 400);
        r.format = output_format::json_object;
        r.sampling.temperature = i % 3 == 0 ? 0.0f : 1.0f;
        r.sampling.seed = static_cast<std::uint64_t>(i);
        r.ignore_eos = false;
        reqs.push_back(std::move(r));
    }
    // Free-text greedy requests in the same steps keep their own output.
    const std::vector<token_id> plain_prompt = random_tokens(6, 512, 77);
    const std::vector<token_id> plain_alone = run_all(*e, {greedy(plain_prompt, 40)})[0].tokens;
    reqs.push_back(greedy(plain_prompt, 40));
    const std::vector<outcome> out = run_all(*e, std::move(reqs));
    std::size_t complete = 0;
    for (std::size_t i = 0; i + 1 < out.size(); ++i) {
        const outcome& o = out[i];
        INFO("request " << i << ": " << o.text);
        REQUIRE(o.finish.has_value());
        json_matcher m;
        REQUIRE(m.feed(o.text));
        if (*o.finish == finish_reason::stop) {
            ++complete;
            CHECK(m.complete());
            CHECK(nlohmann::json::parse(o.text).is_object());
        } else {
            CHECK(*o.finish == finish_reason::length);
            CHECK(o.tokens.size() == 400);
            CHECK_FALSE(m.complete());
        }
    }
    CHECK(complete > 0);
    CHECK(out.back().tokens == plain_alone);
}

TEST_CASE("plain greedy steps take the backend's argmax and give the same tokens", "[engine]") {
    std::vector<generation_request> reqs;
    for (std::size_t i = 0; i < 6; ++i) reqs.push_back(greedy(random_tokens(6 + i, 512, 80 + i), 10));
    auto copy = reqs;
    const auto expected = run_all(*make_engine(128, config(256, 16)), std::move(copy));

    auto wrapped = std::make_unique<argmax_backend>(tiny_backend(2, 128));
    argmax_backend& backend = *wrapped;
    const auto engine_ptr = engine_over(std::move(wrapped), config(256, 16));
    engine& e = *engine_ptr;

    SECTION("every request plain greedy: every step is argmax only") {
        const auto got = run_all(e, std::move(reqs));
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("request " << i);
            CHECK(got[i].finish == finish_reason::length);
            CHECK(got[i].tokens == expected[i].tokens);
        }
        CHECK(backend.argmax_steps.load() > 0);
        CHECK(backend.full_steps.load() == 0);
    }
    SECTION("a request that reports logprobs needs the logits of its steps") {
        reqs[0].sampling.logprobs = true;
        const auto got = run_all(e, std::move(reqs));
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i].tokens == expected[i].tokens);
        CHECK(backend.full_steps.load() > 0);
    }
}

/// Records, as each step starts, how many sampled tokens the engine has
/// delivered (the TTFT and inter-token observations are made on delivery).
class recording_backend final : public wrapping_backend {
public:
    using wrapping_backend::wrapping_backend;
    weft::task<void> step(const batch& b, step_output& out) override {
        delivered_at_start.push_back(metrics->time_to_first_token.count() + metrics->inter_token_latency.count());
        co_await inner().step(b, out);
    }
    const serve_metrics* metrics = nullptr;
    std::vector<std::uint64_t> delivered_at_start; // written by the engine thread only
};

TEST_CASE("the next step starts before the previous step's tokens are delivered", "[engine]") {
    auto wrapped = std::make_unique<recording_backend>(tiny_backend(1, 64));
    recording_backend& backend = *wrapped;
    const auto engine_ptr = engine_over(std::move(wrapped), config(256, 4));
    engine& e = *engine_ptr;
    backend.metrics = &e.metrics();
    // One request, its prompt in one step: step k samples token k.
    const auto r = run_all(e, {greedy(random_tokens(6, 512, 9), 12)})[0];
    REQUIRE(r.tokens.size() == 12);
    e.shutdown();
    // Step k (k >= 2) starts with tokens 1 .. k - 2 delivered: token k - 1 is
    // delivered while step k computes, not between the two steps.
    REQUIRE(backend.delivered_at_start.size() == 12);
    for (std::size_t k = 1; k <= 12; ++k) {
        INFO("step " << k);
        CHECK(backend.delivered_at_start[k - 1] == (k >= 2 ? k - 2 : 0));
    }
}

TEST_CASE("the stream ends with the text of the tokens and usage counts", "[engine]") {
    auto e = make_engine(64, config(256, 16));
    auto tok = demo_tokenizer(512);
    const tokenizer t(tok);
    const auto r = run_all(*e, {greedy(t.encode("hello there", true), 10)});
    REQUIRE(r[0].finish == finish_reason::length);
    // The random model emits byte tokens that need not form valid UTF-8;
    // the stream carries them as a streaming decoder renders them.
    token_stream_decoder d(t);
    std::string expected;
    for (token_id id : r[0].tokens) expected += d.push(id);
    expected += d.finish();
    CHECK(r[0].text == expected);
}

TEST_CASE("every forward step is counted with its tokens and the backend's time on it", "[engine][metrics]") {
    auto e = make_engine(64, config(256, 16));
    auto tok = demo_tokenizer(512);
    const tokenizer t(tok);
    const std::vector<token_id> prompt = t.encode("count the steps", true);
    const auto r = run_all(*e, {greedy(prompt, 6)});
    REQUIRE(r[0].tokens.size() == 6);
    const serve_metrics& m = e->metrics();
    const std::uint64_t steps = m.steps.load();
    CHECK(steps >= 6);
    CHECK(m.step_tokens.count() == steps);
    CHECK(m.step_compute.count() == steps);
    // The prompt, then every generated token but the last goes back in.
    CHECK(m.step_tokens.sum() == static_cast<double>(prompt.size() + 5));
    CHECK(m.step_compute.sum() > 0);
    const std::string text = m.render("x");
    CHECK_THAT(text, Catch::Contains("weft_engine_step_tokens_count " + std::to_string(steps) + "\n"));
    CHECK_THAT(text, Catch::Contains("# TYPE weft_engine_step_compute_seconds histogram"));
}

/// Steps through the inner backend, then fails every step after the first
/// `good` ones.
class failing_backend final : public wrapping_backend {
public:
    failing_backend(std::unique_ptr<model_backend> inner, std::size_t good)
        : wrapping_backend(std::move(inner)), m_good(good) {}
    weft::task<void> step(const batch& b, step_output& out) override {
        if (m_steps++ >= m_good) throw std::runtime_error("the device fell over");
        co_await inner().step(b, out);
    }

private:
    std::size_t m_good;
    std::size_t m_steps = 0; // the engine's thread only
};

TEST_CASE("a failed step counts as a step but records no backend time", "[engine][metrics]") {
    const auto e = engine_over(std::make_unique<failing_backend>(tiny_backend(1, 64), 3), config(256, 16));
    auto tok = demo_tokenizer(512);
    const tokenizer t(tok);
    const auto r = run_all(*e, {greedy(t.encode("fail later", true), 8)});
    CHECK(r[0].finish == finish_reason::error);
    CHECK_THAT(r[0].error, Catch::Contains("the device fell over"));
    const serve_metrics& m = e->metrics();
    CHECK(m.steps.load() == 4);
    CHECK(m.step_tokens.count() == 4);
    CHECK(m.step_compute.count() == 3); // not the third step's time again
}

TEST_CASE("a stop string ends generation and is not part of the text", "[engine]") {
    auto e = make_engine(64, config(256, 16));
    const tokenizer t(demo_tokenizer(512));
    const auto prompt = t.encode("stop strings", true);
    const auto full = run_all(*e, {greedy(prompt, 20)})[0];
    REQUIRE(full.text.size() >= 4);
    // Stop on a piece from the middle of the known continuation.
    const std::string stop = full.text.substr(full.text.size() / 2, 2);
    auto req = greedy(prompt, 20);
    req.stop = {stop};
    const auto stopped = run_all(*e, {std::move(req)})[0];
    CHECK(stopped.finish == finish_reason::stop);
    CHECK(stopped.text == full.text.substr(0, full.text.find(stop)));
}

TEST_CASE("a full waiting queue refuses at once and the engine keeps serving", "[engine]") {
    auto e = make_engine(64, config(64, 1, 2));
    weft::thread_pool& pool = test_pool();
    std::vector<weft::task<outcome>> tasks;
    for (int i = 0; i < 8; ++i) tasks.push_back(run_request(*e, greedy(random_tokens(4, 512, i), 30), pool));
    const auto results = weft::sync_wait(weft::when_all(std::move(tasks)));
    std::size_t refused = 0, served = 0;
    for (const outcome& o : results) {
        if (o.status == submit_status::queue_full) ++refused;
        if (o.finish == finish_reason::length) ++served;
    }
    CHECK(refused > 0);
    CHECK(served > 0);
    CHECK(refused + served == 8);
    CHECK(e->metrics().rejected.load() == refused);
    // Afterwards a request is served normally.
    CHECK(run_all(*e, {greedy({1, 2, 3}, 4)})[0].finish == finish_reason::length);
}

TEST_CASE("a prompt longer than the context is refused with the numbers", "[engine]") {
    auto e = make_engine(64, config(64, 4));
    weft::thread_pool& pool = test_pool();
    auto s = e->submit(greedy(random_tokens(500, 512, 1), 100), pool);
    CHECK(s.status == submit_status::too_long);
    CHECK_THAT(s.message, Catch::Contains("500") && Catch::Contains("100"));
    CHECK(e->submit(greedy({}, 4), pool).status == submit_status::invalid);
    CHECK(e->submit(greedy({1, 9999}, 4), pool).status == submit_status::invalid);
}

/// Delays every step: makes "still running after N ms" independent of how
/// fast the machine and the kernels are.
class slow_backend final : public wrapping_backend {
public:
    slow_backend(std::unique_ptr<model_backend> inner, std::chrono::milliseconds delay)
        : wrapping_backend(std::move(inner)), m_delay(delay) {}
    weft::task<void> step(const batch& b, step_output& out) override {
        std::this_thread::sleep_for(m_delay);
        co_await inner().step(b, out);
    }

private:
    std::chrono::milliseconds m_delay;
};

/// An engine whose steps take at least a millisecond each.
std::unique_ptr<engine> make_slow_engine(std::size_t kv_blocks, scheduler_config sc) {
    return engine_over(std::make_unique<slow_backend>(tiny_backend(1, kv_blocks), 1ms), sc);
}

TEST_CASE("cancelling a stream frees its KV blocks within a step", "[engine]") {
    auto e = make_slow_engine(160, config(64, 4));
    weft::thread_pool& pool = test_pool();
    std::stop_source stop;
    auto consumer = [&]() -> weft::task<std::size_t> {
        submit_result s = e->submit(greedy(random_tokens(20, 512, 4), 400), pool);
        std::size_t updates = 0;
        try {
            while (auto u = co_await s.stream->next()) {
                if (++updates == 3) stop.request_stop();
            }
        } catch (const weft::operation_cancelled&) {
        }
        co_return updates;
    };
    const std::size_t updates = weft::sync_wait(consumer(), stop.get_token());
    CHECK(updates >= 3);
    // The abort reaches the engine thread and frees the blocks.
    for (int i = 0; i < 200 && e->metrics().kv_blocks_used.load() != 0; ++i) std::this_thread::sleep_for(5ms);
    CHECK(e->metrics().kv_blocks_used.load() == 0);
    CHECK(e->metrics().finished[static_cast<std::size_t>(finish_reason::aborted)].load() == 1);
}

TEST_CASE("a request past its deadline finishes with timeout", "[engine]") {
    auto e = make_slow_engine(160, config(64, 4));
    // 400 steps take at least 400 ms; the deadline is 20 ms away.
    auto req = greedy(random_tokens(8, 512, 5), 400);
    req.deadline = std::chrono::steady_clock::now() + 20ms;
    const auto r = run_all(*e, {std::move(req)})[0];
    CHECK(r.finish == finish_reason::timeout);
    CHECK(r.tokens.size() < 400);
}

TEST_CASE("a request times out at its own deadline after an earlier deadline's request has finished", "[engine]") {
    auto e = make_slow_engine(160, config(64, 4));
    const auto now = std::chrono::steady_clock::now();
    auto quick = greedy(random_tokens(8, 512, 7), 1);
    quick.deadline = now + 200ms; // the earliest deadline, of a request long gone when it passes
    auto slow = greedy(random_tokens(8, 512, 8), 400); // 400 steps: at least 400 ms
    slow.deadline = now + 300ms;
    const auto r = run_all(*e, {std::move(quick), std::move(slow)});
    CHECK(r[0].finish == finish_reason::length);
    CHECK(r[1].finish == finish_reason::timeout);
    CHECK(r[1].tokens.size() < 400);
}

TEST_CASE("shutdown aborts what is still running after its deadline", "[engine]") {
    auto e = make_slow_engine(160, config(64, 4));
    weft::thread_pool& pool = test_pool();
    auto s = e->submit(greedy(random_tokens(8, 512, 6), 400), pool);
    REQUIRE(s.status == submit_status::accepted);
    e->shutdown(std::chrono::steady_clock::now() + 10ms);
    CHECK(e->submit(greedy({1}, 1), pool).status == submit_status::shutting_down);
    auto drain = [&]() -> weft::task<std::optional<finish_reason>> {
        std::optional<finish_reason> f;
        while (auto u = co_await s.stream->next()) {
            if (u->finish) f = u->finish;
        }
        co_return f;
    };
    CHECK(weft::sync_wait(drain()) == finish_reason::aborted);
}

TEST_CASE("a request submitted just before shutdown still gets its final update", "[engine][stress]") {
    // The submit can land after the engine's intake and before its stop
    // check; the engine must take it in rather than stop without it.
    weft::thread_pool& pool = test_pool();
    for (int i = 0; i < 200; ++i) {
        auto e = make_engine(64, config(64, 4));
        auto s = e->submit(greedy(random_tokens(4, 512, 9), 2), pool);
        REQUIRE(s.status == submit_status::accepted);
        e->shutdown(std::chrono::steady_clock::now());
        auto drain = [&]() -> weft::task<std::optional<finish_reason>> {
            std::optional<finish_reason> f;
            while (auto u = co_await s.stream->next()) {
                if (u->finish) f = u->finish;
            }
            co_return f;
        };
        const std::optional<finish_reason> f = weft::sync_wait(drain());
        REQUIRE(f.has_value());
        CHECK((*f == finish_reason::aborted || *f == finish_reason::length));
    }
}

