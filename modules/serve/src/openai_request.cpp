#include <weft/serve/openai_request.hpp>

#include "openai_fields.hpp"
#include "openai_tools.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace weft::serve {

namespace {

using json = nlohmann::json;
using namespace detail;

/// Deeper bodies are refused before they cost anything (no request field
/// nests more than a few levels).
constexpr int max_json_depth = 64;
/// The most stop strings, alternatives and tokens OpenAI allows.
constexpr std::size_t max_stop_strings = 4;
constexpr long long max_top_logprobs = 20;
constexpr long long max_tokens_limit = std::numeric_limits<std::int32_t>::max();
constexpr std::size_t max_stop_token_ids = 64;

json parse_body(std::string_view body) {
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        throw api_error(400, "The request body is empty: expected a JSON object.");
    }
    const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
        if (depth > max_json_depth) {
            throw api_error(400, fmt::format("The request body nests JSON deeper than {} levels.", max_json_depth));
        }
        return true;
    };
    json doc;
    try {
        doc = json::parse(body.begin(), body.end(), limit_depth);
    } catch (const json::exception& e) {
        // "[json.exception.parse_error.101] parse error at ...": keep the useful part.
        std::string_view what = e.what();
        if (const auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
        throw api_error(400, fmt::format("The request body is not valid JSON: {}", what));
    }
    if (!doc.is_object()) {
        throw api_error(400, fmt::format("The request body must be a JSON object, not {}.", a_type(doc)));
    }
    return doc;
}

token_id read_token_id(const json& v, const std::string& param, std::size_t vocab_size) {
    const long long max = vocab_size > 0 ? static_cast<long long>(vocab_size) - 1
                                         : std::numeric_limits<token_id>::max();
    if (!v.is_number_integer() && !v.is_number_unsigned()) wrong_type(param, "an integer token id", v);
    const long long id = read_integer(v, param, 0, std::numeric_limits<token_id>::max());
    if (id > max) {
        invalid_value(param, fmt::format("token id {} is outside the vocabulary of {} tokens", id, vocab_size));
    }
    return static_cast<token_id>(id);
}

void check_model(const json& obj, const openai_parse_options& opts) {
    const json* m = field(obj, "model");
    if (m == nullptr) return;
    const std::string& name = read_string(*m, "model");
    if (name.empty() || name == opts.served_model) return;
    throw api_error(404, fmt::format("The model `{}` does not exist or you do not have access to it.", name), {},
                    "invalid_request_error", "model_not_found");
}

void parse_stop(const json& obj, std::vector<std::string>& out) {
    const json* v = field(obj, "stop");
    if (v == nullptr) return;
    const auto add = [&](const json& s, const std::string& param) {
        const std::string& text = read_string(s, param);
        if (text.empty()) invalid_value(param, "stop strings must not be empty");
        out.push_back(text);
    };
    if (v->is_string()) {
        add(*v, "stop");
    } else if (v->is_array()) {
        if (v->size() > max_stop_strings) {
            invalid_value("stop", fmt::format("at most {} stop strings are allowed, got {}", max_stop_strings, v->size()));
        }
        for (std::size_t i = 0; i < v->size(); ++i) add((*v)[i], fmt::format("stop[{}]", i));
    } else {
        wrong_type("stop", "a string or an array of strings", *v);
    }
}

void parse_logit_bias(const json& obj, const openai_parse_options& opts, sampling_params& s) {
    const json* v = field(obj, "logit_bias");
    if (v == nullptr) return;
    if (!v->is_object()) wrong_type("logit_bias", "an object", *v);
    for (const auto& [key, bias] : v->items()) {
        const bool digits = !key.empty() && key.size() <= 10 &&
                            key.find_first_not_of("0123456789") == std::string::npos;
        const long long id = digits ? std::stoll(key) : -1;
        if (id < 0 || id > std::numeric_limits<token_id>::max()) {
            invalid_value("logit_bias", fmt::format("keys must be token ids (non-negative integers), got \"{}\"", key));
        }
        if (opts.vocab_size > 0 && static_cast<std::size_t>(id) >= opts.vocab_size) {
            invalid_value("logit_bias", fmt::format("token id {} is outside the vocabulary of {} tokens", id,
                                                    opts.vocab_size));
        }
        const double b = read_number(bias, "logit_bias", -100.0, 100.0);
        s.logit_bias.emplace_back(static_cast<token_id>(id), static_cast<float>(b));
    }
}

