#include "loadgen_sse.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using weft::loadgen::api_kind;
using weft::loadgen::scan_chunk;
using weft::loadgen::sse_parser;

namespace {

/// Every event's data, feeding `stream` in pieces of `piece` bytes.
std::vector<std::string> events(std::string_view stream, std::size_t piece) {
    sse_parser p;
    std::vector<std::string> out;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
        std::string_view in = stream.substr(at, piece);
        std::string_view data;
        for (;;) {
            const auto s = p.next(in, data);
            if (s != sse_parser::step::event) {
                REQUIRE(s == sse_parser::step::need_more);
                break;
            }
            out.emplace_back(data);
        }
    }
    return out;
}

} // namespace

TEST_CASE("sse parser splits events across arbitrary piece boundaries", "[loadgen][sse]") {
    const std::string stream = "data: {\"a\":1}\n\n: keep-alive comment\n\nevent: delta\nid: 7\ndata: two\n\n"
                               "data:first\ndata: second\n\nretry: 100\n\ndata: [DONE]\n\n";
    const std::vector<std::string> expected = {"{\"a\":1}", "two", "first\nsecond", "[DONE]"};
    for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
        CAPTURE(piece);
        CHECK(events(stream, piece) == expected);
    }
}

TEST_CASE("sse parser accepts CRLF, LF and CR line endings, even split in two", "[loadgen][sse]") {
    const std::string crlf = "data: a\r\n\r\ndata: b\r\n\r\n";
    const std::string cr = "data: a\r\rdata: b\r\r";
    const std::string mixed = "data: a\r\n\ndata: b\r\r\n";
    for (const std::string& stream : {crlf, cr, mixed}) {
        for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
            CAPTURE(stream, piece);
            CHECK(events(stream, piece) == std::vector<std::string>{"a", "b"});
        }
    }
}

TEST_CASE("sse parser keeps an unfinished event until its blank line", "[loadgen][sse]") {
    sse_parser p;
    std::string_view data;
    std::string_view in = "data: partial";
    CHECK(p.next(in, data) == sse_parser::step::need_more);
    in = "\n";
    CHECK(p.next(in, data) == sse_parser::step::need_more);
    in = "\n";
    REQUIRE(p.next(in, data) == sse_parser::step::event);
    CHECK(data == "partial");
}

TEST_CASE("sse parser skips a byte order mark and events without data", "[loadgen][sse]") {
    CHECK(events("\xEF\xBB\xBF" "data: x\n\nevent: ping\n\n\n\ndata\n\n", 64) == std::vector<std::string>{"x", ""});
}

TEST_CASE("sse parser refuses an event beyond its size limit", "[loadgen][sse]") {
    sse_parser p(16);
    std::string_view data;
    std::string_view in = "data: 0123456789abcdefghij\n\n";
    CHECK(p.next(in, data) == sse_parser::step::error);
}

TEST_CASE("chunk scan finds completion text, finish reason and usage", "[loadgen][sse]") {
    const auto token = scan_chunk(
        R"({"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" hi","logprobs":null,"finish_reason":null}]})",
        api_kind::completions);
    CHECK(token.content);
    CHECK(token.finish_reason.empty());
    CHECK_FALSE(token.done);

    const auto last = scan_chunk(R"({"choices":[{"index":0,"text" : "","finish_reason" : "length"}]})",
                                 api_kind::completions);
    CHECK_FALSE(last.content);
    CHECK(last.finish_reason == "length");

    const auto usage = scan_chunk(
        R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}})",
        api_kind::completions);
    CHECK_FALSE(usage.content);
    CHECK(usage.prompt_tokens == 12);
    CHECK(usage.completion_tokens == 16);

    CHECK(scan_chunk(" [DONE] ", api_kind::completions).done);
}

TEST_CASE("chunk scan reads chat deltas and ignores the role-only first chunk", "[loadgen][sse]") {
    const auto role = scan_chunk(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})",
                                 api_kind::chat);
    CHECK_FALSE(role.content);
    const auto token = scan_chunk(R"({"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]})",
                                  api_kind::chat);
    CHECK(token.content);
    const auto reasoning = scan_chunk(R"({"choices":[{"delta":{"reasoning_content":"think"}}]})", api_kind::chat);
    CHECK_FALSE(reasoning.content);
    const auto null_content = scan_chunk(R"({"choices":[{"delta":{"content":null}}]})", api_kind::chat);
    CHECK_FALSE(null_content.content);
}

TEST_CASE("chunk scan is not fooled by key names inside string values", "[loadgen][sse]") {
    const auto f = scan_chunk(R"({"choices":[{"index":0,"text":"say \"text\": \"\" and \"finish_reason\":\"x\"","finish_reason":null}]})",
                              api_kind::completions);
    CHECK(f.content);
    CHECK(f.finish_reason.empty());
    const auto escaped_first = scan_chunk(R"({"choices":[{"text":"\"","finish_reason":null}]})", api_kind::completions);
    CHECK(escaped_first.content);
}

TEST_CASE("chunk scan flags error objects and data that is not JSON", "[loadgen][sse]") {
    CHECK(scan_chunk(R"({"error":{"message":"overloaded"}})", api_kind::completions).error);
    CHECK(scan_chunk("not json", api_kind::completions).malformed);
    CHECK(scan_chunk("", api_kind::chat).malformed);
}
