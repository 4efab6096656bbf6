#include "openai_reply.hpp"

#include <weft/channel.hpp>
#include <weft/serve/openai_response.hpp>
#include <weft/when_all.hpp>

#include <fmt/format.h>

#include <optional>
#include <span>
#include <utility>

namespace weft::serve::detail {

http::header_map error_headers(const api_error& e) {
    http::header_map h;
    h.add("Content-Type", std::string(json_type));
    if (e.status() == 429) h.add("Retry-After", "1");
    if (e.status() == 401) h.add("WWW-Authenticate", "Bearer");
    return h;
}

api_error unavailable(const std::string& why) { return api_error(503, why, {}, "server_error"); }

void reply_to::begin(int status, http::header_map h) const {
    if (!req.keep_alive() || routes.current_phase() == openai_routes::phase::shutting_down) {
        h.set("Connection", "close");
    }
    out.begin(status, std::move(h));
}

task<void> send_error(const reply_to& to, const api_error& e) {
    const std::string body = e.to_json();
    const auto bytes = std::as_bytes(std::span<const char>(body));
    to.begin(e.status(), error_headers(e));
    co_await to.out.finish_with(bytes);
}

bool is_failure(finish_reason f) noexcept {
    return f == finish_reason::error || f == finish_reason::timeout || f == finish_reason::aborted;
}

api_error failure_error(const generation_update& u) {
    // The engine re-checks the queue bound when it takes a request in; a
    // request that lost that race is refused like one refused at submit.
    if (u.finish == finish_reason::error && u.completion_tokens == 0 && u.error.find("queue is full") != std::string::npos) {
        return api_error(429, fmt::format("The server is at capacity: {}. Retry shortly.", u.error), {},
                         "rate_limit_error", "rate_limit_exceeded");
    }
    switch (u.finish.value_or(finish_reason::error)) {
    case finish_reason::timeout:
        return api_error(504, fmt::format("The request timed out after {} generated tokens.", u.completion_tokens),
                         {}, "server_error", "timeout");
    case finish_reason::aborted:
        return unavailable(u.error.empty() ? "The request was aborted: the server is shutting down."
                                           : fmt::format("The request was aborted: {}.", u.error));
    default:
        return api_error(500, fmt::format("The model failed: {}", u.error.empty() ? "unknown error" : u.error), {},
                         "server_error");
    }
}

namespace {

/// OpenAI's finish_reason: "length", or "stop" — "tool_calls" for a call
/// that tool_choice "required" forced (a named one finishes with "stop"),
/// or when calls were parsed out of the text (`called`).
std::string_view finish_text(const openai_request& r, finish_reason f, bool called = false) noexcept {
    if (f == finish_reason::length) return "length";
    return r.tool_choice_required || called ? "tool_calls" : "stop";
}

/// A parser of the calls in a choice's text (tool_choice "auto").
tool_call_parser calls_parser(const openai_request& r) {
    std::vector<std::string> names;
    for (const chat_tool& t : r.tools) names.push_back(t.name);
    return tool_call_parser(r.tool_syntax, std::move(names), r.parallel_tool_calls ? 0 : 1);
}

/// Moves a parser's output into `text` and `calls`, each call with its id.
void take_calls(tool_call_parser::output&& o, std::string& text, std::vector<chat_tool_call>& calls) {
    text += o.content;
    for (chat_tool_call& c : o.calls) {
        c.id = new_tool_call_id();
        calls.push_back(std::move(c));
    }
}

/// The response object for `r`, a forced tool call giving each choice its id.
void set_tool_calls(openai_response& resp, const openai_request& r, std::size_t choices) {
    if (r.tool_call.empty()) return;
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < choices; ++i) ids.push_back(new_tool_call_id());
    resp.set_tool_call(r.tool_call, std::move(ids));
}

api_error no_finish() { return api_error(500, "The generation ended without a finish reason.", {}, "server_error"); }

void add_logprobs(const tokenizer& tok, std::span<const generated_token> tokens, std::vector<openai_logprob>& out) {
    for (const generated_token& t : tokens) {
        openai_logprob lp;
        lp.token = tok.token_to_piece(t.id);
        lp.logprob = t.logprob;
        lp.top.reserve(t.top.size());
        for (const token_logprob& alt : t.top) lp.top.emplace_back(tok.token_to_piece(alt.token), alt.logprob);
        out.push_back(std::move(lp));
    }
}

void add_logprobs(const tokenizer& tok, const generation_update& u, std::vector<openai_logprob>& out) {
    add_logprobs(tok, u.tokens, out);
}

/// With echo and logprobs: the entries of choice `index`'s prompt, from the
/// update that carries its scores — the first token's unscored (null), as
/// OpenAI reports it.
void add_prompt_logprobs(const tokenizer& tok, const openai_request& r, std::size_t index, const generation_update& u,
                         std::vector<openai_logprob>& out) {
    const std::vector<token_id>& prompt = r.prompt_ids[index / r.n];
    if (prompt.empty()) return;
    openai_logprob first;
    first.token = tok.token_to_piece(prompt.front());
    first.scored = false;
    out.push_back(std::move(first));
    add_logprobs(tok, u.prompt_logprobs, out);
}

/// Counts choice `index`'s final update: its completion tokens, and its
/// prompt's tokens once per prompt (its first choice's, of `n`).
void add_usage(openai_usage& usage, const generation_update& u, std::size_t index, std::size_t n) {
    if (index % n == 0) {
        usage.prompt_tokens += u.prompt_tokens;
        usage.cached_tokens += u.cached_prompt_tokens;
    }
    usage.completion_tokens += u.completion_tokens;
}

/// With echo: the text of choice `index`'s prompt, which goes first.
std::string echo_text(const reply_model& m, const openai_request& r, std::size_t index) {
    if (!r.echo) return {};
    const std::size_t p = index / r.n;
    return r.prompts[p].is_tokens ? m.vocab.decode(r.prompt_ids[p]) : r.prompts[p].text;
}

/// One SSE event of `data` (a line of JSON, or [DONE]) appended to `out`,
/// where a step's events gather for one write.
void append_event(std::string& out, std::string_view data) { http::sse_writer::append(out, data); }

/// The events of one streaming response, for any number of choices.
struct event_writer {
    reply_model model;
    const openai_request& request;
    openai_response response;
    std::string buf;
    std::vector<openai_logprob> lps;
    openai_usage usage;
    bool failed = false;
    std::vector<bool> echoed; ///< echo with logprobs: the prompt's chunk went out, per choice
    std::vector<std::optional<tool_call_parser>> parsers; ///< tool_choice "auto": per choice
    std::vector<std::size_t> calls_sent;                  ///< tool_choice "auto": calls sent, per choice

