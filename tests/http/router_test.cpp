#include <weft/http/byte_sink.hpp>
#include <weft/http/request_parser.hpp>
#include <weft/http/router.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <stop_token>
#include <string>

using namespace weft::http;
using weft::sync_wait;
using weft::task;

namespace {
request make_request(std::string_view method_name, std::string target, version v = version::http_1_1) {
    request r;
    r.method_name = std::string(method_name);
    r.method = method_from_string(method_name);
    r.target = std::move(target);
    r.version = v;
    r.headers.add("Host", "h");
    return r;
}

std::string serve(const router& rt, request req) {
    string_sink sink;
    sync_wait(rt.serve(req, sink));
    return sink.data();
}

router make_router() {
    router rt;
    rt.get("/", [](request&, context&) -> task<response> { co_return response(200, "root"); });
    rt.get("/users/me", [](request&, context&) -> task<response> { co_return response(200, "me"); });
    rt.get("/users/{id}", [](request&, context& ctx) -> task<response> {
        co_return response(200, "user " + std::string(ctx.param("id")));
    });
    rt.get("/users/{id}/posts/{post}", [](request&, context& ctx) -> task<response> {
        co_return response(200, std::string(ctx.param("id")) + "/" + std::string(ctx.param("post")));
    });
    rt.post("/users", [](request& req, context&) -> task<response> { co_return response(201, req.body); });
    rt.add(method::put, "/users/{id}", [](request&, context&) -> task<response> { co_return response(204); });
    rt.add("PROPFIND", "/dav", [](request&, context&) -> task<response> { co_return response(207); });
    rt.get("/boom", [](request&, context&) -> task<response> {
        throw std::runtime_error("boom");
        co_return response(200);
    });
    return rt;
}
} // namespace

TEST_CASE("router matches exact paths and parameters in registration order", "[http][router]") {
    const router rt = make_router();
    auto m = rt.match("GET", "/users/me");
    REQUIRE(m.kind == router::match_kind::found);
    CHECK(m.params.empty());
    m = rt.match("GET", "/users/42");
    REQUIRE(m.kind == router::match_kind::found);
    REQUIRE(m.params.size() == 1);
    CHECK(m.params[0] == std::pair<std::string, std::string>("id", "42"));
    CHECK(rt.match("GET", "/users/").kind == router::match_kind::not_found);  // empty segment
    CHECK(rt.match("GET", "/users/1/posts").kind == router::match_kind::not_found);
    CHECK(rt.match("GET", "/nope").kind == router::match_kind::not_found);
    CHECK(rt.match("PROPFIND", "/dav").kind == router::match_kind::found);
}

TEST_CASE("router serves handlers with path params and ignores the query", "[http][router]") {
    const router rt = make_router();
    CHECK(serve(rt, make_request("GET", "/")) == "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nroot");
    CHECK(serve(rt, make_request("GET", "/users/7?x=1")) == "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nuser 7");
    CHECK(serve(rt, make_request("GET", "/users/7/posts/9")) == "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n7/9");
    auto post = make_request("POST", "/users");
    post.body = "data";
    CHECK(serve(rt, post) == "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndata");
}

