// The CPU backend's fork-join team: fixed parts and chunks taken in turn.
#include "kernels/parallel.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
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

TEST_CASE("compute team runs every part exactly once when the caller takes parts back from late helpers",
          "[compute_team][stress]") {
    // Parts that take no time: the caller is usually done with part 0 before
    // a helper starts, and takes parts back, racing the helpers' own start,
    // their spinning and their parking. Every part still runs once, and its
    // writes are visible when run() returns, whoever ran it.
    k::compute_team team(3);
    const auto caller = std::this_thread::get_id();
    std::vector<long> slots(3, 0);
    std::size_t on_caller = 0;
    for (int job = 0; job < 20000; ++job) {
        std::vector<std::thread::id> ran_on(3);
        team.run([&](std::size_t part, std::size_t) {
            ++slots[part];
            ran_on[part] = std::this_thread::get_id();
        });
        for (std::size_t p = 1; p < 3; ++p) on_caller += ran_on[p] == caller ? 1 : 0;
        if (job % 1000 == 999) std::this_thread::sleep_for(std::chrono::microseconds(300)); // let helpers park
        REQUIRE(slots[0] == job + 1);
        REQUIRE(slots[1] == job + 1);
        REQUIRE(slots[2] == job + 1);
    }
    INFO("parts 1 and 2 run by the caller " << on_caller << " times of 40000");
    SUCCEED();
}
