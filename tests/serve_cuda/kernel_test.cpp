// Every CUDA kernel against its CPU counterpart (src/kernels/) on random
// inputs, in both storage types.
#include "cuda_test_support.hpp"
#include "kernels/kernels.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::cuda;
using namespace weft::serve::cuda::test;

namespace {

const char* name(dtype t) { return t == dtype::bf16 ? "bf16" : "f32"; }

/// max |got - want| / max |want|.
double error_vs_scale(const std::vector<float>& got, const std::vector<float>& want) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double d = std::abs(static_cast<double>(got[i]) - want[i]);
        diff = std::max(diff, std::isnan(d) ? 1e30 : d);
        scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    }
    return diff / scale;
}

} // namespace

TEST_CASE("cuda embedding gather copies each token's row", "[cuda][kernels]") {
    for (dtype t : {dtype::f32, dtype::bf16}) {
        INFO(name(t));
        const int V = 37, E = 300;
        const std::vector<float> table = round_through(random_floats(V * E, 1), t);
        const std::vector<int> tokens{5, 0, 36, 5, 17};
        const int T = static_cast<int>(tokens.size());
        const device_buffer d_table = upload(encode(table, t));
        const device_buffer d_tokens = upload(tokens);
        const device_buffer d_x(static_cast<std::size_t>(T) * E * sizeof(float), "x");
        test_stream s;
        embed(t, d_table.get(), E, d_tokens.as<int>(), T, d_x.as<float>(), s.get());
        s.sync();
        const std::vector<float> x = download<float>(d_x, static_cast<std::size_t>(T) * E);
        std::size_t wrong = 0;
        for (int i = 0; i < T; ++i) {
            for (int e = 0; e < E; ++e) wrong += x[i * E + e] != table[tokens[i] * E + e];
        }
        CHECK(wrong == 0);
    }
}

TEST_CASE("cuda rmsnorm matches the cpu kernel, rows in place or gathered", "[cuda][kernels]") {
    for (dtype t : {dtype::f32, dtype::bf16}) {
        for (int n : {64, 1000, 4096}) {
            INFO(name(t) << ", width " << n);
            const int rows = 5;
            const std::vector<float> x = random_floats(static_cast<std::size_t>(rows) * n, 2, -3.0f, 3.0f);
            const std::vector<float> w = random_floats(n, 3, 0.5f, 1.5f);
            const device_buffer d_x = upload(x);
            const device_buffer d_w = upload(w);
            for (bool gathered : {false, true}) {
                INFO((gathered ? "gathered rows" : "all rows"));
                const std::vector<int> src = gathered ? std::vector<int>{4, 0, 2} : std::vector<int>{0, 1, 2, 3, 4};
                const int out_rows = static_cast<int>(src.size());
                std::vector<float> want(static_cast<std::size_t>(out_rows) * n);
                for (int r = 0; r < out_rows; ++r) {
                    kernels::rmsnorm(&x[static_cast<std::size_t>(src[r]) * n], w.data(), &want[static_cast<std::size_t>(r) * n],
                                     n, 1e-5f);
                }
                const device_buffer d_rows = upload(src);
                const device_buffer d_out(want.size() * dtype_size(t), "out");
                test_stream s;
                rmsnorm(t, d_x.as<float>(), d_w.as<float>(), n, 1e-5f, gathered ? d_rows.as<int>() : nullptr, out_rows,
                        d_out.get(), s.get());
                s.sync();
                const std::vector<float> got = decode(download<std::byte>(d_out, d_out.bytes()), t);
                CHECK(max_relative_error(got, want, 1e-3) <= storage_tolerance(t));
            }
        }
    }
}

