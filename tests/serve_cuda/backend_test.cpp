// The CUDA backend as a whole: logits against the float64 reference and the
// CPU backend, greedy continuations, CUDA graphs against eager execution,
// batch validation, and awaiting a step.
#include "model_test_support.hpp"

#include <weft/serve/cuda_backend.hpp>
#include <weft/sync_wait.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <thread>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

const char* name(cuda_precision p) { return p == cuda_precision::bf16 ? "bf16" : "f32"; }

/// Tolerance of the whole model's logits (max |diff| / max |ref|): BF16
/// weights and activations round to 8 significant bits at every GEMM input;
/// F32 runs the same arithmetic as the CPU up to summation order.
double tolerance(cuda_precision p) { return p == cuda_precision::bf16 ? 1e-2 : 1e-4; }

template <class Backend>
void run_step(Backend& backend, const batch& b, step_output& out) {
    backend.step_sync(b, out);
}

/// Runs `seq` through `backend` one chunk of `chunk` tokens at a time (0:
/// the whole prompt at once); logits of every step when `every_token`, else
/// of the last.
template <class Backend>
std::vector<std::vector<float>> run_sequence(Backend& backend, test_sequence seq, std::size_t chunk, bool every_token) {
    std::vector<std::vector<float>> logits;
    while (seq.computed < seq.tokens.size()) {
        batch b;
        b.chunks.push_back(seq.next_chunk(chunk, true));
        const bool last = seq.computed == seq.tokens.size();
        step_output out;
        run_step(backend, b, out);
        if (every_token || last) logits.emplace_back(out.row(0).begin(), out.row(0).end());
    }
    return logits;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    return test::relative_error(a, std::vector<double>(b.begin(), b.end()));
}

token_id host_argmax(std::span<const float> row) {
    return static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin()); // first of equals
}

cuda_backend_options options(cuda_precision p, std::size_t blocks, std::size_t block_size,
                             std::vector<std::size_t> graphs = {1, 2, 4, 8}) {
    cuda_backend_options o;
    o.kv_blocks = blocks;
    o.kv_block_size = block_size;
    o.precision = p;
    o.graph_batch_sizes = std::move(graphs);
    return o;
}

} // namespace

TEST_CASE("cuda backend logits match a float64 reference on random f32 models", "[cuda][backend]") {
    struct shape {
        const char* what;
        model_config config;
        bool tied;
    };
    const shape shapes[] = {
        {"llama, grouped-query attention", small_config(512, 64, 2, 4, 2, 96), false},
        {"llama, multi-head attention, tied output", small_config(512, 64, 2, 4, 4, 128), true},
        {"qwen2 with biases and split-half rope", small_config(512, 64, 2, 8, 2, 96, "qwen2"), false},
    };
    for (const shape& s : shapes) {
        for (cuda_precision p : {cuda_precision::f32, cuda_precision::bf16}) {
            INFO(s.what << ", " << name(p));
            const auto m = random_model(s.config, ggml_type::f32, 11, s.tied);
            const std::vector<token_id> tokens = random_tokens(40, s.config.n_vocab, 3);
            const auto expected = reference_logits(*m, tokens);
            cuda_backend backend(m, options(p, 8, 8));
            // One token per step: every step is a (graph-replayed) decode.
            const auto got = run_sequence(backend, make_sequence(1, tokens, {5, 2, 7, 0, 3}), 1, true);
            REQUIRE(got.size() == tokens.size());
            for (std::size_t t = 0; t < tokens.size(); ++t) {
                INFO("position " << t);
                CHECK(test::relative_error(got[t], expected[t]) < tolerance(p));
            }
            CHECK(backend.graphs_captured() > 0);
        }
    }
}

