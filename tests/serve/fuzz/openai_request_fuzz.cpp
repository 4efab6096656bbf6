// libFuzzer target for the OpenAI request parsers and what a request's body
// reaches before it is tokenized: chat templates and JSON schemas (built by
// `scripts/fuzz.sh --target openai`).
//
// The input is a request body, optionally followed by a NUL byte and a
// document: the bytes a generation under the request's response_format
// would try, one at a time. Invariants checked on every input:
//  - each parser (completions, chat, tokenize, detokenize) returns or throws
//    api_error with status 400 or 404; no other exception, crash, leak, hang
//    or undefined behaviour (ASan/UBSan, libFuzzer's timeout);
//  - a parsed request is within the documented bounds: 1 <= n <= 64, at most
//    1024 choices, sampling parameters in their ranges, token ids (prompts,
//    logit_bias, stop_token_ids) below the vocabulary size;
//  - a chat request renders through every template style;
//  - under json_object or json_schema, the document's bytes that the
//    matcher accepts form, once it says the object is complete, a text that
//    a strict parser reads as one JSON object, after which no byte is
//    accepted.
#include <weft/serve/chat_template.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/openai_error.hpp>
#include <weft/serve/openai_request.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

using namespace weft::serve;

namespace {

constexpr std::size_t vocab = 512;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
}

void check_token(token_id t) {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab) fail("a token id outside the vocabulary was accepted");
}

void check_bounds(const openai_request& r) {
    if (r.n < 1 || r.n > max_choices) fail("n out of range");
    if (r.endpoint == openai_endpoint::completions && r.prompts.size() * r.n > max_request_choices) {
        fail("more choices than max_request_choices");
    }
    if (r.prompts.size() > max_batch_prompts) fail("more prompts than max_batch_prompts");
    if (r.tools.size() > max_tools) fail("more tools than max_tools");
    const sampling_params& s = r.generation.sampling;
    if (!(s.temperature >= 0.0f && s.temperature <= 2.0f)) fail("temperature out of range");
    if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) fail("top_p out of range");
    if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) fail("min_p out of range");
    if (s.top_k < 0) fail("negative top_k");
    if (!(s.repetition_penalty > 0.0f)) fail("repetition_penalty not positive");
    if (!(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f)) fail("presence_penalty out of range");
    if (!(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f)) fail("frequency_penalty out of range");
    if (r.top_logprobs < 0 || r.top_logprobs > 20) fail("top_logprobs out of range");
    for (const auto& [t, bias] : s.logit_bias) {
        check_token(t);
        if (!(bias >= -100.0f && bias <= 100.0f)) fail("logit_bias out of range");
    }
    for (token_id t : r.generation.stop_token_ids) check_token(t);
    for (const completion_prompt& p : r.prompts) {
        for (token_id t : p.tokens) check_token(t);
    }
}

void render_chat(const openai_request& r) {
    if (r.endpoint != openai_endpoint::chat_completions) return;
    for (auto style : {chat_template_style::chatml, chat_template_style::llama3, chat_template_style::llama2,
                       chat_template_style::mistral, chat_template_style::mistral_v3, chat_template_style::mistral_v7,
                       chat_template_style::mistral_v7_tekken, chat_template_style::fallback}) {
        const chat_template t(style);
        try {
            (void)t.render_text(r.messages, r.tools);
        } catch (const api_error& e) {
            // A conversation a template cannot express (Mistral's alternating
            // roles) is the client's error.
            if (e.status() != 400) fail("a template threw api_error other than 400");
        }
    }
}

void feed_document(const openai_request& r, std::string_view document) {
    const output_format f = r.generation.format;
    if (f != output_format::json_object && f != output_format::json_schema) return;
    json_matcher m(f == output_format::json_schema ? r.generation.schema.get() : nullptr);
    std::string taken;
    for (const char c : document) {
        if (m.complete()) break;
        if (m.feed(static_cast<std::uint8_t>(c))) taken.push_back(c);
    }
    if (!m.complete()) return;
    const nlohmann::json doc = nlohmann::json::parse(taken, nullptr, false);
    if (doc.is_discarded()) fail("a complete document does not parse");
    if (!doc.is_object()) fail("a complete document is not an object");
    for (const char c : std::string_view(" }]\"0a{")) {
        if (m.feed(static_cast<std::uint8_t>(c))) fail("a complete document took one more byte");
    }
}

template <class Parse>
void attempt(Parse&& parse, std::string_view document) {
    try {
        const openai_request r = parse();
        check_bounds(r);
        render_chat(r);
        feed_document(r, document);
    } catch (const api_error& e) {
        if (e.status() != 400 && e.status() != 404) fail("api_error with a status other than 400 or 404");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = input.find('\0');
    const std::string_view body = input.substr(0, nul);
    const std::string_view document = nul == std::string_view::npos ? std::string_view{} : input.substr(nul + 1);
    const openai_parse_options opts{.served_model = "demo", .vocab_size = vocab};
    attempt([&] { return parse_completion_request(body, opts); }, document);
    attempt([&] { return parse_chat_request(body, opts); }, document);
    attempt([&] { return parse_tokenize_request(body, opts); }, document);
    try {
        for (token_id t : parse_detokenize_request(body, opts)) check_token(t);
    } catch (const api_error& e) {
        if (e.status() != 400 && e.status() != 404) fail("api_error with a status other than 400 or 404");
    }
    return 0;
}