    tool_call_parser& parser(std::size_t index) {
        if (parsers.size() <= index) {
            parsers.resize(index + 1);
            calls_sent.resize(index + 1, 0);
        }
        if (!parsers[index]) parsers[index].emplace(calls_parser(request));
        return *parsers[index];
    }

    event_writer(reply_model m, const openai_request& r)
        : model(m), request(r), response(r.endpoint, m.name, r.logprobs, r.include_usage) {}

    /// Whether the echo waits for the prompt's scores: they come with the
    /// choice's first update, and its echo chunk carries them.
    bool echo_with_scores() const noexcept { return request.echo && request.logprobs; }

    /// Appends the events of choice `index`'s update; true when it was the
    /// choice's last (a failure sets `failed` and appends the error event).
    bool add(const generation_update& u, std::size_t index) {
        if (echo_with_scores() && (echoed.size() <= index || !echoed[index])) {
            if (echoed.size() <= index) echoed.resize(index + 1, false);
            echoed[index] = true;
            lps.clear();
            add_prompt_logprobs(model.vocab, request, index, u, lps);
            append_event(buf, response.text_chunk(echo_text(model, request, index), lps, index));
        }
        lps.clear();
        if (request.logprobs) add_logprobs(model.vocab, u, lps);
        const bool failure = u.finish && is_failure(*u.finish);
        if (request.parse_tool_calls && !failure) {
            // Content as the parser lets it go, calls whole as they close.
            tool_call_parser& p = parser(index);
            std::string text;
            std::vector<chat_tool_call> calls;
            take_calls(p.feed(u.text), text, calls);
            if (u.finish) take_calls(p.finish(), text, calls);
            if (!text.empty() || !lps.empty()) append_event(buf, response.text_chunk(text, lps, index));
            for (const chat_tool_call& c : calls) {
                append_event(buf, response.tool_call_chunk(c, calls_sent[index]++, index));
            }
        } else if (!u.text.empty() || !lps.empty()) {
            // A token's event, the common case: written in place.
            http::sse_writer::append_with(buf,
                                          [&](std::string& o) { response.append_text_chunk(o, u.text, lps, index); });
        }
        if (!u.finish) return false;
        if (failure) {
            append_event(buf, failure_error(u).to_json());
            failed = true;
            return true;
        }
        const bool called = request.parse_tool_calls && parser(index).called();
        append_event(buf, response.final_chunk(finish_text(request, *u.finish, called), index));
        add_usage(usage, u, index, request.n);
        return true;
    }

