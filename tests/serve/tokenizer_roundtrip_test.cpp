// Properties over a trained vocabulary: exact round trips for any input,
// streaming decode that never splits a character, and concurrent use.
#include "tokenizer_internal.hpp"

#include <weft/serve/bpe_trainer.hpp>
#include <weft/serve/tokenizer.hpp>
#include <weft/serve/tokenizer_stream_decoder.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace weft::serve;

namespace {

const tokenizer& trained(std::string_view pre = "llama-bpe") {
    static const tokenizer llama3(train_byte_bpe(demo_corpus(200'000, 11), 1500, "llama-bpe"));
    static const tokenizer gpt2(train_byte_bpe(demo_corpus(200'000, 11), 1500, "gpt2"));
    return pre == "gpt2" ? gpt2 : llama3;
}

class rng {
public:
    explicit rng(std::uint64_t seed) : m_state(seed) {}
    std::uint64_t next() {
        m_state ^= m_state << 13;
        m_state ^= m_state >> 7;
        m_state ^= m_state << 17;
        return m_state;
    }
    std::uint64_t below(std::uint64_t n) { return next() % n; }

private:
    std::uint64_t m_state;
};

std::string random_bytes(rng& r, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        // Bias towards bytes that make words and UTF-8-looking sequences.
        const auto roll = r.below(4);
        s += static_cast<char>(roll == 0 ? 'a' + r.below(26) : roll == 1 ? ' ' : r.below(256));
    }
    return s;
}

void append_utf8(std::string& out, char32_t cp) { detail::append_utf8(out, cp); }

std::string random_unicode(rng& r, std::size_t n) {
    static const std::vector<std::pair<char32_t, char32_t>> ranges = {
        {0x20, 0x7E},       {0x09, 0x0D},       {0xA0, 0xFF},     {0x370, 0x3FF},
        {0x400, 0x4FF},     {0x300, 0x36F},     {0x2000, 0x206F}, {0x3000, 0x3040},
        {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},   {0x1F300, 0x1F64F}, {0x10000, 0x1000F}};
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        const auto& [lo, hi] = ranges[r.below(ranges.size())];
        append_utf8(s, lo + static_cast<char32_t>(r.below(hi - lo + 1)));
    }
    return s;
}

/// Independent of the library's own UTF-8 scanner.
bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        char32_t cp = 0;
        if (c < 0x80) {
            n = 1;
            cp = c;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n > s.size()) {
            return false;
        }
        for (std::size_t k = 1; k < n; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (cc & 0x3F);
        }
        const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n;
    }
    return true;
}

std::string stream(const tokenizer& tok, const std::vector<token_id>& ids, bool& all_valid,
                   bool skip_special = false) {
    token_stream_decoder decoder(tok, skip_special);
    std::string out;
    for (const token_id id : ids) {
        const std::string chunk = decoder.push(id);
        all_valid = all_valid && valid_utf8(chunk);
        out += chunk;
    }
    const std::string rest = decoder.finish();
    all_valid = all_valid && valid_utf8(rest);
    return out + rest;
}

constexpr std::string_view replacement = "\xEF\xBF\xBD";

} // namespace

TEST_CASE("byte-level BPE round-trips random byte strings exactly", "[tokenizer]") {
    for (const auto pre : {"llama-bpe", "gpt2"}) {
        const tokenizer& tok = trained(pre);
        rng r(42);
        for (int i = 0; i < 400; ++i) {
            const std::string s = random_bytes(r, r.below(i < 390 ? 64 : 6000));
            const auto ids = tok.encode(s, false);
            REQUIRE(tok.decode(ids) == s);
            REQUIRE(tok.decode(tok.encode(s), true) == s);
        }
        const std::string all_bytes = [] {
            std::string s;
            for (int b = 0; b < 256; ++b) {
                s += static_cast<char>(b);
            }
            return s;
        }();
        CHECK(tok.decode(tok.encode(all_bytes, false)) == all_bytes);
    }
}

TEST_CASE("byte-level BPE round-trips random Unicode text and the corpus", "[tokenizer]") {
    const tokenizer& tok = trained();
    rng r(7);
    for (int i = 0; i < 300; ++i) {
        const std::string s = random_unicode(r, r.below(i < 290 ? 40 : 3000));
        REQUIRE(tok.decode(tok.encode(s, false)) == s);
    }
    const std::string text = demo_corpus(50'000, 99);
    const auto ids = tok.encode(text, false);
    CHECK(tok.decode(ids) == text);
    // A trained vocabulary compresses text from its own distribution.
    CHECK(ids.size() * 2 < text.size());
}

TEST_CASE("encoding the same text in pieces of any length gives the same tokens as a whole",
          "[tokenizer]") {
    // Long texts take the word cache path, short ones do not.
    const tokenizer& tok = trained();
    const std::string text = demo_corpus(20'000, 5);
    const auto whole = tok.encode(text, false);
    std::vector<token_id> pieces;
    // Cut only at newlines, where the pre-tokenizer always splits.
    std::size_t start = 0;
    for (std::size_t pos = text.find("\n\n"); pos != std::string::npos;
         pos = text.find("\n\n", pos + 2)) {
        const auto part = tok.encode(std::string_view(text).substr(start, pos + 2 - start), false);
        pieces.insert(pieces.end(), part.begin(), part.end());
        start = pos + 2;
    }
    const auto rest = tok.encode(std::string_view(text).substr(start), false);
    pieces.insert(pieces.end(), rest.begin(), rest.end());
    CHECK(pieces == whole);
}

TEST_CASE("special tokens in text round-trip with parse_special", "[tokenizer]") {
    const tokenizer& tok = trained();
    const std::string text =
        "<|start_header_id|>user<|end_header_id|>\n\nHi there 😀<|eot_id|>";
    const auto ids = tok.encode(text, true, true);
    CHECK(ids.front() == *tok.bos());
    CHECK(std::count(ids.begin(), ids.end(), *tok.find("<|eot_id|>")) == 1);
    CHECK(tok.decode(ids) == "<|begin_of_text|>" + text);
    CHECK(tok.decode(ids, true) == "user\n\nHi there 😀");
}

TEST_CASE("token stream decoder never emits a broken UTF-8 sequence", "[tokenizer]") {
    const tokenizer& tok = trained();
    const std::string text = "日本語のテキスト 😀🎉🦀 naïve café — ü, Ω≈ç√ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 end";
    const auto ids = tok.encode(text, false);
    // The test only means something if some token is a partial character.
    const bool some_partial = std::any_of(ids.begin(), ids.end(), [&](token_id id) {
        return !valid_utf8(tok.token_to_piece(id));
    });
    REQUIRE(some_partial);
    bool all_valid = true;
    CHECK(stream(tok, ids, all_valid) == text);
    CHECK(all_valid);

    rng r(3);
    for (int i = 0; i < 200; ++i) {
        const std::string s = random_unicode(r, r.below(30));
        const auto random_ids = tok.encode(s, false);
        bool valid = true;
        REQUIRE(stream(tok, random_ids, valid) == tok.decode(random_ids));
        REQUIRE(valid);
    }
}

TEST_CASE("token stream decoder holds back a partial character until it completes",
          "[tokenizer]") {
    const tokenizer& tok = trained();
    const auto byte = [&](unsigned char b) {
        return *tok.find(detail::byte_to_unicode_table()[b]);
    };
    token_stream_decoder decoder(tok);
    CHECK(decoder.push(byte(0xF0)).empty());
    CHECK(decoder.push(byte(0x9F)).empty());
    CHECK(decoder.push(byte(0x98)).empty());
    CHECK(decoder.push(byte(0x80)) == "😀");
    CHECK(decoder.push(byte('a')) == "a");

    // An incomplete character at the end becomes one U+FFFD...
    CHECK(decoder.push(byte(0xE2)).empty());
    CHECK(decoder.push(byte(0x80)).empty());
    CHECK(decoder.finish() == replacement);
    // ...and the decoder starts over afterwards.
    CHECK(decoder.finish().empty());
    CHECK(decoder.push(byte('b')) == "b");

    // Bytes that cannot be part of a character are replaced at once.
    CHECK(decoder.push(byte(0xFF)) == replacement);
    CHECK(decoder.push(byte(0x80)) == replacement);
    CHECK(decoder.push(byte(0xE2)).empty());
    CHECK(decoder.push(byte('c')) == std::string(replacement) + "c");
    // Surrogates and overlong forms are not characters.
    CHECK(decoder.push(byte(0xED)).empty());
    CHECK(decoder.push(byte(0xA0)) == std::string(replacement) + std::string(replacement));
    CHECK(decoder.push(byte(0xC0)) == replacement);
    CHECK(decoder.finish().empty());
    CHECK_THROWS_AS(decoder.push(-1), tokenizer_error);
}

TEST_CASE("token stream decoder matches decode for special tokens and skip_special",
          "[tokenizer]") {
    const tokenizer& tok = trained();
    const auto ids = tok.encode("<|start_header_id|>a<|end_header_id|>é<|eot_id|>", true, true);
    bool valid = true;
    CHECK(stream(tok, ids, valid) == tok.decode(ids));
    CHECK(stream(tok, ids, valid, true) == tok.decode(ids, true));
    CHECK(tok.decode(ids, true) == "aé");
    CHECK(valid);
}

TEST_CASE("tokenizer encodes and decodes from many threads at once", "[tokenizer]") {
    const tokenizer& tok = trained();
    std::vector<std::string> texts;
    for (std::uint64_t seed = 0; seed < 8; ++seed) {
        texts.push_back(demo_corpus(seed % 2 == 0 ? 500 : 9000, seed));
    }
    std::vector<std::vector<token_id>> expected;
    for (const auto& t : texts) {
        expected.push_back(tok.encode(t));
    }
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < mismatches.size(); ++t) {
        threads.emplace_back([&, t] {
            const tokenizer copy = tok; // copies share the state
            for (int round = 0; round < 5; ++round) {
                for (std::size_t i = 0; i < texts.size(); ++i) {
                    const tokenizer& use = (i + t) % 2 == 0 ? tok : copy;
                    const auto ids = use.encode(texts[i]);
                    if (ids != expected[i] || use.decode(ids, true) != texts[i]) {
                        ++mismatches[t];
                    }
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    CHECK(mismatches == std::vector<int>(4, 0));
}
