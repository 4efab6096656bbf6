#include "json_pattern.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include <cctype>
#include <stdexcept>
#include <string_view>

namespace weft::serve {

namespace {

struct match_data_deleter {
    void operator()(pcre2_match_data* md) const noexcept { pcre2_match_data_free(md); }
};

/// Match data of this thread (one pair: only whether there is a match counts).
pcre2_match_data* thread_match_data() {
    thread_local std::unique_ptr<pcre2_match_data, match_data_deleter> md{pcre2_match_data_create(1, nullptr)};
    return md.get();
}

/// See json_pattern::ascii_only.
bool reads_ascii_only(std::string_view p) noexcept {
    for (std::size_t i = 0; i < p.size(); ++i) {
        const auto c = static_cast<unsigned char>(p[i]);
        if (c >= 0x80 || c == '.') return false;
        const std::string_view rest = p.substr(i + 1);
        if (c == '[' && (rest.starts_with('^') || rest.starts_with(":^"))) return false;
        // An inline option ((?i) folds k to the Kelvin sign) or a verb
        // such as (*UCP).
        if (c == '(' && (rest.starts_with('*') || (rest.size() >= 2 && rest[0] == '?' &&
                                                    std::isalpha(static_cast<unsigned char>(rest[1]))))) {
            return false;
        }
        if (c == '\\' && !rest.empty()) {
            // Escapes of ASCII only: \d \w \s (ASCII without PCRE2_UCP),
            // assertions, and the control and punctuation escapes.
            if (std::string_view("dwsbBAzZGKtnrfeac").find(rest[0]) == std::string_view::npos &&
                std::isalnum(static_cast<unsigned char>(rest[0]))) {
                return false;
            }
            ++i; // the escaped character is itself
        }
    }
    return true;
}

} // namespace

struct json_pattern::code {
    pcre2_code* compiled = nullptr;
    bool jit = false;

    explicit code(const std::string& pattern, const std::string& shown) {
        int error = 0;
        PCRE2_SIZE offset = 0;
        compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                 PCRE2_UTF | PCRE2_ALT_BSUX, &error, &offset, nullptr);
        if (compiled == nullptr) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(error, message, sizeof message);
            throw std::invalid_argument(fmt::format("'{}' is not a valid regular expression: {}", shown,
                                                    reinterpret_cast<const char*>(message)));
        }
        // JIT where the platform has it (else pcre2_match interprets).
        jit = pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD) == 0;
    }
    ~code() { pcre2_code_free(compiled); }
    code(const code&) = delete;
    code& operator=(const code&) = delete;

    [[nodiscard]] int match(std::string_view text, std::uint32_t options) const noexcept {
        const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        // The JIT's direct entry skips pcre2_match's checks of the
        // arguments and of the subject's UTF-8: every subject here is valid
        // UTF-8 (a JSON document's string, or whole characters being written).
        if (jit) return pcre2_jit_match(compiled, subject, text.size(), 0, options, thread_match_data(), nullptr);
        return pcre2_match(compiled, subject, text.size(), 0, options, thread_match_data(), nullptr);
    }
};

json_pattern::json_pattern(const std::string& pattern)
    : m_search(std::make_unique<code>(pattern, pattern)),
      // A pattern that compiles alone compiles inside a group too, except
      // one that closes it (the search compile has refused that already).
      m_anchored(std::make_unique<code>("^(?:" + pattern + ")", pattern)),
      m_ascii_only(reads_ascii_only(pattern)) {}

json_pattern::~json_pattern() = default;

json_pattern::prefix_state json_pattern::prefix(std::string_view text) const noexcept {
    // Hard partial matching reports a partial match as soon as any path
    // reaches the end of the subject, so a complete match is only reported
    // when the bytes it looked at all lie before the end: more bytes change
    // nothing it saw, and it is found again first.
    const int rc = m_anchored->match(text, PCRE2_PARTIAL_HARD);
    if (rc >= 0) return prefix_state::matched;
    return rc == PCRE2_ERROR_PARTIAL ? prefix_state::partial : prefix_state::none;
}

bool json_pattern::matches_from_start(std::string_view text) const noexcept {
    return m_anchored->match(text, 0) >= 0;
}

bool json_pattern::found_in(std::string_view text) const noexcept { return m_search->match(text, 0) >= 0; }

std::size_t json_pattern::min_length() const noexcept {
    std::uint32_t n = 0;
    pcre2_pattern_info(m_anchored->compiled, PCRE2_INFO_MINLENGTH, &n);
    return n;
}

} // namespace weft::serve
