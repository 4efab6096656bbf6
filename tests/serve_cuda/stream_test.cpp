// cuda::stream_ready: resumption on the executor given, after the stream's
// work; errors out of the co_await.
#include "cuda_test_support.hpp"

#include <weft/serve/cuda/stream_ready.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

using namespace weft::serve;
using namespace weft::serve::cuda;
using namespace weft::serve::cuda::test;

namespace {

/// Forwards to a thread pool, counting the handles it is given.
struct counting_executor {
    weft::thread_pool* pool;
    std::atomic<int> posts{0};
    void post(std::coroutine_handle<> h) {
        posts.fetch_add(1);
        pool->post(h);
    }
};

} // namespace

TEST_CASE("stream_ready resumes the coroutine on its executor after the stream's work", "[cuda][stream]") {
    weft::thread_pool pool(2);
    counting_executor exec{&pool};
    test_stream s;
    constexpr std::size_t n = std::size_t{64} << 20; // long enough to be still running at the co_await
    const device_buffer d(n, "buffer");
    pinned_buffer host(n, "pinned");
    std::memset(host.get(), 0, n);
    bool on_pool = false;
    bool filled = false;
    weft::sync_wait([&]() -> weft::task<void> {
        for (int round = 1; round <= 3; ++round) {
            check(cudaMemsetAsync(d.get(), round, n, s.get()), "cudaMemsetAsync");
            check(cudaMemcpyAsync(host.get(), d.get(), n, cudaMemcpyDeviceToHost, s.get()), "cudaMemcpyAsync");
            co_await stream_ready(s.get(), exec);
            on_pool = pool.running_in_this_thread();
            const auto* bytes = host.as<const unsigned char>();
            filled = bytes[0] == round && bytes[n / 2] == round && bytes[n - 1] == round;
            if (!on_pool || !filled) co_return;
        }
    }());
    CHECK(on_pool);
    CHECK(filled);
    CHECK(exec.posts.load() == 3);
}

TEST_CASE("stream_ready throws cuda_error when the wait cannot be enqueued", "[cuda][stream]") {
    weft::thread_pool pool(1);
    test_stream s;
    // A stream being captured into a graph takes no host callbacks.
    check(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    bool threw = false;
    bool on_pool = false;
    std::string what;
    weft::sync_wait([&]() -> weft::task<void> {
        try {
            co_await stream_ready(s.get(), pool);
        } catch (const cuda_error& e) {
            threw = true;
            what = e.what();
        }
        on_pool = pool.running_in_this_thread();
    }());
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(s.get(), &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError(); // the invalidated capture's error is not sticky
    CHECK(threw);
    CHECK(on_pool); // resumed through the executor even so
    CHECK_THAT(what, Catch::Contains("cudaStreamAddCallback"));
    // The stream works again.
    bool resumed = false;
    weft::sync_wait([&]() -> weft::task<void> {
        co_await stream_ready(s.get(), pool);
        resumed = pool.running_in_this_thread();
    }());
    CHECK(resumed);
}

TEST_CASE("a fault on the stream comes out of the co_await as cuda_error", "[cuda][stream][fault]") {
    // A device fault poisons the whole CUDA context, so it happens in a
    // child process: this binary again, with the fault flag.
    std::string exe(4096, '\0');
    const ssize_t len = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
    REQUIRE(len > 0);
    exe.resize(static_cast<std::size_t>(len));
    const std::string cmd = "'" + exe + "' " + fault_child_flag;
    const int status = std::system(cmd.c_str());
    REQUIRE(status != -1);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

namespace weft::serve::cuda::test {

int run_fault_child() {
    try {
        weft::thread_pool pool(1);
        test_stream s;
        // A gather from row INT_MAX of a tiny table reads far outside any
        // allocation: an illegal address, reported asynchronously.
        const std::vector<float> table(64, 1.0f);
        const std::vector<int> tokens{INT_MAX};
        const device_buffer d_table = upload(table);
        const device_buffer d_tokens = upload(tokens);
        const device_buffer d_x(4096 * sizeof(float), "x");
        embed(dtype::f32, d_table.get(), 4096, d_tokens.as<int>(), 1, d_x.as<float>(), s.get());
        bool on_pool = false;
        std::string what;
        int code = 0;
        weft::sync_wait([&]() -> weft::task<void> {
            try {
                co_await stream_ready(s.get(), pool);
            } catch (const cuda_error& e) {
                what = e.what();
                code = e.code();
            }
            on_pool = pool.running_in_this_thread();
        }());
        std::printf("fault child: '%s' (code %d), %s\n", what.c_str(), code,
                    on_pool ? "resumed on the pool" : "NOT resumed on the pool");
        const bool ok = on_pool && code != 0 && what.find("CUDA stream") != std::string::npos;
        std::fflush(stdout);
        // The context is dead: skip the destructors' CUDA calls.
        std::_Exit(ok ? 0 : 1);
    } catch (const std::exception& e) {
        std::printf("fault child: unexpected exception: %s\n", e.what());
        std::fflush(stdout);
        std::_Exit(2);
    }
}

} // namespace weft::serve::cuda::test
