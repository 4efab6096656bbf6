#include "loadgen_client.hpp"

#include <nlohmann/json.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <iterator>
#include <cerrno>
#include <exception>
#include <span>
#include <system_error>

namespace weft::loadgen {

namespace {

using seconds_d = std::chrono::duration<double>;

constexpr std::size_t max_error_body_bytes = 512;
constexpr std::size_t max_json_body_bytes = 64 * 1024 * 1024;

// Common English words: with most tokenizers each is about one token.
constexpr std::string_view words[] = {
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school",
    "state", "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week",
    "company", "system", "program", "question", "work", "government", "number", "night", "point", "home",
    "water", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book",
    "eye", "job", "word", "business", "issue", "side", "kind", "head", "house", "service", "friend",
    "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city", "community", "name",
    "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face",
    "others", "level", "office", "door", "health", "person", "art", "war", "history", "party", "result",
    "change", "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force",
    "education", "good", "new", "first", "last", "long", "great", "little", "own", "other", "old", "big",
    "high", "different", "small", "large", "next", "early", "young", "important", "few", "public", "bad",
    "same", "able", "to", "of", "in", "for", "on", "with"};

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (u < 0x20) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\u00";
            out.push_back(hex[u >> 4]);
            out.push_back(hex[u & 15]);
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
}

double seconds_between(io::clock::time_point from, io::clock::time_point to) noexcept {
    return seconds_d(to - from).count();
}

std::string clip(std::string_view s, std::size_t n) { return std::string(s.substr(0, n)); }

/// What one response did to the record, beyond the timings.
struct response_state {
    response_state(const client_config& c, connection& k, request_record& r, io::clock::time_point t) noexcept
        : cfg(c), conn(k), out(r), sent(t) {}

    const client_config& cfg;
    connection& conn;
    request_record& out;
    io::clock::time_point sent;
    io::clock::time_point last_token{};
    bool stream_body = false; ///< a 200 answer to a streaming request: parse SSE
    bool sse_broken = false;
    bool done_seen = false;
    bool keep_alive = false; ///< the connection may carry the next request
    error_kind pending = error_kind::none; ///< found in the body; reported at the end
    std::string pending_detail;

    void flag(error_kind kind, std::string detail) {
        if (pending == error_kind::none) {
            pending = kind;
            pending_detail = std::move(detail);
        }
    }

    void on_head() {
        out.status = conn.parser.head().status;
        stream_body = cfg.stream && out.status == 200;
    }

    void on_body(std::string_view piece, io::clock::time_point now) {
        if (!stream_body) {
            const std::size_t cap = out.status == 200 ? max_json_body_bytes : max_error_body_bytes;
            if (conn.body.size() < cap) {
                conn.body.append(piece.substr(0, cap - conn.body.size()));
            } else if (out.status == 200) {
                flag(error_kind::protocol, "response body too large");
            }
            return;
        }
        std::string_view data;
        while (!sse_broken) {
            const sse_parser::step s = conn.sse.next(piece, data);
            if (s == sse_parser::step::need_more) {
                break;
            }
            if (s == sse_parser::step::error) {
                sse_broken = true;
                flag(error_kind::protocol, "server-sent event too large");
                break;
            }
            on_event(data, now);
        }
    }

    void on_event(std::string_view data, io::clock::time_point now) {
        const chunk_fields f = scan_chunk(data, cfg.api);
        if (f.done) {
            done_seen = true;
            return;
        }
        if (f.malformed) {
            flag(error_kind::protocol, "malformed stream chunk: " + clip(data, 120));
            return;
        }
        if (f.error) {
            flag(error_kind::stream_error, clip(data, 300));
            return;
        }
        if (f.content) {
            if (++out.output_tokens == 1) {
                out.ttft_s = seconds_between(sent, now);
            } else {
                const double gap = seconds_between(last_token, now);
                conn.itls.push_back(gap);
                out.max_itl_s = std::max(out.max_itl_s, gap);
            }
            last_token = now;
        }
        if (!f.finish_reason.empty()) {
            out.finish_reason.assign(f.finish_reason);
        }
        if (f.completion_tokens >= 0) {
            out.usage_completion_tokens = f.completion_tokens;
        }
        if (f.prompt_tokens >= 0) {
            out.usage_prompt_tokens = f.prompt_tokens;
        }
    }

