#include "openai_test_support.hpp"

#include <weft/serve/openai_request.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

using namespace weft::serve;

using namespace weft::serve::test;

TEST_CASE("completion request fields map onto the generation request", "[openai]") {
    const openai_request r = parse_completion_request(R"({
        "model": "tiny", "prompt": "Hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
        "top_k": 40, "min_p": 0.05, "seed": 42, "stop": ["\n", "END"], "presence_penalty": 0.5,
        "frequency_penalty": -0.5, "repetition_penalty": 1.1, "logit_bias": {"17": -100, "3": 2.5},
        "ignore_eos": true, "priority": -3, "logprobs": 2, "stream": true,
        "stream_options": {"include_usage": true}, "n": 1, "echo": false, "user": "someone"})",
                                                      options());
    CHECK(r.endpoint == openai_endpoint::completions);
    REQUIRE(r.prompts.size() == 1);
    CHECK(r.prompts[0].text == "Hello");
    CHECK_FALSE(r.prompts[0].is_tokens);
    REQUIRE(r.max_tokens);
    CHECK(*r.max_tokens == 7);
    const generation_request& g = r.generation;
    CHECK(g.max_tokens == 7);
    CHECK(g.sampling.temperature == Approx(0.5));
    CHECK(g.sampling.top_p == Approx(0.9));
    CHECK(g.sampling.top_k == 40);
    CHECK(g.sampling.min_p == Approx(0.05));
    REQUIRE(g.sampling.seed);
    CHECK(*g.sampling.seed == 42);
    CHECK(g.stop == std::vector<std::string>{"\n", "END"});
    CHECK(g.sampling.presence_penalty == Approx(0.5));
    CHECK(g.sampling.frequency_penalty == Approx(-0.5));
    CHECK(g.sampling.repetition_penalty == Approx(1.1));
    REQUIRE(g.sampling.logit_bias.size() == 2);
    CHECK(g.sampling.logit_bias[0].first == 17);
    CHECK(g.sampling.logit_bias[0].second == -100.0f);
    CHECK(g.sampling.logit_bias[1].first == 3);
    CHECK(g.ignore_eos);
    CHECK(g.priority == -3);
    CHECK(r.logprobs);
    CHECK(r.top_logprobs == 2);
    CHECK(g.sampling.logprobs);
    CHECK(g.sampling.top_logprobs == 2);
    CHECK(r.stream);
    CHECK(r.include_usage);
}

TEST_CASE("n asks for several choices, and best_of may repeat it", "[openai]") {
    CHECK(parse_completion_request(R"({"prompt": "x"})", options()).n == 1);
    CHECK(parse_completion_request(R"({"prompt": "x", "n": 3, "best_of": 3})", options()).n == 3);
    CHECK(parse_chat_request(R"({"messages": [{"role": "user", "content": "a"}], "n": 64})", options()).n == 64);
}

TEST_CASE("min_tokens and stop_token_ids map onto the generation request", "[openai]") {
    const openai_request r =
        parse_completion_request(R"({"prompt": "x", "min_tokens": 3, "stop_token_ids": [5, 511]})", options());
    CHECK(r.generation.sampling.min_tokens == 3);
    CHECK(r.generation.stop_token_ids == std::vector<token_id>{5, 511});
    CHECK(refusal(openai_endpoint::completions, R"({"prompt": "x", "min_tokens": -1})").param() == "min_tokens");
    CHECK(refusal(openai_endpoint::completions, R"({"prompt": "x", "stop_token_ids": 5})").param() ==
          "stop_token_ids");
    CHECK(refusal(openai_endpoint::completions, R"({"prompt": "x", "stop_token_ids": [1, 512]})").param() ==
          "stop_token_ids[1]");
}

TEST_CASE("completion request defaults leave max_tokens to the server", "[openai]") {
    const openai_request r = parse_completion_request(R"({"prompt": "x"})", options());
    CHECK_FALSE(r.max_tokens);
    CHECK_FALSE(r.stream);
    CHECK_FALSE(r.logprobs);
    CHECK(r.generation.sampling.temperature == 1.0f);
    CHECK(r.generation.stop.empty());
}