/// The fields both endpoints share.
/// response_format: {"type": "text"}, {"type": "json_object"} (JSON mode) or
/// {"type": "json_schema", ...} (structured outputs).
void parse_response_format(const json& obj, generation_request& g) {
    const json* v = field(obj, "response_format");
    if (v == nullptr) return;
    if (!v->is_object()) wrong_type("response_format", "an object", *v);
    const json* type = field(*v, "type");
    if (type == nullptr) throw api_error::invalid("response_format.type", "'response_format.type' is a required property.");
    const std::string& name = read_string(*type, "response_format.type");
    if (name == "text") {
        g.format = output_format::text;
    } else if (name == "json_object") {
        g.format = output_format::json_object;
    } else if (name == "json_schema") {
        // {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}
        const json* spec = field(*v, "json_schema");
        if (spec == nullptr) {
            throw api_error::invalid("response_format.json_schema",
                                     "'response_format.json_schema' is a required property.");
        }
        if (!spec->is_object()) wrong_type("response_format.json_schema", "an object", *spec);
        if (const json* n = field(*spec, "name"); n != nullptr) read_string(*n, "response_format.json_schema.name");
        const json* schema = field(*spec, "schema");
        if (schema == nullptr) {
            throw api_error::invalid("response_format.json_schema.schema",
                                     "'response_format.json_schema.schema' is a required property.");
        }
        if (!schema->is_object()) wrong_type("response_format.json_schema.schema", "an object", *schema);
        try {
            g.schema = std::make_shared<const json_schema>(json_schema::parse(schema->dump()));
        } catch (const std::invalid_argument& e) {
            invalid_value("response_format.json_schema.schema", e.what());
        }
        g.format = output_format::json_schema;
    } else {
        invalid_value("response_format.type",
                      fmt::format("'{}' is not one of 'text', 'json_object', 'json_schema'", name));
    }
}

