// Internal: how a generation becomes an HTTP reply in OpenAI's format — one
// JSON body (send_whole), or Server-Sent Events (send_events), for one or
// several choices (`n`), each choice its own engine request. Used by
// openai_routes.cpp.
#pragma once

#include <weft/http/stream_writer.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/openai_error.hpp>
#include <weft/serve/openai_request.hpp>
#include <weft/serve/openai_routes.hpp>
#include <weft/serve/tokenizer.hpp>
#include <weft/task.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace weft::serve::detail {

inline constexpr std::string_view json_type = "application/json";

http::header_map error_headers(const api_error& e);
api_error unavailable(const std::string& why);

/// Where a response goes: the writer, and whether it must say
/// `Connection: close` (a stream handler chooses that itself): when the
/// request asked for it, or when the server began shutting down, so that
/// the client sends no further request on a connection about to close.
struct reply_to {
    http::chunked_writer& out;
    const http::request& req;
    const openai_routes& routes;

    /// Prepares the response head (Connection: close when the request or a
    /// shutdown asks for it); it goes out with the first bytes of the body.
    void begin(int status, http::header_map h) const;
};

task<void> send_error(const reply_to& to, const api_error& e);

bool is_failure(finish_reason f) noexcept;
/// The error a failed generation (timeout, abort, engine error) answers with.
api_error failure_error(const generation_update& u);

/// What the replies need to know about the model.
struct reply_model {
    const tokenizer& vocab;
    std::string_view name;
};

/// The whole response: every stream to its end, choice i from streams[i],
/// whose first update is firsts[i].
task<void> send_whole(reply_model m, const openai_request& r, std::vector<generation_stream>& streams,
                      std::vector<generation_update> firsts, const reply_to& to);

/// Server-Sent Events as the updates come; with several streams their
/// chunks interleave, each with its choice's index, and [DONE] follows the
/// last one's end. A choice that fails ends the whole response with an
/// error event (the others are cancelled).
task<void> send_events(reply_model m, const openai_request& r, std::vector<generation_stream>& streams,
                       std::vector<generation_update> firsts, const reply_to& to);

} // namespace weft::serve::detail