TEST_CASE("completion prompts may be text, token ids, or a batch of either", "[openai]") {
    SECTION("token ids") {
        const openai_request r = parse_completion_request(R"({"prompt": [1, 2, 511]})", options());
        REQUIRE(r.prompts.size() == 1);
        CHECK(r.prompts[0].is_tokens);
        CHECK(r.prompts[0].tokens == std::vector<token_id>{1, 2, 511});
    }
    SECTION("one string in an array") {
        const openai_request r = parse_completion_request(R"({"prompt": ["hi there"]})", options());
        REQUIRE(r.prompts.size() == 1);
        CHECK_FALSE(r.prompts[0].is_tokens);
        CHECK(r.prompts[0].text == "hi there");
    }
    SECTION("a batch of strings") {
        const openai_request r = parse_completion_request(R"({"prompt": ["a", "b c", "d"], "n": 2})", options());
        REQUIRE(r.prompts.size() == 3);
        CHECK(r.prompts[1].text == "b c");
        CHECK(r.n == 2);
    }
    SECTION("a batch of token arrays") {
        const openai_request r = parse_completion_request(R"({"prompt": [[5, 6], [7]]})", options());
        REQUIRE(r.prompts.size() == 2);
        CHECK(r.prompts[0].tokens == std::vector<token_id>{5, 6});
        CHECK(r.prompts[1].tokens == std::vector<token_id>{7});
    }
}

TEST_CASE("a batch is refused past 256 prompts or 1024 choices", "[openai]") {
    const auto batch = [](std::size_t prompts, std::size_t n) {
        nlohmann::json body = {{"prompt", std::vector<std::string>(prompts, "x")}, {"n", n}};
        return body.dump();
    };
    CHECK(parse_completion_request(batch(256, 4), options()).prompts.size() == 256);
    CHECK(refusal(openai_endpoint::completions, batch(257, 1)).param() == "prompt");
    CHECK(refusal(openai_endpoint::completions, batch(17, 64)).param() == "n");
}

TEST_CASE("null fields read as absent and unknown fields are ignored", "[openai]") {
    const openai_request r = parse_completion_request(
        R"({"prompt": "x", "temperature": null, "stop": null, "max_tokens": null, "model": null,
            "frobnicate": {"deep": [1, 2, 3]}, "logprobs": null, "n": null, "stream_options": null})",
        options());
    CHECK(r.generation.sampling.temperature == 1.0f);
    CHECK_FALSE(r.max_tokens);
    CHECK_FALSE(r.logprobs);
}

TEST_CASE("an empty model name and an integral decimal are accepted", "[openai]") {
    const openai_request r = parse_completion_request(R"({"model": "", "prompt": "x", "max_tokens": 16.0})", options());
    REQUIRE(r.max_tokens);
    CHECK(*r.max_tokens == 16);
}

TEST_CASE("top_k of -1 or 0 turns top-k off, and a negative seed wraps", "[openai]") {
    CHECK(parse_completion_request(R"({"prompt": "x", "top_k": -1})", options()).generation.sampling.top_k == 0);
    CHECK(parse_completion_request(R"({"prompt": "x", "top_k": 0})", options()).generation.sampling.top_k == 0);
    const auto seed = parse_completion_request(R"({"prompt": "x", "seed": -1})", options()).generation.sampling.seed;
    REQUIRE(seed);
    CHECK(*seed == ~std::uint64_t{0});
}