void parse_common(const json& obj, const openai_parse_options& opts, openai_request& r) {
    check_model(obj, opts);
    generation_request& g = r.generation;
    sampling_params& s = g.sampling;

    if (const json* v = field(obj, "stream")) r.stream = read_bool(*v, "stream");
    if (const json* v = field(obj, "stream_options")) {
        if (!v->is_object()) wrong_type("stream_options", "an object", *v);
        if (!r.stream) {
            throw api_error::invalid("stream_options",
                                     "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
        }
        if (const json* u = field(*v, "include_usage")) r.include_usage = read_bool(*u, "stream_options.include_usage");
    }
    if (const json* v = field(obj, "n")) {
        r.n = static_cast<std::size_t>(read_integer(*v, "n", 1, static_cast<long long>(max_choices)));
    }
    if (const json* v = field(obj, "temperature")) s.temperature = static_cast<float>(read_number(*v, "temperature", 0, 2));
    if (const json* v = field(obj, "top_p")) s.top_p = static_cast<float>(read_number(*v, "top_p", 0, 1, true));
    if (const json* v = field(obj, "top_k")) {
        const long long k = read_integer(*v, "top_k", -1, std::numeric_limits<std::int32_t>::max());
        s.top_k = k <= 0 ? 0 : static_cast<int>(k); // -1 (vLLM) and 0 both mean off
    }
    if (const json* v = field(obj, "min_p")) s.min_p = static_cast<float>(read_number(*v, "min_p", 0, 1));
    if (const json* v = field(obj, "seed")) {
        if (v->is_number_unsigned()) {
            s.seed = v->get<std::uint64_t>();
        } else {
            s.seed = static_cast<std::uint64_t>(read_integer(*v, "seed", std::numeric_limits<std::int64_t>::min(),
                                                             std::numeric_limits<std::int64_t>::max()));
        }
    }
    parse_stop(obj, g.stop);
    if (const json* v = field(obj, "presence_penalty")) {
        s.presence_penalty = static_cast<float>(read_number(*v, "presence_penalty", -2, 2));
    }
    if (const json* v = field(obj, "frequency_penalty")) {
        s.frequency_penalty = static_cast<float>(read_number(*v, "frequency_penalty", -2, 2));
    }
    if (const json* v = field(obj, "repetition_penalty")) {
        s.repetition_penalty = static_cast<float>(read_number(*v, "repetition_penalty", 0, 1e6, true));
    }
    parse_logit_bias(obj, opts, s);
    parse_response_format(obj, g);
    if (const json* v = field(obj, "ignore_eos")) g.ignore_eos = read_bool(*v, "ignore_eos");
    if (const json* v = field(obj, "min_tokens")) {
        s.min_tokens = static_cast<std::size_t>(read_integer(*v, "min_tokens", 0, max_tokens_limit));
    }
    if (const json* v = field(obj, "stop_token_ids")) {
        if (!v->is_array()) wrong_type("stop_token_ids", "an array of token ids", *v);
        if (v->size() > max_stop_token_ids) {
            invalid_value("stop_token_ids", fmt::format("at most {} stop token ids, got {}", max_stop_token_ids, v->size()));
        }
        for (std::size_t i = 0; i < v->size(); ++i) {
            g.stop_token_ids.push_back(read_token_id((*v)[i], fmt::format("stop_token_ids[{}]", i), opts.vocab_size));
        }
    }
    if (const json* v = field(obj, "priority")) {
        g.priority = static_cast<int>(read_integer(*v, "priority", std::numeric_limits<int>::min(),
                                                   std::numeric_limits<int>::max()));
    }
}

void set_max_tokens(const json& v, const std::string& param, openai_request& r, long long min = 1) {
    const long long n = read_integer(v, param, min, max_tokens_limit);
    r.max_tokens = static_cast<std::size_t>(n);
    r.max_tokens_param = param;
    r.generation.max_tokens = static_cast<std::size_t>(n);
}

void parse_prompt(const json& obj, const openai_parse_options& opts, openai_request& r) {
    const json* p = required_field(obj, "prompt", "prompt");
    const auto all_integers = [](const json& a) {
        for (const json& e : a) {
            if (!e.is_number_integer() && !e.is_number_unsigned()) return false;
        }
        return true;
    };
    const auto take_tokens = [&](const json& a, const std::string& param) {
        if (a.empty()) invalid_value(param, "the prompt must not be empty");
        completion_prompt& c = r.prompts.emplace_back();
        c.is_tokens = true;
        c.tokens.reserve(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            c.tokens.push_back(read_token_id(a[i], fmt::format("{}[{}]", param, i), opts.vocab_size));
        }
    };
    r.prompts.clear();
    if (p->is_string()) {
        r.prompts.push_back({p->get<std::string>(), {}, false});
        return;
    }
    if (!p->is_array()) wrong_type("prompt", "a string or an array of token ids", *p);
    if (p->empty()) invalid_value("prompt", "the prompt must not be empty");
    if (all_integers(*p)) {
        take_tokens(*p, "prompt");
        return;
    }
    // A batch: every element a string, or every element a token-id array.
    if (!(*p)[0].is_string() && !(*p)[0].is_array()) wrong_type("prompt", "a string or an array of token ids", *p);
    if (p->size() > max_batch_prompts) {
        invalid_value("prompt", fmt::format("a batch holds at most {} prompts, got {}", max_batch_prompts, p->size()));
    }
    const bool strings = (*p)[0].is_string();
    for (std::size_t i = 0; i < p->size(); ++i) {
        const json& e = (*p)[i];
        const std::string param = fmt::format("prompt[{}]", i);
        if (strings && e.is_string()) {
            r.prompts.push_back({e.get<std::string>(), {}, false});
        } else if (!strings && e.is_array() && all_integers(e)) {
            take_tokens(e, param);
        } else {
            wrong_type(param, strings ? "a string, as the batch's first prompt" : "an array of token ids", e);
        }
    }
}

std::string content_text(const json& content, const std::string& param, bool null_ok) {
    if (content.is_null()) {
        if (null_ok) return {};
        wrong_type(param, "a string or an array of content parts", content);
    }
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array()) wrong_type(param, "a string or an array of content parts", content);
    std::string text;
    for (std::size_t i = 0; i < content.size(); ++i) {
        const std::string part_param = fmt::format("{}[{}]", param, i);
        const json& part = content[i];
        if (!part.is_object()) wrong_type(part_param, "an object", part);
        const json* type = required_field(part, "type", part_param + ".type");
        const std::string& t = read_string(*type, part_param + ".type");
        if (t != "text") {
            invalid_value(part_param + ".type",
                          fmt::format("content parts of type '{}' are not supported: only 'text' is", t));
        }
        const json* part_text = required_field(part, "text", part_param + ".text");
        // Several text parts read as paragraphs, as other servers join them.
        if (i > 0) text += '\n';
        text += read_string(*part_text, part_param + ".text");
    }
    return text;
}

