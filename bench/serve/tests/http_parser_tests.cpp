#include "loadgen_http.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using weft::loadgen::response_parser;

namespace {

struct parsed {
    std::vector<response_parser::step> steps; ///< head/complete/error, in order (body and need_more left out)
    std::string body;
    std::string leftover;
    int status = 0;
    bool keep_alive = false;
    std::string error;
};

/// Feeds `bytes` in pieces of `piece` bytes (0: all at once); `close` ends
/// with the peer closing the connection.
parsed run(std::string_view bytes, std::size_t piece = 0, bool close = false) {
    response_parser p;
    parsed out;
    bool ended = false;
    auto take = [&](response_parser::step s, std::string_view body) {
        switch (s) {
        case response_parser::step::body:
            out.body.append(body);
            break;
        case response_parser::step::need_more:
            break;
        case response_parser::step::head:
            out.status = p.head().status;
            out.steps.push_back(s);
            break;
        case response_parser::step::complete:
        case response_parser::step::error:
            out.steps.push_back(s);
            ended = true;
            break;
        }
    };
    const std::size_t step_size = piece == 0 ? bytes.size() : piece;
    for (std::size_t at = 0; at < bytes.size() && !ended; at += step_size) {
        std::string_view in = bytes.substr(at, step_size);
        std::string_view body;
        for (;;) {
            const auto s = p.next(in, body);
            take(s, body);
            if (s == response_parser::step::need_more || ended) {
                break;
            }
        }
        if (ended) {
            out.leftover = std::string(in) + std::string(bytes.substr(std::min(bytes.size(), at + step_size)));
        }
    }
    if (!ended && close) {
        take(p.finish(), {});
    }
    out.keep_alive = p.keep_alive();
    out.error = p.error();
    return out;
}

using S = response_parser::step;

} // namespace

TEST_CASE("response parser reads a Content-Length body in pieces of any size", "[loadgen][http]") {
    const std::string r = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world";
    for (std::size_t piece : {0u, 1u, 2u, 3u, 7u, 64u}) {
        const parsed p = run(r, piece);
        CAPTURE(piece);
        CHECK(p.steps == std::vector<S>{S::head, S::complete});
        CHECK(p.status == 200);
        CHECK(p.body == "hello world");
        CHECK(p.keep_alive);
    }
}

TEST_CASE("response parser decodes chunked bodies with extensions and trailers", "[loadgen][http]") {
    const std::string r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for (std::size_t piece : {0u, 1u, 2u, 5u, 13u}) {
        const parsed p = run(r, piece);
        CAPTURE(piece);
        CHECK(p.steps == std::vector<S>{S::head, S::complete});
        CHECK(p.body == "hello 0123456789");
        CHECK(p.keep_alive);
        CHECK(p.leftover.empty());
    }
}

TEST_CASE("response parser accepts bare LF line endings", "[loadgen][http]") {
    const parsed p = run("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", 1);
    CHECK(p.steps == std::vector<S>{S::head, S::complete});
    CHECK(p.body == "abc");
}

TEST_CASE("response parser leaves the bytes of the next response unconsumed", "[loadgen][http]") {
    const parsed p = run("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n");
    CHECK(p.steps == std::vector<S>{S::head, S::complete});
    CHECK(p.status == 204);
    CHECK(p.leftover == "HTTP/1.1 200 OK\r\n");
}

TEST_CASE("response parser skips interim 1xx responses", "[loadgen][http]") {
    const parsed p = run("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", 3);
    CHECK(p.steps == std::vector<S>{S::head, S::complete});
    CHECK(p.status == 503);
    CHECK(p.body == "busy");
}

TEST_CASE("response parser reads a body without length until the connection closes", "[loadgen][http]") {
    const parsed p = run("HTTP/1.1 200 OK\r\n\r\nall of it", 4, /*close=*/true);
    CHECK(p.steps == std::vector<S>{S::head, S::complete});
    CHECK(p.body == "all of it");
    CHECK_FALSE(p.keep_alive);
}

TEST_CASE("response parser reports a response truncated by the close as an error", "[loadgen][http]") {
    const parsed chunked = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 0, true);
    CHECK(chunked.steps == std::vector<S>{S::head, S::error});
    CHECK(chunked.error == "connection closed in the middle of the response");
    const parsed length = run("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, true);
    CHECK(length.steps == std::vector<S>{S::head, S::error});
    const parsed nothing = run("", 0, true);
    CHECK(nothing.steps == std::vector<S>{S::error});
    CHECK(nothing.error == "connection closed before the response");
}

TEST_CASE("response parser honours Connection and the HTTP version for keep-alive", "[loadgen][http]") {
    CHECK_FALSE(run("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK_FALSE(run("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK(run("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK(run("HTTP/1.1 200 OK\r\nConnection: upgrade, keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

TEST_CASE("response parser prefers Transfer-Encoding over Content-Length", "[loadgen][http]") {
    const parsed p = run("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    CHECK(p.steps == std::vector<S>{S::head, S::complete});
    CHECK(p.body == "ok");
}

TEST_CASE("response parser rejects malformed responses with a reason", "[loadgen][http]") {
    struct bad_case {
        std::string_view bytes;
        std::string_view reason;
    };
    const bad_case cases[] = {
        {"HTTP/2 200 OK\r\n\r\n", "malformed status line"},
        {"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"},
        {"HTTP/1.1 200OK\r\n\r\n", "malformed status line"},
        {"\r\n", "empty line before the status line"},
        {"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "malformed header line"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "obsolete header line folding"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length headers"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk-size line"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", "chunk data not followed by CRLF"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", "chunk size too large"},
        {"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101 Switching Protocols"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.bytes);
        const parsed p = run(c.bytes, 1);
        REQUIRE_FALSE(p.steps.empty());
        CHECK(p.steps.back() == S::error);
        CHECK(p.error == c.reason);
    }
}

TEST_CASE("response parser bounds the head size", "[loadgen][http]") {
    response_parser p(64);
    const std::string head = "HTTP/1.1 200 OK\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n";
    std::string_view in = head;
    std::string_view body;
    CHECK(p.next(in, body) == S::error);
    CHECK(p.error() == "response head too large");
}

TEST_CASE("response parser is reusable after reset for the next response", "[loadgen][http]") {
    response_parser p;
    std::string_view body;
    for (int round = 0; round < 3; ++round) {
        std::string_view in = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        CHECK(p.next(in, body) == S::head);
        CHECK(p.next(in, body) == S::body);
        CHECK(body == "hi");
        CHECK(p.next(in, body) == S::complete);
        CHECK(p.next(in, body) == S::complete);
        p.reset();
        CHECK_FALSE(p.started());
    }
}