    void read_json_body() {
        const auto doc = nlohmann::json::parse(conn.body, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded() || !doc.is_object()) {
            flag(error_kind::protocol, "response is not a JSON object: " + clip(conn.body, 120));
            return;
        }
        const auto choices = doc.find("choices");
        if (choices == doc.end() || !choices->is_array() || choices->empty() || !(*choices)[0].is_object()) {
            flag(doc.contains("error") ? error_kind::stream_error : error_kind::protocol,
                 "response without choices: " + clip(conn.body, 300));
            return;
        }
        const auto& choice = (*choices)[0];
        if (const auto reason = choice.find("finish_reason"); reason != choice.end() && reason->is_string()) {
            out.finish_reason = reason->get<std::string>();
        }
        if (const auto usage = doc.find("usage"); usage != doc.end() && usage->is_object()) {
            auto count = [&](const char* key) {
                const auto it = usage->find(key);
                return it != usage->end() && it->is_number_integer() ? it->get<long long>() : -1LL;
            };
            out.usage_completion_tokens = count("completion_tokens");
            out.usage_prompt_tokens = count("prompt_tokens");
        }
        out.output_tokens = static_cast<int>(std::max(0LL, out.usage_completion_tokens));
    }

    /// Feeds bytes read at `now`; true when the response ended (or broke).
    bool feed(std::string_view in, io::clock::time_point now) {
        std::string_view body;
        for (;;) {
            switch (conn.parser.next(in, body)) {
            case response_parser::step::need_more:
                return false;
            case response_parser::step::head:
                on_head();
                break;
            case response_parser::step::body:
                on_body(body, now);
                break;
            case response_parser::step::complete:
                on_complete(now);
                keep_alive = conn.parser.keep_alive() && in.empty();
                if (!in.empty() && out.error == error_kind::none) {
                    out.error = error_kind::protocol;
                    out.error_detail = "bytes after the end of the response";
                }
                return true;
            case response_parser::step::error:
                out.error = error_kind::protocol;
                out.error_detail = conn.parser.error();
                return true;
            }
        }
    }

    void on_complete(io::clock::time_point now) {
        out.e2e_s = seconds_between(sent, now);
        if (out.status != 200) {
            out.error = error_kind::http_status;
            out.error_detail = conn.body;
            return;
        }
        if (!cfg.stream) {
            read_json_body();
            out.ttft_s = out.e2e_s; // the first token arrives with the whole answer
        } else if (pending == error_kind::none && out.output_tokens == 0) {
            flag(error_kind::short_stream, "stream ended without a content event");
        } else if (pending == error_kind::none && !done_seen) {
            flag(error_kind::short_stream, "stream ended without data: [DONE]");
        }
        out.error = pending;
        out.error_detail = std::move(pending_detail);
    }
};

/// One try on an open connection. Returns true when it failed before any
/// byte of the response arrived on a reused connection (worth one retry).
task<bool> run_once(const client_config& cfg, connection& conn, const std::string& request,
                    io::clock::time_point sent, io::deadline limit, request_record& out) {
    conn.parser.reset();
    conn.sse.reset();
    conn.itls.clear();
    conn.body.clear();
    out.status = 0;
    out.output_tokens = 0;
    out.ttft_s = out.e2e_s = out.max_itl_s = 0;
    out.finish_reason.clear();
    out.usage_prompt_tokens = out.usage_completion_tokens = -1;
    out.error = error_kind::none;
    out.error_detail.clear();

    response_state state(cfg, conn, out, sent);
    const bool was_reused = conn.reused;
    conn.reused = true;
    std::error_code failure;
    std::string failure_text;
    try {
        co_await conn.stream.write_all(std::as_bytes(std::span(request.data(), request.size())), limit);
        for (bool finished = false; !finished;) {
            const std::size_t n = co_await conn.stream.read_some(conn.buffer, limit);
            const auto now = io::clock::now();
            if (n == 0) {
                if (conn.parser.finish() == response_parser::step::complete) {
                    state.on_complete(now); // a body delimited by the close
                } else {
                    failure = std::make_error_code(std::errc::connection_reset);
                    failure_text = conn.parser.error();
                }
                break;
            }
            finished = state.feed(std::string_view(reinterpret_cast<const char*>(conn.buffer.data()), n), now);
        }
    } catch (const std::system_error& e) {
        failure = e.code();
        failure_text = e.what();
    } catch (const std::exception& e) {
        out.error = error_kind::protocol;
        out.error_detail = e.what();
    }
    bool keep = state.keep_alive && out.error != error_kind::protocol;
    if (failure) {
        keep = false;
        out.error = failure == std::errc::timed_out ? error_kind::timeout : error_kind::reset;
        out.error_detail = std::move(failure_text);
    }
    if (!keep) {
        conn.close();
    }
    if (out.error == error_kind::none) {
        co_return false;
    }
    co_return was_reused && !conn.parser.started() && out.error == error_kind::reset;
}

} // namespace

