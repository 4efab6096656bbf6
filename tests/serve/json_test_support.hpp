// Test helper shared by the JSON-mode and JSON-schema tests.
#pragma once

#include <cctype>
#include <string>

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

} // namespace weft::serve::test
