// An echo server on weft::io: one io_context, one coroutine per connection,
// graceful stop on SIGINT/SIGTERM (pending accepts and reads are cancelled
// through the async_scope's stop token).
//   06_echo_server [port]      (default 7777, listens on 127.0.0.1)
#include <weft/async_scope.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/signal_set.hpp>
#include <weft/io/tcp.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>

#include <fmt/core.h>

#include <span>
#include <csignal>
#include <cstdlib>
#include <string>
#include <system_error>

namespace {

using weft::task;
namespace io = weft::io;

task<void> echo(io::tcp_stream s) {
    s.use_buffer_ring(); // io_uring: data arrives without a receive per message
    try {
        // read_view: the bytes where the kernel put them, sent back from there.
        for (std::span<const std::byte> v; !(v = co_await s.read_view()).empty();) {
            co_await s.write_all(v);
        }
    } catch (const weft::operation_cancelled&) {
        // server stopping
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::connection_reset) { // a peer that leaves mid-stream just goes
            fmt::print(stderr, "connection: {}\n", e.what());
        }
    }
}

task<void> accept_loop(io::tcp_listener& listener, weft::async_scope& scope) {
    try {
        for (;;) {
            scope.spawn(echo(co_await listener.accept()));
        }
    } catch (const weft::operation_cancelled&) {
    }
}

task<void> serve(io::io_context& ctx, std::uint16_t port) {
    // Blocks SIGINT/SIGTERM in this (the only) thread: they queue for wait().
    io::signal_set signals(ctx, {SIGINT, SIGTERM});
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(port));
    fmt::print("echo server on {} (io backend: {})\n", listener.local_endpoint().to_string(),
               ctx.backend() == io::io_backend::uring ? "io_uring" : "epoll");
    weft::async_scope scope;
    scope.spawn(accept_loop(listener, scope));
    const int sig = co_await signals.wait();
    fmt::print("signal {}: stopping\n", sig);
    scope.request_stop();
    co_await scope.join();
}

} // namespace

int main(int argc, char** argv) {
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 7777);
    weft::frame_allocator::enable_recycling(true); // coroutine frames from a per-thread cache
    io::io_context ctx;
    ctx.run(serve(ctx, port));
    fmt::print("bye\n");
}
