// Private to weft::serve: what the renderers of `chat_template`
// (chat_template.cpp) and its tool handling (chat_template_tools.cpp) share.
#pragma once

#include <weft/serve/chat_template.hpp>

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::serve::detail {

// Mistral markers both files write or look for.
inline constexpr std::string_view inst_open = "[INST]";
inline constexpr std::string_view inst_close = "[/INST]";
inline constexpr std::string_view tools_open = "[AVAILABLE_TOOLS]";
inline constexpr std::string_view tools_close = "[/AVAILABLE_TOOLS]";
inline constexpr std::string_view tool_calls_marker = "[TOOL_CALLS]";
inline constexpr std::string_view results_open = "[TOOL_RESULTS]";
inline constexpr std::string_view results_close = "[/TOOL_RESULTS]";

/// Jinja's `trim` / Python's `strip()` for ASCII whitespace.
std::string trim(std::string_view s);

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

/// Texts of the system messages, and the others in order.
struct split_messages {
    std::string system;
    bool has_system = false;
    std::vector<const chat_message*> turns;
};

split_messages split_system(std::span<const chat_message> messages);

// ---- Tools (chat_template_tools.cpp) ---------------------------------------

/// Whether a message is a tool result or carries tool calls.
bool has_tool_parts(std::span<const chat_message> messages) noexcept;

/// The conversation with tools, calls and results written the way `style`'s
/// templates write them, as messages of the plain roles (and, for Llama 3,
/// `tool` results, which its renderer heads `ipython`).
std::vector<chat_message> lower_tools(chat_template_style style, std::span<const chat_message> messages,
                                      std::span<const chat_tool> tools);

/// Mistral v0.3's template, tools and all (see the header).
void render_mistral_v3(std::span<const chat_message> messages, std::span<const chat_tool> tools, piece_list& out,
                       std::string_view eos);

} // namespace weft::serve::detail
