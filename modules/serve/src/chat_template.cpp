// `chat_template`: recognising a model's template family and rendering chat
// messages as its template would (tools and tool calls are in
// chat_template_tools.cpp).
#include "chat_template_internal.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

namespace weft::serve {

namespace detail {
namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

} // namespace

std::string trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

split_messages split_system(std::span<const chat_message> messages) {
    split_messages out;
    for (const chat_message& m : messages) {
        if (m.role == chat_role::system) {
            if (out.has_system) out.system += "\n\n";
            out.system += m.content;
            out.has_system = true;
        } else {
            out.turns.push_back(&m);
        }
    }
    return out;
}

} // namespace detail

namespace {

using detail::has_tool_parts, detail::inst_close, detail::inst_open, detail::lower_tools, detail::piece_list,
    detail::render_mistral_v3, detail::results_close, detail::results_open, detail::split_messages,
    detail::split_system, detail::tool_calls_marker, detail::tools_close, detail::tools_open, detail::trim;

constexpr std::string_view im_start = "<|im_start|>";
constexpr std::string_view im_end = "<|im_end|>";
constexpr std::string_view start_header = "<|start_header_id|>";
constexpr std::string_view end_header = "<|end_header_id|>";
constexpr std::string_view eot = "<|eot_id|>";
constexpr std::string_view system_open = "[SYSTEM_PROMPT]";
constexpr std::string_view system_close = "[/SYSTEM_PROMPT]";

/// The id of `text` when the vocabulary has it as a token that the
/// tokenizer treats as one unit: a special token or a user-defined one.
std::optional<token_id> marker_id(const tokenizer& tok, std::string_view text) {
    const std::optional<token_id> id = tok.find(text);
    if (!id) return std::nullopt;
    if (tok.is_special(*id)) return id;
    const auto& types = tok.data().types;
    const auto i = static_cast<std::size_t>(*id);
    if (i < types.size() && types[i] == token_type::user_defined) return id;
    return std::nullopt;
}

void render_chatml(std::span<const chat_message> messages, piece_list& out) {
    for (const chat_message& m : messages) {
        out.marker(im_start);
        out.text(fmt::format("{}\n", to_string(m.role)));
        out.text(m.content);
        out.marker(im_end);
        out.text("\n");
    }
    out.marker(im_start);
    out.text("assistant\n");
}

void render_llama3(std::span<const chat_message> messages, piece_list& out) {
    for (const chat_message& m : messages) {
        out.marker(start_header);
        out.text(m.role == chat_role::tool ? std::string_view("ipython") : to_string(m.role));
        out.marker(end_header);
        out.text("\n\n");
        out.text(trim(m.content));
        out.marker(eot);
    }
    out.marker(start_header);
    out.text("assistant");
    out.marker(end_header);
    out.text("\n\n");
}

void render_llama2(std::span<const chat_message> messages, piece_list& out, std::string_view bos,
                   std::string_view eos) {
    // Meta's template: only a leading system message is special; we fold
    // every system message into the first user turn, as Meta's does with one.
    const split_messages parts = split_system(messages);
    bool first_user = true;
    for (const chat_message* m : parts.turns) {
        if (m->role == chat_role::user) {
            std::string content = m->content;
            if (first_user && parts.has_system) {
                content = fmt::format("<<SYS>>\n{}\n<</SYS>>\n\n{}", parts.system, content);
            }
            first_user = false;
            if (!out.empty()) out.marker(bos); // the first BOS is the prompt's own
            out.marker(inst_open);
            out.text(" ");
            out.text(trim(content));
            out.text(" ");
            out.marker(inst_close);
        } else {
            out.text(" ");
            out.text(trim(m->content));
            out.text(" ");
            out.marker(eos);
        }
    }
    if (first_user && parts.has_system) {
        // A system message with no user turn: still show it to the model.
        if (!out.empty()) out.marker(bos);
        out.marker(inst_open);
        out.text(" ");
        out.text(trim(fmt::format("<<SYS>>\n{}\n<</SYS>>\n\n", parts.system)));
        out.text(" ");
        out.marker(inst_close);
    }
}

void render_mistral(std::span<const chat_message> messages, piece_list& out, std::string_view eos) {
    const split_messages parts = split_system(messages);
    bool first_user = true;
    for (const chat_message* m : parts.turns) {
        if (m->role == chat_role::user) {
            out.marker(inst_open);
            out.text(" ");
            if (first_user && parts.has_system) {
                out.text(parts.system);
                out.text("\n\n");
            }
            first_user = false;
            out.text(m->content);
            out.text(" ");
            out.marker(inst_close);
        } else {
            out.text(m->content);
            out.marker(eos);
        }
    }
    if (first_user && parts.has_system) {
        out.marker(inst_open);
        out.text(" ");
        out.text(parts.system);
        out.text(" ");
        out.marker(inst_close);
    }
}

/// Mistral's v7 templates: every message in place, system ones between
/// their own markers; `space` after each opening marker (v7) or not (tekken).
void render_mistral_v7(std::span<const chat_message> messages, piece_list& out, std::string_view eos, bool space) {
    const std::string_view sp = space ? " " : "";
    for (const chat_message& m : messages) {
        if (m.role == chat_role::system) {
            out.marker(system_open);
            out.text(sp);
            out.text(m.content);
            out.marker(system_close);
        } else if (m.role == chat_role::user) {
            out.marker(inst_open);
            out.text(sp);
            out.text(m.content);
            out.marker(inst_close);
        } else {
            out.text(sp);
            out.text(m.content);
            out.marker(eos);
        }
    }
}

std::string token_text(const tokenizer& tok, std::optional<token_id> id, std::string_view fallback) {
    if (!id) return std::string(fallback);
    const auto& tokens = tok.data().tokens;
    const auto i = static_cast<std::size_t>(*id);
    return i < tokens.size() ? tokens[i] : std::string(fallback);
}

} // namespace

