// A tour of weft in one program: lazy tasks, a work-stealing thread pool,
// when_all, a bounded channel between producer and consumers, an async
// generator, and cancellation through a stop token.
#include <weft/async_generator.hpp>
#include <weft/async_scope.hpp>
#include <weft/channel.hpp>
#include <weft/spawn.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>
#include <weft/when_all.hpp>
#include <weft/when_any.hpp>

#include <fmt/core.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

// A task is lazy: nothing runs until somebody awaits it.
weft::task<long> fib(weft::thread_pool& pool, int n) {
    if (n < 2) {
        co_return n;
    }
    if (n < 16) { // small enough: stay on this thread
        co_return co_await fib(pool, n - 1) + co_await fib(pool, n - 2);
    }
    // Large: run both halves on the pool, concurrently.
    auto on_pool = [](weft::thread_pool& p, int k) -> weft::task<long> {
        co_await p.schedule();
        co_return co_await fib(p, k);
    };
    auto [a, b] = co_await weft::when_all(on_pool(pool, n - 1), on_pool(pool, n - 2));
    co_return a + b;
}

// An async generator: the natural shape of a stream of tokens.
weft::async_generator<std::string> words(std::string text) {
    std::string word;
    for (char c : text) {
        if (c == ' ') {
            co_yield word;
            word.clear();
        } else {
            word += c;
        }
    }
    if (!word.empty()) {
        co_yield word;
    }
}

weft::task<void> producer(weft::channel<int>& ch, int count) {
    for (int i = 1; i <= count; ++i) {
        co_await ch.send(i); // suspends while the channel is full: back-pressure
    }
    ch.close();
}

weft::task<long> consumer(weft::thread_pool& pool, weft::channel<int>& ch) {
    co_await pool.schedule();
    long sum = 0;
    while (auto v = co_await ch.receive()) { // drains, then sees the end after close()
        sum += *v;
    }
    co_return sum;
}

weft::task<int> slow_answer(weft::thread_pool& pool) {
    co_await pool.schedule();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    co_return 42;
}

weft::task<int> never(weft::channel<int>& ch) {
    auto v = co_await ch.receive(); // cancelled by when_any once slow_answer wins
    co_return v.value_or(-1);
}

weft::task<void> tour(weft::thread_pool& pool) {
    const auto start = std::chrono::steady_clock::now();
    const long f = co_await fib(pool, 30);
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    fmt::print("fib(30) = {} on {} pool threads in {:.1f} ms\n", f, pool.thread_count(), ms.count());

    weft::channel<int> ch(16);
    weft::async_scope scope;
    scope.spawn(pool, producer(ch, 10'000));
    auto [s1, s2] = co_await weft::when_all(consumer(pool, ch), consumer(pool, ch));
    co_await scope.join();
    fmt::print("two consumers drained a bounded channel: {} + {} = {}\n", s1, s2, s1 + s2);

    auto gen = words("weft streams words like tokens");
    fmt::print("async_generator:");
    while (auto w = co_await gen.next()) {
        fmt::print(" [{}]", *w);
    }
    fmt::print("\n");

    weft::channel<int> silent(1);
    auto winner = co_await weft::when_any(slow_answer(pool), never(silent));
    fmt::print("when_any: child {} won with {}; the other was cancelled and awaited\n",
               winner.index(), std::get<0>(winner));
}

} // namespace

int main() {
    weft::thread_pool pool(2);
    weft::sync_wait(tour(pool));
    fmt::print("weft is working.\n");
}
