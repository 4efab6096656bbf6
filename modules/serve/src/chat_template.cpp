#include <weft/serve/chat_template.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>

namespace weft::serve {

namespace {

constexpr std::string_view im_start = "<|im_start|>";
constexpr std::string_view im_end = "<|im_end|>";
constexpr std::string_view start_header = "<|start_header_id|>";
constexpr std::string_view end_header = "<|end_header_id|>";
constexpr std::string_view eot = "<|eot_id|>";
constexpr std::string_view inst_open = "[INST]";
constexpr std::string_view inst_close = "[/INST]";
constexpr std::string_view tools_open = "[AVAILABLE_TOOLS]";
constexpr std::string_view tools_close = "[/AVAILABLE_TOOLS]";
constexpr std::string_view tool_calls_marker = "[TOOL_CALLS]";
constexpr std::string_view results_open = "[TOOL_RESULTS]";
constexpr std::string_view results_close = "[/TOOL_RESULTS]";
constexpr std::string_view system_open = "[SYSTEM_PROMPT]";
constexpr std::string_view system_close = "[/SYSTEM_PROMPT]";

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/// Jinja's `trim` / Python's `strip()` for ASCII whitespace.
std::string trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

class piece_list {
public:
    void marker(std::string_view text) {
        if (!text.empty()) m_pieces.push_back({std::string(text), true});
    }
    void text(std::string_view text) {
        if (text.empty()) return;
        if (!m_pieces.empty() && !m_pieces.back().marker) {
            m_pieces.back().text.append(text);
        } else {
            m_pieces.push_back({std::string(text), false});
        }
    }
    [[nodiscard]] bool empty() const noexcept { return m_pieces.empty(); }
    std::vector<chat_piece> take() { return std::move(m_pieces); }

private:
    std::vector<chat_piece> m_pieces;
};

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

/// Texts of the system messages, and the others in order.
struct split_messages {
    std::string system;
    bool has_system = false;
    std::vector<const chat_message*> turns;
};

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

// --- tools --------------------------------------------------------------------

using ordered_json = nlohmann::ordered_json;

/// {"type": "function", "function": {"name", "description", "parameters"}}
/// (the description only when given), keys in that order.
ordered_json tool_json(const chat_tool& t) {
    ordered_json f;
    f["name"] = t.name;
    if (!t.description.empty()) f["description"] = t.description;
    f["parameters"] = ordered_json::parse(t.parameters.empty() ? std::string_view("{}") : t.parameters);
    ordered_json out;
    out["type"] = "function";
    out["function"] = std::move(f);
    return out;
}

/// `v` as Python's json.dumps writes it (Jinja's `tojson` in the models'
/// templates): ", " and ": " between items, non-ASCII characters as they are.
std::string py_json(const ordered_json& v) {
    if (v.is_object()) {
        std::string out = "{";
        bool first = true;
        for (const auto& [key, value] : v.items()) {
            if (!first) out += ", ";
            first = false;
            out += ordered_json(key).dump() + ": " + py_json(value);
        }
        return out + "}";
    }
    if (v.is_array()) {
        std::string out = "[";
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i > 0) out += ", ";
            out += py_json(v[i]);
        }
        return out + "]";
    }
    return v.dump();
}

/// A call's arguments as a JSON value ({} when empty or not JSON).
ordered_json arguments_json(const chat_tool_call& c) {
    ordered_json args = ordered_json::parse(c.arguments.empty() ? std::string_view("{}") : c.arguments, nullptr, false);
    return args.is_discarded() ? ordered_json::object() : args;
}

/// `{"name": "N", "<key>": ARGS}`, the arguments as the templates' `tojson`
/// writes them (their keys in the call's order).
std::string call_text(const chat_tool_call& c, std::string_view key) {
    return fmt::format("{{\"name\": {}, \"{}\": {}}}", ordered_json(c.name).dump(), key, py_json(arguments_json(c)));
}

/// `content`, then `calls` each on its own line.
std::string with_calls(const std::string& content, const std::vector<chat_tool_call>& calls,
                       const std::function<std::string(const chat_tool_call&)>& one) {
    std::string out = content;
    for (const chat_tool_call& c : calls) {
        if (!out.empty()) out += '\n';
        out += one(c);
    }
    return out;
}

/// `messages` with `text` at the end of the system message (a new first
/// message when there is none).
std::vector<chat_message> append_to_system(std::vector<chat_message> messages, const std::string& text) {
    for (chat_message& m : messages) {
        if (m.role == chat_role::system) {
            m.content = m.content.empty() ? text : m.content + "\n\n" + text;
            return messages;
        }
    }
    messages.insert(messages.begin(), chat_message{chat_role::system, text, {}, {}});
    return messages;
}

constexpr std::string_view call_instruction =
    "Given the following functions, please respond with a JSON for a function call with its proper arguments "
    "that best answers the given prompt.\n\n";

