// The benchmark peer: an echo server written the way asio's own C++20
// coroutine examples write one (asio::awaitable, co_spawn, use_awaitable),
// on one io_context run by one thread.
//
//   asio_echo_server PORT
#include <asio.hpp>

#include <cstdio>
#include <cstdlib>

namespace {

asio::awaitable<void> echo(asio::ip::tcp::socket socket) {
    char data[8192];
    try {
        for (;;) {
            const std::size_t n = co_await socket.async_read_some(asio::buffer(data), asio::use_awaitable);
            co_await asio::async_write(socket, asio::buffer(data, n), asio::use_awaitable);
        }
    } catch (const std::exception&) {
        // peer closed
    }
}

asio::awaitable<void> listener(unsigned short port) {
    auto executor = co_await asio::this_coro::executor;
    asio::ip::tcp::acceptor acceptor(executor, {asio::ip::make_address("127.0.0.1"), port});
    acceptor.listen(4096);
    for (;;) {
        asio::ip::tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
        socket.set_option(asio::ip::tcp::no_delay(true));
        asio::co_spawn(executor, echo(std::move(socket)), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    const auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 7778);
    asio::io_context ctx(1);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&](auto, auto) { ctx.stop(); });
    asio::co_spawn(ctx, listener(port), asio::detached);
    std::printf("asio echo server on 127.0.0.1:%u\n", port);
    std::fflush(stdout);
    ctx.run();
}
