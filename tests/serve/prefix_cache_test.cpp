#include <weft/serve/block_manager.hpp>
#include <weft/serve/prefix_cache.hpp>

#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

using namespace weft::serve;

namespace {

constexpr std::size_t bs = 4;

std::vector<token_id> tokens_from(token_id first, std::size_t n) {
    std::vector<token_id> t(n);
    std::iota(t.begin(), t.end(), first);
    return t;
}

// Caches the full blocks of `tokens` as a sequence would after computing
// them: allocates a block for each, offers it, and keeps what the cache
// says to hold. Returns the sequence's block table.
std::vector<block_id> compute_and_cache(block_manager& blocks, prefix_cache& cache,
                                        const std::vector<token_id>& tokens) {
    std::vector<block_id> table;
    for (std::size_t i = 0; (i + 1) * bs <= tokens.size(); ++i) {
        REQUIRE(blocks.allocate(1, table));
        const auto previous = i > 0 ? std::optional(table[i - 1]) : std::nullopt;
        const auto held = cache.insert(previous, std::span(tokens).subspan(i * bs, bs), table[i]);
        REQUIRE(held);
        if (*held != table[i]) {
            blocks.release(table[i]);
            table[i] = *held;
        }
    }
    return table;
}

void release_all(block_manager& blocks, prefix_cache& cache, std::vector<block_id>& table) {
    for (const block_id b : table) {
        blocks.release(b);
        cache.released(b);
    }
    table.clear();
}

} // namespace

TEST_CASE("prefix cache finds the longest cached chain of full blocks", "[prefix_cache]") {
    block_manager blocks(16, bs);
    prefix_cache cache(blocks);
    const auto a = tokens_from(1, 12); // three blocks
    auto table = compute_and_cache(blocks, cache, a);
    CHECK(cache.num_cached() == 3);

    // Same first two blocks, a different third one, and a partial fourth.
    auto b = a;
    b[9] = 99;
    b.push_back(5);
    std::vector<block_id> got;
    CHECK(cache.acquire(b, 10, got) == 2);
    CHECK(got == std::vector<block_id>{table[0], table[1]});
    CHECK(blocks.ref_count(table[0]) == 3); // the first table, the cache, the new holder
    CHECK(blocks.ref_count(table[2]) == 2);

    // max_blocks caps the chain.
    std::vector<block_id> capped;
    CHECK(cache.acquire(a, 1, capped) == 1);
    CHECK(capped == std::vector<block_id>{table[0]});
}

TEST_CASE("prefix cache matches a block only after the same blocks before it", "[prefix_cache]") {
    block_manager blocks(16, bs);
    prefix_cache cache(blocks);
    const auto a = tokens_from(1, 8);
    auto table = compute_and_cache(blocks, cache, a);
    // The second block's tokens after a different first block: no match.
    std::vector<token_id> b = tokens_from(50, 4);
    b.insert(b.end(), a.begin() + 4, a.end());
    std::vector<block_id> got;
    CHECK(cache.acquire(b, 2, got) == 0);
    CHECK(got.empty());
}

TEST_CASE("prefix cache keeps blocks after their sequence ends and evicts the least recently used chain end first",
          "[prefix_cache]") {
    block_manager blocks(8, bs);
    prefix_cache cache(blocks);
    auto first = compute_and_cache(blocks, cache, tokens_from(1, 8));
    auto second = compute_and_cache(blocks, cache, tokens_from(100, 8));
    const std::vector<block_id> first_blocks = first, second_blocks = second;
    CHECK(cache.num_evictable() == 0); // in use
    release_all(blocks, cache, first);
    release_all(blocks, cache, second);
    CHECK(blocks.num_used() == 4);
    CHECK(cache.num_idle() == 4);
    CHECK(cache.num_evictable() == 2); // the ends of the two chains

    // Using the first chain again makes the second the least recently used.
    std::vector<block_id> again;
    CHECK(cache.acquire(tokens_from(1, 8), 2, again) == 2);
    CHECK(cache.num_idle() == 2);
    release_all(blocks, cache, again);

    REQUIRE(cache.evict_one());
    CHECK(blocks.ref_count(second_blocks[1]) == 0); // chain end first
    CHECK(blocks.ref_count(second_blocks[0]) == 1);
    REQUIRE(cache.evict_one());
    CHECK(blocks.ref_count(second_blocks[0]) == 0);
    REQUIRE(cache.evict_one());
    CHECK(blocks.ref_count(first_blocks[1]) == 0);
    REQUIRE(cache.evict_one());
    CHECK_FALSE(cache.evict_one());
    CHECK(blocks.num_used() == 0);
    CHECK(cache.num_cached() == 0);
    CHECK(cache.num_idle() == 0);

    // Evicted content is gone: a lookup finds nothing, and the freed numbers
    // can stand for new content.
    std::vector<block_id> none;
    CHECK(cache.acquire(tokens_from(100, 8), 2, none) == 0);
    auto third = compute_and_cache(blocks, cache, tokens_from(7, 4));
    CHECK(cache.num_cached() == 1);
}

TEST_CASE("prefix cache never evicts a block a sequence holds", "[prefix_cache]") {
    block_manager blocks(4, bs);
    prefix_cache cache(blocks);
    auto table = compute_and_cache(blocks, cache, tokens_from(1, 8));
    CHECK_FALSE(cache.evict_one());
    std::vector<block_id> shared;
    CHECK(cache.acquire(tokens_from(1, 8), 2, shared) == 2);
    release_all(blocks, cache, table); // the other holder remains
    CHECK(cache.num_idle() == 0);
    CHECK_FALSE(cache.evict_one());
    release_all(blocks, cache, shared);
    CHECK(cache.num_idle() == 2);
    CHECK(cache.evict_one());
}

TEST_CASE("prefix cache keeps one block per content and hands the twin to a second insert", "[prefix_cache]") {
    block_manager blocks(8, bs);
    prefix_cache cache(blocks);
    const auto t = tokens_from(1, 4);
    std::vector<block_id> x, y;
    REQUIRE(blocks.allocate(1, x));
    REQUIRE(blocks.allocate(1, y));
    CHECK(cache.insert(std::nullopt, t, x[0]) == x[0]);
    const auto held = cache.insert(std::nullopt, t, y[0]);
    REQUIRE(held);
    CHECK(*held == x[0]);
    CHECK(blocks.ref_count(x[0]) == 3); // x's holder, the cache, y's holder
    CHECK(blocks.ref_count(y[0]) == 1); // still the caller's to release
    CHECK(cache.num_cached() == 1);
}

TEST_CASE("prefix cache refuses a block whose previous block is not cached, and a wrong size", "[prefix_cache]") {
    block_manager blocks(8, bs);
    prefix_cache cache(blocks);
    std::vector<block_id> t;
    REQUIRE(blocks.allocate(2, t));
    CHECK_FALSE(cache.insert(t[0], tokens_from(1, 4), t[1]));
    CHECK(cache.num_cached() == 0);
    CHECK_THROWS_AS(cache.insert(std::nullopt, tokens_from(1, 3), t[0]), std::invalid_argument);
}
