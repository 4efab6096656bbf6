// execute() against scripted loopback servers: each script answers the
// requests of one accepted connection with fixed bytes, written in pieces.
#include "loadgen_client.hpp"

#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace weft::loadgen;
namespace io = weft::io;
using weft::task;

namespace {

struct reply {
    std::string bytes;
    std::size_t piece = 0;         ///< write in pieces of this size (0: at once)
    bool close_after = false;      ///< close the connection after writing
    bool silent = false;           ///< read the request, answer nothing, keep the connection
};

/// Reads one request (head and Content-Length body); false at end of stream.
task<bool> read_request(io::tcp_stream& s, std::string& pending) {
    std::vector<std::byte> buf(4096);
    for (;;) {
        const auto head_end = pending.find("\r\n\r\n");
        if (head_end != std::string::npos) {
            std::size_t length = 0;
            if (const auto cl = pending.find("Content-Length: "); cl != std::string::npos && cl < head_end) {
                length = std::stoul(pending.substr(cl + 16));
            }
            if (pending.size() >= head_end + 4 + length) {
                pending.erase(0, head_end + 4 + length);
                co_return true;
            }
        }
        const std::size_t n = co_await s.read_some(buf);
        if (n == 0) {
            co_return false;
        }
        pending.append(reinterpret_cast<const char*>(buf.data()), n);
    }
}

/// Accepts connections in turn and answers with `script` in order.
task<void> serve(io::io_context& ctx, io::tcp_listener& listener, std::vector<reply> script) {
    std::size_t next = 0;
    while (next < script.size()) {
        io::tcp_stream s = co_await listener.accept();
        std::string pending;
        while (next < script.size()) {
            if (!co_await read_request(s, pending)) {
                break;
            }
            const reply& r = script[next++];
            if (r.silent) {
                co_await io::sleep_for(ctx, std::chrono::milliseconds(1000));
                break;
            }
            const std::size_t piece = r.piece == 0 ? r.bytes.size() : r.piece;
            for (std::size_t at = 0; at < r.bytes.size(); at += piece) {
                const std::string part = r.bytes.substr(at, piece);
                co_await s.write_all(std::as_bytes(std::span(part.data(), part.size())));
                if (r.piece != 0) {
                    co_await io::sleep_for(ctx, std::chrono::microseconds(200));
                }
            }
            if (r.close_after) {
                break;
            }
        }
    }
}

std::string sse_response(int tokens, bool done = true) {
    std::string events;
    for (int i = 0; i < tokens; ++i) {
        events += "data: {\"choices\":[{\"index\":0,\"text\":\"t" + std::to_string(i) + "\",\"finish_reason\":" +
                  (i + 1 == tokens ? "\"length\"" : "null") + "}]}\n\n";
    }
    if (done) {
        events += "data: [DONE]\n\n";
    }
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    // One HTTP chunk per event, as a streaming server writes them.
    for (std::size_t at = 0; at < events.size();) {
        const std::size_t end = events.find("\n\n", at) + 2;
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", end - at);
        out += size;
        out += events.substr(at, end - at);
        out += "\r\n";
        at = end;
    }
    return out + "0\r\n\r\n";
}

struct fixture {
    io::io_context ctx;
    io::tcp_listener listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    client_config cfg;
    fixture() {
        cfg.server = listener.local_endpoint();
        cfg.host_header = cfg.server.to_string();
        cfg.max_tokens = 3;
        cfg.prompt_words = 4;
    }

    /// Runs `count` requests one after another on one connection.
    std::vector<request_record> run(std::vector<reply> script, int count, connection& conn) {
        std::vector<request_record> out(static_cast<std::size_t>(count));
        std::vector<double> itls;
        auto client = [&]() -> task<void> {
            for (int i = 0; i < count; ++i) {
                co_await execute(ctx, cfg, conn, i, io::clock::now(), out[static_cast<std::size_t>(i)], itls);
            }
        };
        ctx.run([&]() -> task<void> { co_await weft::when_all(serve(ctx, listener, std::move(script)), client()); }());
        m_itls = itls;
        return out;
    }
    std::vector<double> m_itls;
};

} // namespace

