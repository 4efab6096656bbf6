/// \file
/// JSON mode (`response_format: {"type": "json_object"}`): generation that
/// can only produce one JSON object.
///
/// `json_matcher` recognises one JSON object (RFC 8259, with an object as the
/// top-level value) a byte at a time: `feed` accepts a byte exactly when the
/// bytes so far can still be completed into a valid document, so a generator
/// that only ever takes accepted bytes can always finish. Strings must be
/// valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF),
/// with control characters escaped and `\u` surrogates paired, so every
/// finished document parses with a strict parser. Two bounds that a parser
/// does not need and a generator does: nesting is at most `max_depth` levels,
/// and at most `max_whitespace` whitespace bytes come in a row (enough for
/// indented output; a model stuck on newlines cannot fill max_tokens with
/// them). A third, for the parsers that read numbers as doubles: a number's
/// magnitude stays below 10^308 (`max_number_scale`). The state is under a
/// kilobyte (most of it the text of a string held to a `pattern` and the
/// hashes of a unique array's strings),
/// trivially copyable, so trying a token is copying it and feeding the
/// token's bytes.
///
/// Given a `json_schema` (structured outputs), the matcher also holds the
/// object to the schema: a value may only start as the kinds its schema node
/// accepts, keys are matched byte by byte against the properties not yet
/// given, the object closes only after its required ones, arrays and strings
/// keep to their bounds, strings to their formats, `enum` values are matched
/// literally, a string or integer element of a `uniqueItems` array does not
/// end as an earlier one. Nesting is then at most `schema_depth`: at the bound, a key or
/// element whose value could only be a container is not offered. Every accepted byte leaves a
/// completion the schema accepts, except where the schema requires nesting
/// deeper than the bound.
///
/// `json_constraint` applies a matcher to a vocabulary (`token_texts`, the
/// bytes of each token, built once per tokenizer): `allowed` is the set of
/// tokens the matcher would accept from its state, `mask` sets the logit of
/// every other token to -inf — special
/// tokens, end of generation included, have no text and are always refused —
/// and `advance` feeds the chosen one. Once the object is complete nothing
/// more is accepted, not even whitespace: the engine ends the request there
/// (finish reason "stop").
///
/// Lifetime: `token_texts` is immutable and shared by every constraint over
/// it. Threading: a matcher or constraint belongs to one sequence; a
/// `token_texts` may be read from any thread.
#pragma once

#include <weft/serve/json_schema.hpp>
#include <weft/serve/token.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

class tokenizer;

class json_matcher {
public:
    static constexpr std::size_t max_depth = 64;
    static constexpr std::size_t max_whitespace = 20;
    /// A number's digits before the point plus its (positive) exponent: at
    /// most this, so that its magnitude stays below 10^308 and every
    /// parser that reads numbers as doubles takes it (RFC 8259 allows any
    /// exponent; nlohmann::json, serde_json and Go refuse an overflow).
    static constexpr std::size_t max_number_scale = 308;
    static constexpr std::size_t schema_depth = 20;

    json_matcher() = default;
    /// Holds the object to `schema` (which must outlive the matcher); null:
    /// any object.
    explicit json_matcher(const json_schema* schema) noexcept : m_schema(schema) {}

    /// Feeds one byte; false (and the state unchanged) when no valid
    /// document starts with the bytes so far plus this one, or when it
    /// begins a multi-byte character in a pattern's text (see in_pattern).
    bool feed(std::uint8_t byte) noexcept;
    /// Feeds every byte of `bytes`, all or nothing.
    bool feed(std::string_view bytes) noexcept;
    /// Whether feed(bytes) would take them, leaving this matcher as it is.
    /// Cheaper than a copy and a feed inside a formatted or patterned
    /// string, where only the format's automaton or the pattern runs (what
    /// a vocabulary mask asks most).
    [[nodiscard]] bool accepts(std::string_view bytes) const noexcept;
    /// Inside a string, at a character boundary, with no escape begun: any
    /// `token_texts::plain` token is accepted and leaves this so.
    /// Not so where the schema bounds the string (a key to match, a length).
    [[nodiscard]] bool in_plain_string() const noexcept {
        return m_phase == phase::string && m_utf8_left == 0 && m_plain_ok;
    }
    /// Inside a value string that the schema bounds (`maxLength`), at a
    /// character boundary, with no escape begun: how many more characters
    /// it may take — a `token_texts::plain` token of at most that many is
    /// accepted, a longer one refused. -1 anywhere else.
    [[nodiscard]] std::int64_t plain_room() const noexcept {
        if (m_phase != phase::string || m_utf8_left != 0 || m_schema == nullptr || m_key || m_match_key ||
            m_format != json_schema::string_format::none || m_patterned || m_unique_value) {
            return -1;
        }
        const std::uint32_t max = m_schema->at(m_node).max_length;
        if (max == json_schema::unbounded) return -1;
        return static_cast<std::int64_t>(max) - static_cast<std::int64_t>(m_chars);
    }
    /// Inside a patterned string's text (a value under `pattern` or a key
    /// under `patternProperties`): what follows is taken as whole
    /// characters, each tested against the pattern; a multi-byte character
    /// only in one piece (`feed` / `accepts` of a text holding all of it),
    /// never byte by byte.
    [[nodiscard]] bool in_pattern() const noexcept { return m_phase == phase::string && m_patterned; }
    /// in_pattern(), with a pattern that may match a non-ASCII character
    /// (json_pattern::ascii_only).
    [[nodiscard]] bool in_pattern_beyond_ascii() const noexcept;
    /// The top-level object is closed.
    [[nodiscard]] bool complete() const noexcept { return m_phase == phase::done; }
    /// Containers open at this point.
    [[nodiscard]] std::size_t depth() const noexcept { return m_depth; }

private:
    enum class phase : std::uint8_t {
        before_object, // whitespace, then '{'
        object_open,   // after '{': '"' (a key) or '}'
        object_key,    // after ',' in an object: '"'
        colon,         // after a key: ':'
        value,         // any value
        array_open,    // after '[': a value or ']'
        after_value,   // ',' or the container's closing bracket
        string,        // inside a string
        escape,        // after '\' in a string
        hex,           // inside \uXXXX (m_count digits read)
        low_backslash, // after a high surrogate: its pair's '\'
        low_u,         // its pair's 'u'
        number,        // m_sub: a number_state
        literal,       // m_sub: which of true/false/null, m_count: bytes matched
        enum_value,    // schema: one of m_node's literals (m_candidates), m_pos bytes matched
        done,
    };
    enum number_state : std::uint8_t { minus, zero, integer, dot, fraction, exponent, exponent_sign, exponent_digits };

