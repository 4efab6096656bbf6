// Engine tests' shared pieces: a tiny random model on the CPU backend, an
// engine over it, and a way to run requests to the end.
#pragma once

#include "model_test_support.hpp"

#include <weft/serve/cpu_backend.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/engine.hpp>
#include <weft/sync_wait.hpp>
#include <weft/thread_pool.hpp>
#include <weft/when_all.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace weft::serve::test {

struct outcome {
    std::vector<token_id> tokens;
    std::vector<generated_token> prompt_logprobs;
    std::vector<generated_token> logprobs; ///< the generated tokens', as reported
    std::string text;
    std::optional<finish_reason> finish;
    std::string error;
    submit_status status = submit_status::accepted;
};

inline std::shared_ptr<const model> tiny_model() {
    static const auto m = random_model(small_config(512, 64, 2, 4, 2, 96), ggml_type::f32, 3);
    return m;
}

inline std::unique_ptr<cpu_backend> tiny_backend(std::size_t threads, std::size_t kv_blocks, std::size_t block_size = 4) {
    return std::make_unique<cpu_backend>(
        tiny_model(), cpu_backend_options{.threads = threads, .kv_blocks = kv_blocks, .kv_block_size = block_size,
                                           .split_step_us = 0}); // split even this model's small jobs
}

inline std::unique_ptr<engine> engine_over(std::unique_ptr<model_backend> backend, scheduler_config sc,
                                           std::size_t speculative_tokens = 0) {
    engine_options opts;
    opts.scheduler = sc;
    opts.speculative_tokens = speculative_tokens;
    return std::make_unique<engine>(std::move(backend), std::make_shared<const tokenizer>(demo_tokenizer(512)), opts);
}

inline std::unique_ptr<engine> make_engine(std::size_t kv_blocks, scheduler_config sc, std::size_t block_size = 4) {
    return engine_over(tiny_backend(2, kv_blocks, block_size), sc);
}

/// make_engine with speculative decoding: `k` draft tokens per step.
inline std::unique_ptr<engine> make_speculative_engine(std::size_t kv_blocks, scheduler_config sc, std::size_t k) {
    return engine_over(tiny_backend(2, kv_blocks, 4), sc, k);
}

inline generation_request greedy(std::vector<token_id> prompt, std::size_t max_tokens) {
    generation_request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    return r;
}

inline weft::task<outcome> run_request(engine& e, generation_request req, weft::thread_pool& pool) {
    outcome o;
    submit_result s = e.submit(std::move(req), pool);
    o.status = s.status;
    if (s.status != submit_status::accepted) co_return o;
    while (auto u = co_await s.stream->next()) {
        for (const generated_token& t : u->tokens) o.tokens.push_back(t.id);
        o.logprobs.insert(o.logprobs.end(), u->tokens.begin(), u->tokens.end());
        o.prompt_logprobs.insert(o.prompt_logprobs.end(), u->prompt_logprobs.begin(), u->prompt_logprobs.end());
        o.text += u->text;
        if (u->finish) {
            o.finish = u->finish;
            o.error = u->error;
        }
    }
    co_return o;
}

/// The executor the streams resume on. It must outlive every engine: the
/// engine thread may still be inside pool.post() when a reader finishes.
inline weft::thread_pool& test_pool() {
    static weft::thread_pool pool(2);
    return pool;
}

inline std::vector<outcome> run_all(engine& e, std::vector<generation_request> reqs) {
    weft::thread_pool& pool = test_pool();
    std::vector<weft::task<outcome>> tasks;
    for (auto& r : reqs) tasks.push_back(run_request(e, std::move(r), pool));
    return weft::sync_wait(weft::when_all(std::move(tasks)));
}

inline scheduler_config config(std::size_t budget, std::size_t running, std::size_t waiting = 1024) {
    scheduler_config sc;
    sc.max_batch_tokens = budget;
    sc.max_running = running;
    sc.max_waiting = waiting;
    sc.max_context = 512;
    return sc;
}


} // namespace weft::serve::test