TEST_CASE("client measures a stream delivered byte by byte and keeps the connection", "[loadgen][client]") {
    fixture f;
    connection conn;
    const auto r = f.run({{sse_response(3), 1}}, 1, conn);
    CHECK(r[0].error == error_kind::none);
    CHECK(r[0].status == 200);
    CHECK(r[0].output_tokens == 3);
    CHECK(r[0].finish_reason == "length");
    CHECK(r[0].ttft_s > 0);
    CHECK(r[0].e2e_s >= r[0].ttft_s);
    CHECK(r[0].max_itl_s > 0);
    CHECK(r[0].connect_s >= 0);
    CHECK(f.m_itls.size() == 2);
    CHECK(conn.is_open());
}

TEST_CASE("client reuses a kept-alive connection for the next request", "[loadgen][client]") {
    fixture f;
    connection conn;
    const auto r = f.run({{sse_response(3)}, {sse_response(3)}}, 2, conn);
    CHECK(r[0].error == error_kind::none);
    CHECK(r[1].error == error_kind::none);
    CHECK(r[1].connect_s < 0); // no new connection
}

TEST_CASE("client counts a non-200 status and keeps the connection", "[loadgen][client]") {
    fixture f;
    connection conn;
    const auto r = f.run({{"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"}, {sse_response(3)}}, 2,
                         conn);
    CHECK(r[0].error == error_kind::http_status);
    CHECK(r[0].status == 503);
    CHECK(r[0].error_detail == "busy");
    CHECK(r[1].error == error_kind::none);
    CHECK(r[1].connect_s < 0);
}

TEST_CASE("client reports a stream cut by the server as a reset", "[loadgen][client]") {
    fixture f;
    connection conn;
    const std::string full = sse_response(3);
    const auto r = f.run({{full.substr(0, full.size() / 2), 0, /*close_after=*/true}}, 1, conn);
    CHECK(r[0].error == error_kind::reset);
    CHECK_FALSE(conn.is_open());
    CHECK(f.m_itls.empty()); // failed requests add no gaps
}

TEST_CASE("client reports a stream without [DONE] or without content as short", "[loadgen][client]") {
    fixture f;
    connection conn;
    const auto r = f.run({{sse_response(3, /*done=*/false)}, {sse_response(0)}}, 2, conn);
    CHECK(r[0].error == error_kind::short_stream);
    CHECK(r[0].error_detail == "stream ended without data: [DONE]");
    CHECK(r[1].error == error_kind::short_stream);
    CHECK(r[1].error_detail == "stream ended without a content event");
}

TEST_CASE("client sends again once when a kept-alive connection was closed by the server", "[loadgen][client]") {
    fixture f;
    connection conn;
    // The server closes after the first answer without saying so; the second
    // request finds the connection dead and goes out on a new one.
    const auto r = f.run({{sse_response(3), 0, /*close_after=*/true}, {sse_response(3)}}, 2, conn);
    CHECK(r[0].error == error_kind::none);
    CHECK(r[1].error == error_kind::none);
    CHECK(r[1].connect_s >= 0);
}

TEST_CASE("client reports a silent server as a timeout", "[loadgen][client]") {
    fixture f;
    f.cfg.timeout = std::chrono::milliseconds(50);
    connection conn;
    const auto r = f.run({{"", 0, false, /*silent=*/true}}, 1, conn);
    CHECK(r[0].error == error_kind::timeout);
    CHECK_FALSE(conn.is_open());
}