void parse_messages(const json& obj, openai_request& r) {
    const json* m = required_field(obj, "messages", "messages");
    if (!m->is_array()) wrong_type("messages", "an array", *m);
    if (m->empty()) invalid_value("messages", "at least one message is required");
    r.messages.reserve(m->size());
    for (std::size_t i = 0; i < m->size(); ++i) {
        const std::string param = fmt::format("messages[{}]", i);
        const json& msg = (*m)[i];
        if (!msg.is_object()) wrong_type(param, "an object", msg);
        const json* role = required_field(msg, "role", param + ".role");
        const std::string& name = read_string(*role, param + ".role");
        chat_message out;
        if (name == "system" || name == "developer") {
            out.role = chat_role::system;
        } else if (name == "user") {
            out.role = chat_role::user;
        } else if (name == "assistant") {
            out.role = chat_role::assistant;
        } else if (name == "tool") {
            out.role = chat_role::tool;
            const json* id = required_field(msg, "tool_call_id", param + ".tool_call_id");
            out.tool_call_id = read_string(*id, param + ".tool_call_id");
        } else if (name == "function") {
            invalid_value(param + ".role", "role 'function' (the deprecated function calling) is not supported: use 'tool'");
        } else {
            invalid_value(param + ".role",
                          fmt::format("'{}' is not one of 'system', 'developer', 'user', 'assistant', 'tool'", name));
        }
        const auto it = msg.find("content");
        const bool assistant = out.role == chat_role::assistant;
        if (it == msg.end() && !assistant) {
            throw api_error::invalid(param + ".content", "'content' is a required property.");
        }
        if (it != msg.end()) out.content = content_text(*it, param + ".content", assistant);
        if (const json* calls = field(msg, "tool_calls"); calls != nullptr) {
            if (!assistant) invalid_value(param + ".tool_calls", "only assistant messages have tool calls");
            out.tool_calls = parse_tool_calls(*calls, param + ".tool_calls");
        }
        r.messages.push_back(std::move(out));
    }
}

} // namespace

