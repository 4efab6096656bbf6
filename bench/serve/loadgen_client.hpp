/// \file
/// One benchmark request against an OpenAI-compatible server: the request
/// bytes (`build_request`), the connection it runs on (`connection`) and
/// `execute`, which sends it and measures it as vLLM's
/// benchmarks/benchmark_serving.py does.
///
/// Timing: the clock starts just before the request is written (after any
/// connect, which is timed separately). TTFT is the time to the first event
/// with non-empty content; each further content event adds one inter-token
/// gap (ITL); E2E is the time to the end of the response; output tokens are
/// the number of content events. Events that arrive in the same read share
/// its timestamp. Without streaming, TTFT equals E2E and output tokens come
/// from the response's usage.completion_tokens.
///
/// Errors never escape: `execute` classifies them into the record (connect,
/// timeout, reset, HTTP status, short stream, protocol, stream error) and
/// closes the connection when it cannot be reused. A kept-alive connection
/// that the server closed before answering anything is reconnected and the
/// request sent again once, as HTTP clients do.
///
/// Lifetime: a connection belongs to one coroutine at a time; `execute`'s
/// arguments must outlive its task. Threading: the loop thread of the
/// connection's io_context.
#pragma once

#include "loadgen_http.hpp"
#include "loadgen_sse.hpp"

#include <weft/io/endpoint.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::loadgen {

struct client_config {
    io::endpoint server;
    std::string host_header;  ///< "127.0.0.1:8080"
    api_kind api = api_kind::completions;
    std::string model = "weft";
    int prompt_words = 32;
    int shared_prefix_words = 0; ///< the same words open every prompt (a system prompt)
    int max_tokens = 16;
    bool stream = true;
    bool stream_usage = false; ///< ask for a usage chunk (stream_options.include_usage)
    bool ignore_eos = true;
    std::string api_key;
    std::chrono::nanoseconds timeout = std::chrono::seconds(300);
    std::uint64_t seed = 0;
};

enum class error_kind : unsigned char {
    none,
    connect,      ///< the connection could not be opened
    timeout,      ///< the request exceeded its time limit
    reset,        ///< the connection broke or closed before the response ended
    http_status,  ///< a status other than 200 (see request_record::status)
    short_stream, ///< a 200 stream without content or without [DONE]
    protocol,     ///< malformed HTTP, SSE or JSON
    stream_error, ///< the stream carried an error object
};
inline constexpr int error_kind_count = 8;
const char* to_string(error_kind kind) noexcept;

struct request_record {
    long index = -1;
    double arrival_s = 0;    ///< scheduled start, from the benchmark start
    double start_s = 0;      ///< when the request was written, from the benchmark start
    double connect_s = -1;   ///< time to open a new connection for it; -1: reused one
    double ttft_s = 0;
    double e2e_s = 0;
    double max_itl_s = 0;
    int prompt_words = 0;
    int output_tokens = 0;
    long long usage_prompt_tokens = -1;
    long long usage_completion_tokens = -1;
    int status = 0;
    error_kind error = error_kind::none;
    std::string finish_reason;
    std::string error_detail;
};

/// A client connection and the per-connection scratch state of `execute`.
struct connection {
    io::tcp_stream stream;
    bool reused = false; ///< has carried a request already
    std::vector<std::byte> buffer = std::vector<std::byte>(16 * 1024);
    response_parser parser;
    sse_parser sse;
    std::vector<double> itls;
    std::string body;

    [[nodiscard]] bool is_open() const noexcept { return stream.is_open(); }
    void close() noexcept { stream.close(); }
    /// An idle kept-alive connection is usable when the server has neither
    /// closed it nor sent anything unasked (such as a 408 on idle timeout).
    [[nodiscard]] bool idle_and_usable() const noexcept;
};

/// Prompt of `words` words for request `index`: a deterministic function of
/// (seed, index), different for each index.
std::string make_prompt(std::uint64_t seed, long index, int words);

/// The whole HTTP request (head and JSON body) for request `index`.
std::string build_request(const client_config& cfg, long index);

/// Runs request `index` on `conn`, connecting first when it is closed, and
/// fills `out`; `epoch` is the benchmark start. On success the request's
/// inter-token gaps (seconds) are appended to `itls`. Never throws.
task<void> execute(io::io_context& ctx, const client_config& cfg, connection& conn, long index,
                   io::clock::time_point epoch, request_record& out, std::vector<double>& itls);

} // namespace weft::loadgen
