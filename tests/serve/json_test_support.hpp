// Test helper shared by the JSON-mode and JSON-schema tests.
#pragma once

#include <weft/serve/json_constraint.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve::test {

/// `doc` with each exponent outside strings cut to one digit: an exponent's
/// size is a parser's limit (nlohmann refuses 1e999 as out of range), not a
/// matter of syntax. Exact for every valid prefix, so it never turns an
/// invalid document into a valid one.
inline std::string short_exponents(const std::string& doc) {
    std::string out;
    bool in_string = false;
    for (std::size_t i = 0; i < doc.size(); ++i) {
        const char c = doc[i];
        out += c;
        if (in_string) {
            if (c == '\\' && i + 1 < doc.size()) {
                out += doc[++i];
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if ((c == 'e' || c == 'E') && i > 0 && std::isdigit(static_cast<unsigned char>(doc[i - 1])) != 0) {
            if (i + 1 < doc.size() && (doc[i + 1] == '+' || doc[i + 1] == '-')) out += doc[++i];
            if (i + 1 < doc.size() && std::isdigit(static_cast<unsigned char>(doc[i + 1])) != 0) {
                out += '1';
                while (i + 1 < doc.size() && std::isdigit(static_cast<unsigned char>(doc[i + 1])) != 0) ++i;
            }
        }
    }
    return out;
}

/// A random walk over the bytes `m` accepts until it completes: random bytes
/// for `wander` of them, then the first of `closers` accepted (of
/// `after_digit` after a digit), heading for the end. Requires that some
/// byte is always accepted; returns the document.
inline std::string random_walk(json_matcher m, std::mt19937_64& rng, std::size_t wander, std::string_view closers,
                               std::string_view after_digit) {
    std::string doc;
    while (!m.complete()) {
        std::vector<std::uint8_t> ok;
        for (int b = 0; b < 256; ++b) {
            json_matcher t = m;
            if (t.feed(static_cast<std::uint8_t>(b))) ok.push_back(static_cast<std::uint8_t>(b));
        }
        INFO(doc);
        REQUIRE_FALSE(ok.empty());
        std::uint8_t next = ok[rng() % ok.size()];
        if (doc.size() >= wander) {
            next = ok.front();
            const bool digit = !doc.empty() && doc.back() >= '0' && doc.back() <= '9';
            for (const char c : digit ? after_digit : closers) {
                if (std::find(ok.begin(), ok.end(), static_cast<std::uint8_t>(c)) != ok.end()) {
                    next = static_cast<std::uint8_t>(c);
                    break;
                }
            }
        }
        REQUIRE(m.feed(next));
        doc += static_cast<char>(next);
        REQUIRE(doc.size() < 100000);
    }
    return doc;
}

/// `walks` random walks over `m`'s documents, each wandering up to
/// `max_wander` bytes before heading for the end, for schemas whose objects
/// hold strings only: calls check(key, value) for every member.
template <class Check>
void walk_strings(const json_matcher& m, int walks, std::uint64_t seed, std::size_t max_wander, Check check) {
    std::mt19937_64 rng(seed);
    // '"' closes a finished string; ',' and '}' end the object.
    const std::string closers = "\"}],0";
    for (int walk = 0; walk < walks; ++walk) {
        const std::string doc = random_walk(m, rng, rng() % max_wander, closers, closers);
        INFO(doc);
        const nlohmann::json value = nlohmann::json::parse(doc);
        for (const auto& [key, v] : value.items()) {
            INFO(key);
            REQUIRE(v.is_string());
            check(key, v.template get<std::string>());
        }
    }
}

} // namespace weft::serve::test