openai_request parse_completion_request(std::string_view body, const openai_parse_options& opts) {
    const json obj = parse_body(body);
    openai_request r;
    r.endpoint = openai_endpoint::completions;
    parse_common(obj, opts, r);
    parse_prompt(obj, opts, r);
    if (const json* v = field(obj, "max_tokens")) set_max_tokens(*v, "max_tokens", r, 0);
    if (const json* v = field(obj, "logprobs")) {
        r.top_logprobs = static_cast<int>(read_integer(*v, "logprobs", 0, max_top_logprobs));
        r.logprobs = true;
    }
    if (const json* v = field(obj, "echo")) r.echo = read_bool(*v, "echo");
    // echo with logprobs scores the prompt too (what log-likelihood
    // evaluations ask for, usually with max_tokens 0 or 1).
    if (r.echo && r.logprobs) r.generation.prompt_logprobs = static_cast<std::size_t>(r.top_logprobs);
    if (r.max_tokens == std::size_t{0} && !r.echo) {
        invalid_value("max_tokens", "max_tokens 0 generates nothing: it is only useful with echo");
    }
    if (const json* v = field(obj, "best_of")) {
        const auto best_of = static_cast<std::size_t>(read_integer(*v, "best_of", 1, static_cast<long long>(max_choices)));
        if (best_of != r.n) {
            invalid_value("best_of", fmt::format("this server returns every completion it generates: best_of must "
                                                 "equal n ({}), got {}",
                                                 r.n, best_of));
        }
    }
    if (const json* v = field(obj, "suffix"); v != nullptr && !read_string(*v, "suffix").empty()) {
        invalid_value("suffix", "suffixes (insertion) are not supported");
    }
    if (r.prompts.size() * r.n > max_request_choices) {
        invalid_value("n", fmt::format("{} prompts x n = {} asks for {} choices; one request may ask for at most {}",
                                       r.prompts.size(), r.n, r.prompts.size() * r.n, max_request_choices));
    }
    r.generation.sampling.logprobs = r.logprobs;
    r.generation.sampling.top_logprobs = r.top_logprobs;
    return r;
}

openai_request parse_chat_request(std::string_view body, const openai_parse_options& opts) {
    const json obj = parse_body(body);
    openai_request r;
    r.endpoint = openai_endpoint::chat_completions;
    parse_common(obj, opts, r);
    parse_messages(obj, r);
    if (const json* v = field(obj, "max_completion_tokens")) {
        set_max_tokens(*v, "max_completion_tokens", r);
    } else if (const json* w = field(obj, "max_tokens")) {
        set_max_tokens(*w, "max_tokens", r);
    }
    if (const json* v = field(obj, "logprobs")) r.logprobs = read_bool(*v, "logprobs");
    if (const json* v = field(obj, "top_logprobs")) {
        r.top_logprobs = static_cast<int>(read_integer(*v, "top_logprobs", 0, max_top_logprobs));
        if (!r.logprobs) invalid_value("top_logprobs", "'logprobs' must be true when 'top_logprobs' is given");
    }
    if (const json* v = field(obj, "functions"); v != nullptr && !(v->is_array() && v->empty())) {
        invalid_value("functions", "the deprecated 'functions' are not supported: use 'tools'");
    }
    parse_tools(obj, r);
    if (!r.tools.empty()) {
        // The parse above sorts object keys; templates show a tool's
        // parameters schema in the client's order, as their `tojson` does.
        const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(body);
        const nlohmann::ordered_json& tools = ordered.at("tools");
        for (std::size_t i = 0; i < r.tools.size(); ++i) {
            const nlohmann::ordered_json& f = tools.at(i).at("function");
            if (const auto it = f.find("parameters"); it != f.end()) r.tools[i].parameters = it->dump();
        }
    }
    r.generation.sampling.logprobs = r.logprobs;
    r.generation.sampling.top_logprobs = r.top_logprobs;
    return r;
}

openai_request parse_tokenize_request(std::string_view body, const openai_parse_options& opts) {
    const json obj = parse_body(body);
    openai_request r = field(obj, "messages") != nullptr ? parse_chat_request(body, opts)
                                                         : parse_completion_request(body, opts);
    if (r.prompts.size() > 1) invalid_value("prompt", "tokenize takes one prompt, not a batch");
    return r;
}

std::vector<token_id> parse_detokenize_request(std::string_view body, const openai_parse_options& opts) {
    const json obj = parse_body(body);
    const json* v = required_field(obj, "tokens", "tokens");
    if (!v->is_array()) wrong_type("tokens", "an array of token ids", *v);
    std::vector<token_id> ids;
    ids.reserve(v->size());
    for (std::size_t i = 0; i < v->size(); ++i) {
        ids.push_back(read_token_id((*v)[i], fmt::format("tokens[{}]", i), opts.vocab_size));
    }
    return ids;
}

} // namespace weft::serve