TEST_CASE("hostile completion bodies get 400 naming the field", "[openai]") {
    struct row {
        const char* body;
        const char* param; // "" for errors about the whole body
    };
    const row rows[] = {
        {"", ""},
        {"   ", ""},
        {"{", ""},
        {"{\"prompt\": \"x\",}", ""},
        {"[1, 2]", ""},
        {"\"prompt\"", ""},
        {"null", ""},
        {"42", ""},
        {"{\"prompt\": \"\\ud800\"}", ""},
        {"{\"prompt\": \"x\", \"max_tokens\": 1e999}", ""},
        {"{}", "prompt"},
        {"{\"prompt\": 5}", "prompt"},
        {"{\"prompt\": {}}", "prompt"},
        {"{\"prompt\": []}", "prompt"},
        {"{\"prompt\": [\"a\", [1]]}", "prompt[1]"},
        {"{\"prompt\": [[1], \"b\"]}", "prompt[1]"},
        {"{\"prompt\": [[1], []]}", "prompt[1]"},
        {"{\"prompt\": [[1], [2, 512]]}", "prompt[1][1]"},
        {"{\"prompt\": [1, -2]}", "prompt[1]"},
        {"{\"prompt\": [1, 512]}", "prompt[1]"},
        {"{\"prompt\": [1, 99999999999999999999]}", "prompt"},
        {"{\"prompt\": [1, 2.5]}", "prompt"},
        {"{\"prompt\": [true]}", "prompt"},
        {"{\"prompt\": \"x\", \"max_tokens\": -1}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": \"16\"}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": 2.5}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": 99999999999999999999999}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": 18446744073709551615}", "max_tokens"},
        {"{\"prompt\": \"x\", \"max_tokens\": -9223372036854775808}", "max_tokens"},
        {"{\"prompt\": \"x\", \"temperature\": 2.5}", "temperature"},
        {"{\"prompt\": \"x\", \"temperature\": -0.1}", "temperature"},
        {"{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature"},
        {"{\"prompt\": \"x\", \"temperature\": 1e308}", "temperature"},
        {"{\"prompt\": \"x\", \"top_p\": 0}", "top_p"},
        {"{\"prompt\": \"x\", \"top_p\": 1.5}", "top_p"},
        {"{\"prompt\": \"x\", \"top_k\": -2}", "top_k"},
        {"{\"prompt\": \"x\", \"top_k\": 1.5}", "top_k"},
        {"{\"prompt\": \"x\", \"min_p\": 1.01}", "min_p"},
        {"{\"prompt\": \"x\", \"seed\": \"1\"}", "seed"},
        {"{\"prompt\": \"x\", \"seed\": 0.5}", "seed"},
        {"{\"prompt\": \"x\", \"stop\": 3}", "stop"},
        {"{\"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "stop"},
        {"{\"prompt\": \"x\", \"stop\": [\"a\", 1]}", "stop[1]"},
        {"{\"prompt\": \"x\", \"stop\": \"\"}", "stop"},
        {"{\"prompt\": \"x\", \"presence_penalty\": 2.01}", "presence_penalty"},
        {"{\"prompt\": \"x\", \"frequency_penalty\": -3}", "frequency_penalty"},
        {"{\"prompt\": \"x\", \"repetition_penalty\": 0}", "repetition_penalty"},
        {"{\"prompt\": \"x\", \"logit_bias\": []}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"abc\": 1}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"-1\": 1}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"512\": 1}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"5\": 101}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"5\": \"1\"}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": {\"99999999999999999999\": 1}}", "logit_bias"},
        {"{\"prompt\": \"x\", \"n\": 65}", "n"},
        {"{\"prompt\": \"x\", \"n\": 0}", "n"},
        {"{\"prompt\": \"x\", \"n\": \"1\"}", "n"},
        {"{\"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens"},
        {"{\"prompt\": \"x\", \"echo\": 1}", "echo"},
        {"{\"prompt\": \"x\", \"best_of\": 3}", "best_of"},
        {"{\"prompt\": \"x\", \"n\": 2, \"best_of\": 3}", "best_of"},
        {"{\"prompt\": \"x\", \"suffix\": \"tail\"}", "suffix"},
        {"{\"prompt\": \"x\", \"logprobs\": 21}", "logprobs"},
        {"{\"prompt\": \"x\", \"logprobs\": -1}", "logprobs"},
        {"{\"prompt\": \"x\", \"logprobs\": true}", "logprobs"},
        {"{\"prompt\": \"x\", \"stream\": \"yes\"}", "stream"},
        {"{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", "stream_options"},
        {"{\"prompt\": \"x\", \"stream\": true, \"stream_options\": 1}", "stream_options"},
        {"{\"prompt\": \"x\", \"stream\": true, \"stream_options\": {\"include_usage\": 1}}",
         "stream_options.include_usage"},
        {"{\"prompt\": \"x\", \"ignore_eos\": \"true\"}", "ignore_eos"},
        {"{\"prompt\": \"x\", \"priority\": 3000000000}", "priority"},
        {"{\"prompt\": \"x\", \"priority\": \"high\"}", "priority"},
        {"{\"prompt\": \"x\", \"model\": 7}", "model"},
    };
    for (const row& r : rows) {
        INFO("body: " << r.body);
        const api_error e = refusal(openai_endpoint::completions, r.body);
        CHECK(e.status() == 400);
        CHECK(e.param() == r.param);
        CHECK(e.type() == "invalid_request_error");
        CHECK_FALSE(std::string(e.what()).empty());
    }
}

TEST_CASE("deeply nested bodies are refused without recursion", "[openai]") {
    const std::string body = "{\"prompt\": \"x\", \"junk\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
    const api_error e = refusal(openai_endpoint::completions, body);
    CHECK(e.status() == 400);
    CHECK(std::string(e.what()).find("deeper") != std::string::npos);
}

TEST_CASE("an error message names the field and the reason", "[openai]") {
    const api_error e = refusal(openai_endpoint::completions, R"({"prompt": "x", "max_tokens": -5})");
    CHECK(std::string(e.what()) ==
          "Invalid 'max_tokens': integer below minimum value. Expected a value >= 0, but got -5 instead.");
    const api_error t = refusal(openai_endpoint::completions, R"({"prompt": "x", "temperature": "hot"})");
    CHECK(std::string(t.what()) == "Invalid type for 'temperature': expected a number, but got a string instead.");
    const api_error n = refusal(openai_endpoint::completions, R"({"prompt": "x", "n": 2, "best_of": 4})");
    CHECK(std::string(n.what()).find("best_of must equal n (2), got 4") != std::string::npos);
}

TEST_CASE("another model's name is a 404 model_not_found", "[openai]") {
    const api_error e = refusal(openai_endpoint::chat_completions,
                                R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})");
    CHECK(e.status() == 404);
    CHECK(e.code() == "model_not_found");
    CHECK(std::string(e.what()).find("gpt-4o") != std::string::npos);
}

