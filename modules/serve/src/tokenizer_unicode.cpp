#include "tokenizer_internal.hpp"

namespace weft::serve::detail {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves;
// the other 68 bytes take the code points from U+0100 upward, in byte order.
bool maps_to_itself(unsigned b) noexcept {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct byte_alphabet {
    std::array<std::string, 256> text;
    std::array<std::uint8_t, 256> order{};
    std::array<std::int16_t, 0x100 + 68> byte_of{};

    byte_alphabet() {
        byte_of.fill(-1);
        std::size_t next = 0;
        for (unsigned b = 0; b < 256; ++b) {
            if (maps_to_itself(b)) {
                order[next++] = static_cast<std::uint8_t>(b);
            }
        }
        unsigned shifted = 0;
        for (unsigned b = 0; b < 256; ++b) {
            char32_t cp = b;
            if (!maps_to_itself(b)) {
                cp = 0x100 + shifted++;
                order[next++] = static_cast<std::uint8_t>(b);
            }
            append_utf8(text[b], cp);
            byte_of[cp] = static_cast<std::int16_t>(b);
        }
    }
};

const byte_alphabet& alphabet() {
    static const byte_alphabet instance;
    return instance;
}

bool is_continuation(unsigned char c) noexcept { return (c & 0xC0) == 0x80; }

} // namespace

const std::array<std::string, 256>& byte_to_unicode_table() { return alphabet().text; }

int unicode_to_byte(char32_t cp) noexcept {
    const auto& table = alphabet().byte_of;
    return cp < table.size() ? table[cp] : -1;
}

const std::array<std::uint8_t, 256>& bytes_in_vocab_order() { return alphabet().order; }

utf8_scan scan_utf8(std::string_view s, std::size_t pos) noexcept {
    const auto lead = static_cast<unsigned char>(s[pos]);
    if (lead < 0x80) {
        return {utf8_status::complete, 1};
    }
    std::size_t need = 0;
    // The second byte's range is narrower for some leads: that is what
    // rules out overlong forms, surrogates and code points above U+10FFFF.
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        lo = lead == 0xE0 ? 0xA0 : 0x80;
        hi = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        lo = lead == 0xF0 ? 0x90 : 0x80;
        hi = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return {utf8_status::invalid, 1};
    }
    for (std::size_t i = 1; i < need; ++i) {
        if (pos + i >= s.size()) {
            return {utf8_status::truncated, i};
        }
        const auto c = static_cast<unsigned char>(s[pos + i]);
        const bool ok = i == 1 ? (c >= lo && c <= hi) : is_continuation(c);
        if (!ok) {
            return {utf8_status::invalid, i};
        }
    }
    return {utf8_status::complete, need};
}

char32_t decode_utf8(std::string_view s, std::size_t pos, std::size_t length) noexcept {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[pos + i]); };
    switch (length) {
    case 1:
        return byte(0);
    case 2:
        return (char32_t{byte(0)} & 0x1F) << 6 | (byte(1) & 0x3F);
    case 3:
        return (char32_t{byte(0)} & 0x0F) << 12 | (char32_t{byte(1)} & 0x3F) << 6 |
               (byte(2) & 0x3F);
    default:
        return (char32_t{byte(0)} & 0x07) << 18 | (char32_t{byte(1)} & 0x3F) << 12 |
               (char32_t{byte(2)} & 0x3F) << 6 | (byte(3) & 0x3F);
    }
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

} // namespace weft::serve::detail
