/// \file
/// `tool_call_parser`: finds the function calls in a model's free text, as
/// it is generated, for `tool_choice: "auto"` — the model decides between
/// answering and calling, and writes a call in its template family's
/// syntax:
///  - Hermes (ChatML models: Qwen2.5, Hermes): `<tool_call>{"name": ..,
///    "arguments": {..}}</tool_call>` blocks, anywhere in the text; the text
///    around them is the reply's content.
///  - Llama 3.1 JSON: the whole reply is one or more `{"name": ..,
///    "parameters": {..}}` objects (separated by `;` or new lines); a reply
///    that does not start with `{` is content.
///  - Mistral v0.3: `[TOOL_CALLS]` (a special token, its text in the
///    output) and a JSON array of `{"name": .., "arguments": {..}}`; the
///    text before it is content.
/// A call names one of the request's functions and has an object of
/// arguments; anything else that looks like a call (an unknown name, JSON
/// that does not parse, a block never closed) stays content, so no text is
/// ever lost. While text may still become a call (a `<tool_call>` in
/// progress, a partial `<tool_` at the end, a Llama reply starting with
/// `{`, Mistral's calls after `[TOOL_CALLS]`) it is held back, as stop
/// strings are.
///
/// Lifetime: one parser per generated choice. Threading: not synchronized.
#pragma once

#include <weft/serve/chat_template.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

enum class tool_call_syntax : unsigned char {
    none,        ///< the family has no call syntax (Llama 2, Mistral before v0.3)
    hermes,      ///< <tool_call> blocks (ChatML, and the ChatML fallback)
    llama3_json, ///< the reply is JSON call objects (Llama 3)
    mistral      ///< [TOOL_CALLS] and a JSON array of calls (Mistral v0.3)
};

/// The syntax models of a template family write calls in.
tool_call_syntax tool_call_syntax_for(chat_template_style style) noexcept;

class tool_call_parser {
public:
    /// A parser for `syntax` accepting calls of `functions` only. With
    /// `max_calls` non-zero (parallel_tool_calls false: 1), the reply ends
    /// with its max_calls-th call: later text and calls are dropped.
    tool_call_parser(tool_call_syntax syntax, std::vector<std::string> functions, std::size_t max_calls = 0);

    struct output {
        std::string content;               ///< text to show now
        std::vector<chat_tool_call> calls; ///< calls completed now (ids left empty)
    };

    /// The next piece of generated text.
    output feed(std::string_view text);
    /// The end of the generation: everything still held back.
    output finish();

    /// Whether any call was found so far.
    [[nodiscard]] bool called() const noexcept { return m_calls > 0; }
    /// Whether the reply has all the calls it may have (max_calls reached):
    /// nothing more will come out.
    [[nodiscard]] bool done() const noexcept { return m_max_calls != 0 && m_calls >= m_max_calls; }

private:
    bool known(std::string_view name) const noexcept;
    /// `body` as a call (`args_key`: the arguments' key besides "arguments").
    bool parse_call(std::string_view body, std::string_view args_key, chat_tool_call& out) const;
    void emit_content(output& out, std::string_view text);
    void feed_hermes(output& out);
    void feed_mistral(output& out);
    output finish_llama3();
    output finish_mistral();

    tool_call_syntax m_syntax;
    std::vector<std::string> m_functions;
    std::string m_pending;  ///< held-back text
    bool m_inside = false;  ///< hermes: within a <tool_call> block; mistral: after [TOOL_CALLS]
    std::size_t m_max_calls = 0; ///< 0: any number
    std::size_t m_calls = 0;
    bool m_after_call = false; ///< hermes: whitespace right after a call is dropped
    enum class lead : unsigned char { undecided, json, text } m_lead = lead::undecided; ///< llama3: the reply's kind
};

} // namespace weft::serve
