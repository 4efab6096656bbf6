// A user-defined executor: a single worker thread that always runs the most
// urgent ready coroutine first. It only provides `schedule()`, yet every part
// of weft works with it unchanged: spawn, on, async_scope, when_all, strand.
#include <weft/async_scope.hpp>
#include <weft/spawn.hpp>
#include <weft/strand.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <fmt/core.h>

#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

class priority_executor {
public:
    priority_executor() : m_worker([this](std::stop_token st) { run(st); }) {}
    ~priority_executor() {
        m_worker.request_stop();
        m_ready.notify_all();
    }

    /// A handle on the executor at one priority level: this is the scheduler.
    class level {
    public:
        level(priority_executor& ex, int priority) : m_ex(&ex), m_priority(priority) {}
        auto schedule() const noexcept {
            struct awaiter {
                priority_executor* m_ex;
                int m_priority;
                bool await_ready() const noexcept { return false; }
                void await_suspend(std::coroutine_handle<> h) const { m_ex->push(m_priority, h); }
                void await_resume() const noexcept {}
            };
            return awaiter{m_ex, m_priority};
        }

    private:
        priority_executor* m_ex;
        int m_priority;
    };
    level at(int priority) { return level(*this, priority); }

private:
    struct item {
        int priority;
        unsigned long sequence; // FIFO within a priority
        std::coroutine_handle<> handle;
        bool operator<(const item& o) const {
            return priority != o.priority ? priority < o.priority : sequence > o.sequence;
        }
    };

    void push(int priority, std::coroutine_handle<> h) {
        {
            std::lock_guard lock(m_mutex);
            m_queue.push(item{priority, m_sequence++, h});
        }
        m_ready.notify_one();
    }

    void run(std::stop_token st) {
        std::unique_lock lock(m_mutex);
        while (true) {
            m_ready.wait(lock, [&] { return !m_queue.empty() || st.stop_requested(); });
            if (m_queue.empty()) {
                return;
            }
            std::coroutine_handle<> h = m_queue.top().handle;
            m_queue.pop();
            lock.unlock();
            h.resume(); // a plain resume: weft needs nothing more from an executor
            lock.lock();
        }
    }

    std::mutex m_mutex;
    std::condition_variable m_ready;
    std::priority_queue<item> m_queue;
    unsigned long m_sequence = 0;
    std::jthread m_worker; // last: starts after the queue exists
};

static_assert(weft::scheduler<priority_executor::level>);

namespace {

weft::task<int> square(priority_executor::level where, int x) {
    co_await where.schedule();
    co_return x * x;
}

weft::task<void> demo(priority_executor& ex) {
    auto low = ex.at(0);
    auto high = ex.at(10);

    // Combinators: the two children hop onto the executor at different levels.
    auto [a, b] = co_await weft::when_all(square(low, 3), square(high, 4));
    fmt::print("when_all on a priority executor: {} + {} = {}\n", a, b, a + b);

    // Structured concurrency: queue work at mixed priorities while the worker
    // is busy, and watch the urgent work run first.
    std::mutex order_mutex;
    std::vector<int> order;
    auto record = [&](int priority) -> weft::task<void> {
        std::lock_guard lock(order_mutex);
        order.push_back(priority);
        co_return;
    };
    co_await weft::on(low); // occupy the worker while we queue
    weft::async_scope scope;
    for (int p : {1, 5, 3, 9, 2}) {
        scope.spawn(ex.at(p), record(p));
    }
    co_await scope.join();
    fmt::print("ran in priority order:");
    for (int p : order) {
        fmt::print(" {}", p);
    }
    fmt::print("\n");

    // A strand over the user executor serialises whatever runs through it.
    weft::strand<priority_executor::level> serial(high);
    int counter = 0;
    auto bump = [&]() -> weft::task<void> {
        co_await serial.schedule();
        ++counter;
    };
    std::vector<weft::task<void>> bumps;
    for (int i = 0; i < 100; ++i) {
        bumps.push_back(bump());
    }
    co_await weft::when_all(std::move(bumps));
    fmt::print("strand over the priority executor counted {}\n", counter);
}

} // namespace

int main() {
    priority_executor ex;
    weft::sync_wait(demo(ex));
}
