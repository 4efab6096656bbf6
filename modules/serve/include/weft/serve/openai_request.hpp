/// \file
/// `openai_request`: the body of `POST /v1/completions` or
/// `POST /v1/chat/completions`, parsed and validated into an engine
/// `generation_request` plus the options that shape the response.
///
/// Validation follows OpenAI's API: a field of the wrong type or out of
/// range throws `api_error` 400 naming the field (`param`) and why; a body
/// that is not JSON, or not an object, is a 400 too; unknown fields are
/// ignored, as OpenAI does; `null` means "absent" for every optional field.
/// A `model` other than the served one (absent or "" is fine) is a 404
/// `model_not_found`. Fields weft cannot honour (`best_of` other than `n`,
/// `suffix`, non-text content parts, JSON Schema
/// keywords outside its subset) are 400s that say so, never silently
/// dropped.
///
/// Accepted fields: model, prompt (completions: a string, an array of token
/// ids, or a batch: an array of strings or of token-id arrays, up to
/// max_batch_prompts, with prompts x n <= max_request_choices), messages (chat: roles system,
/// developer (= system), user, assistant (with `tool_calls` [{id, type,
/// function {name, arguments}}]), tool (with `tool_call_id`); content a
/// string or an array of {"type":"text","text":...} parts), tools (chat: up
/// to max_tools functions {name, description, parameters, strict}),
/// tool_choice ("none"; a named function, or "required": a forced call
/// whose arguments follow the function's parameters schema, as structured
/// outputs do (with several tools the name is generated first and picks the
/// schema); "auto", the default with tools: the model answers or calls, its
/// calls parsed out of its text by tool_call_parser),
/// parallel_tool_calls (false: at most one call in an "auto" reply), max_tokens, max_completion_tokens
/// (chat; wins over max_tokens), temperature [0, 2], top_p (0, 1], top_k
/// (-1 or 0: off, else >= 1), min_p [0, 1], seed, stop (a string or up to 4),
/// presence_penalty and frequency_penalty [-2, 2], repetition_penalty (> 0),
/// logit_bias ({"token id": bias in [-100, 100]}), logprobs (completions: an
/// integer 0..20, the number of alternatives; chat: a boolean, with
/// top_logprobs 0..20), stream, stream_options.include_usage, n (1 .. 64, choices;
/// best_of, when given, must equal it),
/// ignore_eos, min_tokens and stop_token_ids (as vLLM: no end of generation
/// and no stop token id before min_tokens tokens; a stop token id ends the
/// generation like end of generation), response_format ({"type": "text"},
/// {"type": "json_object"}: JSON mode, or {"type": "json_schema",
/// "json_schema": {"name", "schema", "strict"}}: structured outputs, the
/// subset json_schema.hpp lists, anything else a 400 naming the keyword; on
/// both endpoints as vLLM accepts them),
/// echo (completions: the prompt's text before each choice's; with
/// logprobs the prompt's tokens are scored too, the first with null, and
/// max_tokens may be 0 to score the prompt alone),
/// priority (smaller runs first), user (ignored).
///
/// Threading: pure functions.
#pragma once

#include <weft/serve/chat_template.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/openai_error.hpp>
#include <weft/serve/tool_call_parser.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

enum class openai_endpoint : unsigned char { completions, chat_completions };

/// The largest `n` a request may ask for.
inline constexpr std::size_t max_choices = 64;
/// The most prompts one completions request may batch.
inline constexpr std::size_t max_batch_prompts = 256;
/// The most choices (prompts x n) one request may ask for.
inline constexpr std::size_t max_request_choices = 1024;
/// The most tools one chat request may declare.
inline constexpr std::size_t max_tools = 128;

/// One completions prompt: text, or token ids.
struct completion_prompt {
    std::string text;
    std::vector<token_id> tokens;
    bool is_tokens = false;
};

struct openai_parse_options {
    /// The model name the server answers to.
    std::string served_model;
    /// Token ids (prompt arrays, logit_bias keys) must be below this; 0: unchecked.
    std::size_t vocab_size = 0;
};

struct openai_request {
    openai_endpoint endpoint = openai_endpoint::completions;

    /// Completions: the prompts (one, or a batch); choice p * n + i is
    /// choice i of prompt p.
    std::vector<completion_prompt> prompts;
    /// The prompts as token ids, one per prompt (chat: one); the server
    /// fills it in before submitting.
    std::vector<std::vector<token_id>> prompt_ids;
    /// Chat: the conversation.
    std::vector<chat_message> messages;
    /// Chat: the functions the model may call, shown to it in the prompt.
    std::vector<chat_tool> tools;
    /// Chat: the function tool_choice forces ("" when none): the reply is a
    /// call of it, its arguments generated under its parameters schema.
    std::string tool_call;
    /// The call was forced by "required" (finish_reason "tool_calls") rather
    /// than by name (finish_reason "stop", as OpenAI's).
    bool tool_choice_required = false;
    /// Chat: the reply's calls are parsed out of the generated text in
    /// `tool_syntax`: with tool_choice "auto" (the default with tools) the
    /// model answers or calls, in its template family's syntax (the server
    /// sets it); with "required" and several tools the text is one
    /// {"name", "arguments"} object, a discriminated union of the functions.
    bool parse_tool_calls = false;
    tool_call_syntax tool_syntax = tool_call_syntax::none;
    /// parallel_tool_calls: false keeps a parsed reply to its first call
    /// (the text after it is dropped).
    bool parallel_tool_calls = true;

    /// Everything but the prompt; `generation.max_tokens` is only meaningful
    /// when `max_tokens` is set (the server picks the default otherwise).
    generation_request generation;
    std::optional<std::size_t> max_tokens;
    /// Which field `max_tokens` came from ("max_tokens" or "max_completion_tokens").
    std::string max_tokens_param = "max_tokens";

    /// Completions: the prompt's text goes before each choice's text.
    bool echo = false;
    /// Choices to generate (1 .. max_choices), each its own engine request.
    std::size_t n = 1;
    bool stream = false;
    bool include_usage = false;
    /// Report log-probabilities of the chosen tokens, with `top_logprobs` alternatives.
    bool logprobs = false;
    int top_logprobs = 0;
};

/// Parses a `/v1/completions` body; throws api_error.
openai_request parse_completion_request(std::string_view body, const openai_parse_options& opts);
/// Parses a `/v1/chat/completions` body; throws api_error.
openai_request parse_chat_request(std::string_view body, const openai_parse_options& opts);
/// Parses a `/tokenize` body: a chat one when it has "messages", else a
/// completions one with a single prompt; throws api_error.
openai_request parse_tokenize_request(std::string_view body, const openai_parse_options& opts);
/// Parses a `/detokenize` body, {"tokens": [ids]}; throws api_error.
std::vector<token_id> parse_detokenize_request(std::string_view body, const openai_parse_options& opts);

} // namespace weft::serve