TEST_CASE("cuda backend dequantizes every weight type at load", "[cuda][backend]") {
    for (ggml_type type : {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q8_0, ggml_type::q4_0,
                           ggml_type::q4_k}) {
        for (cuda_precision p : {cuda_precision::f32, cuda_precision::bf16}) {
            INFO(type_info(type).name << ", " << name(p));
            const model_config c = small_config(512, 256, 2, 4, 2, 512);
            const auto m = random_model(c, type, 5);
            const std::vector<token_id> tokens = random_tokens(12, c.n_vocab, 9);
            const auto expected = reference_logits(*m, tokens);
            cuda_backend backend(m, options(p, 4, 16));
            const auto got = run_sequence(backend, make_sequence(1, tokens, {0}), 0, false);
            REQUIRE(got.size() == 1);
            // The reference uses the same dequantized weights, so only the
            // device precision separates them.
            CHECK(test::relative_error(got[0], expected.back()) < tolerance(p));
        }
    }
}

TEST_CASE("cuda backend agrees with the cpu backend on prefill and decode", "[cuda][backend]") {
    const model_config c = small_config(512, 128, 3, 8, 2, 256);
    const auto m = random_model(c, ggml_type::f32, 21);
    const std::vector<token_id> tokens = random_tokens(70, c.n_vocab, 5);
    cpu_backend cpu(m, {.threads = 2, .kv_blocks = 16, .kv_block_size = 16, .kv_type = ggml_type::f32});
    // A prompt of 60 in chunks of 20, then 10 single tokens.
    auto drive = [&](auto& backend) {
        std::vector<std::vector<float>> logits;
        test_sequence s = make_sequence(1, tokens, {9, 3, 12, 0, 7});
        while (s.computed < tokens.size()) {
            batch b;
            b.chunks.push_back(s.next_chunk(s.computed < 60 ? 20 : 1, true));
            step_output out;
            run_step(backend, b, out);
            logits.emplace_back(out.row(0).begin(), out.row(0).end());
        }
        return logits;
    };
    const auto want = drive(cpu);
    for (cuda_precision p : {cuda_precision::f32, cuda_precision::bf16}) {
        INFO(name(p));
        cuda_backend gpu(m, options(p, 16, 16));
        const auto got = drive(gpu);
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("step " << i);
            CHECK(relative_error(got[i], want[i]) < tolerance(p));
        }
    }
}

TEST_CASE("cuda prefill in chunks agrees with prefill in one piece", "[cuda][backend]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    const auto m = random_model(c, ggml_type::f32, 13);
    cuda_backend backend(m, options(cuda_precision::f32, 32, 4));
    const std::vector<token_id> tokens = random_tokens(37, c.n_vocab, 21);
    const auto whole = run_sequence(backend, make_sequence(1, tokens, block_range(0, 10)), 0, false);
    for (std::size_t chunk : {1, 3, 8, 16}) {
        INFO("chunks of " << chunk);
        const auto chunked = run_sequence(backend, make_sequence(1, tokens, block_range(12, 10)), chunk, false);
        CHECK(relative_error(chunked.back(), whole.back()) < 1e-5);
    }
}

TEST_CASE("cuda logits of a sequence do not depend on what shares its step", "[cuda][backend]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    const auto m = random_model(c, ggml_type::f32, 17);
    cuda_backend backend(m, options(cuda_precision::f32, 64, 8));
    const auto [alone, shared] = shared_step_logits(backend, c);
    REQUIRE(shared.size() == alone.size());
    for (std::size_t i = 0; i < alone.size(); ++i) {
        INFO("step " << i);
        // cuBLAS may pick another kernel for another row count: close, not bitwise.
        CHECK(relative_error(shared[i], alone[i]) < 1e-5);
    }
}

