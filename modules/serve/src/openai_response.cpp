#include <weft/serve/openai_response.hpp>

#include "openai_json.hpp"

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <random>

namespace weft::serve {

namespace {

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string envelope(std::string_view id, std::string_view object, std::int64_t created, std::string_view model) {
    std::string out = "{\"id\":";
    json_out::append_string(out, id);
    out += ",\"object\":";
    json_out::append_string(out, object);
    out += ",\"created\":";
    json_out::append_int(out, created);
    out += ",\"model\":";
    json_out::append_string(out, model);
    return out;
}

void append_usage(std::string& out, openai_usage u) {
    out += "{\"prompt_tokens\":";
    json_out::append_uint(out, u.prompt_tokens);
    out += ",\"completion_tokens\":";
    json_out::append_uint(out, u.completion_tokens);
    out += ",\"total_tokens\":";
    json_out::append_uint(out, u.prompt_tokens + u.completion_tokens);
    out += ",\"prompt_tokens_details\":{\"cached_tokens\":";
    json_out::append_uint(out, u.cached_tokens);
    out += "}}";
}

void append_bytes(std::string& out, std::string_view bytes) {
    out += '[';
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i > 0) out += ',';
        json_out::append_uint(out, static_cast<unsigned char>(bytes[i]));
    }
    out += ']';
}

} // namespace

namespace {
/// `prefix` followed by 24 random hex digits.
std::string random_id(std::string_view prefix) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const std::uint64_t a = rng();
    const std::uint64_t b = rng();
    return fmt::format("{}{:016x}{:08x}", prefix, a, static_cast<std::uint32_t>(b));
}
} // namespace

std::string new_completion_id(openai_endpoint endpoint) {
    return random_id(endpoint == openai_endpoint::completions ? "cmpl-" : "chatcmpl-");
}

std::string new_tool_call_id() { return random_id("call_"); }

std::string models_list_json(std::string_view model, std::int64_t created, std::string_view owned_by) {
    std::string out = "{\"object\":\"list\",\"data\":[{\"id\":";
    json_out::append_string(out, model);
    out += ",\"object\":\"model\",\"created\":";
    json_out::append_int(out, created);
    out += ",\"owned_by\":";
    json_out::append_string(out, owned_by);
    out += "}]}";
    return out;
}

openai_response::openai_response(openai_endpoint endpoint, std::string_view model, bool logprobs, bool include_usage)
    : openai_response(endpoint, model, logprobs, include_usage, new_completion_id(endpoint), unix_now()) {}

openai_response::openai_response(openai_endpoint endpoint, std::string_view model, bool logprobs, bool include_usage,
                                 std::string_view id, std::int64_t created)
    : m_endpoint(endpoint), m_logprobs(logprobs), m_include_usage(include_usage), m_id(id) {
    const bool chat = endpoint == openai_endpoint::chat_completions;
    m_prefix = envelope(id, chat ? "chat.completion" : "text_completion", created, model);
    m_chunk_prefix = envelope(id, chat ? "chat.completion.chunk" : "text_completion", created, model);
}