/// The conversation with tools, calls and results written the way `style`'s
/// templates write them, as messages of the plain roles (and, for Llama 3,
/// `tool` results, which its renderer heads `ipython`).
std::vector<chat_message> lower_tools(chat_template_style style, std::span<const chat_message> messages,
                                      std::span<const chat_tool> tools) {
    std::vector<chat_message> out;
    const bool chatml = style == chat_template_style::chatml || style == chat_template_style::fallback;
    const bool llama3 = style == chat_template_style::llama3;
    bool after_result = false; // the previous message was a tool result
    for (const chat_message& m : messages) {
        const bool result = m.role == chat_role::tool;
        const bool merge = chatml && result && after_result;
        after_result = result;
        chat_message c{m.role, m.content, {}, {}};
        if (m.role == chat_role::assistant && !m.tool_calls.empty()) {
            if (chatml) {
                c.content = with_calls(m.content, m.tool_calls, [](const chat_tool_call& call) {
                    return "<tool_call>\n" + call_text(call, "arguments") + "\n</tool_call>";
                });
            } else {
                const std::string_view key = llama3 ? "parameters" : "arguments";
                c.content = with_calls(m.content, m.tool_calls,
                                       [key](const chat_tool_call& call) { return call_text(call, key); });
            }
        } else if (m.role == chat_role::tool && !llama3) {
            c.role = chat_role::user;
            if (chatml) {
                c.content = "<tool_response>\n" + m.content + "\n</tool_response>";
                if (merge) { // consecutive results share one user turn
                    out.back().content += "\n" + c.content;
                    continue;
                }
            }
        }
        out.push_back(std::move(c));
    }
    if (tools.empty()) return out;

    if (llama3) {
        // Meta's Llama 3.1 template: the functions open the first user message.
        std::string head(call_instruction);
        head += "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and "
                "its value}.Do not use variables.\n\n";
        for (const chat_tool& t : tools) head += tool_json(t).dump(4) + "\n\n";
        for (chat_message& m : out) {
            if (m.role == chat_role::user) {
                m.content = head + trim(m.content);
                return out;
            }
        }
        out.push_back(chat_message{chat_role::user, head, {}, {}});
        return out;
    }
    std::string section;
    if (chatml) {
        section = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
        for (const chat_tool& t : tools) section += "\n" + py_json(tool_json(t)); // Qwen's `tool | tojson`
        section += "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                   "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                   "\"arguments\": <args-json-object>}\n</tool_call>";
    } else {
        section = std::string(call_instruction) +
                  "Respond in the format {\"name\": function name, \"arguments\": dictionary of argument name and "
                  "its value}.\n";
        for (const chat_tool& t : tools) section += "\n" + tool_json(t).dump();
    }
    return append_to_system(std::move(out), section);
}

/// Mistral v0.3's template, tools and all (see the header).
void render_mistral_v3(std::span<const chat_message> messages, std::span<const chat_tool> tools, piece_list& out,
                       std::string_view eos) {
    const split_messages parts = split_system(messages);
    std::size_t last_user = parts.turns.size();
    for (std::size_t i = 0; i < parts.turns.size(); ++i) {
        if (parts.turns[i]->role == chat_role::user) last_user = i;
    }
    for (std::size_t i = 0; i < parts.turns.size(); ++i) {
        const chat_message& m = *parts.turns[i];
        if (m.role == chat_role::user) {
            if (!tools.empty() && i == last_user) {
                // String fields go in as they are, others as tojson: the template's way.
                std::string list = " [";
                for (std::size_t t = 0; t < tools.size(); ++t) {
                    if (t > 0) list += ", ";
                    list += "{\"type\": \"function\", \"function\": {\"name\": \"" + tools[t].name + "\"";
                    if (!tools[t].description.empty()) list += ", \"description\": \"" + tools[t].description + "\"";
                    const std::string_view params =
                        tools[t].parameters.empty() ? std::string_view("{}") : std::string_view(tools[t].parameters);
                    list += ", \"parameters\": " + py_json(ordered_json::parse(params)) + "}}";
                }
                out.marker(tools_open);
                out.text(list + "]");
                out.marker(tools_close);
            }
            out.marker(inst_open);
            out.text(" ");
            if (i + 1 == parts.turns.size() && parts.has_system) {
                out.text(parts.system);
                out.text("\n\n");
            }
            out.text(m.content);
            out.marker(inst_close);
        } else if (m.role == chat_role::assistant && !m.tool_calls.empty()) {
            std::string list = " [";
            for (std::size_t c = 0; c < m.tool_calls.size(); ++c) {
                if (c > 0) list += ", ";
                ordered_json call;
                call["name"] = m.tool_calls[c].name;
                call["arguments"] = arguments_json(m.tool_calls[c]);
                std::string text = py_json(call);
                text.pop_back(); // the closing brace: the id goes last
                list += text + ", \"id\": \"" + mistral_call_id(m.tool_calls[c].id) + "\"}";
            }
            out.marker(tool_calls_marker);
            out.text(list + "]");
            out.marker(eos);
        } else if (m.role == chat_role::assistant) {
            out.text(" ");
            out.text(trim(m.content));
            out.marker(eos);
        } else { // tool
            out.marker(results_open);
            out.text(" {\"content\": " + m.content + ", \"call_id\": \"" + mistral_call_id(m.tool_call_id) + "\"}");
            out.marker(results_close);
        }
    }
}

bool has_tool_parts(std::span<const chat_message> messages) noexcept {
    for (const chat_message& m : messages) {
        if (m.role == chat_role::tool || !m.tool_calls.empty()) return true;
    }
    return false;
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

std::string mistral_call_id(std::string_view id) {
    const auto alnum = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    };
    if (id.size() == 9 && std::all_of(id.begin(), id.end(), alnum)) return std::string(id);
    // FNV-1a 64 of the id, written in base 62.
    std::uint64_t h = 14695981039346656037ull;
    for (const char c : id) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    constexpr std::string_view digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string out(9, '0');
    for (char& c : out) {
        c = digits[h % digits.size()];
        h /= digits.size();
    }
    return out;
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
