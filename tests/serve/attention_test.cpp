// The decode attention kernel over a paged cache: agreement with a
// double-precision reference, and grouped-query heads that share one read of
// the cache getting bitwise what each gets alone.
#include "kernels/kernels.hpp"

#include <weft/serve/ggml_type.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

namespace k = weft::serve::kernels;

namespace {

/// A paged cache of `positions` rows for `kv_heads` heads in blocks of
/// `block_size`, blocks scattered (reverse order) as a block table makes them.
template <class E>
struct paged_cache {
    std::size_t kv_heads, block_size, head_dim;
    std::vector<std::vector<E>> key_store, value_store;
    std::vector<const E*> keys, values;

    paged_cache(std::size_t kvh, std::size_t bs, std::size_t hd, std::size_t positions, std::mt19937& gen)
        : kv_heads(kvh), block_size(bs), head_dim(hd) {
        std::uniform_real_distribution<float> d(-1.0f, 1.0f);
        const std::size_t blocks = (positions + bs - 1) / bs;
        key_store.resize(blocks);
        value_store.resize(blocks);
        for (std::size_t b = 0; b < blocks; ++b) {
            for (std::size_t i = 0; i < kvh * bs * hd; ++i) {
                key_store[b].push_back(to_e(2.0f * d(gen)));
                value_store[b].push_back(to_e(d(gen)));
            }
        }
        keys.resize(blocks);
        values.resize(blocks);
        for (std::size_t b = 0; b < blocks; ++b) {
            keys[b] = key_store[blocks - 1 - b].data();
            values[b] = value_store[blocks - 1 - b].data();
        }
    }
    static E to_e(float x) {
        if constexpr (std::is_same_v<E, float>) {
            return x;
        } else {
            return weft::serve::f32_to_f16(x);
        }
    }
    static double from_e(E x) {
        if constexpr (std::is_same_v<E, float>) {
            return x;
        } else {
            return weft::serve::f16_to_f32(x);
        }
    }
    double key(std::size_t head, std::size_t pos, std::size_t i) const {
        return from_e(keys[pos / block_size][(head * block_size + pos % block_size) * head_dim + i]);
    }
    double value(std::size_t head, std::size_t pos, std::size_t i) const {
        return from_e(values[pos / block_size][(head * block_size + pos % block_size) * head_dim + i]);
    }
    k::basic_attention_source<E> source() const { return {keys.data(), values.data(), block_size}; }
};

template <class E>
void check_attention(std::size_t group, std::size_t head_dim, std::size_t pos, std::size_t bs, unsigned seed) {
    std::mt19937 gen(seed);
    const std::size_t kv_heads = 2, kv_head = 1;
    paged_cache<E> cache(kv_heads, bs, head_dim, pos + 1, gen);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> q(group * head_dim);
    for (float& x : q) x = d(gen);

    std::vector<float> out(group * head_dim), scratch(k::attend_scratch_size(group, pos));
    k::attend(q.data(), group, head_dim, kv_head, pos, cache.source(), out.data(), scratch.data());

    std::size_t off = 0, bitwise_alone = 0;
    double worst = 0;
    for (std::size_t h = 0; h < group; ++h) {
        // The head alone: a group of one.
        std::vector<float> alone(head_dim), scratch1(k::attend_scratch_size(1, pos));
        k::attend(q.data() + h * head_dim, 1, head_dim, kv_head, pos, cache.source(), alone.data(), scratch1.data());
        bitwise_alone += std::memcmp(alone.data(), out.data() + h * head_dim, head_dim * sizeof(float)) == 0 ? 1 : 0;

        // Double-precision reference.
        std::vector<double> s(pos + 1);
        double max = -1e300;
        for (std::size_t j = 0; j <= pos; ++j) {
            double dot = 0;
            for (std::size_t i = 0; i < head_dim; ++i) dot += q[h * head_dim + i] * cache.key(kv_head, j, i);
            s[j] = dot / std::sqrt(static_cast<double>(head_dim));
            max = std::max(max, s[j]);
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - max));
        for (std::size_t i = 0; i < head_dim; ++i) {
            double ref = 0;
            for (std::size_t j = 0; j <= pos; ++j) ref += s[j] / sum * cache.value(kv_head, j, i);
            const double err = std::abs(ref - out[h * head_dim + i]);
            worst = std::max(worst, err);
            off += err <= 1e-5 ? 0 : 1; // a NaN is off too
        }
    }
    INFO("group " << group << ", head_dim " << head_dim << ", pos " << pos << ", block size " << bs
                   << ", worst error " << worst);
    CHECK(off == 0);
    CHECK(bitwise_alone == group);
}

} // namespace

TEST_CASE("attention matches double precision and each grouped head gets bitwise what it gets alone",
          "[kernels][attention]") {
    unsigned seed = 1;
    for (std::size_t group : {1u, 2u, 3u, 4u, 7u, 8u}) {
        for (std::size_t head_dim : {8u, 16u, 24u, 64u, 128u}) {
            for (std::size_t pos : {0u, 6u, 7u, 15u, 16u, 37u, 130u}) {
                // Power-of-two block sizes take shifts, others divisions.
                for (std::size_t bs : {16u, 12u}) {
                    check_attention<float>(group, head_dim, pos, bs, seed++);
                    check_attention<std::uint16_t>(group, head_dim, pos, bs, seed++);
                }
            }
        }
    }
}