void openai_response::append_logprobs(std::string& out, std::span<const openai_logprob> lps,
                                      std::size_t text_offset) const {
    if (!m_logprobs) {
        out += "null";
        return;
    }
    if (m_endpoint == openai_endpoint::chat_completions) {
        out += "{\"content\":[";
        for (std::size_t i = 0; i < lps.size(); ++i) {
            const openai_logprob& lp = lps[i];
            if (i > 0) out += ',';
            out += "{\"token\":";
            json_out::append_string(out, lp.token);
            out += ",\"logprob\":";
            json_out::append_number(out, lp.logprob);
            out += ",\"bytes\":";
            append_bytes(out, lp.token);
            out += ",\"top_logprobs\":[";
            for (std::size_t k = 0; k < lp.top.size(); ++k) {
                if (k > 0) out += ',';
                out += "{\"token\":";
                json_out::append_string(out, lp.top[k].first);
                out += ",\"logprob\":";
                json_out::append_number(out, lp.top[k].second);
                out += ",\"bytes\":";
                append_bytes(out, lp.top[k].first);
                out += '}';
            }
            out += "]}";
        }
        out += "]}";
        return;
    }
    out += "{\"tokens\":[";
    for (std::size_t i = 0; i < lps.size(); ++i) {
        if (i > 0) out += ',';
        json_out::append_string(out, lps[i].token);
    }
    out += "],\"token_logprobs\":[";
    for (std::size_t i = 0; i < lps.size(); ++i) {
        if (i > 0) out += ',';
        if (lps[i].scored) {
            json_out::append_number(out, lps[i].logprob);
        } else {
            out += "null";
        }
    }
    out += "],\"top_logprobs\":[";
    for (std::size_t i = 0; i < lps.size(); ++i) {
        if (i > 0) out += ',';
        if (!lps[i].scored) {
            out += "null";
            continue;
        }
        out += '{';
        for (std::size_t k = 0; k < lps[i].top.size(); ++k) {
            if (k > 0) out += ',';
            json_out::append_string(out, lps[i].top[k].first);
            out += ':';
            json_out::append_number(out, lps[i].top[k].second);
        }
        out += '}';
    }
    out += "],\"text_offset\":[";
    std::size_t offset = text_offset;
    for (std::size_t i = 0; i < lps.size(); ++i) {
        if (i > 0) out += ',';
        json_out::append_uint(out, offset);
        offset += lps[i].token.size();
    }
    out += "]}";
}

void openai_response::append_choice_tail(std::string& out, std::string_view finish_reason) const {
    out += ",\"finish_reason\":";
    json_out::append_string_or_null(out, finish_reason);
    out += "}]";
    if (m_include_usage) out += ",\"usage\":null";
    out += '}';
}

std::string openai_response::complete(std::string_view text, std::span<const openai_logprob> lps,
                                      std::string_view finish_reason, openai_usage usage) const {
    const openai_choice c{std::string(text), {lps.begin(), lps.end()}, finish_reason, {}};
    return complete(std::span(&c, 1), usage);
}

void openai_response::set_tool_call(std::string function, std::vector<std::string> ids) {
    m_tool_function = std::move(function);
    m_tool_ids = std::move(ids);
}

namespace {
/// {"index":i,"id":..,"type":"function","function":{"name":..,"arguments":
/// (the index only in chunks, the name and id only when opening the call).
void append_tool_call(std::string& out, std::optional<std::size_t> index, std::string_view id, std::string_view name,
                      std::string_view arguments) {
    out += '{';
    if (index) {
        out += "\"index\":";
        json_out::append_uint(out, *index);
        out += ',';
    }
    if (!id.empty()) {
        out += "\"id\":";
        json_out::append_string(out, id);
        out += ",\"type\":\"function\",";
    }
    out += "\"function\":{";
    if (!name.empty()) {
        out += "\"name\":";
        json_out::append_string(out, name);
        out += ',';
    }
    out += "\"arguments\":";
    json_out::append_string(out, arguments);
    out += "}}";
}
} // namespace

std::string_view openai_response::tool_call_id(std::size_t index) const noexcept {
    return index < m_tool_ids.size() ? std::string_view(m_tool_ids[index]) : std::string_view("call_0");
}

void openai_response::append_choice(std::string& out, const openai_choice& c, std::size_t index) const {
    out += "{\"index\":";
    json_out::append_uint(out, index);
    if (m_endpoint == openai_endpoint::chat_completions && !m_tool_function.empty()) {
        out += ",\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[";
        append_tool_call(out, std::nullopt, tool_call_id(index), m_tool_function, c.text);
        out += "]}";
    } else if (m_endpoint == openai_endpoint::chat_completions && !c.tool_calls.empty()) {
        out += ",\"message\":{\"role\":\"assistant\",\"content\":";
        json_out::append_string_or_null(out, c.text);
        out += ",\"tool_calls\":[";
        for (std::size_t k = 0; k < c.tool_calls.size(); ++k) {
            if (k > 0) out += ',';
            append_tool_call(out, std::nullopt, c.tool_calls[k].id, c.tool_calls[k].name, c.tool_calls[k].arguments);
        }
        out += "]}";
    } else if (m_endpoint == openai_endpoint::chat_completions) {
        out += ",\"message\":{\"role\":\"assistant\",\"content\":";
        json_out::append_string(out, c.text);
        out += '}';
    } else {
        out += ",\"text\":";
        json_out::append_string(out, c.text);
    }
    out += ",\"logprobs\":";
    append_logprobs(out, c.logprobs, 0);
    out += ",\"finish_reason\":";
    json_out::append_string_or_null(out, c.finish_reason);
    out += '}';
}

