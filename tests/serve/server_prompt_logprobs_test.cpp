// echo with logprobs on /v1/completions: the prompt's tokens scored, as
// log-likelihood evaluations (lm-evaluation-harness) ask for them.
#include "server_test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace weft::serve;
using namespace weft::serve::test;
using json = nlohmann::json;

namespace {

const std::string prompt_text = "Once upon a time there was a little fox";

json scoring_body(std::size_t max_tokens) {
    return {{"prompt", prompt_text}, {"echo", true}, {"logprobs", 2}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

} // namespace

TEST_CASE("server scores the prompt with echo and logprobs, first token null", "[server][prompt_logprobs]") {
    test_server srv;
    const std::vector<token_id> ids = srv.post("/tokenize", {{"prompt", prompt_text}}).body_json()["tokens"];
    REQUIRE(ids.size() > 3);

    const http_reply r = srv.post("/v1/completions", scoring_body(0));
    REQUIRE(r.status == 200);
    const json j = r.body_json();
    const json& c = j["choices"][0];
    CHECK(c["text"] == prompt_text);
    CHECK(c["finish_reason"] == "length");
    CHECK(j["usage"]["completion_tokens"] == 0);
    CHECK(j["usage"]["prompt_tokens"] == ids.size());
    const json& lp = c["logprobs"];
    REQUIRE(lp["tokens"].size() == ids.size());
    REQUIRE(lp["token_logprobs"].size() == ids.size());
    REQUIRE(lp["top_logprobs"].size() == ids.size());
    REQUIRE(lp["text_offset"].size() == ids.size());
    CHECK(lp["token_logprobs"][0].is_null());
    CHECK(lp["top_logprobs"][0].is_null());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        INFO("prompt token " << i);
        CHECK(lp["tokens"][i] == srv.vocab().token_to_piece(ids[i]));
        if (i == 0) continue;
        CHECK(lp["token_logprobs"][i].get<double>() <= 0.0);
        CHECK(lp["top_logprobs"][i].is_object());
        CHECK(!lp["top_logprobs"][i].empty());
    }

    // Each prompt position's alternatives are what a request ending there
    // reports for the token it generates (the same logits row).
    for (std::size_t k = 1; k < ids.size(); ++k) {
        INFO("prefix of " << k << " tokens");
        const json body = {{"prompt", std::vector<token_id>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k))},
                           {"logprobs", 2},
                           {"max_tokens", 1},
                           {"temperature", 0}};
        const json g = srv.post("/v1/completions", body).body_json();
        CHECK(g["choices"][0]["logprobs"]["top_logprobs"][0] == lp["top_logprobs"][k]);
    }

    // With tokens generated, their entries follow the prompt's.
    const json more = srv.post("/v1/completions", scoring_body(3)).body_json()["choices"][0];
    CHECK(more["logprobs"]["tokens"].size() == ids.size() + 3);
    CHECK(more["text"].get<std::string>().rfind(prompt_text, 0) == 0);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        CHECK(more["logprobs"]["token_logprobs"][i] == lp["token_logprobs"][i]);
    }
}

TEST_CASE("server streams the scored prompt as the first chunk of each choice", "[server][prompt_logprobs]") {
    test_server srv;
    const json whole = srv.post("/v1/completions", scoring_body(4)).body_json()["choices"][0];
    json body = scoring_body(4);
    body["stream"] = true;
    const std::vector<std::string> events = sse_data(srv.post("/v1/completions", body).body);
    REQUIRE(events.size() >= 3);
    const json first = json::parse(events[0])["choices"][0];
    CHECK(first["text"] == prompt_text);
    CHECK(first["logprobs"]["token_logprobs"][0].is_null());
    std::string text;
    json tokens = json::array(), scores = json::array();
    for (const std::string& e : events) {
        if (e == "[DONE]") continue;
        const json ev = json::parse(e);
        for (const json& ch : ev["choices"]) {
            text += ch["text"].get<std::string>();
            if (ch["logprobs"].is_null()) continue;
            for (const json& t : ch["logprobs"]["tokens"]) tokens.push_back(t);
            for (const json& t : ch["logprobs"]["token_logprobs"]) scores.push_back(t);
        }
    }
    CHECK(text == whole["text"]);
    CHECK(tokens == whole["logprobs"]["tokens"]);
    CHECK(scores == whole["logprobs"]["token_logprobs"]);
}

TEST_CASE("server refuses max_tokens 0 without echo", "[server][prompt_logprobs]") {
    test_server srv;
    check_error(srv.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}}), 400, "max_tokens");
}