std::string_view to_string(chat_role r) noexcept {
    switch (r) {
    case chat_role::system: return "system";
    case chat_role::user: return "user";
    case chat_role::assistant: return "assistant";
    case chat_role::tool: return "tool";
    }
    return "user";
}

std::string_view to_string(chat_template_style s) noexcept {
    switch (s) {
    case chat_template_style::chatml: return "chatml";
    case chat_template_style::llama3: return "llama3";
    case chat_template_style::llama2: return "llama2";
    case chat_template_style::mistral: return "mistral";
    case chat_template_style::mistral_v3: return "mistral_v3";
    case chat_template_style::mistral_v7: return "mistral_v7";
    case chat_template_style::mistral_v7_tekken: return "mistral_v7_tekken";
    case chat_template_style::fallback: return "fallback";
    }
    return "fallback";
}

chat_template_style chat_template::detect(std::string_view t) noexcept {
    if (t.find(im_start) != std::string_view::npos) return chat_template_style::chatml;
    if (t.find(start_header) != std::string_view::npos) return chat_template_style::llama3;
    if (t.find(system_open) != std::string_view::npos && t.find(inst_open) != std::string_view::npos) {
        // v7 writes "[INST] " and "[SYSTEM_PROMPT] " with a space, tekken without.
        const bool spaced = t.find("[INST] ") != std::string_view::npos ||
                            t.find("[SYSTEM_PROMPT] ") != std::string_view::npos;
        return spaced ? chat_template_style::mistral_v7 : chat_template_style::mistral_v7_tekken;
    }
    if (t.find(inst_open) != std::string_view::npos) {
        if (t.find("<<SYS>>") != std::string_view::npos) return chat_template_style::llama2;
        return t.find(tools_open) != std::string_view::npos ? chat_template_style::mistral_v3
                                                             : chat_template_style::mistral;
    }
    return chat_template_style::fallback;
}

chat_template::chat_template(chat_template_style style, std::string bos_text, std::string eos_text)
    : m_style(style), m_bos_text(std::move(bos_text)), m_eos_text(std::move(eos_text)) {
    m_note = fmt::format("chat template: {}", to_string(style));
    if (style == chat_template_style::fallback) {
        m_note += " (ChatML markers)";
    }
}