TEST_CASE("chat messages accept text parts, developer roles and a null assistant content", "[openai]") {
    const openai_request r = parse_chat_request(R"({
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
             "name": "ana"},
            {"role": "assistant", "content": null},
            {"role": "user", "content": "again"}],
        "max_tokens": 5, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 3,
        "tool_choice": "none", "tools": [], "response_format": {"type": "text"}})",
                                                options());
    REQUIRE(r.messages.size() == 4);
    CHECK(r.messages[0].role == chat_role::system);
    CHECK(r.messages[0].content == "Be brief.");
    CHECK(r.messages[1].role == chat_role::user);
    CHECK(r.messages[1].content == "one\ntwo");
    CHECK(r.messages[2].role == chat_role::assistant);
    CHECK(r.messages[2].content.empty());
    CHECK(r.messages[3].content == "again");
    REQUIRE(r.max_tokens);
    CHECK(*r.max_tokens == 9);
    CHECK(r.max_tokens_param == "max_completion_tokens");
    CHECK(r.logprobs);
    CHECK(r.top_logprobs == 3);
    CHECK(r.generation.sampling.logprobs);
    CHECK(r.generation.sampling.top_logprobs == 3);
}

TEST_CASE("hostile chat bodies get 400 naming the field", "[openai]") {
    struct row {
        const char* body;
        const char* param;
    };
    const row rows[] = {
        {"{}", "messages"},
        {"{\"messages\": \"hi\"}", "messages"},
        {"{\"messages\": []}", "messages"},
        {"{\"messages\": [1]}", "messages[0]"},
        {"{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role"},
        {"{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", "messages[0].role"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"hi\"}]}", "messages[0].tool_call_id"},
        {"{\"messages\": [{\"role\": \"function\", \"content\": \"hi\"}]}", "messages[0].role"},
        {"{\"messages\": [{\"role\": 1, \"content\": \"hi\"}]}", "messages[0].role"},
        {"{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": null}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [5]}]}", "messages[0].content[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"a\"}]}]}", "messages[0].content[0].type"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}",
         "messages[0].content[0].type"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "messages[0].content[0].text"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", "
         "\"tool_calls\": [{}]}]}",
         "messages[1].tool_calls[0].id"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"logprobs\": 1}", "logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"top_logprobs\": 2}", "top_logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"logprobs\": true, \"top_logprobs\": 21}",
         "top_logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_completion_tokens\": -1}",
         "max_completion_tokens"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_tokens\": -1}", "max_tokens"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"tools\": [{\"type\": \"function\"}]}",
         "tools[0].function"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"tool_choice\": \"auto\"}", "tool_choice"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": {\"type\": "
         "\"json_schema\", \"json_schema\": {\"name\": \"x\", \"schema\": {\"type\": \"string\"}}}}",
         "response_format.json_schema.schema"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": {\"type\": "
         "\"json_schema\", \"json_schema\": {\"name\": 3, \"schema\": {}}}}",
         "response_format.json_schema.name"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": {\"type\": "
         "\"json_schema\", \"json_schema\": {\"schema\": []}}}",
         "response_format.json_schema.schema"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": {\"type\": \"yaml\"}}",
         "response_format.type"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": {}}",
         "response_format.type"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"response_format\": \"json\"}",
         "response_format"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"n\": 100}", "n"},
    };
    for (const row& r : rows) {
        INFO("body: " << r.body);
        const api_error e = refusal(openai_endpoint::chat_completions, r.body);
        CHECK(e.status() == 400);
        CHECK(e.param() == r.param);
    }
}