TEST_CASE("router answers 404 for unknown paths", "[http][router]") {
    const std::string out = serve(make_router(), make_request("GET", "/missing"));
    CHECK(out.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
}

TEST_CASE("router answers 405 with Allow for a known path and another method", "[http][router]") {
    const router rt = make_router();
    const auto m = rt.match("DELETE", "/users/5");
    REQUIRE(m.kind == router::match_kind::method_not_allowed);
    CHECK(m.allow == "GET, PUT");
    const std::string out = serve(rt, make_request("DELETE", "/users/5"));
    CHECK(out.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
    CHECK(out.find("\r\nAllow: GET, PUT\r\n") != std::string::npos);
}

TEST_CASE("router answers HEAD through the GET handler without the body", "[http][router]") {
    CHECK(serve(make_router(), make_request("HEAD", "/users/7")) == "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n");
    CHECK(serve(make_router(), make_request("HEAD", "/nope")).rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
}

TEST_CASE("router turns a handler exception into 500", "[http][router]") {
    const std::string out = serve(make_router(), make_request("GET", "/boom"));
    CHECK(out.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0) == 0);
}

TEST_CASE("router adds Connection: close when the request does not keep alive", "[http][router]") {
    const std::string out = serve(make_router(), make_request("GET", "/", version::http_1_0));
    CHECK(out == "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nroot");
}

TEST_CASE("router runs stream handlers and finishes their chunked body", "[http][router][sse]") {
    router rt;
    rt.add_stream(method::get, "/events/{topic}", [](request&, context& ctx, chunked_writer& out) -> task<void> {
        co_await out.start(200, sse_writer::headers());
        sse_writer sse(out);
        co_await sse.send(std::string(ctx.param("topic")));
    });
    rt.add_stream(method::get, "/quiet", [](request&, context&, chunked_writer&) -> task<void> { co_return; });
    CHECK(serve(rt, make_request("GET", "/events/news")) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "Transfer-Encoding: chunked\r\n\r\n"
          "c\r\ndata: news\n\n\r\n0\r\n\r\n");
    CHECK(serve(rt, make_request("GET", "/quiet")) ==
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

TEST_CASE("handlers see the stop token of the coroutine serving them", "[http][router]") {
    router rt;
    rt.get("/wait", [](request&, context& ctx) -> task<response> {
        co_return response(ctx.stop_token().stop_requested() ? 499 : 200);
    });
    std::stop_source stop;
    stop.request_stop();
    string_sink sink;
    auto req = make_request("GET", "/wait");
    sync_wait(rt.serve(req, sink), stop.get_token());
    CHECK(sink.data().rfind("HTTP/1.1 499 ", 0) == 0);
}

TEST_CASE("parsed requests route end to end", "[http][router]") {
    request_parser p;
    p.feed("GET /users/12 HTTP/1.1\r\nHost: h\r\n\r\nPOST /users HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok");
    const router rt = make_router();
    std::string all;
    while (p.next() == parse_status::complete) all += serve(rt, p.take());
    CHECK(all == "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nuser 12"
                 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
}

TEST_CASE("router answers HEAD on a streaming GET route with the head only", "[http][router][sse]") {
    router rt;
    int events_written = 0;
    rt.add_stream(method::get, "/events", [&](request&, context&, chunked_writer& out) -> task<void> {
        co_await out.start(200, sse_writer::headers());
        sse_writer sse(out);
        for (int i = 0; i < 1000; ++i) {  // an endless stream, for all HEAD cares
            co_await sse.send("tick");
            ++events_written;
        }
    });
    rt.add_stream(method::get, "/quiet", [](request&, context&, chunked_writer&) -> task<void> { co_return; });
    // A head prepared by begin leaves with the first chunk: HEAD keeps the
    // head and drops the chunk, and gets it even if nothing follows.
    rt.add_stream(method::get, "/begun", [&](request&, context&, chunked_writer& out) -> task<void> {
        out.begin(200, sse_writer::headers());
        sse_writer sse(out);
        co_await sse.send("first");
        ++events_written;
    });
    rt.add_stream(method::get, "/begun-empty", [](request&, context&, chunked_writer& out) -> task<void> {
        out.begin(202);
        co_return;
    });
    CHECK(serve(rt, make_request("HEAD", "/events")) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "Transfer-Encoding: chunked\r\n\r\n");
    CHECK(events_written == 0);
    CHECK(serve(rt, make_request("HEAD", "/quiet")) == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(serve(rt, make_request("HEAD", "/begun")) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "Transfer-Encoding: chunked\r\n\r\n");
    CHECK(events_written == 0);
    CHECK(serve(rt, make_request("HEAD", "/begun-empty")) == "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(serve(rt, make_request("GET", "/begun")) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "Transfer-Encoding: chunked\r\n\r\nd\r\ndata: first\n\n\r\n0\r\n\r\n");
    CHECK(events_written == 1);
    CHECK(serve(rt, make_request("POST", "/events")).rfind("HTTP/1.1 405 ", 0) == 0);
}

TEST_CASE("path parameters reach handlers percent-decoded, raw_param keeps them as sent", "[http][router]") {
    router rt;
    rt.get("/files/{name}/{rest}", [](request&, context& ctx) -> task<response> {
        co_return response(200, std::string(ctx.param("name")) + "|" + std::string(ctx.raw_param("name")) + "|" +
                                    std::string(ctx.param("rest")) + "|" + std::to_string(ctx.params().size()));
    });
    const auto body_of = [&](std::string target) {
        const std::string out = serve(rt, make_request("GET", std::move(target)));
        return out.substr(out.find("\r\n\r\n") + 4);
    };
    CHECK(body_of("/files/a%20b/x") == "a b|a%20b|x|2");
    CHECK(body_of("/files/dir%2Ffile/%41%62") == "dir/file|dir%2Ffile|Ab|2");  // %2F does not split
    CHECK(body_of("/files/100%/%zz%4") == "100%|100%|%zz%4|2");               // malformed: kept
    CHECK(body_of("/files/plain/x") == "plain|plain|x|2");
    CHECK(percent_decode("caf%C3%A9%00") == std::string("caf\xC3\xA9\0", 6));
}