namespace {

template <class E>
void check_rows(std::size_t group, std::size_t head_dim, std::size_t first_pos, std::size_t tokens, std::size_t bs,
                unsigned seed) {
    std::mt19937 gen(seed);
    const std::size_t kv_heads = 2, kv_head = 1;
    const std::size_t last = first_pos + tokens - 1;
    paged_cache<E> cache(kv_heads, bs, head_dim, last + 1, gen);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    // Rows padded past the group's heads, as a step's query rows are.
    const std::size_t q_stride = group * head_dim + 5, out_stride = group * head_dim + 3;
    std::vector<float> q(tokens * q_stride);
    for (float& x : q) x = d(gen);
    std::vector<float> out(tokens * out_stride, -7.0f);
    std::vector<float> scratch(k::attend_rows_scratch_size(tokens, group, first_pos));
    k::attend_rows(q.data(), q_stride, tokens, group, head_dim, kv_head, first_pos, cache.source(), out.data(),
                   out_stride, scratch.data());

    std::size_t bitwise = 0, untouched = 0;
    for (std::size_t t = 0; t < tokens; ++t) {
        std::vector<float> alone(group * head_dim), scratch1(k::attend_scratch_size(group, first_pos + t));
        k::attend(q.data() + t * q_stride, group, head_dim, kv_head, first_pos + t, cache.source(), alone.data(),
                  scratch1.data());
        bitwise += std::memcmp(alone.data(), out.data() + t * out_stride, alone.size() * sizeof(float)) == 0 ? 1 : 0;
        for (std::size_t i = group * head_dim; i < out_stride; ++i) untouched += out[t * out_stride + i] == -7.0f;
    }
    INFO("group " << group << ", head_dim " << head_dim << ", first position " << first_pos << ", tokens " << tokens
                  << ", block size " << bs);
    CHECK(bitwise == tokens);
    CHECK(untouched == tokens * (out_stride - group * head_dim));
}

} // namespace

TEST_CASE("attention over a chunk of consecutive positions gives each token bitwise what it gets alone",
          "[kernels][attention]") {
    unsigned seed = 1000;
    for (std::size_t group : {1u, 2u, 3u, 4u, 7u}) {
        for (std::size_t head_dim : {8u, 16u, 24u, 64u, 128u}) {
            for (std::size_t first_pos : {0u, 5u, 16u, 37u, 130u}) {
                for (std::size_t tokens : {1u, 2u, 9u, 17u}) {
                    // 32: a block of values taken in two runs of sixteen.
                    for (std::size_t bs : {16u, 12u, 32u}) {
                        check_rows<float>(group, head_dim, first_pos, tokens, bs, seed++);
                        check_rows<std::uint16_t>(group, head_dim, first_pos, tokens, bs, seed++);
                    }
                }
            }
        }
    }
}

namespace {

template <class E>
void check_heads(std::size_t kv_heads, std::size_t group, std::size_t head_dim, std::size_t pos, std::size_t bs,
                 unsigned seed) {
    std::mt19937 gen(seed);
    paged_cache<E> cache(kv_heads, bs, head_dim, pos + 1, gen);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    const std::size_t width = group * head_dim; // one KV head's query heads
    std::vector<float> q(kv_heads * width);
    for (float& x : q) x = d(gen);
    // Every KV head but the first: a range that does not start at zero.
    const std::size_t begin = kv_heads > 1 ? 1 : 0;
    std::vector<float> out((kv_heads - begin) * width + 3, -7.0f);
    std::vector<float> scratch(k::attend_heads_scratch_size(kv_heads - begin, group, pos));
    k::attend_heads(q.data() + begin * width, group, head_dim, begin, kv_heads, pos, cache.source(), out.data(),
                    scratch.data());

    std::size_t bitwise = 0;
    for (std::size_t g = begin; g < kv_heads; ++g) {
        std::vector<float> alone(width), scratch1(k::attend_scratch_size(group, pos));
        k::attend(q.data() + g * width, group, head_dim, g, pos, cache.source(), alone.data(), scratch1.data());
        bitwise += std::memcmp(alone.data(), out.data() + (g - begin) * width, width * sizeof(float)) == 0 ? 1 : 0;
    }
    INFO("KV heads " << kv_heads << ", group " << group << ", head_dim " << head_dim << ", pos " << pos
                     << ", block size " << bs);
    CHECK(bitwise == kv_heads - begin);
    CHECK((out[out.size() - 3] == -7.0f && out[out.size() - 2] == -7.0f && out[out.size() - 1] == -7.0f));
}

} // namespace

TEST_CASE("attention over a token's KV heads at once gives each head bitwise what it gets alone",
          "[kernels][attention]") {
    unsigned seed = 5000;
    for (std::size_t kv_heads : {1u, 2u, 3u, 5u}) {
        for (std::size_t group : {1u, 2u, 3u, 4u}) {
            for (std::size_t head_dim : {8u, 16u, 24u, 64u}) {
                for (std::size_t pos : {0u, 6u, 15u, 16u, 37u, 130u}) {
                    for (std::size_t bs : {16u, 12u}) {
                        check_heads<float>(kv_heads, group, head_dim, pos, bs, seed++);
                        check_heads<std::uint16_t>(kv_heads, group, head_dim, pos, bs, seed++);
                    }
                }
            }
        }
    }
}
