// Helpers shared by the http tests: feed a parser in pieces and collect results.
#pragma once

#include <weft/http/request_parser.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace weft::http::test {

struct parse_outcome {
    std::vector<request> requests;
    parse_status last = parse_status::need_more;
    int error_status = 0;
    std::string error_reason;
    std::size_t left_over = 0;
};

/// Feeds `input` in pieces of `piece` bytes (0: all at once), calling next()
/// after each piece and taking every completed request.
inline parse_outcome parse_in_pieces(std::string_view input, std::size_t piece, limits lim = {}) {
    request_parser p(lim);
    parse_outcome out;
    if (piece == 0) piece = input.size() == 0 ? 1 : input.size();
    for (std::size_t i = 0; i < input.size(); i += piece) {
        p.feed(input.substr(i, piece));
        for (;;) {
            out.last = p.next();
            if (out.last != parse_status::complete) break;
            out.requests.push_back(p.take());
        }
        if (out.last == parse_status::error) break;
    }
    out.error_status = p.error().status;
    out.error_reason = std::string(p.error().reason);
    out.left_over = p.buffered();
    return out;
}

inline int status_of(std::string_view input, limits lim = {}) {
    return parse_in_pieces(input, 0, lim).error_status;
}

} // namespace weft::http::test
