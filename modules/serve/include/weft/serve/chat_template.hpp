/// \file
/// `chat_template`: turns chat messages into a prompt the way the model's
/// own `tokenizer.chat_template` (a Jinja template) would, for the template
/// families weft recognises, without a Jinja interpreter.
///
/// Recognised (by a marker the template text contains):
///  - ChatML ("<|im_start|>": Qwen, many fine-tunes):
///    `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
///    `<|im_start|>assistant\n`; no BOS of its own.
///  - Llama 3 ("<|start_header_id|>"): BOS, then
///    `<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>`
///    per message, then `<|start_header_id|>assistant<|end_header_id|>\n\n`.
///  - Llama 2 ("[INST]" and "<<SYS>>"): `<s>[INST] {user} [/INST] {assistant} </s>`
///    per exchange, the system message folded into the first user turn as
///    `<<SYS>>\n{system}\n<</SYS>>\n\n`.
///  - Mistral ("[INST]" without "<<SYS>>"): one BOS, then
///    `[INST] {user} [/INST]{assistant}</s>`, a system message prepended to
///    the first user turn followed by a blank line.
///  - Mistral v0.3 ("[AVAILABLE_TOOLS]"): one BOS, then `[INST] {user}[/INST]`
///    and ` {assistant|trim}</s>`; the system message opens the last user
///    turn when the conversation ends with one (and is dropped otherwise, as
///    the template does).
/// Tools (function definitions), assistant tool calls and tool results are
/// rendered as each family's templates do:
///  - ChatML (Qwen2.5, Hermes): a "# Tools" section with one JSON line per
///    function inside <tools></tools> ends the system message (one is made
///    when there is none); a call is `<tool_call>\n{"name": .., "arguments":
///    ..}\n</tool_call>` after the content; consecutive results form one user
///    turn of `<tool_response>\n{content}\n</tool_response>` blocks.
///  - Llama 3.1: the functions (indented JSON) with Meta's instruction open
///    the first user message; a call is the content `{"name": .., "parameters":
///    ..}`; a result is an `ipython` turn.
///  - Mistral v0.3: `[AVAILABLE_TOOLS] [{"type": "function", "function":
///    {..}}, ..][/AVAILABLE_TOOLS]` before the last user turn; calls as
///    `[TOOL_CALLS] [{"name": .., "arguments": .., "id": ..}, ..]</s>`;
///    a result as `[TOOL_RESULTS] {"content": .., "call_id": ..}[/TOOL_RESULTS]`.
///    Its call ids are 9 letters and digits: any other id is mapped to such
///    one by a hash, the same for a call and its result.
///  - Llama 2 and Mistral, whose templates have no tool syntax: the
///    functions (one JSON line each) with the same instruction end the
///    system text, a call is `{"name": .., "arguments": ..}` text, and a
///    result is a user turn.
/// Anything else, or no template at all, uses the documented fallback:
/// ChatML markers (as special tokens when the vocabulary has them, as plain
/// text otherwise, in which case "<|im_end|>" is also a stop string).
///
/// A rendering is a list of pieces: template *markers* ("<|im_start|>",
/// "[INST]", "</s>", ...) and *text* (template text and message content).
/// `encode` turns a marker into its special token when the vocabulary has a
/// special token with exactly that text, and encodes the text between
/// markers with special-token parsing off, so message content can never
/// produce a special token ("<|im_end|>" typed by a user stays characters).
/// The prompt starts with exactly one BOS when the tokenizer adds one
/// (`add_bos`) or the template puts one there, and the model has a BOS.
///
/// A plain value; thread-safe to share once built.
#pragma once

#include <weft/serve/tokenizer.hpp>

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

enum class chat_role : unsigned char { system, user, assistant, tool };
std::string_view to_string(chat_role r) noexcept;

/// A function call an assistant message made.
struct chat_tool_call {
    std::string id;
    std::string name;
    std::string arguments; ///< a JSON object's text, as the model wrote it
};

