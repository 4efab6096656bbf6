/// \file
/// `openai_response`: the JSON bodies of OpenAI's completion responses, for
/// one request: `text_completion` and `chat.completion` objects, and the
/// streaming chunks (`text_completion` chunks; `chat.completion.chunk`s with
/// a `delta`) that go out as Server-Sent Events before `data: [DONE]`.
///
/// Schemas (keys exactly as OpenAI's):
///  - completion: {id "cmpl-<hex>", object "text_completion", created, model,
///    choices [{index, text, logprobs, finish_reason}], usage}
///  - chat: {id "chatcmpl-<hex>", object "chat.completion", created, model,
///    choices [{index, message {role "assistant", content}, logprobs,
///    finish_reason}], usage}; a forced tool call's message is {role,
///    content null, tool_calls [{id "call_<hex>", type "function", function
///    {name, arguments}}]}
///  - usage: {prompt_tokens, completion_tokens, total_tokens,
///    prompt_tokens_details: {cached_tokens}}
///  - completion logprobs: {tokens, token_logprobs, top_logprobs [{token:
///    logprob}], text_offset} (byte offsets into the generated text)
///  - chat logprobs: {content [{token, logprob, bytes, top_logprobs [{token,
///    logprob, bytes}]}]}
///  - streaming: the same envelope; a completion chunk carries `text`, a chat
///    chunk a `delta` ({role, content} first, then {content}, then {} with
///    the finish_reason). With stream_options.include_usage every chunk has
///    "usage": null and a last chunk has "choices": [] and the usage.
/// Token texts that are not valid UTF-8 (a token ending inside a character)
/// show U+FFFD in JSON strings; chat `bytes` keep the exact bytes.
///
/// Lifetime: a plain value per request. Threading: not synchronized (one
/// request's handler uses it).
#pragma once

#include <weft/serve/openai_request.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::serve {

/// One generated token's log-probability, with its text already looked up.
struct openai_logprob {
    std::string token;  ///< the token's bytes
    float logprob = 0.0f;
    std::vector<std::pair<std::string, float>> top; ///< alternatives, most likely first
    bool scored = true; ///< false: the prompt's first token, which nothing scores (logprob and top are null)
};

struct openai_usage {
    std::size_t prompt_tokens = 0;
    std::size_t completion_tokens = 0;
    std::size_t cached_tokens = 0; ///< prompt tokens served from the prefix cache
};

/// One choice of a whole (non-streaming) response.
struct openai_choice {
    std::string text;
    std::vector<openai_logprob> logprobs;
    std::string_view finish_reason;
    /// Chat: calls parsed out of the text (tool_choice "auto"); with any, the
    /// message has "tool_calls" and `text` is its content (null when empty).
    std::vector<chat_tool_call> tool_calls{};
};

/// "cmpl-" or "chatcmpl-" followed by 24 random hex digits.
std::string new_completion_id(openai_endpoint endpoint);
/// "call_" followed by 24 random hex digits.
std::string new_tool_call_id();

/// The body of GET /v1/models listing one model.
std::string models_list_json(std::string_view model, std::int64_t created, std::string_view owned_by);

class openai_response {
public:
    /// A response for `model`, with a fresh id and `created` = now (seconds).
    openai_response(openai_endpoint endpoint, std::string_view model, bool logprobs, bool include_usage);
    /// The same with the id and creation time given (for tests).
    openai_response(openai_endpoint endpoint, std::string_view model, bool logprobs, bool include_usage,
                    std::string_view id, std::int64_t created);

    [[nodiscard]] const std::string& id() const noexcept { return m_id; }

    /// Chat: every choice is a call of `function` (a forced tool call) whose
    /// arguments are the generated text: the message has "content": null
    /// and "tool_calls" [{id, type "function", function {name, arguments}}];
    /// streamed, the opening delta carries the call's id and name and each
    /// later delta a piece of its arguments. `ids` are the calls' ids, one
    /// per choice.
    void set_tool_call(std::string function, std::vector<std::string> ids);

    /// The whole non-streaming response with one choice.
    [[nodiscard]] std::string complete(std::string_view text, std::span<const openai_logprob> logprobs,
                                       std::string_view finish_reason, openai_usage usage) const;
    /// The whole non-streaming response, choice i with index i.
    [[nodiscard]] std::string complete(std::span<const openai_choice> choices, openai_usage usage) const;

    /// Streaming chunks each carry one choice, `index` (for n > 1 the
    /// choices' chunks interleave, as OpenAI's do).
    /// The chat's opening chunk (delta {role, content ""}); "" for
    /// completions, which have none.
    [[nodiscard]] std::string first_chunk(std::size_t index = 0) const;
    /// A chunk of text and the log-probabilities of its tokens.
    [[nodiscard]] std::string text_chunk(std::string_view text, std::span<const openai_logprob> logprobs,
                                         std::size_t index = 0);
    /// text_chunk appended to `out` (a stream's event buffer: no string of
    /// its own per token).
    void append_text_chunk(std::string& out, std::string_view text, std::span<const openai_logprob> logprobs,
                           std::size_t index = 0);
    /// Chat: a chunk with call `call_index` of choice `index`, whole (id,
    /// type, name and arguments): a call found in the text (tool_choice "auto").
    [[nodiscard]] std::string tool_call_chunk(const chat_tool_call& call, std::size_t call_index,
                                              std::size_t index = 0) const;
    /// The chunk with the finish_reason (empty text / delta).
    [[nodiscard]] std::string final_chunk(std::string_view finish_reason, std::size_t index = 0) const;
    /// Streaming: the usage chunk (only with include_usage).
    [[nodiscard]] std::string usage_chunk(openai_usage usage) const;

private:
    void append_logprobs(std::string& out, std::span<const openai_logprob> logprobs, std::size_t text_offset) const;
    void append_choice_tail(std::string& out, std::string_view finish_reason) const;
    void append_choice(std::string& out, const openai_choice& c, std::size_t index) const;
    /// The forced call's id for choice `index`.
    std::string_view tool_call_id(std::size_t index) const noexcept;

    openai_endpoint m_endpoint;
    bool m_logprobs;
    bool m_include_usage;
    std::string m_id;
    std::string m_prefix;           ///< {"id":...,"object":...,"created":...,"model":...
    std::string m_chunk_prefix;     ///< the same with the chunk object name
    std::vector<std::size_t> m_text_offset; ///< streaming: bytes of text sent so far, per choice
    std::string m_tool_function;            ///< set_tool_call's function ("": plain messages)
    std::vector<std::string> m_tool_ids;    ///< the calls' ids, per choice
};

} // namespace weft::serve
