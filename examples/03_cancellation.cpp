// Cancellation flows through std::stop_token: a stop request reaches every
// awaiting primitive below the root, which resumes with operation_cancelled.
#include <weft/async_event.hpp>
#include <weft/async_scope.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <fmt/core.h>

#include <chrono>
#include <thread>

namespace {

weft::task<void> wait_for(weft::async_event& ev, int id) {
    try {
        co_await ev.wait();
        fmt::print("waiter {} saw the event\n", id);
    } catch (const weft::operation_cancelled& e) {
        fmt::print("waiter {} cancelled: {}\n", id, e.what());
    }
}

weft::task<void> workers(weft::async_event& ev) {
    std::stop_token token = co_await weft::get_stop_token();
    fmt::print("stop possible: {}\n", token.stop_possible());
    co_await weft::when_all(wait_for(ev, 1), wait_for(ev, 2), wait_for(ev, 3));
}

} // namespace

int main() {
    weft::async_event never_set(weft::reset_mode::manual);
    // The scope is the root of cancellation for everything spawned into it.
    weft::async_scope scope;
    // A stop request resumes the cancelled coroutines on the requesting thread:
    // here the timer thread finishes the work, so it must outlive it.
    std::jthread timer([&scope] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        fmt::print("requesting stop\n");
        scope.request_stop();
    });
    auto run = [&]() -> weft::task<void> {
        scope.spawn(workers(never_set));
        co_await scope.join();
    };
    weft::sync_wait(run());
    fmt::print("every waiter finished\n");
}
