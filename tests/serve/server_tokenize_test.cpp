// The server's token utilities, POST /tokenize and POST /detokenize (as vLLM's).
#include "server_test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

TEST_CASE("server tokenizes a prompt into the tokens a completion's usage counts", "[server][tokenize]") {
    test_server srv;
    const std::string prompt = "Once upon a time, in a land far away";
    const http_reply r = srv.post("/tokenize", {{"model", "tiny"}, {"prompt", prompt}});
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    const std::vector<token_id> expected = srv.vocab().encode(prompt, true, true);
    CHECK(j["tokens"].get<std::vector<token_id>>() == expected);
    CHECK(j["count"] == expected.size());
    CHECK(j["max_model_len"].get<std::size_t>() > 0);
    const json c = srv.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 1}}).body_json();
    CHECK(c["usage"]["prompt_tokens"] == j["count"]);

    // A chat goes through the chat template, as a chat completion does.
    const json chat = chat_body("Hello there!", 1);
    const json t = srv.post("/tokenize", {{"messages", chat["messages"]}}).body_json();
    const json done = srv.post("/v1/chat/completions", chat).body_json();
    CHECK(t["count"] == done["usage"]["prompt_tokens"]);

    // Only the tokens: completion parameters are not checked, so a request
    // whose min_tokens a completion would refuse is still counted.
    const json odd = srv.post("/tokenize", {{"prompt", prompt}, {"max_tokens", 1}, {"min_tokens", 5}}).body_json();
    CHECK(odd["count"] == j["count"]);
}

TEST_CASE("server detokenizes token ids back into text", "[server][tokenize]") {
    test_server srv;
    const std::vector<token_id> ids = srv.vocab().encode("The quick brown fox", false, false);
    const http_reply r = srv.post("/detokenize", {{"tokens", ids}});
    REQUIRE(r.status == 200);
    CHECK(r.body_json()["prompt"] == "The quick brown fox");
}

TEST_CASE("server refuses bad tokenize and detokenize bodies with 400s", "[server][tokenize]") {
    test_server srv;
    check_error(srv.post("/tokenize", {{"prompt", {"a", "b"}}}), 400, "prompt");
    check_error(srv.post("/tokenize", {{"max_tokens", 3}}), 400, "prompt");
    check_error(srv.post("/detokenize", {{"tokens", {1, 99999}}}), 400, "tokens[1]");
    check_error(srv.post("/detokenize", {{"tokens", "abc"}}), 400, "tokens");
    check_error(srv.post("/detokenize", json::object()), 400, "tokens");
    const http_reply wrong = srv.get("/tokenize");
    CHECK(wrong.status == 405);
    CHECK(wrong.header("allow").value_or("") == "POST");
}
