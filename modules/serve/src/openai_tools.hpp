// Internal: the tool fields of a chat request (openai_tools.cpp) — tools,
// tool_choice and parallel_tool_calls, and the tool_calls of an assistant
// message in the history.
#pragma once

#include <weft/serve/openai_request.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace weft::serve::detail {

/// tools, tool_choice and parallel_tool_calls of `obj` into `r` (after the
/// response_format, which a forced call excludes); throws api_error.
void parse_tools(const nlohmann::json& obj, openai_request& r);

/// An assistant message's `tool_calls`: [{id, type "function", function
/// {name, arguments (a string of a JSON object)}}]; throws api_error.
std::vector<chat_tool_call> parse_tool_calls(const nlohmann::json& calls, const std::string& param);

} // namespace weft::serve::detail
