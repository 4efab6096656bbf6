// A multi-core HTTP/1.1 server: one io_context per thread (the shard model),
// each with its own SO_REUSEPORT listener on the same port and its own
// `http::server`, sharing one read-only router. SIGINT/SIGTERM shut every
// shard down gracefully.
//
//   08_http_hello [PORT=8080] [THREADS=number of cores]
//   curl http://127.0.0.1:8080/          -> hello, world
//   curl http://127.0.0.1:8080/hello/ana -> hello, ana
#include <weft/http/router.hpp>
#include <weft/http/server.hpp>
#include <weft/io/endpoint.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/spawn.hpp>

#include <fmt/core.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct shard {
    weft::io::io_context ctx;
    std::unique_ptr<weft::http::server> server;
};

weft::task<void> stop_server(weft::http::server& s) {
    s.stop(); // runs on the shard's own loop thread, as server::stop requires
    co_return;
}

} // namespace

int main(int argc, char** argv) {
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 8080);
    const unsigned threads = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2]))
                                      : std::max(1u, std::thread::hardware_concurrency());
    // Coroutine frames (a few per request) come from per-thread caches.
    weft::frame_allocator::enable_recycling(true);

    weft::http::router routes;
    routes.get("/", [](weft::http::request&, weft::http::context&) -> weft::task<weft::http::response> {
        co_return weft::http::response(200, "hello, world\n", "text/plain");
    });
    routes.get("/hello/{name}", [](weft::http::request&, weft::http::context& ctx) -> weft::task<weft::http::response> {
        co_return weft::http::response(200, fmt::format("hello, {}\n", ctx.param("name")), "text/plain");
    });

    // Signals are taken by this thread alone (sigwait), never by the loops.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    std::vector<std::unique_ptr<shard>> shards;
    std::vector<std::jthread> loops;
    for (unsigned i = 0; i < threads; ++i) {
        auto& s = *shards.emplace_back(std::make_unique<shard>());
        auto listener = weft::io::tcp_listener::bind(s.ctx, weft::io::endpoint::loopback(port), 4096,
                                                     /*reuse_port=*/true);
        s.server = std::make_unique<weft::http::server>(s.ctx, routes);
        loops.emplace_back([&s, l = std::move(listener)]() mutable { s.ctx.run(s.server->run(l)); });
    }
    fmt::print("weft http server on http://127.0.0.1:{}/ with {} loop thread(s)\n", port, threads);
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);
    fmt::print("signal {}: shutting down\n", received);
    for (auto& s : shards) {
        weft::spawn(s->ctx, stop_server(*s->server));
    }
    loops.clear(); // each loop returns when its server has drained
}
