#include "http_test_support.hpp"

#include <weft/http/request_parser.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace weft::http;
using weft::http::test::parse_in_pieces;
using weft::http::test::status_of;

namespace {
const std::string simple_get =
    "GET /hello/world?x=1&y=2 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "User-Agent: test\r\n"
    "Accept: */*\r\n"
    "\r\n";

const std::string post_with_body =
    "POST /submit HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 11\r\n"
    "\r\n"
    "hello world";

const std::string chunked_post =
    "POST /upload HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "1;name=value;flag\r\n \r\n"
    "A \t; ext=\"quoted\"\r\n0123456789\r\n"
    "0\r\n"
    "X-Trailer: ignored\r\n"
    "Another: one\r\n"
    "\r\n";

void check_same(const request& a, const request& b) {
    CHECK(a.method == b.method);
    CHECK(a.method_name == b.method_name);
    CHECK(a.target == b.target);
    CHECK(a.version == b.version);
    CHECK(a.body == b.body);
    REQUIRE(a.headers.size() == b.headers.size());
    auto it = b.headers.begin();
    for (const auto& f : a.headers) {
        CHECK(f == *it);
        ++it;
    }
}
} // namespace

TEST_CASE("parser reads a simple GET request", "[http][parser]") {
    auto out = parse_in_pieces(simple_get, 0);
    REQUIRE(out.requests.size() == 1);
    const request& r = out.requests[0];
    CHECK(r.method == method::get);
    CHECK(r.method_name == "GET");
    CHECK(r.target == "/hello/world?x=1&y=2");
    CHECK(r.path() == "/hello/world");
    CHECK(r.query() == "x=1&y=2");
    CHECK(r.version == version::http_1_1);
    CHECK(r.body.empty());
    CHECK(r.keep_alive());
    REQUIRE(r.headers.size() == 3);
    auto it = r.headers.begin();
    CHECK(it->first == "Host");
    CHECK((++it)->first == "User-Agent");
    CHECK((++it)->first == "Accept");
    CHECK(out.last == parse_status::need_more);
    CHECK(out.left_over == 0);
}

TEST_CASE("parser gives the same result fed byte by byte, in pieces and in one piece", "[http][parser]") {
    for (const std::string& input : {simple_get, post_with_body, chunked_post}) {
        auto whole = parse_in_pieces(input, 0);
        REQUIRE(whole.requests.size() == 1);
        for (std::size_t piece : {1u, 2u, 3u, 7u, 13u}) {
            auto split = parse_in_pieces(input, piece);
            REQUIRE(split.requests.size() == 1);
            check_same(whole.requests[0], split.requests[0]);
        }
    }
}

TEST_CASE("parser reads a Content-Length body", "[http][parser]") {
    auto out = parse_in_pieces(post_with_body, 0);
    REQUIRE(out.requests.size() == 1);
    CHECK(out.requests[0].method == method::post);
    CHECK(out.requests[0].body == "hello world");
}

TEST_CASE("parser decodes chunked bodies and ignores extensions and trailers", "[http][parser]") {
    auto out = parse_in_pieces(chunked_post, 0);
    REQUIRE(out.requests.size() == 1);
    CHECK(out.requests[0].body == "hello 0123456789");
    CHECK_FALSE(out.requests[0].headers.contains("X-Trailer"));
    CHECK(out.left_over == 0);
}

TEST_CASE("parser returns pipelined requests one by one and keeps leftover bytes", "[http][parser]") {
    const std::string three = simple_get + post_with_body + chunked_post + "GET /partial HT";
    for (std::size_t piece : {0u, 1u, 5u}) {
        auto out = parse_in_pieces(three, piece);
        REQUIRE(out.requests.size() == 3);
        CHECK(out.requests[0].target == "/hello/world?x=1&y=2");
        CHECK(out.requests[1].body == "hello world");
        CHECK(out.requests[2].body == "hello 0123456789");
        CHECK(out.last == parse_status::need_more);
        CHECK(out.left_over == std::string("GET /partial HT").size());
    }
}

TEST_CASE("parser finishes the pipelined rest after take", "[http][parser]") {
    request_parser p;
    p.feed(simple_get + simple_get);
    REQUIRE(p.next() == parse_status::complete);
    CHECK(p.next() == parse_status::complete);  // until taken
    (void)p.take();
    REQUIRE(p.next() == parse_status::complete);
    (void)p.take();
    CHECK(p.next() == parse_status::need_more);
    CHECK(p.idle());
}

