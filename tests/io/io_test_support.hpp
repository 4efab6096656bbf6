// Helpers shared by the io tests: the backends every test runs on, a
// string's bytes for the write calls, and a connected pair of TCP streams.
#pragma once

#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <utility>

namespace weft::io::test {

/// The backends under test: automatic (io_uring here, epoll where the kernel
/// refuses it) and epoll. A test case that calls it runs once for each.
inline io_backend backend_under_test() { return GENERATE(io_backend::automatic, io_backend::epoll); }

inline std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

/// A connected pair through `listener`: {client, server side}.
inline task<std::pair<tcp_stream, tcp_stream>> connected_pair(io_context& ctx, tcp_listener& listener) {
    auto [client, server] = co_await when_all(tcp_stream::connect(ctx, listener.local_endpoint()), listener.accept());
    co_return std::pair<tcp_stream, tcp_stream>(std::move(client), std::move(server));
}

} // namespace weft::io::test