TEST_CASE("cuda greedy continuations of demo models equal the cpu backend's for 32 tokens", "[cuda][backend][greedy]") {
    for (const char* size : {"tiny", "small"}) {
        INFO(size);
        const model_config c = demo_model(size).config;
        const auto m = random_model(c, ggml_type::f32, 1);
        const std::vector<std::vector<token_id>> prompts{random_tokens(5, c.n_vocab, 31), random_tokens(17, c.n_vocab, 32),
                                                         random_tokens(33, c.n_vocab, 33)};
        constexpr std::size_t steps = 32;

        // CPU, one sequence at a time.
        cpu_backend cpu(m, {.threads = 2, .kv_blocks = 16, .kv_block_size = 16, .kv_type = ggml_type::f32});
        std::vector<std::vector<token_id>> want;
        for (const auto& prompt : prompts) {
            test_sequence s = make_sequence(1, prompt, block_range(0, 5));
            std::vector<token_id> generated;
            step_output out;
            batch b;
            b.chunks.push_back(s.next_chunk(0, true));
            cpu.step_sync(b, out);
            for (std::size_t i = 0; i < steps; ++i) {
                generated.push_back(host_argmax(out.row(0)));
                if (i + 1 == steps) break;
                s.tokens.push_back(generated.back());
                batch d;
                d.chunks.push_back(s.next_chunk(1, true));
                cpu.step_sync(d, out);
            }
            want.push_back(generated);
        }

        // GPU, f32 precision, the three together: prefill, then decode
        // batches of 3 (graphs padded to 4), argmax on the device.
        cuda_backend gpu(m, options(cuda_precision::f32, 16, 16));
        std::vector<test_sequence> seqs;
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            seqs.push_back(make_sequence(i + 1, prompts[i], block_range(static_cast<block_id>(5 * i), 5)));
        }
        std::vector<std::vector<token_id>> got(prompts.size());
        batch b;
        for (auto& s : seqs) b.chunks.push_back(s.next_chunk(0, true));
        std::vector<token_id> next;
        gpu.step_argmax_sync(b, next);
        for (std::size_t i = 0; i < steps; ++i) {
            REQUIRE(next.size() == seqs.size());
            for (std::size_t k = 0; k < seqs.size(); ++k) got[k].push_back(next[k]);
            if (i + 1 == steps) break;
            batch d;
            for (std::size_t k = 0; k < seqs.size(); ++k) {
                seqs[k].tokens.push_back(next[k]);
                d.chunks.push_back(seqs[k].next_chunk(1, true));
            }
            if (i == steps / 2) {
                // Once, the full logits: their host argmax is the device's.
                step_output out;
                gpu.step_sync(d, out);
                REQUIRE(out.rows() == seqs.size());
                for (std::size_t k = 0; k < seqs.size(); ++k) next[k] = host_argmax(out.row(k));
            } else {
                gpu.step_argmax_sync(d, next);
            }
        }
        for (std::size_t k = 0; k < prompts.size(); ++k) {
            INFO("prompt " << k);
            CHECK(got[k] == want[k]);
        }
    }
}

TEST_CASE("cuda graph replay gives the same logits as eager execution", "[cuda][backend][graphs][sanitize]") {
    const model_config c = small_config(512, 128, 2, 8, 2, 256);
    const auto m = random_model(c, ggml_type::f32, 23);
    const std::vector<std::size_t> lengths{250, 3, 100, 20};
    for (cuda_precision p : {cuda_precision::bf16, cuda_precision::f32}) {
        INFO(name(p));
        cuda_backend graphs(m, options(p, 96, 16, {4}));
        cuda_backend eager(m, options(p, 96, 16, {}));
        auto make = [&](std::size_t n_seqs) {
            std::vector<test_sequence> seqs;
            for (std::size_t i = 0; i < n_seqs; ++i) {
                seqs.push_back(make_sequence(i + 1, random_tokens(lengths[i], c.n_vocab, 40 + i),
                                             block_range(static_cast<block_id>(24 * i), 24)));
            }
            return seqs;
        };
        // Four sequences (exactly the captured size: bitwise equal), then
        // three (padded to four: cuBLAS may pick other kernels for 3 rows).
        for (std::size_t n_seqs : {4, 3}) {
            INFO(n_seqs << " sequences");
            std::vector<test_sequence> a = make(n_seqs), b = make(n_seqs);
            batch pa, pb;
            for (auto& s : a) pa.chunks.push_back(s.next_chunk(0, true));
            for (auto& s : b) pb.chunks.push_back(s.next_chunk(0, true));
            step_output oa, ob;
            graphs.step_sync(pa, oa);
            eager.step_sync(pb, ob);
            CHECK(oa.logits == ob.logits); // prefill is eager in both
            // Decode past 256 positions: the graph's partition bucket changes.
            for (std::size_t step = 0; step < 12; ++step) {
                batch da, db;
                for (std::size_t k = 0; k < n_seqs; ++k) {
                    const token_id t = host_argmax(oa.row(k));
                    a[k].tokens.push_back(t);
                    b[k].tokens.push_back(t);
                    da.chunks.push_back(a[k].next_chunk(1, true));
                    db.chunks.push_back(b[k].next_chunk(1, true));
                }
                graphs.step_sync(da, oa);
                eager.step_sync(db, ob);
                INFO("decode step " << step);
                REQUIRE(oa.rows() == n_seqs);
                if (n_seqs == 4) {
                    CHECK(oa.logits == ob.logits);
                } else {
                    CHECK(relative_error(oa.logits, ob.logits) < tolerance(p));
                }
            }
        }
        CHECK(graphs.graphs_captured() >= 2);
        CHECK(eager.graphs_captured() == 0);
    }
}