TEST_CASE("cuda bias, rope and kv write match the cpu kernels in both rope styles", "[cuda][kernels]") {
    const int n_head = 4, n_head_kv = 2, D = 16, bs = 4, NB = 16;
    const int Q = n_head * D, KV = n_head_kv * D, W = Q + 2 * KV;
    // Sequence A: a chunk at positions 0..4 (blocks 7, 2); sequence B: one
    // token at position 1000, whose slot is in block 11 (the table's other
    // entries are never touched by this kernel).
    std::vector<int> tables{7, 2};
    std::vector<int> b_table(251, 0);
    b_table[250] = 11;
    tables.insert(tables.end(), b_table.begin(), b_table.end());
    const std::vector<int> positions{0, 1, 2, 3, 4, 1000};
    const std::vector<int> offsets{0, 0, 0, 0, 0, 2};
    const int T = static_cast<int>(positions.size());

    for (dtype t : {dtype::f32, dtype::bf16}) {
        for (rope_style style : {rope_style::adjacent, rope_style::halves}) {
            for (int rope_dim : {D, D / 2}) {
                for (bool with_bias : {false, true}) {
                    INFO(name(t) << (style == rope_style::halves ? ", halves" : ", adjacent") << ", rope_dim " << rope_dim
                                 << (with_bias ? ", bias" : ""));
                    const std::vector<float> qkv = random_floats(static_cast<std::size_t>(T) * W, 4, -2.0f, 2.0f);
                    const std::vector<float> bias = random_floats(W, 5);

                    // CPU: bias, rope on q and k heads, k and v into their slots.
                    std::vector<float> want = qkv;
                    kernels::rope_table rope(static_cast<std::size_t>(rope_dim), 10000.0f, style);
                    const std::size_t layer_elems = static_cast<std::size_t>(NB) * 2 * bs * KV;
                    std::vector<float> want_cache(layer_elems, std::numeric_limits<float>::quiet_NaN());
                    std::vector<bool> written(layer_elems, false);
                    for (int i = 0; i < T; ++i) {
                        float* row = &want[static_cast<std::size_t>(i) * W];
                        if (with_bias) kernels::add_inplace(row, bias.data(), W);
                        rope.apply(row, n_head, D, positions[i]);
                        rope.apply(row + Q, n_head_kv, D, positions[i]);
                        const int block = tables[offsets[i] + positions[i] / bs];
                        const std::size_t k_at = static_cast<std::size_t>(block) * 2 * bs * KV +
                                                 static_cast<std::size_t>(positions[i] % bs) * KV;
                        for (int j = 0; j < KV; ++j) {
                            want_cache[k_at + j] = row[Q + j];
                            want_cache[k_at + static_cast<std::size_t>(bs) * KV + j] = row[Q + KV + j];
                            written[k_at + j] = written[k_at + static_cast<std::size_t>(bs) * KV + j] = true;
                        }
                    }

                    std::vector<double> inv_freq(rope_dim / 2);
                    for (int i = 0; i < rope_dim / 2; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / rope_dim);
                    const device_buffer d_qkv = upload(qkv);
                    const device_buffer d_bias = upload(bias);
                    const device_buffer d_freq = upload(inv_freq);
                    const device_buffer d_pos = upload(positions);
                    const device_buffer d_off = upload(offsets);
                    const device_buffer d_tables = upload(tables);
                    const device_buffer d_cache(layer_elems * dtype_size(t), "cache");
                    check(cudaMemset(d_cache.get(), 0xff, d_cache.bytes()), "memset"); // NaN everywhere
                    step_meta m;
                    m.positions = d_pos.as<int>();
                    m.table_offset = d_off.as<int>();
                    m.tables = d_tables.as<int>();
                    rope_params r;
                    r.n_head = n_head;
                    r.n_head_kv = n_head_kv;
                    r.head_dim = D;
                    r.rope_dim = rope_dim;
                    r.halves = style == rope_style::halves;
                    r.inv_freq = d_freq.as<double>();
                    test_stream s;
                    qkv_finish(t, d_qkv.as<float>(), with_bias ? d_bias.as<float>() : nullptr, T, r, m, d_cache.get(),
                               bs, s.get());
                    s.sync();

                    CHECK(max_relative_error(download<float>(d_qkv, want.size()), want, 1e-3) <= 1e-6);
                    const std::vector<std::byte> raw = download<std::byte>(d_cache, d_cache.bytes());
                    const std::vector<float> cache = decode(raw, t);
                    std::size_t wrong = 0, touched = 0;
                    for (std::size_t i = 0; i < layer_elems; ++i) {
                        if (written[i]) {
                            const double d = std::abs(cache[i] - want_cache[i]);
                            wrong += !(d <= storage_tolerance(t) * (std::abs(want_cache[i]) + 1e-3));
                        } else {
                            const std::byte* p = raw.data() + i * dtype_size(t);
                            touched += std::any_of(p, p + dtype_size(t), [](std::byte b) { return b != std::byte{0xff}; });
                        }
                    }
                    CHECK(wrong == 0);
                    CHECK(touched == 0);
                }
            }
        }
    }
}