const char* to_string(error_kind kind) noexcept {
    switch (kind) {
    case error_kind::none: return "none";
    case error_kind::connect: return "connect";
    case error_kind::timeout: return "timeout";
    case error_kind::reset: return "reset";
    case error_kind::http_status: return "http_status";
    case error_kind::short_stream: return "short_stream";
    case error_kind::protocol: return "protocol";
    case error_kind::stream_error: return "stream_error";
    }
    return "unknown";
}

bool connection::idle_and_usable() const noexcept {
    if (!stream.is_open()) {
        return false;
    }
    char probe = 0;
    const ssize_t n = ::recv(stream.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::string make_prompt(std::uint64_t seed, long index, int count) {
    std::uint64_t state = seed * 0x2545F4914F6CDD1DULL + static_cast<std::uint64_t>(index);
    (void)splitmix64(state);
    std::string out;
    out.reserve(static_cast<std::size_t>(std::max(count, 0)) * 8);
    for (int i = 0; i < count; ++i) {
        if (i > 0) {
            out.push_back(' ');
        }
        out += words[splitmix64(state) % std::size(words)];
    }
    return out;
}

std::string build_request(const client_config& cfg, long index) {
    std::string body;
    body.reserve(static_cast<std::size_t>(cfg.prompt_words) * 8 + 256);
    body += "{\"model\":";
    append_json_string(body, cfg.model);
    std::string prompt = make_prompt(cfg.seed, index, cfg.prompt_words);
    if (cfg.shared_prefix_words > 0) {
        // Index -1: the same words for every request of the run.
        std::string shared = make_prompt(cfg.seed, -1, cfg.shared_prefix_words);
        if (!prompt.empty()) shared.push_back(' ');
        prompt.insert(0, shared);
    }
    if (cfg.api == api_kind::chat) {
        body += ",\"messages\":[{\"role\":\"user\",\"content\":";
        append_json_string(body, prompt);
        body += "}]";
    } else {
        body += ",\"prompt\":";
        append_json_string(body, prompt);
    }
    body += ",\"max_tokens\":";
    body += std::to_string(cfg.max_tokens);
    body += ",\"temperature\":0";
    if (cfg.ignore_eos) {
        body += ",\"ignore_eos\":true";
    }
    body += cfg.stream ? ",\"stream\":true" : ",\"stream\":false";
    if (cfg.stream && cfg.stream_usage) {
        body += ",\"stream_options\":{\"include_usage\":true}";
    }
    body += '}';

    std::string req;
    req.reserve(body.size() + 256);
    req += cfg.api == api_kind::chat ? "POST /v1/chat/completions HTTP/1.1\r\nHost: "
                                     : "POST /v1/completions HTTP/1.1\r\nHost: ";
    req += cfg.host_header;
    req += "\r\nUser-Agent: weft-loadgen\r\nContent-Type: application/json\r\nAccept: ";
    req += cfg.stream ? "text/event-stream" : "application/json";
    if (!cfg.api_key.empty()) {
        req += "\r\nAuthorization: Bearer ";
        req += cfg.api_key;
    }
    req += "\r\nContent-Length: ";
    req += std::to_string(body.size());
    req += "\r\n\r\n";
    req += body;
    return req;
}

task<void> execute(io::io_context& ctx, const client_config& cfg, connection& conn, long index,
                   io::clock::time_point epoch, request_record& out, std::vector<double>& itls) {
    out.index = index;
    out.prompt_words = cfg.prompt_words + cfg.shared_prefix_words;
    const std::string request = build_request(cfg, index);
    const io::deadline limit(io::clock::now() + std::chrono::duration_cast<io::clock::duration>(cfg.timeout));
    io::clock::time_point sent{};
    for (int attempt = 0;; ++attempt) {
        if (!conn.is_open()) {
            const auto t0 = io::clock::now();
            std::string failure;
            try {
                conn.stream = co_await io::tcp_stream::connect(ctx, cfg.server, limit);
            } catch (const std::exception& e) {
                failure = e.what();
            }
            if (!conn.is_open()) {
                out.error = error_kind::connect;
                out.error_detail = failure.empty() ? "connect failed" : std::move(failure);
                out.start_s = seconds_between(epoch, t0);
                co_return;
            }
            out.connect_s = seconds_between(t0, io::clock::now());
            conn.reused = false;
        }
        if (attempt == 0) {
            sent = io::clock::now();
            out.start_s = seconds_between(epoch, sent);
        }
        const bool retry = co_await run_once(cfg, conn, request, sent, limit, out);
        if (!retry || attempt > 0) {
            break;
        }
    }
    if (out.error == error_kind::none) {
        itls.insert(itls.end(), conn.itls.begin(), conn.itls.end());
    }
}

} // namespace weft::loadgen
