#include <weft/serve/gguf.hpp>
#include <weft/serve/tokenizer_gguf.hpp>

#include <fmt/format.h>

namespace weft::serve {

tokenizer_data tokenizer_data_from_gguf(const gguf_file& f) {
    tokenizer_data d;
    d.model = std::string(f.get_string("tokenizer.ggml.model"));
    d.pre = std::string(f.find_string("tokenizer.ggml.pre").value_or("default"));
    for (std::string_view t : f.at("tokenizer.ggml.tokens").as_string_array()) d.tokens.emplace_back(t);
    if (const gguf_value* v = f.find("tokenizer.ggml.scores")) d.scores = v->as_float_array();
    if (const gguf_value* v = f.find("tokenizer.ggml.token_type")) {
        for (std::int64_t t : v->as_int_array()) d.types.push_back(static_cast<token_type>(t));
    }
    if (const gguf_value* v = f.find("tokenizer.ggml.merges")) {
        for (std::string_view m : v->as_string_array()) d.merges.emplace_back(m);
    }
    auto id = [&](const char* key) -> std::optional<token_id> {
        if (const auto v = f.find_uint(key)) return static_cast<token_id>(*v);
        return std::nullopt;
    };
    d.bos = id("tokenizer.ggml.bos_token_id");
    d.eos = id("tokenizer.ggml.eos_token_id");
    d.eot = id("tokenizer.ggml.eot_token_id");
    d.eom = id("tokenizer.ggml.eom_token_id");
    d.unk = id("tokenizer.ggml.unknown_token_id");
    d.pad = id("tokenizer.ggml.padding_token_id");
    d.add_bos = f.find_bool("tokenizer.ggml.add_bos_token").value_or(d.model == "llama" || d.model == "gpt2");
    d.add_eos = f.find_bool("tokenizer.ggml.add_eos_token").value_or(false);
    d.add_space_prefix = f.find_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    d.chat_template = std::string(f.find_string("tokenizer.chat_template").value_or(""));
    return d;
}

void write_tokenizer(gguf_writer& out, const tokenizer_data& d) {
    out.set_string("tokenizer.ggml.model", d.model);
    out.set_string("tokenizer.ggml.pre", d.pre);
    out.set_string_array("tokenizer.ggml.tokens", d.tokens);
    if (!d.scores.empty()) out.set_f32_array("tokenizer.ggml.scores", d.scores);
    if (!d.types.empty()) {
        std::vector<std::int32_t> types;
        types.reserve(d.types.size());
        for (token_type t : d.types) types.push_back(static_cast<std::int32_t>(t));
        out.set_i32_array("tokenizer.ggml.token_type", types);
    }
    if (!d.merges.empty()) out.set_string_array("tokenizer.ggml.merges", d.merges);
    auto id = [&](const char* key, const std::optional<token_id>& v) {
        if (v) out.set_u32(key, static_cast<std::uint32_t>(*v));
    };
    id("tokenizer.ggml.bos_token_id", d.bos);
    id("tokenizer.ggml.eos_token_id", d.eos);
    id("tokenizer.ggml.eot_token_id", d.eot);
    id("tokenizer.ggml.eom_token_id", d.eom);
    id("tokenizer.ggml.unknown_token_id", d.unk);
    id("tokenizer.ggml.padding_token_id", d.pad);
    out.set_bool("tokenizer.ggml.add_bos_token", d.add_bos);
    out.set_bool("tokenizer.ggml.add_eos_token", d.add_eos);
    if (d.model == "llama") out.set_bool("tokenizer.ggml.add_space_prefix", d.add_space_prefix);
    if (!d.chat_template.empty()) out.set_string("tokenizer.chat_template", d.chat_template);
}

} // namespace weft::serve
