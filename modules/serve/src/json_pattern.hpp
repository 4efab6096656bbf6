// JSON Schema `pattern` for structured outputs: a regular expression
// (PCRE2, whose syntax covers the ECMA-262 patterns schemas are written in,
// with `\uXXXX` escapes as ECMA-262 reads them) that a string value must
// contain a match of.
//
// Generation writes the match first: a value is taken byte by byte while it
// is a prefix of some string that the pattern matches from its start
// (PCRE2's hard partial matching of `^(?:P)`), and closes once it matches
// so. Every string made that way contains a match, as the schema asks; the
// ones whose match starts later are simply never generated.
//
// Lifetime and threading: immutable once compiled, shared by the schema's
// matchers on any thread (each thread matches with match data of its own).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace weft::serve {

class json_pattern {
public:
    /// Compiles `pattern`; throws std::invalid_argument with PCRE2's message
    /// and offset when it is not a valid regular expression.
    explicit json_pattern(const std::string& pattern);
    ~json_pattern();
    json_pattern(const json_pattern&) = delete;
    json_pattern& operator=(const json_pattern&) = delete;

    /// How a match from the start stands with `text` (not empty: partial
    /// matching needs a byte to have looked at).
    enum class prefix_state : unsigned char {
        none,    ///< no string starting with `text` matches
        partial, ///< some longer string may: the match needs more
        matched, ///< a match ended without looking at the end of `text`,
                 ///< so every string starting with `text` matches
    };
    [[nodiscard]] prefix_state prefix(std::string_view text) const noexcept;
    /// `text` matches from its start: generation may close the string.
    [[nodiscard]] bool matches_from_start(std::string_view text) const noexcept;
    /// `text` contains a match anywhere (the schema's own test, for `enum`
    /// values).
    [[nodiscard]] bool found_in(std::string_view text) const noexcept;
    /// The fewest bytes a match takes (PCRE2's lower bound).
    [[nodiscard]] std::size_t min_length() const noexcept;
    /// No match holds a non-ASCII character, read from the pattern's text:
    /// it has none, and no item that matches one (`.`, a negated class, an
    /// escape such as `\D`, `\h` or `\xe9`, a Unicode property, a
    /// number escape, an inline option or verb, which may make a letter
    /// caseless or `\w` Unicode's).
    /// False where unsure: it only spares the mask the tokens that start
    /// with a multi-byte character.
    [[nodiscard]] bool ascii_only() const noexcept { return m_ascii_only; }

private:
    struct code;
    std::unique_ptr<code> m_search;   // P
    std::unique_ptr<code> m_anchored; // ^(?:P)
    bool m_ascii_only = false;
};

} // namespace weft::serve
