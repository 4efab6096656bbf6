#include <weft/serve/openai_response.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

using namespace weft::serve;
using json = nlohmann::json;

namespace {

std::set<std::string> keys(const json& object) {
    std::set<std::string> out;
    for (const auto& [k, v] : object.items()) out.insert(k);
    return out;
}

using key_set = std::set<std::string>;

std::vector<openai_logprob> two_logprobs() {
    return {
        {"Hel", -0.25f, {{"Hel", -0.25f}, {"He", -1.5f}}},
        {"lo", -0.5f, {{"lo", -0.5f}, {"\xE2\x82", -2.0f}}},
    };
}

} // namespace

TEST_CASE("completion ids carry OpenAI's prefixes and differ", "[openai]") {
    const std::string a = new_completion_id(openai_endpoint::completions);
    const std::string b = new_completion_id(openai_endpoint::completions);
    CHECK(a.rfind("cmpl-", 0) == 0);
    CHECK(a.size() == 5 + 24);
    CHECK(a != b);
    CHECK(new_completion_id(openai_endpoint::chat_completions).rfind("chatcmpl-", 0) == 0);
}

TEST_CASE("a text_completion has exactly OpenAI's keys", "[openai]") {
    const openai_response r(openai_endpoint::completions, "tiny", false, false, "cmpl-1", 1700000000);
    const json j = json::parse(r.complete("Hello", {}, "length", {3, 2}));
    CHECK(keys(j) == key_set{"id", "object", "created", "model", "choices", "usage"});
    CHECK(j["id"] == "cmpl-1");
    CHECK(j["object"] == "text_completion");
    CHECK(j["created"] == 1700000000);
    CHECK(j["model"] == "tiny");
    REQUIRE(j["choices"].size() == 1);
    const json& c = j["choices"][0];
    CHECK(keys(c) == key_set{"index", "text", "logprobs", "finish_reason"});
    CHECK(c["index"] == 0);
    CHECK(c["text"] == "Hello");
    CHECK(c["logprobs"].is_null());
    CHECK(c["finish_reason"] == "length");
    CHECK(keys(j["usage"]) == key_set{"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"});
    CHECK(j["usage"]["prompt_tokens_details"] == json({{"cached_tokens", 0}}));
    CHECK(j["usage"]["prompt_tokens"] == 3);
    CHECK(j["usage"]["completion_tokens"] == 2);
    CHECK(j["usage"]["total_tokens"] == 5);
}

TEST_CASE("a chat.completion has exactly OpenAI's keys", "[openai]") {
    const openai_response r(openai_endpoint::chat_completions, "tiny", false, false, "chatcmpl-1", 5);
    const json j = json::parse(r.complete("Hi \"there\"\n", {}, "stop", {10, 4}));
    CHECK(keys(j) == key_set{"id", "object", "created", "model", "choices", "usage"});
    CHECK(j["object"] == "chat.completion");
    const json& c = j["choices"][0];
    CHECK(keys(c) == key_set{"index", "message", "logprobs", "finish_reason"});
    CHECK(keys(c["message"]) == key_set{"role", "content"});
    CHECK(c["message"]["role"] == "assistant");
    CHECK(c["message"]["content"] == "Hi \"there\"\n");
    CHECK(c["finish_reason"] == "stop");
    CHECK(j["usage"]["total_tokens"] == 14);
}

TEST_CASE("completion logprobs list tokens, logprobs, alternatives and offsets", "[openai]") {
    const openai_response r(openai_endpoint::completions, "tiny", true, false, "cmpl-1", 5);
    const auto lps = two_logprobs();
    const json j = json::parse(r.complete("Hello", lps, "length", {1, 2}));
    const json& lp = j["choices"][0]["logprobs"];
    CHECK(keys(lp) == key_set{"tokens", "token_logprobs", "top_logprobs", "text_offset"});
    CHECK(lp["tokens"] == json::array({"Hel", "lo"}));
    CHECK(lp["token_logprobs"][0].get<double>() == Approx(-0.25));
    CHECK(lp["token_logprobs"][1].get<double>() == Approx(-0.5));
    REQUIRE(lp["top_logprobs"].size() == 2);
    CHECK(lp["top_logprobs"][0]["He"].get<double>() == Approx(-1.5));
    // An incomplete UTF-8 sequence is shown as U+FFFD, never as invalid JSON.
    CHECK(lp["top_logprobs"][1].contains("\xEF\xBF\xBD\xEF\xBF\xBD"));
    CHECK(lp["text_offset"] == json::array({0, 3}));
}