std::string openai_response::complete(std::span<const openai_choice> choices, openai_usage usage) const {
    std::string out = m_prefix;
    out += ",\"choices\":[";
    for (std::size_t i = 0; i < choices.size(); ++i) {
        if (i > 0) out += ',';
        append_choice(out, choices[i], i);
    }
    out += "],\"usage\":";
    append_usage(out, usage);
    out += '}';
    return out;
}

namespace {
void open_chunk_choice(std::string& out, std::size_t index) {
    out += ",\"choices\":[{\"index\":";
    json_out::append_uint(out, index);
}
} // namespace

std::string openai_response::first_chunk(std::size_t index) const {
    if (m_endpoint != openai_endpoint::chat_completions) return {};
    std::string out = m_chunk_prefix;
    open_chunk_choice(out, index);
    if (!m_tool_function.empty()) {
        out += ",\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[";
        append_tool_call(out, 0, tool_call_id(index), m_tool_function, "");
        out += "]},\"logprobs\":null";
        append_choice_tail(out, {});
        return out;
    }
    out += ",\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null";
    append_choice_tail(out, {});
    return out;
}

std::string openai_response::text_chunk(std::string_view text, std::span<const openai_logprob> lps,
                                        std::size_t index) {
    std::string out;
    append_text_chunk(out, text, lps, index);
    return out;
}

void openai_response::append_text_chunk(std::string& out, std::string_view text, std::span<const openai_logprob> lps,
                                        std::size_t index) {
    if (m_text_offset.size() <= index) m_text_offset.resize(index + 1, 0);
    out += m_chunk_prefix;
    open_chunk_choice(out, index);
    if (m_endpoint == openai_endpoint::chat_completions && !m_tool_function.empty()) {
        out += ",\"delta\":{\"tool_calls\":[";
        append_tool_call(out, 0, {}, {}, text);
        out += "]},\"logprobs\":";
    } else if (m_endpoint == openai_endpoint::chat_completions) {
        out += ",\"delta\":{\"content\":";
        json_out::append_string(out, text);
        out += "},\"logprobs\":";
    } else {
        out += ",\"text\":";
        json_out::append_string(out, text);
        out += ",\"logprobs\":";
    }
    append_logprobs(out, lps, m_text_offset[index]);
    for (const openai_logprob& lp : lps) m_text_offset[index] += lp.token.size();
    append_choice_tail(out, {});
}

std::string openai_response::tool_call_chunk(const chat_tool_call& call, std::size_t call_index,
                                             std::size_t index) const {
    std::string out = m_chunk_prefix;
    open_chunk_choice(out, index);
    out += ",\"delta\":{\"tool_calls\":[";
    append_tool_call(out, call_index, call.id, call.name, call.arguments);
    out += "]},\"logprobs\":null";
    append_choice_tail(out, {});
    return out;
}

std::string openai_response::final_chunk(std::string_view finish_reason, std::size_t index) const {
    std::string out = m_chunk_prefix;
    open_chunk_choice(out, index);
    if (m_endpoint == openai_endpoint::chat_completions) {
        out += ",\"delta\":{},\"logprobs\":null";
    } else {
        out += ",\"text\":\"\",\"logprobs\":null";
    }
    append_choice_tail(out, finish_reason);
    return out;
}

std::string openai_response::usage_chunk(openai_usage usage) const {
    std::string out = m_chunk_prefix;
    out += ",\"choices\":[],\"usage\":";
    append_usage(out, usage);
    out += '}';
    return out;
}

} // namespace weft::serve
