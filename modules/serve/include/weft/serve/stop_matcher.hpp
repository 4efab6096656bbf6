/// \file
/// `stop_matcher`: finds stop strings in streamed, decoded text without ever
/// emitting a byte of a stop string.
///
/// `push()` appends the next piece of text and returns what may be sent to
/// the client now. A tail of the text that is a prefix of some stop string is
/// held back until later text decides it: either it grows into a stop string
/// (the text before the stop is emitted, `stopped` is set, the stop string
/// itself is never emitted) or it stops matching and is released. When
/// several stop strings complete, the earliest in the text wins. Matching is
/// on bytes; empty stop strings are ignored. `flush()` returns the held tail
/// when generation ends without a stop. After a stop, `push()` emits nothing
/// and `flush()` returns "".
///
/// Lifetime: one per generated sequence. Threading: not synchronized.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

class stop_matcher {
public:
    struct result {
        std::string emit;
        bool stopped = false;
    };

    explicit stop_matcher(std::vector<std::string> stops);

    result push(std::string_view text);
    std::string flush();

    bool stopped() const noexcept { return m_stopped; }
    /// Bytes held back now (a prefix of some stop string).
    std::string_view held() const noexcept { return m_held; }

    /// The length of the longest tail of `text` that is a proper prefix of
    /// `stop`: how much of `text` may still become `stop` and must be held
    /// back.
    static std::size_t partial_match(std::string_view text, std::string_view stop) noexcept;

private:
    std::vector<std::string> m_stops;
    std::string m_held;
    bool m_stopped = false;
};

} // namespace weft::serve
