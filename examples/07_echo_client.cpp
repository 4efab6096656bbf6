// A client for 06_echo_server: C connections, each sending N messages one at
// a time and checking every echo; prints messages per second.
//   07_echo_client [port] [connections] [messages per connection]
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using weft::task;
namespace io = weft::io;

task<long> client(io::io_context& ctx, io::endpoint at, int id, int messages) {
    io::tcp_stream s = co_await io::tcp_stream::connect(ctx, at);
    long ok = 0;
    std::vector<std::byte> back;
    for (int i = 0; i < messages; ++i) {
        const std::string msg = fmt::format("client {} message {}", id, i);
        co_await s.write_all(std::as_bytes(std::span(msg)));
        back.resize(msg.size());
        co_await s.read_exact(back);
        ok += std::equal(back.begin(), back.end(), std::as_bytes(std::span(msg)).begin()) ? 1 : 0;
    }
    co_return ok;
}

task<long> run_all(io::io_context& ctx, io::endpoint at, int connections, int messages) {
    std::vector<task<long>> clients;
    for (int c = 0; c < connections; ++c) {
        clients.push_back(client(ctx, at, c, messages));
    }
    long total = 0;
    for (long n : co_await weft::when_all(std::move(clients))) {
        total += n;
    }
    co_return total;
}

} // namespace

int main(int argc, char** argv) {
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 7777);
    const int connections = argc > 2 ? std::atoi(argv[2]) : 8;
    const int messages = argc > 3 ? std::atoi(argv[3]) : 10000;
    io::io_context ctx;
    const auto start = std::chrono::steady_clock::now();
    const long ok = ctx.run(run_all(ctx, io::endpoint::loopback(port), connections, messages));
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    const long expected = static_cast<long>(connections) * messages;
    fmt::print("{} of {} echoes correct in {:.3f} s: {:.0f} msgs/s\n", ok, expected, took.count(),
               static_cast<double>(ok) / took.count());
    return ok == expected ? 0 : 1;
}
