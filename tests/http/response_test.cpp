#include <weft/http/byte_sink.hpp>
#include <weft/http/message.hpp>
#include <weft/http/stream_writer.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace weft::http;
using weft::sync_wait;
using weft::task;

TEST_CASE("a response serializes with its Content-Length", "[http][response]") {
    response r(200, "hello", "text/plain");
    r.headers.add("X-Custom", "yes");
    r.headers.add("content-length", "999");  // replaced
    CHECK(serialize(r) ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/plain\r\n"
          "X-Custom: yes\r\n"
          "Content-Length: 5\r\n"
          "\r\n"
          "hello");
}

TEST_CASE("an empty response still says Content-Length: 0", "[http][response]") {
    CHECK(serialize(response(404)) == "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    CHECK(reason_phrase(431) == "Request Header Fields Too Large");
    CHECK(reason_phrase(799) == "Unknown");
}

TEST_CASE("header_map set, remove and has_token", "[http][response]") {
    header_map h;
    h.add("A", "1");
    h.add("a", "2");
    h.set("A", "3");
    CHECK(h.count("a") == 1);
    CHECK(h.get("a") == "3");
    h.add("Connection", "keep-alive, Upgrade");
    CHECK(h.has_token("connection", "upgrade"));
    CHECK_FALSE(h.has_token("connection", "close"));
    CHECK(h.remove("CONNECTION") == 1);
    CHECK(h.size() == 1);
}

TEST_CASE("chunked writer writes exact chunked bytes, one sink write per chunk", "[http][response][chunked]") {
    string_sink sink;
    auto body = [&]() -> task<void> {
        chunked_writer w(sink);
        header_map h;
        h.add("Content-Type", "text/plain");
        h.add("Content-Length", "3");  // dropped
        co_await w.start(200, std::move(h));
        co_await w.write_string("hello");
        co_await w.write_string("");  // no chunk
        co_await w.write_string(std::string(26, 'z'));
        co_await w.finish();
        co_await w.finish();  // idempotent
    };
    sync_wait(body());
    CHECK(sink.data() ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/plain\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n"
          "5\r\nhello\r\n"
          "1a\r\nzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n"
          "0\r\n\r\n");
    CHECK(sink.write_count() == 4);
}

TEST_CASE("append_chunk adds encode_chunk's bytes after what the string holds", "[http][response][chunked]") {
    std::string out = "HEAD";
    chunked_writer::append_chunk(out, std::string(300, 'x'), 5);
    CHECK(out == "HEAD" + chunked_writer::encode_chunk(std::string(300, 'x')));
    CHECK(out.substr(0, 9) == "HEAD12c\r\n");
    chunked_writer::append_chunk(out, "");  // an empty chunk would end the body: nothing
    CHECK(out.size() == 4 + 5 + 300 + 2);
    CHECK(chunked_writer::encode_chunk("").empty());
}

TEST_CASE("chunked writer's begin sends the head in the same sink write as the first chunk",
          "[http][response][chunked]") {
    string_sink sink;
    auto stream = [&]() -> task<void> {
        chunked_writer w(sink);
        header_map h;
        h.add("Content-Type", "text/event-stream");
        w.begin(200, std::move(h));
        CHECK(w.started());
        co_await w.write({}); // nothing to send yet: the head waits
        CHECK(sink.write_count() == 0);
        co_await w.write_string("ab");
        co_await w.finish();
    };
    sync_wait(stream());
    CHECK(sink.data() ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/event-stream\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n"
          "2\r\nab\r\n"
          "0\r\n\r\n");
    CHECK(sink.write_count() == 2);

    // A whole body: one write in all.
    string_sink whole;
    auto reply = [&]() -> task<void> {
        chunked_writer w(whole);
        w.begin(404);
        const std::string body = "{}";
        const std::span<const std::byte> bytes = std::as_bytes(std::span(body));
        co_await w.finish_with(bytes);
    };
    sync_wait(reply());
    CHECK(whole.data() == "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    CHECK(whole.write_count() == 1);

    // No body at all: the head goes out with the last chunk, or alone.
    string_sink empty, head_only;
    auto end_only = [&]() -> task<void> {
        chunked_writer a(empty);
        a.begin(204);
        co_await a.finish();
        chunked_writer b(head_only);
        b.begin(200);
        co_await b.send_head();
        co_await b.send_head(); // sent already: nothing
    };
    sync_wait(end_only());
    CHECK(empty.data() == "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    CHECK(empty.write_count() == 1);
    CHECK(head_only.data() == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(head_only.write_count() == 1);
    chunked_writer twice(sink);
    twice.begin(200);
    CHECK_THROWS_AS(twice.begin(200), std::logic_error);
}

TEST_CASE("chunked writer's finish_with ends the body with its last data in one sink write",
          "[http][response][chunked]") {
    string_sink sink;
    auto body = [&]() -> task<void> {
        chunked_writer w(sink);
        co_await w.start(200);
        co_await w.write_string("ab");
        const std::string last = "data: [DONE]\n\n";
        const std::span<const std::byte> bytes = std::as_bytes(std::span(last));
        co_await w.finish_with(bytes);
        co_await w.finish(); // already finished: nothing
    };
    sync_wait(body());
    CHECK(sink.data() ==
          "HTTP/1.1 200 OK\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n"
          "2\r\nab\r\n"
          "e\r\ndata: [DONE]\n\n\r\n"
          "0\r\n\r\n");
    CHECK(sink.write_count() == 3);
    chunked_writer unstarted(sink);
    CHECK_THROWS_AS(sync_wait(unstarted.finish_with({})), std::logic_error);
}

TEST_CASE("chunked writer refuses writes outside start and finish", "[http][response][chunked]") {
    string_sink sink;
    chunked_writer w(sink);
    CHECK_THROWS_AS(sync_wait(w.write_string("x")), std::logic_error);
    CHECK_THROWS_AS(sync_wait(w.finish()), std::logic_error);
    sync_wait(w.start(204));
    CHECK_THROWS_AS(sync_wait(w.start(200)), std::logic_error);
    sync_wait(w.finish());
    CHECK_THROWS_AS(sync_wait(w.write_string("x")), std::logic_error);
}

TEST_CASE("SSE events split multi-line data into data lines", "[http][response][sse]") {
    CHECK(sse_writer::format("hello") == "data: hello\n\n");
    CHECK(sse_writer::format("a\nb\r\nc\rd", "update", "42") ==
          "event: update\nid: 42\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    CHECK(sse_writer::format("") == "data: \n\n");
    CHECK(sse_writer::format("end\n") == "data: end\ndata: \n\n");
    CHECK(sse_writer::format("\r\n\r\n") == "data: \ndata: \ndata: \n\n");
    CHECK_THROWS_AS(sse_writer::format("x", "bad\nevent"), std::invalid_argument);
    CHECK_THROWS_AS(sse_writer::format("x", {}, "bad\rid"), std::invalid_argument);
}

TEST_CASE("SSE events appended to one buffer are the concatenation of their formats", "[http][response][sse]") {
    std::string out = "head:";
    sse_writer::append(out, "one");
    sse_writer::append(out, "a\nb", "update", "7");
    sse_writer::append(out, "");
    CHECK(out == "head:" + sse_writer::format("one") + sse_writer::format("a\nb", "update", "7") +
                     sse_writer::format(""));
    // A bad event or id throws before anything is appended.
    const std::string before = out;
    CHECK_THROWS_AS(sse_writer::append(out, "x", "bad\nevent"), std::invalid_argument);
    CHECK_THROWS_AS(sse_writer::append(out, "x", {}, "bad\rid"), std::invalid_argument);
    CHECK(out == before);
}

TEST_CASE("SSE data written in place frames like the same data passed whole", "[http][response][sse]") {
    for (const std::string_view data : {"{\"a\":1}", "", "[DONE]", "two\nlines", "cr\rlf\r\nend\n", "\r\n"}) {
        INFO(data);
        std::string out = "x";
        sse_writer::append_with(out, [&](std::string& o) { o += data; });
        CHECK(out == "x" + sse_writer::format(data));
    }
    std::string out = "kept";
    CHECK_THROWS_AS(sse_writer::append_with(out,
                                            [](std::string& o) {
                                                o += "partial";
                                                throw std::runtime_error("serialiser failed");
                                            }),
                    std::runtime_error);
    CHECK(out == "kept");
}

TEST_CASE("SSE over a chunked writer produces exact bytes", "[http][response][sse]") {
    string_sink sink;
    auto body = [&]() -> task<void> {
        chunked_writer out(sink);
        co_await out.start(200, sse_writer::headers());
        sse_writer sse(out);
        co_await sse.send("one\ntwo", "greeting");
        co_await sse.comment("ping");
        co_await sse.retry(std::chrono::milliseconds(1500));
        co_await out.finish();
    };
    sync_wait(body());
    CHECK(sink.data() ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/event-stream\r\n"
          "Cache-Control: no-cache\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n"
          "25\r\nevent: greeting\ndata: one\ndata: two\n\n\r\n"
          "7\r\n: ping\n\r\n"
          "d\r\nretry: 1500\n\n\r\n"
          "0\r\n\r\n");
}