TEST_CASE("cuda backend rejects a batch that does not fit before computing anything", "[cuda][backend][sanitize]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    const auto m = random_model(c);
    cuda_backend backend(m, options(cuda_precision::bf16, 4, 4));
    step_output out;
    const std::vector<token_id> bad_token{1, 2, 600};
    const std::vector<token_id> ok{1, 2, 3, 4, 5};
    const std::vector<block_id> one{0}, outside{9, 1};
    batch b;
    b.chunks.push_back({1, 0, bad_token, one, true});
    CHECK_THROWS_WITH(backend.step_sync(b, out), Catch::Contains("outside the vocabulary"));
    b.chunks = {{1, 0, ok, one, true}};
    CHECK_THROWS_WITH(backend.step_sync(b, out), Catch::Contains("cannot hold"));
    b.chunks = {{1, 0, ok, outside, true}};
    CHECK_THROWS_WITH(backend.step_sync(b, out), Catch::Contains("out of range"));
    b.chunks = {{1, 0, {}, one, true}};
    CHECK_THROWS_WITH(backend.step_sync(b, out), Catch::Contains("empty chunk"));
    // Still usable afterwards.
    b.chunks = {{1, 0, std::span<const token_id>(ok).first(4), one, true}};
    backend.step_sync(b, out);
    CHECK(out.rows() == 1);
    b.chunks.clear();
    backend.step_sync(b, out);
    CHECK(out.rows() == 0);
}

TEST_CASE("a cuda step awaited from a coroutine resumes on the backend's thread", "[cuda][backend][sanitize]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    const auto m = random_model(c);
    cuda_backend backend(m, options(cuda_precision::f32, 4, 16));
    test_sequence s = make_sequence(1, random_tokens(10, c.n_vocab, 4), {2});
    batch b;
    b.chunks.push_back(s.next_chunk(0, true));
    step_output out;
    const std::thread::id caller = std::this_thread::get_id();
    std::thread::id resumed;
    weft::sync_wait([&]() -> weft::task<void> {
        co_await backend.step(b, out);
        resumed = std::this_thread::get_id();
    }());
    CHECK(resumed != caller);
    CHECK(out.rows() == 1);
    CHECK(out.vocab == c.n_vocab);
    step_output again;
    backend.step_sync(b, again);
    CHECK(again.logits == out.logits);
}

TEST_CASE("cuda backend sizes its cache from free memory and describes itself", "[cuda][backend]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    const auto m = random_model(c);
    cuda_backend_options o;
    o.kv_memory_fraction = 0.01;
    cuda_backend backend(m, o);
    CHECK(backend.num_kv_blocks() > 0);
    CHECK(backend.kv_block_size() == 16);
    CHECK_THAT(backend.describe(), Catch::Contains("cuda") && Catch::Contains("bf16"));
    CHECK(backend.step_weight_bytes() > 0);
    CHECK_THAT(cuda_describe_devices(), Catch::Contains("0: "));
}
