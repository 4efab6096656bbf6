// The demo corpus and the byte-level BPE trainer behind demo models.
#include "tokenizer_internal.hpp"

#include <weft/serve/bpe_trainer.hpp>
#include <weft/serve/tokenizer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

using namespace weft::serve;

namespace {

std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 0xCBF29CE484222325ULL;
    for (const char c : s) {
        h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ULL;
    }
    return h;
}

std::string ch(unsigned char b) { return detail::byte_to_unicode_table()[b]; }

} // namespace

TEST_CASE("demo corpus is exact in size, valid UTF-8 and a function of its seed", "[tokenizer]") {
    for (const std::size_t size : {0, 1, 2, 3, 100, 4096, 100'000}) {
        const std::string text = demo_corpus(size, 5);
        REQUIRE(text.size() == size);
        for (std::size_t pos = 0; pos < text.size();) {
            const auto scan = detail::scan_utf8(text, pos);
            REQUIRE(scan.status == detail::utf8_status::complete);
            pos += scan.length;
        }
    }
    CHECK(demo_corpus(10'000, 1) == demo_corpus(10'000, 1));
    CHECK(demo_corpus(10'000, 1) != demo_corpus(10'000, 2));
    const std::string text = demo_corpus(100'000, 1);
    for (const std::string_view expected : {"é", "ü", "—", "😀", "'s", ", ", ". ", "\n"}) {
        CHECK(text.find(expected) != std::string::npos);
    }
    CHECK(text.find_first_of("0123456789") != std::string::npos);
}

TEST_CASE("demo corpus text does not change between builds or platforms", "[tokenizer]") {
    // The generator uses only its own PRNG and integer arithmetic; this pins
    // its output so that demo models stay reproducible.
    CHECK(fnv1a(demo_corpus(4096, 1)) == 0x6D9BD501EF421D11ULL);
}

TEST_CASE("trainer is deterministic and fills the vocabulary exactly", "[tokenizer]") {
    const std::string corpus = demo_corpus(150'000, 3);
    const auto a = train_byte_bpe(corpus, 1200);
    const auto b = train_byte_bpe(corpus, 1200);
    CHECK(a.tokens == b.tokens);
    CHECK(a.merges == b.merges);
    REQUIRE(a.tokens.size() == 1200);
    REQUIRE(a.types.size() == 1200);
    CHECK(std::set<std::string>(a.tokens.begin(), a.tokens.end()).size() == 1200);
    CHECK(a.model == "gpt2");
    CHECK(a.pre == "llama-bpe");

    for (std::size_t i = 0; i < 256; ++i) {
        CHECK(a.tokens[i] == ch(detail::bytes_in_vocab_order()[i]));
    }
    CHECK(a.tokens[1195] == "<|begin_of_text|>");
    CHECK(a.tokens[1199] == "<|end_header_id|>");
    CHECK(a.bos == 1195);
    CHECK(a.eos == 1196);
    CHECK(a.eot == 1197);
    for (std::size_t i = 1195; i < 1200; ++i) {
        CHECK(a.types[i] == token_type::control);
    }
    CHECK(a.types[300] == token_type::normal);
    // A smaller vocabulary learns the same first merges.
    const auto small = train_byte_bpe(corpus, 600);
    REQUIRE(small.merges.size() <= a.merges.size());
    CHECK(std::equal(small.merges.begin(), small.merges.end(), a.merges.begin()));

    const tokenizer tok(a);
    CHECK(tok.vocab_size() == 1200);
    CHECK(tok.is_eog(*a.eos));
    CHECK(tok.is_eog(*a.eot));
}

TEST_CASE("trainer merges the most frequent pair first, the smaller ids on a tie",
          "[tokenizer]") {
    // Pairs: "a b" x3, "c d" x1, " c" x1 (pieces "ab", " ab", " ab", " cd").
    const auto d = train_byte_bpe("ab ab ab cd", 256 + 4 + 5);
    REQUIRE(d.merges.size() >= 3);
    CHECK(d.merges[0] == "a b");
    // " ab" twice now: "Ġ ab" beats "c d"; then "c d" (ids 66, 67) before "Ġ c" (220, 66).
    CHECK(d.merges[1] == ch(' ') + " ab");
    CHECK(d.merges[2] == "c d");
    CHECK(d.merges[3] == ch(' ') + " cd");
}

TEST_CASE("trainer pads with reserved control tokens when the corpus runs out of pairs",
          "[tokenizer]") {
    const auto d = train_byte_bpe("ab", 270);
    REQUIRE(d.tokens.size() == 270);
    CHECK(d.merges == std::vector<std::string>{"a b"});
    CHECK(d.tokens[257] == "<|begin_of_text|>");
    CHECK(d.tokens[262] == "<|reserved_special_token_0|>");
    CHECK(d.tokens[269] == "<|reserved_special_token_7|>");
    CHECK(d.types[269] == token_type::control);
    const tokenizer tok(d);
    CHECK(tok.encode("abab", false) == std::vector<token_id>{256, 256});
}

TEST_CASE("trainer rejects a vocabulary too small for bytes and special tokens", "[tokenizer]") {
    CHECK_THROWS_AS(train_byte_bpe("text", 260), tokenizer_error);
    CHECK_NOTHROW(train_byte_bpe("text", 261));
}

TEST_CASE("trained vocabulary encodes with the merges it learned", "[tokenizer]") {
    const std::string corpus = demo_corpus(100'000, 8);
    const tokenizer tok(train_byte_bpe(corpus, 2000, "gpt2"));
    // The most frequent word pieces of the corpus end up as single tokens.
    CHECK(tok.encode(" the", false).size() == 1);
    CHECK(tok.encode(" and", false).size() == 1);
    CHECK(tok.decode(tok.encode(corpus, false)) == corpus);
}