TEST_CASE("response_format json_object asks for JSON mode on both endpoints", "[openai]") {
    const openai_request chat = parse_chat_request(
        R"({"messages": [{"role": "user", "content": "a"}], "response_format": {"type": "json_object"}})", options());
    CHECK(chat.generation.format == weft::serve::output_format::json_object);
    const openai_request completion =
        parse_completion_request(R"({"prompt": "a", "response_format": {"type": "json_object"}})", options());
    CHECK(completion.generation.format == weft::serve::output_format::json_object);
    const openai_request text =
        parse_completion_request(R"({"prompt": "a", "response_format": {"type": "text"}})", options());
    CHECK(text.generation.format == weft::serve::output_format::text);
    CHECK(parse_completion_request(R"({"prompt": "a"})", options()).generation.format ==
          weft::serve::output_format::text);
}

TEST_CASE("response_format json_schema compiles the schema into the request", "[openai]") {
    const openai_request r = parse_completion_request(
        R"({"prompt": "a", "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true,
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}})",
        options());
    CHECK(r.generation.format == weft::serve::output_format::json_schema);
    REQUIRE(r.generation.schema != nullptr);
    const auto& root = r.generation.schema->at(r.generation.schema->root());
    REQUIRE(root.properties.size() == 1);
    CHECK(root.properties[0].name == "n");
    CHECK(root.required == 1);
    CHECK(r.generation.schema->at(root.properties[0].node).integer_only);
}

TEST_CASE("echo with logprobs scores the prompt, and max_tokens 0 with echo scores it alone", "[openai]") {
    const openai_request r =
        parse_completion_request(R"({"prompt": "a b", "echo": true, "logprobs": 2, "max_tokens": 0})", options());
    CHECK(r.echo);
    REQUIRE(r.generation.prompt_logprobs.has_value());
    CHECK(*r.generation.prompt_logprobs == 2);
    CHECK(r.generation.max_tokens == 0);
    CHECK_FALSE(parse_completion_request(R"({"prompt": "a", "echo": true})", options()).generation.prompt_logprobs);
    CHECK_FALSE(parse_completion_request(R"({"prompt": "a", "logprobs": 1})", options()).generation.prompt_logprobs);
}

TEST_CASE("the error body is OpenAI's error object", "[openai]") {
    const api_error e = api_error::invalid("n", "Invalid value for 'n': \"2\"");
    const auto j = nlohmann::json::parse(e.to_json());
    REQUIRE(j.size() == 1);
    const auto& err = j.at("error");
    CHECK(err.size() == 4);
    CHECK(err.at("message") == "Invalid value for 'n': \"2\"");
    CHECK(err.at("type") == "invalid_request_error");
    CHECK(err.at("param") == "n");
    CHECK(err.at("code").is_null());

    const auto k = nlohmann::json::parse(api_error(500, "boom", {}, "server_error").to_json());
    CHECK(k.at("error").at("param").is_null());
    CHECK(k.at("error").at("type") == "server_error");
}