TEST_CASE("parser ignores empty lines before a request line", "[http][parser]") {
    auto out = parse_in_pieces("\r\n\r\n" + simple_get, 1);
    REQUIRE(out.requests.size() == 1);
}

TEST_CASE("header lookup ignores case and keeps order and repeats", "[http][parser]") {
    auto out = parse_in_pieces("GET / HTTP/1.1\r\nhOsT: h\r\nX-A: 1\r\nx-a: 2\r\nCONTENT-type:  text/html \t\r\n\r\n", 0);
    REQUIRE(out.requests.size() == 1);
    const header_map& h = out.requests[0].headers;
    CHECK(h.get("Host") == "h");
    CHECK(h.get("HOST") == "h");
    CHECK(h.get("x-a") == "1");
    CHECK(h.count("X-A") == 2);
    CHECK(h.get("content-type") == "text/html");
    CHECK_FALSE(h.get("missing").has_value());
}

TEST_CASE("keep-alive follows the version and the Connection header", "[http][parser]") {
    auto ka = [](const std::string& text) {
        auto out = parse_in_pieces(text, 0);
        REQUIRE(out.requests.size() == 1);
        return out.requests[0].keep_alive();
    };
    CHECK(ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK_FALSE(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    CHECK_FALSE(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n\r\n"));
    CHECK_FALSE(ka("GET / HTTP/1.0\r\n\r\n"));
    CHECK(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST_CASE("parser knows the standard methods and keeps others by name", "[http][parser]") {
    auto out = parse_in_pieces("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\nPROPFIND /y HTTP/1.1\r\nHost: h\r\n\r\n"
                               "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    REQUIRE(out.requests.size() == 3);
    CHECK(out.requests[0].method == method::delete_);
    CHECK(out.requests[1].method == method::other);
    CHECK(out.requests[1].method_name == "PROPFIND");
    CHECK(out.requests[2].method == method::options);
    CHECK(out.requests[2].target == "*");
}

TEST_CASE("parser accepts UTF-8 in the target and obs-text in header values", "[http][parser]") {
    auto out = parse_in_pieces("GET /caf\xC3\xA9/\xF0\x9F\x98\x80 HTTP/1.1\r\nHost: h\r\nX: \xE9t\xE9\r\n\r\n", 0);
    REQUIRE(out.requests.size() == 1);
    CHECK(out.requests[0].target == "/caf\xC3\xA9/\xF0\x9F\x98\x80");
}

TEST_CASE("equal repeated Content-Length values are accepted", "[http][parser]") {
    auto out = parse_in_pieces("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc", 0);
    REQUIRE(out.requests.size() == 1);
    CHECK(out.requests[0].body == "abc");
}

TEST_CASE("limits are configurable", "[http][parser]") {
    limits lim;
    lim.max_header_bytes = 64;
    lim.max_body_bytes = 4;
    CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(64, 'a') + "\r\n\r\n", lim) == 431);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde", lim) == 413);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd", lim) == 0);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", lim) == 413);
    lim = {};
    lim.max_header_count = 2;
    CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", lim) == 431);
}

TEST_CASE("a header block over the default 16 KiB is rejected before its end arrives", "[http][parser]") {
    request_parser p;
    p.feed("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    CHECK(p.next() == parse_status::need_more);
    p.feed(std::string(16 * 1024, 'b'));
    CHECK(p.next() == parse_status::error);
    CHECK(p.error().status == 431);
    CHECK_FALSE(p.error().reason.empty());
    p.feed("\r\n\r\n");
    CHECK(p.next() == parse_status::error);  // stays failed
}

TEST_CASE("a body over the default 1 MiB is rejected from its Content-Length", "[http][parser]") {
    CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n") == 413);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n") == 413);
}

TEST_CASE("the first error in byte order wins over the size limit, however the bytes are split", "[http][parser]") {
    limits lim;
    lim.max_header_bytes = 40;
    // A bare LF past byte 40: the limit breaks first.
    const std::string late_lf = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaa\nX: y\r\n\r\n";
    // A NUL before byte 40: it is reported, not the limit.
    static constexpr char nul_text[] = "GET / HTTP/1.1\r\nHost: h\0\r\nX-Long: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    const std::string early_nul(nul_text, sizeof nul_text - 1);
    for (std::size_t piece : {0, 1, 2, 3, 7, 16, 39, 41}) {
        CAPTURE(piece);
        CHECK(test::parse_in_pieces(late_lf, piece, lim).error_status == 431);
        CHECK(test::parse_in_pieces(early_nul, piece, lim).error_status == 400);
    }
}