TEST_CASE("cuda swiglu matches the cpu kernel", "[cuda][kernels]") {
    for (dtype t : {dtype::f32, dtype::bf16}) {
        INFO(name(t));
        const int T = 3, F = 1000;
        const std::vector<float> gate_up = random_floats(static_cast<std::size_t>(T) * 2 * F, 6, -6.0f, 6.0f);
        std::vector<float> want(static_cast<std::size_t>(T) * F);
        for (int i = 0; i < T; ++i) {
            const float* row = &gate_up[static_cast<std::size_t>(i) * 2 * F];
            kernels::swiglu(row, row + F, &want[static_cast<std::size_t>(i) * F], F);
        }
        const device_buffer d_in = upload(gate_up);
        const device_buffer d_out(want.size() * dtype_size(t), "out");
        test_stream s;
        swiglu(t, d_in.as<float>(), F, T, d_out.get(), s.get());
        s.sync();
        const std::vector<float> got = decode(download<std::byte>(d_out, d_out.bytes()), t);
        CHECK(max_relative_error(got, want, 1e-3) <= storage_tolerance(t));
    }
}

TEST_CASE("cuda argmax picks the lowest index of the largest value and skips NaN", "[cuda][kernels]") {
    for (int V : {1000, 50000}) {
        INFO("vocab " << V);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        const float inf = std::numeric_limits<float>::infinity();
        std::vector<std::vector<float>> rows;
        rows.push_back(random_floats(V, 7));
        std::vector<float> tie = random_floats(V, 8);
        tie[10] = tie[V / 2] = 5.0f;
        rows.push_back(tie);
        rows.push_back(std::vector<float>(V, -inf));
        std::vector<float> with_nan = random_floats(V, 9);
        for (int i = 0; i < V; i += 3) with_nan[i] = nan;
        rows.push_back(with_nan);
        rows.push_back(std::vector<float>(V, nan));
        std::vector<float> last = random_floats(V, 10);
        last[V - 1] = 2.0f;
        rows.push_back(last);

        std::vector<float> flat;
        std::vector<int> want;
        for (const auto& r : rows) {
            flat.insert(flat.end(), r.begin(), r.end());
            // The specification: the first index holding the largest non-NaN value.
            float best = -inf;
            bool any = false;
            for (float v : r) {
                if (!std::isnan(v)) {
                    best = any ? std::max(best, v) : v;
                    any = true;
                }
            }
            int index = INT_MAX;
            for (int i = 0; i < V && any; ++i) {
                if (r[i] == best) {
                    index = i;
                    break;
                }
            }
            want.push_back(index);
        }
        const device_buffer d_logits = upload(flat);
        const device_buffer d_out(rows.size() * sizeof(int), "out");
        test_stream s;
        argmax_rows(d_logits.as<float>(), static_cast<int>(rows.size()), V, d_out.as<int>(), s.get());
        s.sync();
        CHECK(download<int>(d_out, rows.size()) == want);
    }
}