chat_template chat_template::for_tokenizer(const tokenizer& tok) {
    const tokenizer_data& d = tok.data();
    const std::string bos = token_text(tok, tok.bos(), "<s>");
    const std::string eos = token_text(tok, tok.eos(), "</s>");
    const chat_template_style style = detect(d.chat_template);

    std::string why;
    if (d.chat_template.empty()) {
        why = "the model has no tokenizer.chat_template";
    } else if (style == chat_template_style::fallback) {
        why = "the model's tokenizer.chat_template is of no recognised family";
    } else {
        std::vector<std::string_view> needed;
        if (style == chat_template_style::chatml) needed = {im_start, im_end};
        if (style == chat_template_style::llama3) needed = {start_header, end_header, eot};
        if (style == chat_template_style::mistral_v3) {
            needed = {tools_open, tools_close, tool_calls_marker, results_open, results_close};
        }
        const bool v7 = style == chat_template_style::mistral_v7 || style == chat_template_style::mistral_v7_tekken;
        if (v7) needed = {system_open, system_close};
        for (std::string_view m : needed) {
            if (!marker_id(tok, m)) {
                if (v7 || style == chat_template_style::mistral_v3) {
                    // Mistral's earlier rendering still fits, without the syntax the vocabulary lacks.
                    chat_template t(chat_template_style::mistral, bos, eos);
                    t.m_note = fmt::format("chat template: mistral (the template is {} but the vocabulary has "
                                           "no special token {}: {})",
                                           v7 ? to_string(style) : std::string_view("v0.3's"), m,
                                           v7 ? "the system text goes in the first turn" : "tools without their syntax");
                    return t;
                }
                why = fmt::format("the template looks like {} but the vocabulary has no special token {}",
                                  to_string(style), m);
                break;
            }
        }
        if (why.empty()) {
            chat_template t(style, bos, eos);
            t.m_note = fmt::format("chat template: {} (recognised from the model's tokenizer.chat_template)",
                                   to_string(style));
            return t;
        }
    }
    chat_template t(chat_template_style::fallback, bos, eos);
    const bool special_markers = marker_id(tok, im_start) && marker_id(tok, im_end);
    if (!special_markers) t.m_extra_stops.emplace_back(im_end);
    t.m_note = fmt::format("chat template: fallback, ChatML markers as {} ({})",
                           special_markers ? "special tokens" : "plain text", why);
    return t;
}

bool chat_template::template_adds_bos() const noexcept {
    return m_style == chat_template_style::llama3 || m_style == chat_template_style::llama2 ||
           m_style == chat_template_style::mistral || m_style == chat_template_style::mistral_v3 ||
           m_style == chat_template_style::mistral_v7 || m_style == chat_template_style::mistral_v7_tekken;
}

std::vector<chat_piece> chat_template::render(std::span<const chat_message> messages,
                                              std::span<const chat_tool> tools) const {
    piece_list out;
    if (m_style == chat_template_style::mistral_v3) { // tool syntax of its own
        render_mistral_v3(messages, tools, out, m_eos_text);
        return out.take();
    }
    std::vector<chat_message> lowered;
    if (!tools.empty() || has_tool_parts(messages)) {
        lowered = lower_tools(m_style, messages, tools);
        messages = lowered;
    }
    switch (m_style) {
    case chat_template_style::chatml:
    case chat_template_style::fallback: render_chatml(messages, out); break;
    case chat_template_style::llama3: render_llama3(messages, out); break;
    case chat_template_style::llama2: render_llama2(messages, out, m_bos_text, m_eos_text); break;
    case chat_template_style::mistral: render_mistral(messages, out, m_eos_text); break;
    case chat_template_style::mistral_v7: render_mistral_v7(messages, out, m_eos_text, true); break;
    case chat_template_style::mistral_v7_tekken: render_mistral_v7(messages, out, m_eos_text, false); break;
    case chat_template_style::mistral_v3: break; // rendered above
    }
    return out.take();
}

std::string chat_template::render_text(std::span<const chat_message> messages,
                                       std::span<const chat_tool> tools) const {
    std::string text;
    if (template_adds_bos()) text = m_bos_text;
    for (const chat_piece& p : render(messages, tools)) text += p.text;
    return text;
}

std::vector<token_id> chat_template::encode(const tokenizer& tok, std::span<const chat_message> messages,
                                            std::span<const chat_tool> tools) const {
    std::vector<token_id> ids;
    if ((tok.data().add_bos || template_adds_bos()) && tok.bos()) ids.push_back(*tok.bos());
    std::string run;
    const auto flush = [&] {
        if (run.empty()) return;
        const std::vector<token_id> part = tok.encode(run, /*add_special=*/false, /*parse_special=*/false);
        ids.insert(ids.end(), part.begin(), part.end());
        run.clear();
    };
    for (const chat_piece& p : render(messages, tools)) {
        if (p.marker) {
            if (const std::optional<token_id> id = marker_id(tok, p.text)) {
                flush();
                ids.push_back(*id);
                continue;
            }
        }
        run += p.text;
    }
    flush();
    return ids;
}

} // namespace weft::serve