TEST_CASE("chat logprobs carry token, logprob, bytes and top_logprobs", "[openai]") {
    const openai_response r(openai_endpoint::chat_completions, "tiny", true, false, "chatcmpl-1", 5);
    const auto lps = two_logprobs();
    const json j = json::parse(r.complete("Hello", lps, "length", {1, 2}));
    const json& lp = j["choices"][0]["logprobs"];
    CHECK(keys(lp) == key_set{"content"});
    REQUIRE(lp["content"].size() == 2);
    const json& first = lp["content"][0];
    CHECK(keys(first) == key_set{"token", "logprob", "bytes", "top_logprobs"});
    CHECK(first["token"] == "Hel");
    CHECK(first["bytes"] == json::array({72, 101, 108}));
    REQUIRE(first["top_logprobs"].size() == 2);
    CHECK(keys(first["top_logprobs"][1]) == key_set{"token", "logprob", "bytes"});
    CHECK(lp["content"][1]["top_logprobs"][1]["bytes"] == json::array({0xE2, 0x82}));
}

TEST_CASE("a -inf log-probability is written as a JSON number", "[openai]") {
    const openai_response r(openai_endpoint::completions, "tiny", true, false, "cmpl-1", 5);
    const std::vector<openai_logprob> lps{{"a", -std::numeric_limits<float>::infinity(), {}}};
    const json j = json::parse(r.complete("a", lps, "stop", {1, 1}));
    CHECK(j["choices"][0]["logprobs"]["token_logprobs"][0].get<double>() == -9999.0);
}

