// Synchronous and asynchronous generators.
#include <weft/async_generator.hpp>
#include <weft/generator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <fmt/core.h>

namespace {

weft::generator<unsigned long> fibonacci() {
    unsigned long a = 0;
    unsigned long b = 1;
    while (true) {
        co_yield a;
        b = a + b;
        a = b - a;
    }
}

weft::task<int> lookup(int i) { co_return i * 10; } // stands for any asynchronous step

weft::async_generator<int> tokens(int n) {
    for (int i = 0; i < n; ++i) {
        co_yield co_await lookup(i);
    }
}

weft::task<void> consume() {
    auto gen = tokens(5);
    fmt::print("async:");
    for (auto it = co_await gen.begin(); it != gen.end(); co_await ++it) {
        fmt::print(" {}", *it);
    }
    fmt::print("\n");
}

} // namespace

int main() {
    fmt::print("sync:");
    for (unsigned long v : fibonacci()) {
        if (v > 100) {
            break; // abandoning the generator destroys its frame
        }
        fmt::print(" {}", v);
    }
    fmt::print("\n");
    weft::sync_wait(consume());
}
