#include "model_test_support.hpp"

#include <weft/sync_wait.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <utility>

using namespace weft::serve;
using namespace weft::serve::test;

namespace {

/// Runs `seq` through `backend` one chunk of `chunk` tokens at a time (0:
/// whole prompt at once), asking for logits of every token when
/// `every_token` (then chunk must be 1) or of the last only.
std::vector<std::vector<float>> run_sequence(cpu_backend& backend, test_sequence seq, std::size_t chunk,
                                             bool every_token) {
    std::vector<std::vector<float>> logits;
    while (seq.computed < seq.tokens.size()) {
        batch b;
        b.chunks.push_back(seq.next_chunk(chunk, true));
        const bool last = seq.computed == seq.tokens.size();
        step_output out;
        backend.step_sync(b, out);
        if (every_token || last) logits.emplace_back(out.row(0).begin(), out.row(0).end());
    }
    return logits;
}

} // namespace

TEST_CASE("cpu forward pass matches a float64 reference on random f32 models", "[forward]") {
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
        for (ggml_type kv : {ggml_type::f32, ggml_type::f16}) {
            SECTION(std::string(s.what) + ", " + std::string(type_info(kv).name) + " kv cache") {
                const auto m = random_model(s.config, ggml_type::f32, 11, s.tied);
                CHECK(m->tied_output == s.tied);
                const std::vector<token_id> tokens = random_tokens(40, s.config.n_vocab, 3);
                // The reference rounds keys and values as the cache does; the
                // F16 tolerance allows for the odd element that float and
                // double round to neighbouring halves (worst seen ~8e-5;
                // without the rounding the error is ~2e-4 to 5e-4).
                const auto expected = reference_logits(*m, tokens, kv == ggml_type::f16);
                const double tolerance = kv == ggml_type::f16 ? 2e-4 : 1e-4;
                cpu_backend backend(m, {.threads = 2, .kv_blocks = 8, .kv_block_size = 8, .kv_type = kv, .split_step_us = 0});
                const auto got = run_sequence(backend, make_sequence(1, tokens, {5, 2, 7, 0, 3}), 1, true);
                REQUIRE(got.size() == tokens.size());
                double worst = 0;
                for (std::size_t t = 0; t < tokens.size(); ++t) {
                    INFO("position " << t);
                    const double e = relative_error(got[t], expected[t]);
                    worst = std::max(worst, e);
                    CHECK(e < tolerance);
                }
                // Without the rounding the F16 cache is measurably off: the
                // reference's emulation is what makes the check tight.
                if (kv == ggml_type::f16) {
                    const auto exact = reference_logits(*m, tokens);
                    double off = 0;
                    for (std::size_t t = 0; t < tokens.size(); ++t) off = std::max(off, relative_error(got[t], exact[t]));
                    CHECK(off > worst);
                }
            }
        }
    }
}

TEST_CASE("quantized models stay close to the reference on their own dequantized weights", "[forward]") {
    struct kind {
        ggml_type type;
        double tolerance; // the activations are quantized too (Q8_0 / Q8_K)
    };
    const kind kinds[] = {{ggml_type::f16, 1e-4}, {ggml_type::bf16, 1e-4}, {ggml_type::q8_0, 3e-2},
                          {ggml_type::q4_0, 3e-2}, {ggml_type::q4_k, 3e-2}};
    for (const kind& k : kinds) {
        SECTION(std::string(type_info(k.type).name)) {
            const model_config c = small_config(512, 256, 2, 4, 2, 512);
            const auto m = random_model(c, k.type, 5);
            const std::vector<token_id> tokens = random_tokens(12, c.n_vocab, 9);
            const auto expected = reference_logits(*m, tokens);
            cpu_backend backend(m, {.threads = 2, .kv_blocks = 4, .kv_block_size = 16, .kv_type = ggml_type::f32, .split_step_us = 0});
            const auto got = run_sequence(backend, make_sequence(1, tokens, {0}), 0, false);
            REQUIRE(got.size() == 1);
            CHECK(relative_error(got[0], expected.back()) < k.tolerance);
        }
    }
}

