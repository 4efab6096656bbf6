#include <weft/serve/tool_call_parser.hpp>

#include <weft/serve/stop_matcher.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

namespace weft::serve {

namespace {

using json = nlohmann::json;

constexpr std::string_view open_tag = "<tool_call>";
constexpr std::string_view close_tag = "</tool_call>";
constexpr std::string_view mistral_marker = "[TOOL_CALLS]";

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

/// The top-level JSON objects of `text`, separated by whitespace, `;` or
/// `,`; empty when anything else is there or an object is unterminated.
std::vector<std::string_view> split_objects(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (is_space(c) || c == ';' || c == ',') {
            ++i;
            continue;
        }
        if (c != '{') return {};
        const std::size_t begin = i;
        int depth = 0;
        bool in_string = false;
        bool escaped = false;
        for (; i < text.size(); ++i) {
            const char d = text[i];
            if (in_string) {
                if (escaped) {
                    escaped = false;
                } else if (d == '\\') {
                    escaped = true;
                } else if (d == '"') {
                    in_string = false;
                }
            } else if (d == '"') {
                in_string = true;
            } else if (d == '{' || d == '[') {
                ++depth;
            } else if (d == '}' || d == ']') {
                if (--depth == 0) break;
            }
        }
        if (i == text.size()) return {};
        out.push_back(text.substr(begin, i + 1 - begin));
        ++i;
    }
    return out;
}

} // namespace

tool_call_syntax tool_call_syntax_for(chat_template_style style) noexcept {
    switch (style) {
    case chat_template_style::chatml:
    case chat_template_style::fallback: return tool_call_syntax::hermes;
    case chat_template_style::llama3: return tool_call_syntax::llama3_json;
    case chat_template_style::llama2:
    case chat_template_style::mistral:
    case chat_template_style::mistral_v7:
    case chat_template_style::mistral_v7_tekken: return tool_call_syntax::none;
    case chat_template_style::mistral_v3: return tool_call_syntax::mistral;
    }
    return tool_call_syntax::none;
}

tool_call_parser::tool_call_parser(tool_call_syntax syntax, std::vector<std::string> functions,
                                   std::size_t max_calls)
    : m_syntax(syntax), m_functions(std::move(functions)), m_max_calls(max_calls) {}

bool tool_call_parser::known(std::string_view name) const noexcept {
    return std::find(m_functions.begin(), m_functions.end(), name) != m_functions.end();
}

bool tool_call_parser::parse_call(std::string_view body, std::string_view args_key, chat_tool_call& out) const {
    const json v = json::parse(body, nullptr, false);
    if (v.is_discarded() || !v.is_object()) return false;
    const auto name = v.find("name");
    if (name == v.end() || !name->is_string() || !known(name->get_ref<const std::string&>())) return false;
    auto args = v.find("arguments");
    if (args == v.end() && !args_key.empty()) args = v.find(std::string(args_key));
    json arguments = json::object();
    if (args != v.end()) {
        arguments = *args;
        // Some models write the arguments as a string of JSON.
        if (arguments.is_string()) arguments = json::parse(arguments.get<std::string>(), nullptr, false);
        if (!arguments.is_object()) return false;
    }
    out.name = name->get<std::string>();
    out.arguments = arguments.dump();
    return true;
}

void tool_call_parser::emit_content(output& out, std::string_view text) {
    if (m_after_call) {
        // The new line after </tool_call> (or between calls) is not content.
        while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
        if (text.empty()) return;
        m_after_call = false;
    }
    out.content.append(text);
}

void tool_call_parser::feed_hermes(output& out) {
    for (;;) {
        if (!m_inside) {
            const std::size_t at = m_pending.find(open_tag);
            if (at == std::string::npos) {
                const std::size_t keep = stop_matcher::partial_match(m_pending, open_tag);
                emit_content(out, std::string_view(m_pending).substr(0, m_pending.size() - keep));
                m_pending.erase(0, m_pending.size() - keep);
                return;
            }
            emit_content(out, std::string_view(m_pending).substr(0, at));
            m_pending.erase(0, at + open_tag.size());
            m_inside = true;
        }
        const std::size_t end = m_pending.find(close_tag);
        if (end == std::string::npos) return; // the call goes on
        const std::string_view body = std::string_view(m_pending).substr(0, end);
        chat_tool_call call;
        if (parse_call(trim(body), {}, call)) {
            out.calls.push_back(std::move(call));
            ++m_calls;
            m_after_call = true;
            if (done()) { // the reply ends here
                m_pending.clear();
                m_inside = false;
                return;
            }
        } else {
            // Not a call after all: the block is text.
            m_after_call = false;
            out.content.append(open_tag);
            out.content.append(body);
            out.content.append(close_tag);
        }
        m_pending.erase(0, end + close_tag.size());
        m_inside = false;
    }
}

