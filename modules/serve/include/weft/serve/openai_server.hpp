/// \file
/// `openai_server`: the HTTP front of weft-serve: `http_threads` loop
/// threads, each with its own `io_context`, SO_REUSEPORT listener on the
/// same address, router and `http::server` (the shard model; the kernel
/// spreads connections), all serving one `openai_routes`.
///
/// It listens from construction on, before any model is loaded, so that
/// /health can say "loading"; `set_ready` hands it the engine.
///
/// Shutdown is two steps, so that requests in flight can finish:
/// `begin_shutdown()` makes new requests 503, stops accepting and closes
/// idle connections (busy ones get `http.shutdown_timeout`); then, once the
/// engine has finished or aborted its requests (`engine::shutdown`),
/// `join()` waits for the loops to end. The destructor does both.
///
/// Lifetime: the engine given to `set_ready` must outlive `join()`.
/// Threading: every member may be called from any thread (one `join` at a time).
#pragma once

#include <weft/http/server.hpp>
#include <weft/io/endpoint.hpp>
#include <weft/serve/openai_routes.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weft::serve {

struct openai_server_options {
    /// A numeric IPv4/IPv6 address, or "localhost".
    std::string host = "127.0.0.1";
    /// 0 picks a free port (see `port()`).
    std::uint16_t port = 8080;
    std::size_t http_threads = 1;
    openai_routes_options routes;
    http::server_options http;
};

class openai_server {
public:
    /// Binds and starts the loop threads; throws std::invalid_argument for a
    /// bad host and std::system_error when the address cannot be bound.
    explicit openai_server(openai_server_options opts);
    ~openai_server();
    openai_server(const openai_server&) = delete;
    openai_server& operator=(const openai_server&) = delete;

    /// The bound address (the real port when 0 was asked).
    [[nodiscard]] const io::endpoint& local_endpoint() const noexcept { return m_endpoint; }
    [[nodiscard]] std::uint16_t port() const noexcept { return m_endpoint.port(); }
    [[nodiscard]] openai_routes& routes() noexcept { return m_routes; }

    /// Serves `e` from now on (see openai_routes::set_ready).
    void set_ready(engine& e, std::string model_name, chat_template tmpl);
    /// New requests get 503; stop accepting; idle connections close. Idempotent.
    void begin_shutdown();
    /// Waits until every loop thread has ended (calls begin_shutdown first).
    void join();

    /// "127.0.0.1:8080" from a host and port ("[::1]:8080" for IPv6).
    static io::endpoint parse_address(const std::string& host, std::uint16_t port);

private:
    struct shard;

    openai_routes m_routes;
    io::endpoint m_endpoint;
    std::vector<std::unique_ptr<shard>> m_shards;
    std::vector<std::thread> m_threads;
    std::mutex m_mutex;
    bool m_stopping = false;
};

} // namespace weft::serve