TEST_CASE("cuda paged attention matches the cpu kernel for decode tokens and prompt chunks", "[cuda][kernels]") {
    struct shape {
        int n_head, n_head_kv, head_dim, block_size;
    };
    const shape shapes[] = {{8, 2, 64, 16}, {4, 4, 80, 7}, {8, 1, 128, 16}};
    // Contexts across the partition boundaries (256 keys each).
    const std::vector<int> contexts{1, 17, 256, 257, 700};
    for (const shape& sh : shapes) {
        for (dtype t : {dtype::f32, dtype::bf16}) {
            INFO(name(t) << ", heads " << sh.n_head << "/" << sh.n_head_kv << ", head_dim " << sh.head_dim
                         << ", block size " << sh.block_size);
            const int D = sh.head_dim, bs = sh.block_size;
            const int Q = sh.n_head * D, KV = sh.n_head_kv * D, W = Q + 2 * KV;
            const int group = sh.n_head / sh.n_head_kv;

            // Distinct random blocks for each sequence.
            int NB = 0;
            for (int c : contexts) NB += (c + bs - 1) / bs;
            NB += 3; // a few never used
            std::vector<int> perm(NB);
            std::iota(perm.begin(), perm.end(), 0);
            std::uint64_t state = 12345;
            for (int i = NB - 1; i > 0; --i) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                std::swap(perm[i], perm[static_cast<int>((state >> 33) % static_cast<std::uint64_t>(i + 1))]);
            }
            std::vector<int> tables, seq_offset;
            for (int c : contexts) {
                seq_offset.push_back(static_cast<int>(tables.size()));
                for (int i = 0; i < (c + bs - 1) / bs; ++i) tables.push_back(perm[tables.size()]);
            }

            // Queries: each sequence's last position (decode), plus a prompt
            // chunk of 40 tokens at positions 300..339 of the longest.
            std::vector<int> positions, offsets;
            for (std::size_t i = 0; i < contexts.size(); ++i) {
                positions.push_back(contexts[i] - 1);
                offsets.push_back(seq_offset[i]);
            }
            for (int p = 300; p < 340; ++p) {
                positions.push_back(p);
                offsets.push_back(seq_offset.back());
            }
            const int T = static_cast<int>(positions.size());

            const std::size_t layer_elems = static_cast<std::size_t>(NB) * 2 * bs * KV;
            const std::vector<float> cache = round_through(random_floats(layer_elems, 11), t);
            const std::vector<float> qkv = random_floats(static_cast<std::size_t>(T) * W, 12, -4.0f, 4.0f);

            // CPU: kernels::attend per (token, KV head) over the block pointers.
            // The CPU cache is head-major ([kv_head][slot][D] per block and
            // K/V), the device one token-major ([slot][KV]): regroup a copy.
            std::vector<float> cache_hm(cache.size());
            for (std::size_t blk = 0; blk < static_cast<std::size_t>(NB) * 2; ++blk) {
                for (int slot = 0; slot < bs; ++slot) {
                    for (int h = 0; h < sh.n_head_kv; ++h) {
                        for (int d = 0; d < D; ++d) {
                            cache_hm[blk * bs * KV + (static_cast<std::size_t>(h) * bs + slot) * D + d] =
                                cache[blk * bs * KV + static_cast<std::size_t>(slot) * KV + static_cast<std::size_t>(h) * D + d];
                        }
                    }
                }
            }
            std::vector<float> want(static_cast<std::size_t>(T) * Q);
            std::vector<float> scratch(kernels::attend_scratch_size(static_cast<std::size_t>(group), 1023));
            for (int i = 0; i < T; ++i) {
                std::vector<const float*> keys, values;
                for (int b = 0; b * bs <= positions[i]; ++b) {
                    const float* block = cache_hm.data() + static_cast<std::size_t>(tables[offsets[i] + b]) * 2 * bs * KV;
                    keys.push_back(block);
                    values.push_back(block + static_cast<std::size_t>(bs) * KV);
                }
                const kernels::attention_source src{keys.data(), values.data(), static_cast<std::size_t>(bs)};
                for (int g = 0; g < sh.n_head_kv; ++g) {
                    kernels::attend(&qkv[static_cast<std::size_t>(i) * W + static_cast<std::size_t>(g) * group * D],
                                    group, D, g, positions[i], src,
                                    &want[static_cast<std::size_t>(i) * Q + static_cast<std::size_t>(g) * group * D],
                                    scratch.data());
                }
            }

            attention_prepare(t, group, D);
            const device_buffer d_cache = upload(encode(cache, t));
            const device_buffer d_qkv = upload(qkv);
            const device_buffer d_pos = upload(positions);
            const device_buffer d_off = upload(offsets);
            const device_buffer d_tables = upload(tables);
            step_meta m;
            m.positions = d_pos.as<int>();
            m.table_offset = d_off.as<int>();
            m.tables = d_tables.as<int>();
            const int needed = (contexts.back() + attention_partition - 1) / attention_partition;
            std::vector<std::vector<float>> results;
            for (int parts : {needed, 2 * needed + 1}) {
                attention_params p;
                p.n_tokens = T;
                p.n_head = sh.n_head;
                p.n_head_kv = sh.n_head_kv;
                p.head_dim = D;
                p.block_size = bs;
                p.n_parts = parts;
                p.scale = 1.0f / std::sqrt(static_cast<float>(D));
                const device_buffer d_partial(attention_scratch_floats(T, sh.n_head, D, parts) * sizeof(float), "partial");
                const device_buffer d_out(want.size() * dtype_size(t), "out");
                test_stream s;
                attention(t, d_qkv.as<float>(), W, d_cache.get(), m, p, d_partial.as<float>(), d_out.get(), s.get());
                s.sync();
                results.push_back(decode(download<std::byte>(d_out, d_out.bytes()), t));
            }
            CHECK(error_vs_scale(results[0], want) < (t == dtype::f32 ? 1e-5 : 1.0 / 128));
            // More partitions launched than needed (as CUDA graphs do) changes nothing.
            CHECK(results[1] == results[0]);
        }
    }
}
