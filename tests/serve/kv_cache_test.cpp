#include <weft/serve/kv_cache.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <vector>

using namespace weft::serve;

namespace {

/// Resident bytes of this process (Linux: /proc/self/statm).
std::size_t resident_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    REQUIRE(f != nullptr);
    unsigned long size = 0, resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    REQUIRE(n == 2);
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

model_config config() {
    model_config c;
    c.n_vocab = 16;
    c.n_embd = 64;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 128;
    c.rope_dim = 16;
    return c;
}

} // namespace

TEST_CASE("a KV cache commits all its memory when it is made", "[kv_cache]") {
    const model_config c = config();
    const std::size_t blocks = (std::size_t{32} << 20) / kv_cache::bytes_per_block(c, 16);
    const std::size_t before = resident_bytes();
    const kv_cache cache(c, blocks, 16);
    REQUIRE(cache.bytes() >= (std::size_t{31} << 20));
    CHECK(resident_bytes() - before >= cache.bytes());
}

TEST_CASE("a KV cache reads back what it stored, zero elsewhere", "[kv_cache]") {
    const model_config c = config();
    kv_cache cache(c, 4, 16, ggml_type::f32);
    std::vector<float> k(c.kv_dim()), v(c.kv_dim());
    for (std::size_t i = 0; i < k.size(); ++i) {
        k[i] = static_cast<float>(i) + 0.5f;
        v[i] = -static_cast<float>(i);
    }
    cache.store(2, 3, 5, k.data(), v.data());
    const float* keys = cache.keys_as<float>(2, 3);
    const float* values = cache.values_as<float>(2, 3);
    // Head-major: head h's slot 5 at (h * block_size + 5) * head_dim.
    for (std::size_t h = 0; h < c.n_head_kv; ++h) {
        for (std::size_t d = 0; d < c.head_dim; ++d) {
            CHECK(keys[(h * 16 + 5) * c.head_dim + d] == k[h * c.head_dim + d]);
            CHECK(values[(h * 16 + 5) * c.head_dim + d] == v[h * c.head_dim + d]);
        }
    }
    CHECK(keys[0] == 0.0f);
    CHECK(cache.keys_as<float>(1, 3)[(16 + 5) * c.head_dim] == 0.0f);
}