void tool_call_parser::feed_mistral(output& out) {
    if (m_inside) return; // the calls' JSON: parsed whole at the end
    const std::size_t at = m_pending.find(mistral_marker);
    if (at == std::string::npos) {
        const std::size_t keep = stop_matcher::partial_match(m_pending, mistral_marker);
        out.content.append(std::string_view(m_pending).substr(0, m_pending.size() - keep));
        m_pending.erase(0, m_pending.size() - keep);
        return;
    }
    out.content.append(std::string_view(m_pending).substr(0, at));
    m_pending.erase(0, at + mistral_marker.size());
    m_inside = true;
}

tool_call_parser::output tool_call_parser::finish_mistral() {
    output out;
    if (!m_inside) {
        out.content = std::exchange(m_pending, {});
        return out;
    }
    // A JSON array of {"name", "arguments"} objects (or one such object).
    const json v = json::parse(m_pending, nullptr, false);
    std::vector<chat_tool_call> calls;
    if (!v.is_discarded() && (v.is_array() || v.is_object())) {
        for (const json& item : v.is_array() ? v : json::array({v})) {
            chat_tool_call call;
            if (!item.is_object() || !parse_call(item.dump(), {}, call)) {
                calls.clear();
                break;
            }
            calls.push_back(std::move(call));
        }
    }
    if (calls.empty()) {
        out.content = std::string(mistral_marker) + m_pending; // not calls after all: text
    } else {
        if (m_max_calls != 0 && calls.size() > m_max_calls) calls.resize(m_max_calls);
        m_calls = calls.size();
        out.calls = std::move(calls);
    }
    m_pending.clear();
    m_inside = false;
    return out;
}

tool_call_parser::output tool_call_parser::feed(std::string_view text) {
    output out;
    if (done()) return out;
    switch (m_syntax) {
    case tool_call_syntax::none: out.content.assign(text); break;
    case tool_call_syntax::hermes:
        m_pending.append(text);
        feed_hermes(out);
        break;
    case tool_call_syntax::mistral:
        m_pending.append(text);
        feed_mistral(out);
        break;
    case tool_call_syntax::llama3_json:
        if (m_lead == lead::text) {
            out.content.assign(text);
            break;
        }
        m_pending.append(text);
        if (m_lead == lead::undecided) {
            const std::string_view t = trim(m_pending);
            if (t.empty()) break; // only whitespace so far
            m_lead = t.front() == '{' ? lead::json : lead::text;
            if (m_lead == lead::text) out.content = std::exchange(m_pending, {});
        }
        break;
    }
    return out;
}

tool_call_parser::output tool_call_parser::finish_llama3() {
    output out;
    const std::vector<std::string_view> objects = split_objects(m_pending);
    std::vector<chat_tool_call> calls;
    for (std::string_view o : objects) {
        chat_tool_call call;
        if (!parse_call(o, "parameters", call)) {
            calls.clear();
            break;
        }
        calls.push_back(std::move(call));
    }
    if (calls.empty()) {
        out.content = std::exchange(m_pending, {});
    } else {
        if (m_max_calls != 0 && calls.size() > m_max_calls) calls.resize(m_max_calls);
        m_calls = calls.size();
        out.calls = std::move(calls);
        m_pending.clear();
    }
    return out;
}

tool_call_parser::output tool_call_parser::finish() {
    if (m_syntax == tool_call_syntax::llama3_json) return finish_llama3();
    if (m_syntax == tool_call_syntax::mistral) return finish_mistral();
    output out;
    if (done()) return out;
    if (m_inside) {
        // A block never closed: it was text.
        out.content.append(open_tag);
        m_inside = false;
        m_after_call = false;
    }
    emit_content(out, m_pending);
    m_pending.clear();
    return out;
}

} // namespace weft::serve
