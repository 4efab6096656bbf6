#include "openai_tools.hpp"

#include "openai_fields.hpp"

#include <weft/serve/json_schema.hpp>

#include <fmt/format.h>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>

namespace weft::serve::detail {

using json = nlohmann::json;

std::vector<chat_tool_call> parse_tool_calls(const json& calls, const std::string& param) {
    if (!calls.is_array()) wrong_type(param, "an array", calls);
    std::vector<chat_tool_call> out;
    for (std::size_t i = 0; i < calls.size(); ++i) {
        const std::string p = fmt::format("{}[{}]", param, i);
        const json& c = calls[i];
        if (!c.is_object()) wrong_type(p, "an object", c);
        chat_tool_call call;
        const json* id = required_field(c, "id", p + ".id");
        call.id = read_string(*id, p + ".id");
        if (const json* type = field(c, "type"); type != nullptr && read_string(*type, p + ".type") != "function") {
            invalid_value(p + ".type", "only 'function' tool calls exist");
        }
        const json* f = required_field(c, "function", p + ".function");
        if (!f->is_object()) wrong_type(p + ".function", "an object", *f);
        const json* n = required_field(*f, "name", p + ".function.name");
        call.name = read_string(*n, p + ".function.name");
        const json* a = required_field(*f, "arguments", p + ".function.arguments");
        call.arguments = read_string(*a, p + ".function.arguments");
        const json parsed = json::parse(call.arguments, nullptr, false);
        if (parsed.is_discarded() || !parsed.is_object()) {
            invalid_value(p + ".function.arguments", "the arguments must be the text of a JSON object");
        }
        out.push_back(std::move(call));
    }
    return out;
}

namespace {

/// A function's parameters schema as the arguments' schema: an object's
/// (a schema that does not say so gets "type": "object").
json arguments_schema(const json& parameters) {
    json schema = parameters.is_null() ? json::object() : parameters;
    if (!schema.contains("type")) schema["type"] = "object";
    return schema;
}

/// `schema` with its $defs / definitions moved out into `defs` under
/// `prefix`NAME, and its references to them rewritten to match, so that
/// several functions' schemas can sit in one document.
json hoist_defs(json schema, const std::string& prefix, json& defs) {
    for (const char* key : {"$defs", "definitions"}) {
        const auto it = schema.find(key);
        if (it == schema.end() || !it->is_object()) continue;
        for (auto& [name, def] : it->items()) defs[prefix + name] = def;
        schema.erase(it);
    }
    const std::function<void(json&)> rewrite = [&](json& v) {
        if (v.is_object()) {
            for (auto& [key, child] : v.items()) {
                if (key == "$ref" && child.is_string()) {
                    const std::string& ref = child.get_ref<const std::string&>();
                    for (std::string_view from : {"#/$defs/", "#/definitions/"}) {
                        if (ref.starts_with(from)) {
                            child = "#/$defs/" + prefix + ref.substr(from.size());
                            break;
                        }
                    }
                } else {
                    rewrite(child);
                }
            }
        } else if (v.is_array()) {
            for (json& e : v) rewrite(e);
        }
    };
    rewrite(schema);
    return schema;
}

} // namespace

/// Holds a forced call's text to `schema`. A response_format beside it is a
/// 400, and so is a schema outside json_schema's subset (at `param`, `why`
/// before the compiler's message).
static void force_schema(generation_request& g, const json& schema, const std::string& param, std::string_view why) {
    if (g.format != output_format::text) {
        invalid_value("response_format", "a forced tool call is generated under its function's schema: it cannot "
                                         "also follow a response_format");
    }
    try {
        g.schema = std::make_shared<const json_schema>(json_schema::parse(schema.dump()));
    } catch (const std::invalid_argument& e) {
        invalid_value(param, fmt::format("{}{}", why, e.what()));
    }
    g.format = output_format::json_schema;
}

/// tool_choice "required" with several tools: the reply is one object
/// {"name": .., "arguments": {..}} — an anyOf of one object per function,
/// told apart by its constant "name", which the schema matcher generates
/// first — and the reply parses it into the call.
static void require_one_of(openai_request& r, const std::vector<json>& parameters) {
    json defs = json::object();
    json branches = json::array();
    for (std::size_t i = 0; i < r.tools.size(); ++i) {
        json branch;
        branch["type"] = "object";
        branch["properties"]["name"]["const"] = r.tools[i].name;
        branch["properties"]["arguments"] = hoist_defs(arguments_schema(parameters[i]), fmt::format("tool{}.", i), defs);
        branch["required"] = json::array({"name", "arguments"});
        branch["additionalProperties"] = false;
        branches.push_back(std::move(branch));
    }
    json schema;
    schema["anyOf"] = std::move(branches);
    if (!defs.empty()) schema["$defs"] = std::move(defs);
    force_schema(r.generation, schema, "tools", "the functions' parameters cannot be generated: ");
    r.parse_tool_calls = true;
    r.tool_syntax = tool_call_syntax::llama3_json; // the reply is a JSON call object
}

/// Function names as OpenAI allows them: 1 to 64 of a-z, A-Z, 0-9, _ and -.
static bool valid_function_name(std::string_view n) noexcept {
    if (n.empty() || n.size() > 64) return false;
    for (char c : n) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/// tools, tool_choice and parallel_tool_calls (chat). A forced call (a named
/// function, or "required" with one tool) generates the function's
/// arguments under its parameters schema; with "auto" (the default) the
/// reply's calls are parsed out of the model's text.
void parse_tools(const json& obj, openai_request& r) {
    std::vector<json> parameters; // per tool, as given (null when absent)
    if (const json* v = field(obj, "tools")) {
        if (!v->is_array()) wrong_type("tools", "an array", *v);
        if (v->size() > max_tools) invalid_value("tools", fmt::format("at most {} tools, got {}", max_tools, v->size()));
        for (std::size_t i = 0; i < v->size(); ++i) {
            const std::string p = fmt::format("tools[{}]", i);
            const json& t = (*v)[i];
            if (!t.is_object()) wrong_type(p, "an object", t);
            const json* type = required_field(t, "type", p + ".type");
            if (read_string(*type, p + ".type") != "function") invalid_value(p + ".type", "only 'function' tools exist");
            const json* f = required_field(t, "function", p + ".function");
            if (!f->is_object()) wrong_type(p + ".function", "an object", *f);
            chat_tool tool;
            const json* n = required_field(*f, "name", p + ".function.name");
            tool.name = read_string(*n, p + ".function.name");
            if (!valid_function_name(tool.name)) {
                invalid_value(p + ".function.name", "a function name is 1 to 64 of a-z, A-Z, 0-9, underscores and dashes");
            }
            for (const chat_tool& other : r.tools) {
                if (other.name == tool.name) invalid_value(p + ".function.name", fmt::format("two tools are named '{}'", tool.name));
            }
            if (const json* d = field(*f, "description")) tool.description = read_string(*d, p + ".function.description");
            const json* params = field(*f, "parameters");
            if (params != nullptr && !params->is_object()) wrong_type(p + ".function.parameters", "an object", *params);
            tool.parameters = params != nullptr ? params->dump() : "{}";
            if (const json* st = field(*f, "strict")) read_bool(*st, p + ".function.strict");
            parameters.push_back(params != nullptr ? *params : json(nullptr));
            r.tools.push_back(std::move(tool));
        }
    }
    if (const json* v = field(obj, "parallel_tool_calls")) r.parallel_tool_calls = read_bool(*v, "parallel_tool_calls");

    std::optional<std::size_t> forced;
    if (const json* v = field(obj, "tool_choice")) {
        if (v->is_string()) {
            const std::string& c = v->get_ref<const std::string&>();
            if (c == "none") {
                // The tools are shown to the model; it answers in text.
            } else if (c == "auto" || c == "required") {
                if (r.tools.empty()) invalid_value("tool_choice", fmt::format("tool_choice '{}' needs tools", c));
                if (c == "auto") {
                    r.parse_tool_calls = true;
                    return;
                }
                r.tool_choice_required = true;
                if (r.tools.size() > 1) {
                    require_one_of(r, parameters);
                    return;
                }
                forced = 0;
            } else {
                invalid_value("tool_choice", fmt::format("'{}' is not one of 'none', 'auto', 'required'", c));
            }
        } else if (v->is_object()) {
            const json* type = required_field(*v, "type", "tool_choice.type");
            if (read_string(*type, "tool_choice.type") != "function") invalid_value("tool_choice.type", "only 'function' exists");
            const json* f = required_field(*v, "function", "tool_choice.function");
            if (!f->is_object()) wrong_type("tool_choice.function", "an object", *f);
            const json* n = required_field(*f, "name", "tool_choice.function.name");
            const std::string& name = read_string(*n, "tool_choice.function.name");
            for (std::size_t i = 0; i < r.tools.size() && !forced; ++i) {
                if (r.tools[i].name == name) forced = i;
            }
            if (!forced) invalid_value("tool_choice.function.name", fmt::format("no tool is named '{}'", name));
        } else {
            wrong_type("tool_choice", "a string or an object", *v);
        }
    } else if (!r.tools.empty()) {
        r.parse_tool_calls = true; // OpenAI's default with tools
    }
    if (!forced) return;

    force_schema(r.generation, arguments_schema(parameters[*forced]),
                 fmt::format("tools[{}].function.parameters", *forced), "");
    r.tool_call = r.tools[*forced].name;
}

} // namespace weft::serve::detail