    bool step(std::uint8_t c) noexcept;
    bool dispatch(std::uint8_t c) noexcept;
    bool whitespace(std::uint8_t c) noexcept;
    bool start_value(std::uint8_t c) noexcept;
    bool open(bool array) noexcept;
    bool close(bool array) noexcept;
    void value_done() noexcept;
    bool string_byte(std::uint8_t c) noexcept;
    bool utf8_byte(std::uint8_t c) noexcept;
    bool format_byte(std::uint32_t& state, std::uint32_t& chars, std::uint8_t c) const noexcept;
    bool pattern_byte(std::uint8_t c) noexcept;
    [[nodiscard]] const json_pattern& text_pattern() const noexcept;
    [[nodiscard]] std::uint32_t text_min_length() const noexcept;
    [[nodiscard]] std::uint32_t text_max_length() const noexcept;
    [[nodiscard]] bool pattern_text_only(std::string_view bytes) const noexcept;
    [[nodiscard]] std::optional<bool> pattern_extends(std::string_view bytes) const noexcept;
    bool pattern_text(std::string_view bytes) noexcept;
    bool take(std::string_view bytes) noexcept;
    bool hex_digit(std::uint8_t c) noexcept;
    bool number_byte(std::uint8_t c) noexcept;
    bool bounded_digit(std::uint8_t c) noexcept;
    bool bounded_point() noexcept;
    [[nodiscard]] bool bounded_reachable(std::uint64_t magnitude, int int_digits, int fraction,
                                         bool grows) const noexcept;
    [[nodiscard]] bool bounded_in_range() const noexcept;
    bool start_key() noexcept;
    bool key_byte(std::uint8_t c) noexcept;
    bool enum_byte(std::uint8_t c) noexcept;
    void enter_branch() noexcept;
    std::uint64_t used_literals() const noexcept;
    void use_literal() noexcept;
    bool may_continue_object() const noexcept;
    bool take_unique_value() noexcept;
    [[nodiscard]] bool unique_seen() const noexcept;
    bool can_start(std::int32_t node) const noexcept;
    std::uint64_t open_properties() const noexcept;
    [[nodiscard]] const json_schema::node& node_at(std::uint16_t i) const noexcept { return m_schema->at(i); }
    /// The innermost open container is an array (false at the top level).
    [[nodiscard]] bool in_array() const noexcept { return m_depth > 0 && (m_arrays >> (m_depth - 1) & 1) != 0; }

    /// An open container under a schema.
    struct frame {
        std::uint64_t seen = 0;  // objects: bit i, property i was given (uniqueItems arrays: literal i)
        std::uint32_t count = 0; // arrays: elements begun; objects: keys begun
        std::uint16_t node = 0;
    };