    /// After the last choice: the usage chunk (when asked for) and [DONE].
    void end() {
        if (!failed && request.include_usage) append_event(buf, response.usage_chunk(usage));
        append_event(buf, "[DONE]");
    }

    task<void> flush(http::chunked_writer& out) {
        if (buf.empty()) co_return;
        // Written from buf, which keeps its capacity for the next events:
        // nothing appends to it until this write completes (one coroutine
        // adds and flushes in turn).
        co_await out.write_string(buf);
        buf.clear();
    }

    /// flush, then the end of the chunked body, in one write.
    task<void> flush_final(http::chunked_writer& out) {
        const std::string data = std::exchange(buf, {});
        const std::span<const std::byte> bytes = std::as_bytes(std::span(data));
        co_await out.finish_with(bytes);
    }
};

/// An update of one choice on its way to the writer; nullopt: the stream
/// ended without a final update.
struct indexed_update {
    std::size_t index = 0;
    std::optional<generation_update> update;
};

/// Moves one choice's updates into the channel, up to its last.
task<void> pump(generation_stream& s, std::size_t index, channel<indexed_update>& ch) {
    try {
        for (;;) {
            std::optional<generation_update> u = co_await s.next();
            const bool last = !u || u->finish;
            // Built and moved into a named awaiter outside any co_await
            // expression: GCC 12 copies a class temporary made inside one
            // (or a co_await result inside braces) bit by bit, which breaks
            // the strings in it.
            indexed_update item;
            item.index = index;
            item.update = std::move(u);
            auto sending = ch.send(std::move(item));
            co_await sending;
            if (last) co_return;
        }
    } catch (const channel_closed&) {
        // The writer is done: a choice failed, or the client went away.
    }
}

/// Writes the updates of `open` choices as they arrive, then ends the
/// response. On a failure, or when it fails itself, it cancels every
/// stream and closes the channel, so that the pumps end too.
task<void> write_merged(event_writer& w, std::vector<generation_stream>& streams, channel<indexed_update>& ch,
                        std::size_t open, http::chunked_writer& out) {
    const auto stop_all = [&] {
        for (generation_stream& s : streams) s.cancel();
        ch.close();
    };
    try {
        while (open > 0 && !w.failed) {
            std::optional<indexed_update> item = co_await ch.receive();
            if (!item) break;
            if (!item->update) {
                append_event(w.buf, no_finish().to_json());
                w.failed = true;
                break;
            }
            if (w.add(*item->update, item->index)) --open;
            co_await w.flush(out);
        }
    } catch (...) {
        stop_all();
        throw;
    }
    stop_all();
    w.end();
    co_await w.flush(out);
}

} // namespace

