#include <weft/serve/block_manager.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <stdexcept>
#include <vector>

using weft::serve::block_id;
using weft::serve::block_manager;

TEST_CASE("block manager hands out the lowest free block first", "[block_manager]") {
    block_manager m(4, 16);
    CHECK(m.num_blocks() == 4);
    CHECK(m.block_size() == 16);
    CHECK(m.allocate() == block_id{0});
    CHECK(m.allocate() == block_id{1});
    CHECK(m.allocate() == block_id{2});
    m.release(1);
    m.release(0);
    CHECK(m.allocate() == block_id{0});
    CHECK(m.allocate() == block_id{1});
    CHECK(m.allocate() == block_id{3});
    CHECK_FALSE(m.allocate().has_value());
    CHECK(m.num_free() == 0);
    CHECK(m.num_used() == 4);
}

TEST_CASE("block manager allocates several blocks all or nothing", "[block_manager]") {
    block_manager m(5, 8);
    std::vector<block_id> table{42}; // appended to, not replaced
    REQUIRE(m.allocate(3, table));
    CHECK(table == std::vector<block_id>{42, 0, 1, 2});
    CHECK_FALSE(m.allocate(3, table));
    CHECK(table.size() == 4);
    CHECK(m.num_free() == 2);
    REQUIRE(m.allocate(2, table));
    CHECK(m.num_free() == 0);
    CHECK(m.allocate(0, table));
}

TEST_CASE("block manager frees a block when its last reference is released", "[block_manager]") {
    block_manager m(2, 4);
    const block_id b = *m.allocate();
    CHECK(m.ref_count(b) == 1);
    m.retain(b);
    m.retain(b);
    CHECK(m.ref_count(b) == 3);
    m.release(b);
    m.release(b);
    CHECK(m.num_used() == 1);
    m.release(b);
    CHECK(m.ref_count(b) == 0);
    CHECK(m.num_used() == 0);
    CHECK(m.num_free() == 2);
}

TEST_CASE("block manager rejects releasing or retaining a free block", "[block_manager]") {
    block_manager m(2, 4);
    CHECK_THROWS_AS(m.release(0), std::logic_error);
    CHECK_THROWS_AS(m.retain(1), std::logic_error);
    const block_id b = *m.allocate();
    m.release(b);
    CHECK_THROWS_AS(m.release(b), std::logic_error);
    CHECK(m.num_free() == 2); // the failed calls changed nothing
    CHECK_THROWS_AS(m.release(7), std::out_of_range);
    CHECK_THROWS_AS(m.ref_count(2), std::out_of_range);
}

TEST_CASE("block manager rejects a zero block size", "[block_manager]") {
    CHECK_THROWS_AS(block_manager(4, 0), std::invalid_argument);
    CHECK_THROWS_AS(block_manager::blocks_for(3, 0), std::invalid_argument);
    CHECK_THROWS_AS(block_manager(std::size_t{std::numeric_limits<block_id>::max()} + 2, 16), std::invalid_argument);
}

TEST_CASE("block manager with no blocks allocates nothing", "[block_manager]") {
    block_manager m(0, 16);
    std::vector<block_id> table;
    CHECK_FALSE(m.allocate().has_value());
    CHECK_FALSE(m.allocate(1, table));
    CHECK(m.allocate(0, table));
}

TEST_CASE("blocks_for rounds tokens up to whole blocks", "[block_manager]") {
    CHECK(block_manager::blocks_for(0, 16) == 0);
    CHECK(block_manager::blocks_for(1, 16) == 1);
    CHECK(block_manager::blocks_for(16, 16) == 1);
    CHECK(block_manager::blocks_for(17, 16) == 2);
    CHECK(block_manager::blocks_for(2000, 16) == 125);
    CHECK(block_manager::blocks_for(5, 1) == 5);
}