    std::uint64_t m_arrays = 0; // bit d: the container at depth d + 1 is an array
    std::uint16_t m_code = 0;   // the \u code unit read so far
    std::uint8_t m_depth = 0;
    phase m_phase = phase::before_object;
    std::uint8_t m_sub = 0;
    std::uint8_t m_count = 0;
    std::uint8_t m_whitespace = 0; // whitespace bytes in a row
    std::uint8_t m_utf8_left = 0;  // continuation bytes the current character still needs
    std::uint8_t m_utf8_lo = 0x80; // the range of the next continuation byte
    std::uint8_t m_utf8_hi = 0xbf;
    bool m_key = false;      // the string is an object key
    bool m_want_low = false; // the \u escape must be a low surrogate
    bool m_plain_ok = true;  // see in_plain_string()
    // Any number: its digits before the point, and its exponent when
    // positive; their sum stays at most max_number_scale (number_byte).
    std::uint16_t m_number_digits = 0;
    std::uint16_t m_exponent = 0;
    bool m_exponent_negative = false;
    // Under a schema only.
    bool m_match_key = false; // the key being read must be a property's name
    bool m_int_only = false;  // the number being read must be an integer
    bool m_bounded = false;   // the number being read must lie within its node's bounds
    bool m_negative = false;  // a bounded number's sign
    std::uint8_t m_int_digits = 0;  // a bounded number's digits before the point
    std::int8_t m_fraction = -1;    // ...and after it (-1: no point yet)
    std::uint64_t m_magnitude = 0;  // ...all of them, as one integer
    json_schema::string_format m_format = json_schema::string_format::none; // the string value's format
    std::uint32_t m_format_state = 0; // ...and how far into it (json_format.hpp)
    bool m_patterned = false;         // the string (value or key) is held to a pattern
    bool m_pattern_met = false;       // ...which a start of it matches, whatever follows
    std::uint16_t m_text_size = 0;    // ...and has these bytes so far:
    std::array<char, json_schema::max_pattern_bytes> m_text{};
    bool m_unique_value = false; // the string or integer is an element of a uniqueItems array,
    std::uint8_t m_unique_size = 0; // ...whose earlier elements' texts hash to m_unique[0, m_unique_size),
    std::uint64_t m_text_hash = 0;  // ...and its own text so far to this (FNV-1a, 64 bits)
    std::array<std::uint64_t, json_schema::max_unique_values> m_unique{};
    std::uint16_t m_node = 0; // the node of the value being read or about to start
    std::uint16_t m_pos = 0;  // bytes of the key or enum value matched
    std::uint32_t m_chars = 0;       // characters of the string value so far
    std::uint64_t m_candidates = 0;  // properties or enum values still matching
    const json_schema* m_schema = nullptr;
    std::array<frame, schema_depth> m_frames{};
};

/// The bytes each token of a vocabulary stands for; empty for special tokens
/// (control, unknown, end of generation), which constrained output never takes.
class token_texts {
public:
    explicit token_texts(const tokenizer& tok);
    /// Token i stands for pieces[i].
    explicit token_texts(const std::vector<std::string>& pieces);

    [[nodiscard]] std::size_t size() const noexcept { return m_offsets.size() - 1; }
    [[nodiscard]] std::string_view operator[](token_id id) const noexcept {
        return std::string_view(m_bytes).substr(m_offsets[id], m_offsets[id + 1] - m_offsets[id]);
    }
    /// Plain string content: not empty, whole UTF-8 characters, no quote,
    /// backslash or control character. Inside a string such a token is
    /// always accepted, which spares the mask a walk over most of the
    /// vocabulary in the state generation spends most of its time in.
    [[nodiscard]] bool plain(token_id id) const noexcept { return m_plain[static_cast<std::size_t>(id)] != 0; }
    /// The characters (code points) of a plain token; what a string bounded
    /// by `maxLength` counts (json_matcher::plain_room).
    [[nodiscard]] std::uint32_t plain_chars(token_id id) const noexcept { return m_plain_chars[static_cast<std::size_t>(id)]; }
    /// The first byte of each token's text, in one array a mask can scan
    /// (0 for an empty text, which no matcher state accepts either).
    [[nodiscard]] std::span<const std::uint8_t> first_bytes() const noexcept { return m_first; }

private:
    void add(std::string_view piece);

    std::string m_bytes;
    std::vector<std::size_t> m_offsets{0};
    std::vector<std::uint8_t> m_plain;
    std::vector<std::uint32_t> m_plain_chars;
    std::vector<std::uint8_t> m_first;
};

class json_constraint {
public:
    /// `schema`: structured outputs; null: any object (JSON mode).
    explicit json_constraint(std::shared_ptr<const token_texts> vocabulary,
                             std::shared_ptr<const json_schema> schema = nullptr);

    /// The tokens accepted now, as a bitset (bit i of word i / 64: token i);
    /// returns how many. The engine computes it while the next step runs.
    std::size_t allowed(std::vector<std::uint64_t>& bits) const;
    /// Sets the logit of every token not in `bits` (and any past it) to -inf.
    static void apply(std::span<const std::uint64_t> bits, std::span<float> logits) noexcept;
    /// `allowed` then `apply`: returns how many tokens are left.
    std::size_t mask(std::span<float> logits) const;
    /// Whether `id` would be accepted now.
    [[nodiscard]] bool allows(token_id id) const noexcept;
    /// Takes `id`; false (and nothing changed) when it is refused.
    bool advance(token_id id) noexcept;
    [[nodiscard]] bool complete() const noexcept { return m_matcher.complete(); }
    [[nodiscard]] const json_matcher& matcher() const noexcept { return m_matcher; }

private:
    std::shared_ptr<const token_texts> m_vocabulary;
    std::shared_ptr<const json_schema> m_schema;
    json_matcher m_matcher;
};

} // namespace weft::serve
