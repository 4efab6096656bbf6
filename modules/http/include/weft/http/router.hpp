/// \file
/// `router`: maps a method and a path to a handler.
///
/// Patterns are absolute paths whose segments are literals or `{name}`
/// parameters matching one non-empty segment ("/users/{id}/posts"). Routes are
/// tried in registration order; the first whose pattern and method match wins
/// (register "/users/me" before "/users/{id}"). A path that no pattern matches
/// gets 404; a path that matches only under other methods gets 405 with an
/// `Allow` header listing them. The query string is not part of matching. A
/// HEAD request with no HEAD route runs the matching GET handler and gets its
/// status and headers without the body: a plain handler's Content-Length is
/// that of the body it returned; a stream handler's head is sent as soon as
/// it is written (`start`), and the handler's first write after it ends it
/// (the write throws an internal exception that the router catches).
///
/// Path parameters are matched against the raw path (so "%2F" inside a
/// parameter does not split it) and handed to the handler percent-decoded
/// (`context::param`); `context::raw_param` gives them as received. A
/// malformed escape ("%zz", "%4") is kept as it is.
///
/// Two kinds of handler:
///  - `handler`: `task<response>(request&, context&)`, the common case; the
///    router serializes the response with a Content-Length.
///  - `stream_handler`: `task<void>(request&, context&, chunked_writer&)`, for
///    streaming (chunked bodies, Server-Sent Events): the handler calls
///    `start(status, headers)` then writes; the router calls `finish()` when it
///    returns (and `start(200)` first if it never started). The handler
///    chooses the headers, `Connection: close` included.
/// A handler that throws before anything was written gets a 500 response;
/// `operation_cancelled`, and anything thrown after streaming started, is
/// rethrown to the caller of `serve` (the connection should then be closed).
///
/// Cancellation: `context::stop_token()` is the stop token of the coroutine
/// awaiting `serve` (handlers also inherit it for their own awaits), so a server
/// can cancel a handler when its client goes away.
///
/// Lifetime: the router must outlive every `serve` in progress; a `context`
/// lives for one `serve` call. Threading: add routes before serving; after
/// that `serve` and `match` are const and may run concurrently.
#pragma once

#include <weft/http/byte_sink.hpp>
#include <weft/http/message.hpp>
#include <weft/http/stream_writer.hpp>
#include <weft/task.hpp>

#include <functional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::http {

class context {
public:
    using param_list = std::vector<std::pair<std::string, std::string>>;

    context() = default;
    /// `params` as matched in the raw path (not yet percent-decoded).
    context(param_list params, std::stop_token token);

    /// Value of path parameter `name`, percent-decoded; "" if absent.
    std::string_view param(std::string_view name) const noexcept;
    /// Value of path parameter `name` as it appeared in the path; "" if absent.
    std::string_view raw_param(std::string_view name) const noexcept;
    /// Every parameter, percent-decoded, in pattern order.
    const param_list& params() const noexcept { return m_decoded.empty() ? m_raw : m_decoded; }
    /// Every parameter as it appeared in the path.
    const param_list& raw_params() const noexcept { return m_raw; }
    const std::stop_token& stop_token() const noexcept { return m_stop; }

private:
    param_list m_raw;
    param_list m_decoded; ///< empty when no parameter holds a '%' (then equal to m_raw)
    std::stop_token m_stop;
};

/// Decodes %XX escapes of a URI path component; malformed escapes are kept.
std::string percent_decode(std::string_view text);

using handler = std::function<task<response>(request&, context&)>;
using stream_handler = std::function<task<void>(request&, context&, chunked_writer&)>;

class router {
public:
    enum class match_kind : unsigned char { found, not_found, method_not_allowed };

    struct route;
    struct match_result {
        match_kind kind = match_kind::not_found;
        const route* matched = nullptr;     ///< set when kind == found
        context::param_list params;          ///< set when kind == found (raw, as in the path)
        std::string allow;                   ///< set when kind == method_not_allowed, e.g. "GET, POST"
    };

    /// Registers a handler; `pattern` must start with '/' (std::invalid_argument).
    router& add(method m, std::string_view pattern, handler h);
    router& add(std::string_view method_name, std::string_view pattern, handler h);
    router& add_stream(method m, std::string_view pattern, stream_handler h);
    router& get(std::string_view pattern, handler h) { return add(method::get, pattern, std::move(h)); }
    router& post(std::string_view pattern, handler h) { return add(method::post, pattern, std::move(h)); }

    match_result match(std::string_view method_name, std::string_view path) const;

    /// Dispatches `req` and writes the whole response to `out` (404/405/500
    /// included). Adds `Connection: close` when `req` does not keep the
    /// connection alive.
    task<void> serve(request& req, byte_sink& out) const;

    struct route {
        std::string method_name;
        std::vector<std::string> segments;  ///< "{name}" marks a parameter
        handler plain;
        stream_handler streaming;
    };

private:
    router& add_route(std::string method_name, std::string_view pattern, handler h, stream_handler s);
    std::vector<route> m_routes;
};

} // namespace weft::http
