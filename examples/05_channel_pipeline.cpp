// A three-stage pipeline over bounded channels on a thread pool, with a mutex
// guarding shared state and a latch marking the end of the workers.
#include <weft/async_latch.hpp>
#include <weft/async_mutex.hpp>
#include <weft/async_scope.hpp>
#include <weft/channel.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <fmt/core.h>

#include <map>

namespace {

weft::task<void> source(weft::channel<int>& out, int n) {
    for (int i = 0; i < n; ++i) {
        co_await out.send(i);
    }
    out.close();
}

weft::task<void> worker(weft::channel<int>& in, weft::channel<int>& out, weft::async_latch& done) {
    while (auto v = co_await in.receive()) {
        co_await out.send(*v * *v);
    }
    done.count_down();
}

weft::task<void> closer(weft::async_latch& done, weft::channel<int>& out) {
    co_await done.wait();
    out.close();
}

weft::task<void> sink(weft::channel<int>& in, weft::async_mutex& m, std::map<int, int>& buckets) {
    while (auto v = co_await in.receive()) {
        auto lock = co_await m.scoped_lock();
        ++buckets[*v % 10];
    }
}

weft::task<void> pipeline(weft::thread_pool& pool) {
    constexpr int workers = 4;
    weft::channel<int> numbers(8);
    weft::channel<int> squares(8);
    weft::async_latch done(workers);
    weft::async_mutex m;
    std::map<int, int> buckets;

    weft::async_scope scope;
    scope.spawn(pool, source(numbers, 10'000));
    for (int i = 0; i < workers; ++i) {
        scope.spawn(pool, worker(numbers, squares, done));
    }
    scope.spawn(pool, closer(done, squares));
    scope.spawn(pool, sink(squares, m, buckets));
    scope.spawn(pool, sink(squares, m, buckets));
    co_await scope.join();

    fmt::print("last digit of i*i for i < 10000:\n");
    for (auto [digit, count] : buckets) {
        fmt::print("  {}: {}\n", digit, count);
    }
}

} // namespace

int main() {
    weft::thread_pool pool(2);
    weft::sync_wait(pipeline(pool));
}
