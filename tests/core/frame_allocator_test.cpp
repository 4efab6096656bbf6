#include <weft/frame_allocator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <catch2/catch.hpp>

#include <thread>

namespace {
struct recycling_on {
    recycling_on() { weft::frame_allocator::enable_recycling(true); }
    ~recycling_on() { weft::frame_allocator::enable_recycling(false); }
};
weft::task<int> chain(int depth) {
    if (depth == 0) {
        co_return 0;
    }
    co_return 1 + co_await chain(depth - 1);
}
} // namespace

TEST_CASE("frame recycling hands a freed block back to the same thread", "[frame_allocator]") {
    recycling_on on;
    void* a = weft::frame_allocator::allocate(100);
    weft::frame_allocator::deallocate(a, 100);
    void* b = weft::frame_allocator::allocate(120); // same 32-byte class (97..128)
    CHECK(a == b);
    weft::frame_allocator::deallocate(b, 120);
}

TEST_CASE("frame recycling leaves large frames to the global allocator", "[frame_allocator]") {
    recycling_on on;
    void* a = weft::frame_allocator::allocate(weft::frame_allocator::max_class_size + 1);
    weft::frame_allocator::deallocate(a, weft::frame_allocator::max_class_size + 1);
    SUCCEED();
}

TEST_CASE("tasks run the same with frame recycling on", "[frame_allocator][task]") {
    recycling_on on;
    for (int i = 0; i < 3; ++i) {
        CHECK(weft::sync_wait(chain(1000)) == 1000);
    }
}

TEST_CASE("frames may be freed on another thread and with recycling switched off",
          "[frame_allocator]") {
    void* p = nullptr;
    {
        recycling_on on;
        p = weft::frame_allocator::allocate(64);
    }
    std::thread([&] { weft::frame_allocator::deallocate(p, 64); }).join();
    recycling_on on;
    void* q = weft::frame_allocator::allocate(64);
    std::thread([&] { weft::frame_allocator::deallocate(q, 64); }).join();
    SUCCEED();
}
