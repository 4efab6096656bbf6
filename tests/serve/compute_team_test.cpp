// The CPU backend's fork-join team: fixed parts and chunks taken in turn.
#include "kernels/parallel.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace k = weft::serve::kernels;

TEST_CASE("compute team runs every part once, the caller taking part zero", "[compute_team]") {
    k::compute_team team(3);
    REQUIRE(team.size() == 3);
    const auto caller = std::this_thread::get_id();
    for (int job = 0; job < 200; ++job) {
        std::vector<std::atomic<int>> runs(3);
        std::thread::id part0;
        team.run([&](std::size_t part, std::size_t parts) {
            // Catch2's assertions are not thread-safe: count, check after.
            if (parts == 3) runs[part].fetch_add(1, std::memory_order_relaxed);
            if (part == 0) part0 = std::this_thread::get_id();
        });
        for (auto& r : runs) CHECK(r.load() == 1);
        CHECK(part0 == caller);
    }
}

TEST_CASE("compute team hands out every chunk exactly once whichever thread is free", "[compute_team]") {
    k::compute_team team(2);
    for (std::size_t chunks : {1u, 2u, 7u, 64u, 1000u}) {
        std::vector<std::atomic<int>> runs(chunks);
        std::atomic<std::size_t> wrong_count{0};
        team.run_chunks(chunks, [&](std::size_t chunk, std::size_t n) {
            if (n != chunks) wrong_count.fetch_add(1, std::memory_order_relaxed);
            runs[chunk].fetch_add(1, std::memory_order_relaxed);
        });
        CHECK(wrong_count.load() == 0);
        std::size_t once = 0;
        for (auto& r : runs) once += r.load() == 1 ? 1 : 0;
        CHECK(once == chunks);
    }
}

TEST_CASE("compute team tells each chunk the part of the thread running it", "[compute_team]") {
    k::compute_team team(2);
    std::vector<std::atomic<int>> runs(300);
    std::atomic<std::size_t> bad_part{0};
    team.run_chunks(300, [&](std::size_t chunk, std::size_t, std::size_t part) {
        if (part >= team.size()) bad_part.fetch_add(1, std::memory_order_relaxed);
        runs[chunk].fetch_add(1, std::memory_order_relaxed);
    });
    CHECK(bad_part.load() == 0);
    std::size_t once = 0;
    for (auto& r : runs) once += r.load() == 1 ? 1 : 0;
    CHECK(once == 300);
    // A team of one runs every chunk as part 0.
    k::compute_team alone(1);
    std::size_t nonzero = 0;
    alone.run_chunks(5, [&](std::size_t, std::size_t, std::size_t part) { nonzero += part != 0 ? 1 : 0; });
    CHECK(nonzero == 0);
}

TEST_CASE("compute team of one runs chunks in order on the calling thread", "[compute_team]") {
    k::compute_team team(1);
    std::vector<std::size_t> order;
    team.run_chunks(5, [&](std::size_t chunk, std::size_t) { order.push_back(chunk); });
    CHECK(order == std::vector<std::size_t>{0, 1, 2, 3, 4});
}

TEST_CASE("compute team chunks see the writes of the job before them", "[compute_team]") {
    // Each job reads every element the previous job wrote from whichever
    // thread, so a missing happens-before shows up as a wrong sum (and
    // under ThreadSanitizer as a race).
    k::compute_team team(2);
    std::vector<long> data(256, 1);
    for (int job = 0; job < 60; ++job) {
        std::vector<long> next(data.size());
        team.run_chunks(16, [&](std::size_t chunk, std::size_t chunks) {
            const auto [begin, end] = k::compute_team::split(data.size(), chunk, chunks);
            for (std::size_t i = begin; i < end; ++i) next[i] = data[i] + data[(i + 1) % data.size()];
        });
        data.swap(next);
        long min = data[0], max = data[0];
        for (long v : data) min = std::min(min, v), max = std::max(max, v);
        REQUIRE(min == max); // every element doubles each job
        REQUIRE(min == (1L << (job + 1)));
    }
}
