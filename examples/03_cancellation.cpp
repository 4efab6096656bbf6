// Cancellation flows through std::stop_token: a stop request reaches every
// awaiting primitive below the root, which resumes with operation_cancelled.
#include <weft/async_event.hpp>
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
    // A std::jthread owns a stop source: use it as the root of cancellation.
    std::jthread canceller([](std::stop_token) {});
    std::stop_source stop = canceller.get_stop_source();
    std::jthread timer([stop]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        fmt::print("requesting stop\n");
        stop.request_stop();
    });
    weft::sync_wait(workers(never_set), stop.get_token());
    fmt::print("every waiter finished\n");
}