struct chat_message {
    chat_role role = chat_role::user;
    std::string content;
    std::vector<chat_tool_call> tool_calls{}; ///< assistant: the calls it made
    std::string tool_call_id{};               ///< tool: the call this is the result of
};

/// A function the model may call: its name, description and the JSON
/// Schema of its arguments (compact JSON text; "{}" when not given).
struct chat_tool {
    std::string name;
    std::string description;
    std::string parameters = "{}";
};

/// mistral_v3: Mistral's v0.3 template ("[AVAILABLE_TOOLS]"), which has
/// tool syntax of its own; mistral: the earlier ones, which have none.
/// mistral_v7: the templates with a system prompt of their own
/// ("[SYSTEM_PROMPT]", Mistral Large 2411), a space after each opening
/// marker; mistral_v7_tekken: the same without the spaces (Mistral Small 3).
/// Both get tools as the earlier Mistral templates do, in the system text.
enum class chat_template_style : unsigned char {
    chatml,
    llama3,
    llama2,
    mistral,
    mistral_v3,
    mistral_v7,
    mistral_v7_tekken,
    fallback
};
std::string_view to_string(chat_template_style s) noexcept;

/// A call id as Mistral v0.3's template takes it: `id` itself when it is 9
/// ASCII letters and digits, else 9 of them derived from a hash of `id`
/// (the same for a call and the result that names it).
std::string mistral_call_id(std::string_view id);

/// One part of a rendered prompt.
struct chat_piece {
    std::string text;
    bool marker = false; ///< template syntax that may be a special token
};

class chat_template {
public:
    /// The style a template's text belongs to (`fallback` when unrecognised or empty).
    static chat_template_style detect(std::string_view template_text) noexcept;

    /// A template of `style`. `bos_text` and `eos_text` are the texts of the
    /// model's BOS and EOS tokens (used by the Llama 2 and Mistral styles for
    /// the turn separators, and by `render_text`).
    explicit chat_template(chat_template_style style = chat_template_style::fallback,
                           std::string bos_text = "<s>", std::string eos_text = "</s>");

    /// The template for `tok`'s `chat_template`, with its BOS/EOS texts. A
    /// recognised style whose markers are not special tokens of this
    /// vocabulary falls back too (see `note`).
    static chat_template for_tokenizer(const tokenizer& tok);

    [[nodiscard]] chat_template_style style() const noexcept { return m_style; }
    /// One line for the startup log: which style, and why when it is the fallback.
    [[nodiscard]] const std::string& note() const noexcept { return m_note; }
    /// Whether the style itself starts the prompt with BOS (Llama 2/3, Mistral).
    [[nodiscard]] bool template_adds_bos() const noexcept;

    /// The pieces of the prompt for `messages` (and the functions `tools`)
    /// followed by the assistant's turn (without the initial BOS, which
    /// `encode` adds).
    [[nodiscard]] std::vector<chat_piece> render(std::span<const chat_message> messages,
                                                 std::span<const chat_tool> tools = {}) const;

    /// The whole prompt as text, BOS included when the template puts one:
    /// what the Jinja template renders (for logs and tests).
    [[nodiscard]] std::string render_text(std::span<const chat_message> messages,
                                          std::span<const chat_tool> tools = {}) const;

    /// Token ids of the prompt for `messages` (see the file comment).
    [[nodiscard]] std::vector<token_id> encode(const tokenizer& tok, std::span<const chat_message> messages,
                                               std::span<const chat_tool> tools = {}) const;

    /// Stop strings the server adds to every chat request of this template
    /// (the fallback's "<|im_end|>" when it is not a token).
    [[nodiscard]] const std::vector<std::string>& extra_stops() const noexcept { return m_extra_stops; }

private:
    chat_template_style m_style;
    std::string m_bos_text;
    std::string m_eos_text;
    std::string m_note;
    std::vector<std::string> m_extra_stops;
};

} // namespace weft::serve
