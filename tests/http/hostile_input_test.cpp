#include "http_test_support.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using weft::http::test::parse_in_pieces;

namespace {
struct hostile_case {
    const char* name;
    std::string input;
    int status;
};

std::string with_nul(std::string s, std::size_t at) {
    s.insert(at, 1, '\0');
    return s;
}

const std::string host = "Host: h\r\n";

std::vector<hostile_case> hostile_cases() {
    return {
        // request line
        {"no spaces in the request line", "GET/HTTP/1.1\r\n" + host + "\r\n", 400},
        {"double space in the request line", "GET  / HTTP/1.1\r\n" + host + "\r\n", 400},
        {"trailing space after the version", "GET / HTTP/1.1 \r\n" + host + "\r\n", 400},
        {"missing version", "GET /\r\n" + host + "\r\n", 400},
        {"lower-case version", "GET / http/1.1\r\n" + host + "\r\n", 400},
        {"unknown HTTP version", "GET / HTTP/2.0\r\n" + host + "\r\n", 505},
        {"garbage version", "GET / HTTP/1.1x\r\n" + host + "\r\n", 400},
        {"separator in the method", "GE(T / HTTP/1.1\r\n" + host + "\r\n", 400},
        {"non-ASCII in the method", "G\xC3\x89T / HTTP/1.1\r\n" + host + "\r\n", 400},
        {"relative target", "GET foo HTTP/1.1\r\n" + host + "\r\n", 400},
        {"asterisk target outside OPTIONS", "GET * HTTP/1.1\r\n" + host + "\r\n", 400},
        {"control byte in the target", "GET /a\x01" "b HTTP/1.1\r\n" + host + "\r\n", 400},
        {"tab in the target", "GET /a\tb HTTP/1.1\r\n" + host + "\r\n", 400},
        {"DEL in the target", "GET /a\x7F HTTP/1.1\r\n" + host + "\r\n", 400},
        {"lone continuation byte in the target", "GET /\x80 HTTP/1.1\r\n" + host + "\r\n", 400},
        {"overlong UTF-8 in the target", "GET /\xC0\xAF HTTP/1.1\r\n" + host + "\r\n", 400},
        {"UTF-16 surrogate in the target", "GET /\xED\xA0\x80 HTTP/1.1\r\n" + host + "\r\n", 400},
        {"code point above U+10FFFF in the target", "GET /\xF4\x90\x80\x80 HTTP/1.1\r\n" + host + "\r\n", 400},
        {"truncated UTF-8 in the target", "GET /\xE2\x82 HTTP/1.1\r\n" + host + "\r\n", 400},
        {"NUL in the request line", with_nul("GET / HTTP/1.1\r\n" + host + "\r\n", 5), 400},
        {"bare CR in the request line", "GET /\r HTTP/1.1\r\n" + host + "\r\n", 400},
        {"bare LF line endings", "GET / HTTP/1.1\n" + host + "\n", 400},
        // headers
        {"header without colon", "GET / HTTP/1.1\r\n" + host + "NoColon\r\n\r\n", 400},
        {"space before the colon", "GET / HTTP/1.1\r\n" + host + "X-A : 1\r\n\r\n", 400},
        {"empty header name", "GET / HTTP/1.1\r\n" + host + ": 1\r\n\r\n", 400},
        {"separator in a header name", "GET / HTTP/1.1\r\n" + host + "X@A: 1\r\n\r\n", 400},
        {"obsolete line folding", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  2\r\n\r\n", 400},
        {"NUL in a header value", with_nul("GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n\r\n", 28), 400},
        {"bare CR in a header value", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r2\r\n\r\n", 400},
        {"control byte in a header value", "GET / HTTP/1.1\r\n" + host + "X-A: 1\x01\r\n\r\n", 400},
        {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"two Host headers", "GET / HTTP/1.1\r\n" + host + host + "\r\n", 400},
        {"header block over 16 KiB", "GET / HTTP/1.1\r\n" + host + "X: " + std::string(17000, 'a') + "\r\n\r\n", 431},
        {"more than 100 header fields", [] {
             std::string s = "GET / HTTP/1.1\r\n" + host;
             for (int i = 0; i < 100; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
             return s + "\r\n";
         }(), 431},
        // Content-Length
        {"negative Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", 400},
        {"signed Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: +1\r\n\r\nx", 400},
        {"non-numeric Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1a\r\n\r\nx", 400},
        {"empty Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: \r\n\r\n", 400},
        {"overflowing Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
        {"conflicting Content-Length headers", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
        {"conflicting Content-Length list", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1, 2\r\n\r\nxx", 400},
        {"Content-Length over the body limit", "POST / HTTP/1.1\r\n" + host + "Content-Length: 2000000\r\n\r\n", 413},
        {"Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        // Transfer-Encoding
        {"unsupported transfer coding", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"chunked not last", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400},
        {"chunked twice", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"only an unknown coding", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n", 501},
        {"empty Transfer-Encoding", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: \r\n\r\n", 400},
        // chunks
        {"non-hex chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"empty chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n\r\n", 400},
        {"negative chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n-1\r\n", 400},
        {"overflowing chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
        {"chunk size over the body limit", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n", 413},
        {"garbage after the chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk data longer than announced", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
        {"bare LF after the chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
        {"bare CR in a chunk extension", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n", 400},
        {"chunk size line too long", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3;" + std::string(2000, 'e') + "\r\n", 400},
        {"malformed trailer", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", 400},
        {"NUL in a trailer", with_nul("POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\r\n", 65), 400},
    };
}
} // namespace

TEST_CASE("hostile inputs are rejected with their status, fed whole and byte by byte", "[http][parser][hostile]") {
    for (const hostile_case& c : hostile_cases()) {
        for (std::size_t piece : {0u, 1u, 3u}) {
            INFO(c.name << " (pieces of " << piece << ")");
            auto out = parse_in_pieces(c.input, piece);
            CHECK(out.requests.empty());
            CHECK(out.last == weft::http::parse_status::error);
            CHECK(out.error_status == c.status);
            CHECK_FALSE(out.error_reason.empty());
        }
    }
}