TEST_CASE("chat streaming chunks open with the role, carry deltas and close with the reason", "[openai]") {
    openai_response r(openai_endpoint::chat_completions, "tiny", false, false, "chatcmpl-9", 5);
    const json first = json::parse(r.first_chunk());
    CHECK(keys(first) == key_set{"id", "object", "created", "model", "choices"});
    CHECK(first["object"] == "chat.completion.chunk");
    CHECK(keys(first["choices"][0]) == key_set{"index", "delta", "logprobs", "finish_reason"});
    CHECK(first["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
    CHECK(first["choices"][0]["finish_reason"].is_null());

    const json mid = json::parse(r.text_chunk("lo", {}));
    CHECK(mid["choices"][0]["delta"] == json({{"content", "lo"}}));
    CHECK(mid["choices"][0]["finish_reason"].is_null());
    CHECK(mid["id"] == "chatcmpl-9");

    const json last = json::parse(r.final_chunk("length"));
    CHECK(last["choices"][0]["delta"] == json::object());
    CHECK(last["choices"][0]["finish_reason"] == "length");
}

TEST_CASE("completion streaming chunks carry text and continue the offsets", "[openai]") {
    openai_response r(openai_endpoint::completions, "tiny", true, false, "cmpl-9", 5);
    CHECK(r.first_chunk().empty());
    const auto lps = two_logprobs();
    (void)r.text_chunk("Hello", lps);
    const json second = json::parse(r.text_chunk("lo", std::span(lps).subspan(1)));
    CHECK(keys(second) == key_set{"id", "object", "created", "model", "choices"});
    CHECK(second["object"] == "text_completion");
    CHECK(keys(second["choices"][0]) == key_set{"index", "text", "logprobs", "finish_reason"});
    CHECK(second["choices"][0]["text"] == "lo");
    CHECK(second["choices"][0]["logprobs"]["text_offset"] == json::array({5}));
    const json last = json::parse(r.final_chunk("stop"));
    CHECK(last["choices"][0]["text"] == "");
    CHECK(last["choices"][0]["finish_reason"] == "stop");
}

TEST_CASE("append_text_chunk appends text_chunk's JSON and continues the same offsets", "[openai]") {
    for (const openai_endpoint e : {openai_endpoint::completions, openai_endpoint::chat_completions}) {
        openai_response a(e, "tiny", true, false, "cmpl-9", 5);
        openai_response b(e, "tiny", true, false, "cmpl-9", 5);
        const auto lps = two_logprobs();
        std::string buf = "data: ";
        a.append_text_chunk(buf, "Hello", lps);
        CHECK(buf == "data: " + b.text_chunk("Hello", lps));
        // Both now continue from the same text offset.
        buf.clear();
        a.append_text_chunk(buf, "lo", std::span(lps).subspan(1), 0);
        CHECK(buf == b.text_chunk("lo", std::span(lps).subspan(1), 0));
        CHECK(json::parse(buf)["choices"][0]["logprobs"] != nullptr);
    }
}

TEST_CASE("with include_usage every chunk has a null usage and the last one the counts", "[openai]") {
    openai_response r(openai_endpoint::chat_completions, "tiny", false, true, "chatcmpl-9", 5);
    CHECK(json::parse(r.first_chunk())["usage"].is_null());
    CHECK(json::parse(r.text_chunk("x", {}))["usage"].is_null());
    CHECK(json::parse(r.final_chunk("stop"))["usage"].is_null());
    const json u = json::parse(r.usage_chunk({4, 6, 2}));
    CHECK(keys(u) == key_set{"id", "object", "created", "model", "choices", "usage"});
    CHECK(u["choices"] == json::array());
    CHECK(u["usage"] == json({{"prompt_tokens", 4},
                              {"completion_tokens", 6},
                              {"total_tokens", 10},
                              {"prompt_tokens_details", {{"cached_tokens", 2}}}}));
}

TEST_CASE("the model list has OpenAI's list schema", "[openai]") {
    const json j = json::parse(models_list_json("tiny \"demo\"", 42, "weft"));
    CHECK(keys(j) == key_set{"object", "data"});
    CHECK(j["object"] == "list");
    REQUIRE(j["data"].size() == 1);
    CHECK(keys(j["data"][0]) == key_set{"id", "object", "created", "owned_by"});
    CHECK(j["data"][0]["id"] == "tiny \"demo\"");
    CHECK(j["data"][0]["object"] == "model");
}

TEST_CASE("control characters and invalid bytes in text stay valid JSON", "[openai]") {
    const openai_response r(openai_endpoint::completions, "tiny", false, false, "cmpl-1", 5);
    const std::string text = std::string("a\x01\x7f\tb\xFF\xC3(\xF0\x9F\x98\x80", 12);
    const json j = json::parse(r.complete(text, {}, "stop", {1, 1}));
    CHECK(j["choices"][0]["text"] == "a\x01\x7f\tb\xEF\xBF\xBD\xEF\xBF\xBD(\xF0\x9F\x98\x80");
}

TEST_CASE("an unscored prompt token has null logprob and alternatives", "[openai]") {
    const openai_response r(openai_endpoint::completions, "tiny", true, false, "cmpl-1", 1700000000);
    std::vector<openai_logprob> lps = two_logprobs();
    openai_logprob first;
    first.token = "<s>";
    first.scored = false;
    lps.insert(lps.begin(), first);
    const json lp = json::parse(r.complete("<s>Hello", lps, "length", {3, 0}))["choices"][0]["logprobs"];
    CHECK(lp["tokens"] == json({"<s>", "Hel", "lo"}));
    CHECK(lp["token_logprobs"] == json({nullptr, -0.25, -0.5}));
    CHECK(lp["top_logprobs"][0].is_null());
    CHECK(lp["top_logprobs"][1] == json({{"Hel", -0.25}, {"He", -1.5}}));
    CHECK(lp["text_offset"] == json({0, 3, 6}));
}
