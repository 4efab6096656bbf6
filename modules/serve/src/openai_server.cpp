#include <weft/serve/openai_server.hpp>

#include <weft/io/tcp.hpp>
#include <weft/spawn.hpp>
#include <weft/thread_name.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <stdexcept>

namespace weft::serve {

struct openai_server::shard {
    io::io_context ctx;
    io::tcp_listener listener;
    http::router router;
    std::unique_ptr<http::server> server;
};

namespace {

task<void> stop_server(http::server& s) {
    s.stop(); // on the shard's own loop thread, as http::server requires
    co_return;
}

} // namespace

io::endpoint openai_server::parse_address(const std::string& host, std::uint16_t port) {
    const std::string h = host == "localhost" ? "127.0.0.1" : host;
    const std::string text = h.find(':') != std::string::npos && h.front() != '['
                                 ? fmt::format("[{}]:{}", h, port)
                                 : fmt::format("{}:{}", h, port);
    try {
        return io::endpoint::parse(text);
    } catch (const std::invalid_argument&) {
        throw std::invalid_argument(
            fmt::format("--host '{}' is not a numeric IPv4 or IPv6 address (or localhost)", host));
    }
}

openai_server::openai_server(openai_server_options opts) : m_routes(std::move(opts.routes)) {
    const std::size_t n = opts.http_threads == 0 ? 1 : opts.http_threads;
    io::endpoint at = parse_address(opts.host, opts.port);
    const bool reuse_port = n > 1;
    for (std::size_t i = 0; i < n; ++i) {
        auto s = std::make_unique<shard>();
        s->listener = io::tcp_listener::bind(s->ctx, at, 4096, reuse_port);
        if (i == 0) {
            m_endpoint = s->listener.local_endpoint();
            at = m_endpoint; // the others share the port the first one got
        }
        m_routes.add_to(s->router, s->ctx);
        s->server = std::make_unique<http::server>(s->ctx, s->router, opts.http);
        m_routes.add_http_server(*s->server);
        m_shards.push_back(std::move(s));
    }
    for (auto& s : m_shards) {
        m_threads.emplace_back([sh = s.get(), index = m_threads.size()] {
            set_current_thread_name(fmt::format("weft-http-{}", index));
            try {
                sh->ctx.run(sh->server->run(sh->listener));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "weft-serve: HTTP loop failed: %s\n", e.what());
            }
            // run() stopped accepting, but the kernel keeps queueing
            // connections on a listening socket until it is closed.
            sh->listener.close();
        });
    }
}

openai_server::~openai_server() { join(); }

void openai_server::set_ready(engine& e, std::string model_name, chat_template tmpl) {
    m_routes.set_ready(e, std::move(model_name), std::move(tmpl));
}

void openai_server::begin_shutdown() {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
    m_routes.set_shutting_down();
    for (auto& s : m_shards) weft::spawn(s->ctx, stop_server(*s->server));
}

void openai_server::join() {
    begin_shutdown();
    for (std::thread& t : m_threads) {
        if (t.joinable()) t.join();
    }
}

} // namespace weft::serve