TEST_CASE("prefill in chunks gives bitwise the same logits as prefill in one piece", "[forward][invariance]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    for (auto [type, kv] : {std::pair{ggml_type::f32, ggml_type::f32}, std::pair{ggml_type::f32, ggml_type::f16},
                            std::pair{ggml_type::q8_0, ggml_type::f16}}) {
        INFO(type_info(kv).name << " kv cache");
        const auto m = random_model(c, type, 13);
        cpu_backend backend(m, {.threads = 2, .kv_blocks = 16, .kv_block_size = 4, .kv_type = kv, .split_step_us = 0});
        const std::vector<token_id> tokens = random_tokens(37, c.n_vocab, 21);
        const auto whole = run_sequence(backend, make_sequence(1, tokens, block_range(0, 10)), 0, false);
        for (std::size_t chunk : {1, 3, 8, 16}) {
            INFO(type_info(type).name << ", chunks of " << chunk);
            const auto chunked = run_sequence(backend, make_sequence(1, tokens, block_range(6, 10)), chunk, false);
            REQUIRE(chunked.back().size() == whole.back().size());
            CHECK(std::memcmp(chunked.back().data(), whole.back().data(), whole.back().size() * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("a sequence's logits are bitwise identical whatever shares its step", "[forward][invariance]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    for (ggml_type type : {ggml_type::f32, ggml_type::q8_0, ggml_type::f16}) {
        INFO(type_info(type).name);
        const auto m = random_model(c, type, 17);
        for (auto [threads, kv] : {std::pair{std::size_t{1}, ggml_type::f16}, std::pair{std::size_t{2}, ggml_type::f16},
                                   std::pair{std::size_t{2}, ggml_type::f32}}) {
            INFO(threads << " threads, " << type_info(kv).name << " kv cache");
            cpu_backend backend(m, {.threads = threads, .kv_blocks = 64, .kv_block_size = 8, .kv_type = kv, .split_step_us = 0});
            const auto [alone, shared] = shared_step_logits(backend, c);
            REQUIRE(shared.size() == alone.size());
            for (std::size_t i = 0; i < alone.size(); ++i) {
                INFO("step " << i);
                CHECK(std::memcmp(shared[i].data(), alone[i].data(), alone[i].size() * sizeof(float)) == 0);
            }
        }
    }
}

TEST_CASE("a step gives bitwise the same logits whether its jobs are split across threads or not",
          "[forward][invariance]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    for (ggml_type type : {ggml_type::f32, ggml_type::q8_0}) {
        INFO(type_info(type).name);
        const auto m = random_model(c, type, 23);
        const std::vector<token_id> tokens = random_tokens(30, c.n_vocab, 8);
        auto logits = [&](std::size_t threads, double split_step_us, std::size_t chunk) {
            cpu_backend backend(m, {.threads = threads, .kv_blocks = 8, .kv_block_size = 8,
                                    .split_step_us = split_step_us});
            return run_sequence(backend, make_sequence(1, tokens, block_range(0, 4)), chunk, chunk == 1);
        };
        // One thread; two splitting every job; two with the default
        // threshold, under which this model's jobs all stay on one thread.
        for (std::size_t chunk : {std::size_t{1}, std::size_t{0}}) {
            INFO((chunk == 1 ? "one token a step" : "the prompt in one step"));
            const auto one = logits(1, 0, chunk);
            const auto split = logits(2, 0, chunk);
            const auto unsplit = logits(2, cpu_backend_options{}.split_step_us, chunk);
            REQUIRE(split.size() == one.size());
            REQUIRE(unsplit.size() == one.size());
            for (std::size_t i = 0; i < one.size(); ++i) {
                INFO("row " << i);
                CHECK(std::memcmp(split[i].data(), one[i].data(), one[i].size() * sizeof(float)) == 0);
                CHECK(std::memcmp(unsplit[i].data(), one[i].data(), one[i].size() * sizeof(float)) == 0);
            }
        }
    }
}

TEST_CASE("the last layer runs on the rows whose logits are asked for and gives them the logits of every row",
          "[forward][invariance]") {
    // A prompt's middle chunk (no logits), a prompt's end, a chunk asking for
    // its last three rows and one asking for all of them, in one step; then
    // the first prompt's last chunk, which attends to the middle chunk's
    // last-layer keys and values.
    struct part {
        std::size_t tokens, first_chunk, first_logits;
    };
    const part parts[] = {{11, 7, 0}, {6, 6, 1}, {5, 5, 3}, {4, 4, 4}};
    for (std::size_t layers : {1, 2}) {
        const model_config c = small_config(512, 64, layers, 4, 2, 96);
        const auto m = random_model(c, ggml_type::f32, 37);
        for (std::size_t threads : {1, 2}) {
            INFO(layers << " layers, " << threads << " threads");
            const cpu_backend_options opts{.threads = threads, .kv_blocks = 16, .kv_block_size = 8,
                                           .split_step_us = 0};
            std::vector<test_sequence> seqs, alone;
            for (std::size_t i = 0; i < std::size(parts); ++i) {
                const auto tokens = random_tokens(parts[i].tokens, c.n_vocab, 40 + i);
                seqs.push_back(make_sequence(static_cast<seq_id>(i), tokens, block_range(static_cast<block_id>(2 * i), 2)));
                alone.push_back(seqs.back());
            }
            // Every row of each sequence, computed alone.
            std::vector<std::vector<std::vector<float>>> expected;
            {
                cpu_backend backend(m, opts);
                step_output out;
                for (test_sequence& s : alone) {
                    batch b;
                    b.chunks.push_back(s.next_chunk(0, true));
                    b.chunks.back().logits = s.tokens.size();
                    backend.step_sync(b, out);
                    REQUIRE(out.rows() == s.tokens.size());
                    expected.emplace_back();
                    for (std::size_t r = 0; r < out.rows(); ++r) expected.back().emplace_back(out.row(r).begin(), out.row(r).end());
                }
            }
            cpu_backend backend(m, opts);
            step_output out;
            auto check_row = [&](std::size_t row, std::size_t seq, std::size_t token) {
                INFO("row " << row << ": sequence " << seq << ", token " << token);
                REQUIRE(row < out.rows());
                const std::vector<float>& want = expected[seq][token];
                CHECK(std::memcmp(out.row(row).data(), want.data(), want.size() * sizeof(float)) == 0);
            };
            batch first;
            for (std::size_t i = 0; i < std::size(parts); ++i) {
                first.chunks.push_back(seqs[i].next_chunk(parts[i].first_chunk, false));
                first.chunks.back().logits = parts[i].first_logits;
            }
            backend.step_sync(first, out);
            REQUIRE(out.rows() == 8);
            check_row(0, 1, 5);
            for (std::size_t r = 0; r < 3; ++r) check_row(1 + r, 2, 2 + r);
            for (std::size_t r = 0; r < 4; ++r) check_row(4 + r, 3, r);
            batch second;
            second.chunks.push_back(seqs[0].next_chunk(0, true));
            backend.step_sync(second, out);
            REQUIRE(out.rows() == 1);
            check_row(0, 0, 10);
        }
    }
}

TEST_CASE("a short step stays on the step thread and a long one is split across the team", "[forward]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    const auto m = random_model(c, ggml_type::f32, 29);
    const std::vector<token_id> prompt = random_tokens(512, c.n_vocab, 5);
    auto split_jobs = [&](double split_step_us, std::size_t prompt_tokens) {
        cpu_backend backend(m, {.threads = 2, .kv_blocks = 40, .kv_block_size = 16, .split_step_us = split_step_us});
        std::vector<token_id> tokens(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(prompt_tokens));
        test_sequence s = make_sequence(1, tokens, block_range(0, 40));
        batch b;
        b.chunks.push_back(s.next_chunk(0, true));
        step_output out;
        backend.step_sync(b, out);
        CHECK(out.rows() == 1);
        return backend.split_jobs();
    };
    // A 128-token prompt of this model is a few hundred microseconds on one
    // thread, some of its products over the 20 us a fork-join is worth; a
    // 512-token prompt is milliseconds.
    const double by_default = cpu_backend_options{}.split_step_us;
    CHECK(split_jobs(by_default, 128) == 0);
    CHECK(split_jobs(1, 128) > 0); // the same step where any step may split
    CHECK(split_jobs(by_default, 512) > 0);
    CHECK(split_jobs(1, 4) == 0);  // jobs too small for a fork-join
    CHECK(split_jobs(0, 4) > 0);   // 0: every job splits
}

TEST_CASE("a step of many sequences runs one lane per thread with the logits of one thread",
          "[forward][invariance]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    for (ggml_type type : {ggml_type::f32, ggml_type::q8_0}) {
        INFO(type_info(type).name);
        const auto m = random_model(c, type, 31);
        struct result {
            std::vector<std::vector<float>> rows; // every step's logits, in order
            std::uint64_t lane_steps = 0;
            std::uint64_t split_jobs = 0;
        };
        // Ten sequences: prompts of 3 to 12 tokens, some in two chunks, then
        // decode steps, every sequence in every step.
        auto run = [&](std::size_t threads, bool lanes) {
            cpu_backend backend(m, {.threads = threads, .kv_blocks = 80, .kv_block_size = 8, .split_step_us = 0,
                                    .sequence_lanes = lanes});
            std::vector<test_sequence> seqs;
            for (std::size_t i = 0; i < 10; ++i) {
                seqs.push_back(make_sequence(static_cast<seq_id>(i + 1), random_tokens(3 + i, c.n_vocab, 40 + i),
                                             block_range(static_cast<block_id>(8 * i), 8)));
            }
            result r;
            for (std::size_t step = 0; step < 6; ++step) {
                batch b;
                for (std::size_t i = 0; i < seqs.size(); ++i) {
                    test_sequence& s = seqs[i];
                    if (s.computed == s.tokens.size()) {
                        s.tokens.push_back(static_cast<token_id>((step * 17 + i * 5) % c.n_vocab));
                    }
                    b.chunks.push_back(s.next_chunk(i % 3 == 0 ? 4 : 0, true));
                }
                step_output out;
                backend.step_sync(b, out);
                for (std::size_t i = 0; i < out.rows(); ++i) r.rows.emplace_back(out.row(i).begin(), out.row(i).end());
            }
            r.lane_steps = backend.lane_steps();
            r.split_jobs = backend.split_jobs();
            return r;
        };
        const result one = run(1, true);
        const result lanes = run(2, true);
        const result rows = run(2, false);
        CHECK(one.lane_steps == 0);
        CHECK(lanes.lane_steps > 0);
        CHECK(rows.lane_steps == 0);
        // A lane step is one job for the team where a row-split step is several a layer.
        CHECK(lanes.split_jobs < rows.split_jobs);
        REQUIRE(lanes.rows.size() == one.rows.size());
        REQUIRE(rows.rows.size() == one.rows.size());
        for (std::size_t i = 0; i < one.rows.size(); ++i) {
            INFO("row " << i);
            CHECK(std::memcmp(lanes.rows[i].data(), one.rows[i].data(), one.rows[i].size() * sizeof(float)) == 0);
            CHECK(std::memcmp(rows.rows[i].data(), one.rows[i].data(), one.rows[i].size() * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("lanes are left for steps of few tokens or of sequences too uneven to share out", "[forward]") {
    const model_config c = small_config(512, 64, 2, 4, 2, 96);
    const auto m = random_model(c, ggml_type::f32, 37);
    auto lane_steps = [&](std::vector<std::size_t> chunk_tokens) {
        cpu_backend backend(m, {.threads = 2, .kv_blocks = 64, .kv_block_size = 16, .split_step_us = 0});
        std::vector<test_sequence> seqs;
        batch b;
        for (std::size_t i = 0; i < chunk_tokens.size(); ++i) {
            seqs.push_back(make_sequence(static_cast<seq_id>(i + 1), random_tokens(chunk_tokens[i], c.n_vocab, 50 + i),
                                         block_range(static_cast<block_id>(8 * i), 8)));
        }
        for (test_sequence& s : seqs) b.chunks.push_back(s.next_chunk(0, true));
        step_output out;
        backend.step_sync(b, out);
        CHECK(out.rows() == chunk_tokens.size());
        return backend.lane_steps();
    };
    // This model's weights take longer to stream than a few tokens' products:
    // 4 tokens a thread would each read them for little arithmetic.
    CHECK(lane_steps({2, 2, 2, 2, 2, 2, 2, 2}) == 1);
    CHECK(lane_steps({1, 1, 1, 1, 1, 1, 1, 1}) == 0);
    // A long prompt beside one decode: no even split by whole sequences.
    CHECK(lane_steps({64, 1}) == 0);
    CHECK(lane_steps({32, 30}) == 1);
    CHECK(lane_steps({60}) == 0); // one sequence
}

TEST_CASE("a step awaited from a coroutine resumes with the logits", "[forward]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    const auto m = random_model(c);
    cpu_backend backend(m, {.threads = 2, .kv_blocks = 4, .kv_block_size = 16, .split_step_us = 0});
    test_sequence s = make_sequence(1, random_tokens(10, c.n_vocab, 4), {2});
    batch b;
    b.chunks.push_back(s.next_chunk(0, true));
    step_output out;
    weft::sync_wait([&]() -> weft::task<void> { co_await backend.step(b, out); }());
    CHECK(out.rows() == 1);
    CHECK(out.vocab == c.n_vocab);
    step_output sync_out;
    backend.step_sync(b, sync_out);
    CHECK(sync_out.logits == out.logits);
}

TEST_CASE("a batch that does not fit is rejected before anything is computed", "[forward]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    const auto m = random_model(c);
    cpu_backend backend(m, {.threads = 1, .kv_blocks = 4, .kv_block_size = 4});
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
    // Awaited, the error comes out of the co_await.
    CHECK_THROWS_WITH(weft::sync_wait([&]() -> weft::task<void> { co_await backend.step(b, out); }()),
                      Catch::Contains("empty chunk"));
}

TEST_CASE("a model file with a missing or mis-shaped tensor is refused by name", "[forward][gguf]") {
    const model_config c = small_config(512, 64, 1, 4, 2, 96);
    {
        gguf_writer w;
        model_config wrong = c;
        wrong.n_ff = 128;
        add_random_model(w, wrong, demo_tokenizer(512), ggml_type::f32, 1, "x");
        w.set_u32("llama.feed_forward_length", 96); // metadata disagrees with the tensors
        const auto bytes = w.to_bytes();
        CHECK_THROWS_WITH(model::from_gguf(std::make_shared<const gguf_file>(gguf_file::from_memory(bytes, "bad.gguf"))),
                          Catch::Contains("bad.gguf") && Catch::Contains("ffn_gate.weight") && Catch::Contains("shape"));
    }
    {
        gguf_writer w;
        add_random_model(w, c, demo_tokenizer(512), ggml_type::f32, 1, "x");
        w.set_string("general.architecture", "gpt-neox");
        const auto bytes = w.to_bytes();
        CHECK_THROWS_WITH(model::from_gguf(std::make_shared<const gguf_file>(gguf_file::from_memory(bytes, "arch.gguf"))),
                          Catch::Contains("unsupported architecture 'gpt-neox'"));
    }
}