task<void> send_whole(reply_model m, const openai_request& r, std::vector<generation_stream>& streams,
                      std::vector<generation_update> firsts, const reply_to& to) {
    std::vector<openai_choice> choices(streams.size());
    openai_usage usage;
    // The choices compute together in the engine; reading them one after
    // the other only decides the order their updates are taken in.
    for (std::size_t i = 0; i < streams.size(); ++i) {
        openai_choice& c = choices[i];
        c.text = echo_text(m, r, i);
        std::optional<generation_update> u = std::move(firsts[i]);
        // With echo and logprobs the first update carries the prompt's scores.
        if (r.echo && r.logprobs) add_prompt_logprobs(m.vocab, r, i, *u, c.logprobs);
        for (;;) {
            c.text += u->text;
            if (r.logprobs) add_logprobs(m.vocab, *u, c.logprobs);
            if (u->finish) break;
            u = co_await streams[i].next();
            if (!u) break;
        }
        if (!u || !u->finish) {
            co_await send_error(to, no_finish());
            co_return;
        }
        if (is_failure(*u->finish)) {
            co_await send_error(to, failure_error(*u));
            co_return;
        }
        if (r.parse_tool_calls) {
            tool_call_parser parser = calls_parser(r);
            std::string text;
            take_calls(parser.feed(c.text), text, c.tool_calls);
            take_calls(parser.finish(), text, c.tool_calls);
            c.text = std::move(text);
        }
        c.finish_reason = finish_text(r, *u->finish, !c.tool_calls.empty());
        add_usage(usage, *u, i, r.n);
    }
    openai_response resp(r.endpoint, m.name, r.logprobs, false);
    set_tool_calls(resp, r, choices.size());
    const std::string body = resp.complete(choices, usage);
    http::header_map h;
    h.add("Content-Type", std::string(json_type));
    const auto bytes = std::as_bytes(std::span<const char>(body));
    to.begin(200, std::move(h));
    co_await to.out.finish_with(bytes);
}

task<void> send_events(reply_model m, const openai_request& r, std::vector<generation_stream>& streams,
                       std::vector<generation_update> firsts, const reply_to& to) {
    event_writer w(m, r);
    set_tool_calls(w.response, r, streams.size());
    // The head goes out with the first events, already here.
    to.begin(200, http::sse_writer::headers());
    const std::size_t n = streams.size();
    if (r.endpoint == openai_endpoint::chat_completions) {
        for (std::size_t i = 0; i < n; ++i) append_event(w.buf, w.response.first_chunk(i));
    }
    if (r.echo && !w.echo_with_scores()) {
        for (std::size_t i = 0; i < n; ++i) append_event(w.buf, w.response.text_chunk(echo_text(m, r, i), {}, i));
    }
    std::size_t open = n;
    for (std::size_t i = 0; i < n && !w.failed; ++i) {
        if (w.add(firsts[i], i)) --open;
    }
    if (open == 0 || w.failed) {
        w.end();
        co_await w.flush(to.out);
        co_return;
    }
    co_await w.flush(to.out);

    if (n == 1) {
        // One choice: read its stream directly.
        for (;;) {
            std::optional<generation_update> u = co_await streams[0].next();
            if (!u) break;
            const bool last = w.add(*u, 0);
            if (last) {
                w.end();
                co_await w.flush_final(to.out); // the events and the end of the body in one send
                co_return;
            }
            co_await w.flush(to.out);
        }
        // The engine always sends a final update; this is a safety net.
        append_event(w.buf, no_finish().to_json());
        append_event(w.buf, "[DONE]");
        co_await w.flush(to.out);
        co_return;
    }

    // Several: one pump per open choice feeds the writer, in arrival order.
    channel<indexed_update> ch(n);
    std::vector<task<void>> parts;
    parts.push_back(write_merged(w, streams, ch, open, to.out));
    for (std::size_t i = 0; i < n; ++i) {
        if (!firsts[i].finish) parts.push_back(pump(streams[i], i, ch));
    }
    co_await when_all(std::move(parts));
}

} // namespace weft::serve::detail
