// Tools and tool calls in a chat prompt: how `chat_template` lowers them into
// the plain messages of the families whose templates write them as text, and
// Mistral v0.3's template, which has a syntax of its own for them.
#include "chat_template_internal.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>

namespace weft::serve {

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

namespace detail {
namespace {

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

} // namespace

bool has_tool_parts(std::span<const chat_message> messages) noexcept {
    for (const chat_message& m : messages) {
        if (m.role == chat_role::tool || !m.tool_calls.empty()) return true;
    }
    return false;
}

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

} // namespace detail
} // namespace weft::serve