TEST_CASE("client reads output tokens from usage when not streaming", "[loadgen][client]") {
    fixture f;
    f.cfg.stream = false;
    connection conn;
    const std::string body =
        R"({"choices":[{"index":0,"text":"abc","finish_reason":"length"}],"usage":{"prompt_tokens":4,"completion_tokens":3}})";
    const auto r = f.run({{"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 7}},
                         1, conn);
    CHECK(r[0].error == error_kind::none);
    CHECK(r[0].output_tokens == 3);
    CHECK(r[0].usage_prompt_tokens == 4);
    CHECK(r[0].ttft_s == r[0].e2e_s);
}

TEST_CASE("client reports a malformed response as a protocol error and closes", "[loadgen][client]") {
    fixture f;
    connection conn;
    const auto r = f.run({{"HTTP/1.1 OK\r\n\r\n"}}, 1, conn);
    CHECK(r[0].error == error_kind::protocol);
    CHECK(r[0].error_detail == "malformed status line");
    CHECK_FALSE(conn.is_open());
}

TEST_CASE("client reports a refused connection as a connect error", "[loadgen][client]") {
    io::io_context ctx;
    client_config cfg;
    {
        auto l = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
        cfg.server = l.local_endpoint(); // closed again: nobody listens there
    }
    connection conn;
    request_record r;
    std::vector<double> itls;
    ctx.run(execute(ctx, cfg, conn, 0, io::clock::now(), r, itls));
    CHECK(r.error == error_kind::connect);
    CHECK_FALSE(r.error_detail.empty());
}

TEST_CASE("request bytes carry the JSON body the API expects", "[loadgen][client]") {
    client_config cfg;
    cfg.host_header = "127.0.0.1:9";
    cfg.model = "m\"x";
    cfg.max_tokens = 5;
    cfg.prompt_words = 3;
    cfg.api_key = "k";
    const std::string completions = build_request(cfg, 7);
    CHECK(completions.rfind("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\n", 0) == 0);
    CHECK(completions.find("Authorization: Bearer k\r\n") != std::string::npos);
    CHECK(completions.find(R"({"model":"m\"x","prompt":")") != std::string::npos);
    CHECK(completions.find(R"("max_tokens":5,"temperature":0,"ignore_eos":true,"stream":true})") != std::string::npos);
    const auto body = completions.substr(completions.find("\r\n\r\n") + 4);
    CHECK(completions.find("Content-Length: " + std::to_string(body.size()) + "\r\n") != std::string::npos);

    cfg.api = api_kind::chat;
    const std::string chat = build_request(cfg, 7);
    CHECK(chat.rfind("POST /v1/chat/completions HTTP/1.1\r\n", 0) == 0);
    CHECK(chat.find(R"("messages":[{"role":"user","content":")") != std::string::npos);

    CHECK(make_prompt(0, 7, 3) == make_prompt(0, 7, 3));
    CHECK(make_prompt(0, 7, 50) != make_prompt(0, 8, 50));
    CHECK(make_prompt(1, 7, 50) != make_prompt(0, 7, 50));
    const std::string p = make_prompt(0, 1, 40);
    CHECK(std::count(p.begin(), p.end(), ' ') == 39);
}

TEST_CASE("with a shared prefix every prompt opens with the same words and goes on with its own", "[loadgen][client]") {
    client_config cfg;
    cfg.host_header = "127.0.0.1:9";
    cfg.prompt_words = 4;
    cfg.shared_prefix_words = 30;
    const auto prompt_of = [&](long index) {
        const std::string req = build_request(cfg, index);
        const std::size_t at = req.find(R"("prompt":")") + 10;
        return req.substr(at, req.find('"', at) - at);
    };
    const std::string shared = make_prompt(cfg.seed, -1, 30);
    const std::string a = prompt_of(1), b = prompt_of(2);
    CHECK(a == shared + " " + make_prompt(cfg.seed, 1, 4));
    CHECK(b == shared + " " + make_prompt(cfg.seed, 2, 4));
    CHECK(a != b);
}
