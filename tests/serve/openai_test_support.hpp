// Shared by the request-parsing tests: the parse options of a small model
// named "tiny", and the error a refused body gets.
#pragma once

#include <weft/serve/openai_request.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace weft::serve::test {

inline openai_parse_options options() {
    openai_parse_options o;
    o.served_model = "tiny";
    o.vocab_size = 512;
    return o;
}

/// The api_error a body gets, or a failed check when it parses.
inline api_error refusal(openai_endpoint endpoint, const std::string& body) {
    try {
        if (endpoint == openai_endpoint::completions) {
            (void)parse_completion_request(body, options());
        } else {
            (void)parse_chat_request(body, options());
        }
    } catch (const api_error& e) {
        return e;
    }
    FAIL("the body was accepted: " << body);
    return api_error(0, "");
}

} // namespace weft::serve::test
