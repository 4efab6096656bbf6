// Tokenizer behaviour on small hand-made vocabularies, where every expected
// encoding can be worked out by hand from the rules.
#include "tokenizer_internal.hpp"

#include <weft/serve/tokenizer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

using namespace weft::serve;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> split(detail::pre_kind kind, std::string_view text) {
    detail::regex_splitter splitter(kind);
    std::vector<std::string_view> pieces;
    splitter.split(text, pieces);
    return {pieces.begin(), pieces.end()};
}

/// The GPT-2 alphabet character of byte `b`.
std::string ch(unsigned char b) { return detail::byte_to_unicode_table()[b]; }

/// A "gpt2" vocabulary: the 256 byte tokens, then `extra`.
tokenizer_data byte_vocab(const std::vector<std::string>& extra, std::vector<std::string> merges,
                          std::string pre = "gpt2") {
    tokenizer_data d;
    d.model = "gpt2";
    d.pre = std::move(pre);
    d.add_bos = false;
    for (const auto b : detail::bytes_in_vocab_order()) {
        d.tokens.push_back(ch(b));
    }
    d.tokens.insert(d.tokens.end(), extra.begin(), extra.end());
    d.merges = std::move(merges);
    return d;
}

token_id id_of(const tokenizer& tok, std::string_view text) {
    const auto id = tok.find(text);
    REQUIRE(id.has_value());
    return *id;
}

/// A "llama" vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then
/// `pieces` with their scores.
tokenizer_data spm_vocab(const std::vector<std::pair<std::string, float>>& pieces) {
    tokenizer_data d;
    d.model = "llama";
    d.tokens = {"<unk>", "<s>", "</s>"};
    d.types = {token_type::unknown, token_type::control, token_type::control};
    d.scores = {0, 0, 0};
    for (int b = 0; b < 256; ++b) {
        char text[8];
        std::snprintf(text, sizeof text, "<0x%02X>", b);
        d.tokens.emplace_back(text);
        d.types.push_back(token_type::byte);
        d.scores.push_back(0);
    }
    for (const auto& [text, score] : pieces) {
        d.tokens.push_back(text);
        d.types.push_back(token_type::normal);
        d.scores.push_back(score);
    }
    d.unk = 0;
    d.bos = 1;
    d.eos = 2;
    return d;
}

// "▁" is U+2581, SentencePiece's visible space.
const std::vector<std::pair<std::string, float>> spm_pieces = {
    {"▁", -5},    {"h", -6},  {"e", -6},      {"l", -6},   {"o", -6},   {"▁h", -3},
    {"he", -2},   {"ll", -1}, {"hell", -1.5}, {"llo", -4}, {"▁he", -0.5}};

constexpr token_id spm_byte(unsigned char b) { return 3 + b; }

} // namespace

TEST_CASE("gpt2 pre-tokenizer splits contractions, words, numbers and whitespace runs",
          "[tokenizer]") {
    CHECK(split(detail::pre_kind::gpt2, "Hello world's 123  foo!!\n") ==
          std::vector<std::string>{"Hello", " world", "'s", " 123", " ", " foo", "!!", "\n"});
    // A whitespace run before a word leaves its last space to the word; one
    // before a newline and a word splits at the last whitespace.
    CHECK(split(detail::pre_kind::gpt2, "a  \n\nb") ==
          std::vector<std::string>{"a", "  \n", "\n", "b"});
    // Contractions are lower case only in GPT-2's pattern.
    CHECK(split(detail::pre_kind::gpt2, "IT'S") == std::vector<std::string>{"IT", "'", "S"});
    CHECK(split(detail::pre_kind::gpt2, "café 42") == std::vector<std::string>{"café", " 42"});
}

TEST_CASE("llama3 pre-tokenizer groups digits by three and keeps newlines with punctuation",
          "[tokenizer]") {
    CHECK(split(detail::pre_kind::llama3, "12345") == std::vector<std::string>{"123", "45"});
    CHECK(split(detail::pre_kind::llama3, "Hello world's 123  foo!!\n") ==
          std::vector<std::string>{"Hello", " world", "'s", " ", "123", " ", " foo", "!!\n"});
    CHECK(split(detail::pre_kind::llama3, "a  \n\nb") ==
          std::vector<std::string>{"a", "  \n\n", "b"});
    CHECK(split(detail::pre_kind::llama3, "IT'S") == std::vector<std::string>{"IT", "'S"});
    // One non-letter may lead a word.
    CHECK(split(detail::pre_kind::llama3, "(hi)") == std::vector<std::string>{"(hi", ")"});
}

TEST_CASE("qwen2 pre-tokenizer splits numbers into single digits", "[tokenizer]") {
    CHECK(split(detail::pre_kind::qwen2, "x 12345") ==
          std::vector<std::string>{"x", " ", "1", "2", "3", "4", "5"});
}

TEST_CASE("pre-tokenizer names map to patterns, unknown names to gpt2", "[tokenizer]") {
    CHECK(detail::pre_kind_from_name("llama-bpe") == detail::pre_kind::llama3);
    CHECK(detail::pre_kind_from_name("llama3") == detail::pre_kind::llama3);
    CHECK(detail::pre_kind_from_name("qwen2") == detail::pre_kind::qwen2);
    CHECK(detail::pre_kind_from_name("default") == detail::pre_kind::gpt2);
    CHECK(detail::pre_kind_from_name("some-future-model") == detail::pre_kind::gpt2);
    CHECK_NOTHROW(tokenizer(byte_vocab({}, {}, "some-future-model")));
}

TEST_CASE("pre-tokenizer keeps invalid UTF-8 as pieces of its own", "[tokenizer]") {
    const std::string text = "a\xFF\xFE" "b c\x80";
    CHECK(split(detail::pre_kind::gpt2, text) ==
          std::vector<std::string>{"a", "\xFF\xFE", "b", " c", "\x80"});
    CHECK(split(detail::pre_kind::llama3, text) ==
          std::vector<std::string>{"a", "\xFF\xFE", "b", " c", "\x80"});
}

TEST_CASE("pre-tokenizer handles long runs without failing", "[tokenizer]") {
    for (const auto kind : {detail::pre_kind::gpt2, detail::pre_kind::llama3}) {
        const std::string spaces(1 << 20, ' ');
        const auto pieces = split(kind, spaces + "x");
        REQUIRE(pieces.size() == 2);
        CHECK(pieces[0].size() == spaces.size() - 1);
        CHECK(split(kind, std::string(1 << 20, 'a')).size() == 1);
    }
}

TEST_CASE("byte-level BPE merges by rank until no merge applies", "[tokenizer]") {
    const std::string G = ch(' ');
    const tokenizer tok(byte_vocab({"he", "ll", "hell", "hello", G + "w", "or", G + "wor"},
                                   {"h e", "l l", "he ll", "hell o", G + " w", "o r",
                                    G + "w or"}));
    CHECK(tok.encode("hello world") == std::vector<token_id>{id_of(tok, "hello"),
                                                             id_of(tok, G + "wor"),
                                                             id_of(tok, "l"), id_of(tok, "d")});
    // "helo": "h e" then nothing; "ll" never forms.
    CHECK(tok.encode("helo") ==
          std::vector<token_id>{id_of(tok, "he"), id_of(tok, "l"), id_of(tok, "o")});
    CHECK(tok.decode(tok.encode("hello world")) == "hello world");
}

TEST_CASE("byte-level BPE applies the lower rank first, the leftmost pair on a tie",
          "[tokenizer]") {
    {
        const tokenizer tok(byte_vocab({"el", "he"}, {"e l", "h e"}));
        CHECK(tok.encode("hel") == std::vector<token_id>{id_of(tok, "h"), id_of(tok, "el")});
    }
    {
        const tokenizer tok(byte_vocab({"el", "he"}, {"h e", "e l"}));
        CHECK(tok.encode("hel") == std::vector<token_id>{id_of(tok, "he"), id_of(tok, "l")});
    }
    const tokenizer tok(byte_vocab({"aa"}, {"a a"}));
    CHECK(tok.encode("aaa") == std::vector<token_id>{id_of(tok, "aa"), id_of(tok, "a")});
    CHECK(tok.encode("aaaa") == std::vector<token_id>{id_of(tok, "aa"), id_of(tok, "aa")});
}

TEST_CASE("byte-level BPE maps bytes through GPT-2's alphabet", "[tokenizer]") {
    const tokenizer tok(byte_vocab({}, {}));
    CHECK(ch(' ') == "Ġ");
    CHECK(ch('\n') == "Ċ");
    CHECK(tok.encode(" \n") == std::vector<token_id>{id_of(tok, "Ġ"), id_of(tok, "Ċ")});
    CHECK(tok.token_to_piece(id_of(tok, "Ġ")) == " ");
    CHECK(tok.token_to_piece(id_of(tok, "Ċ")) == "\n");
    // é is two bytes, each its own token without merges.
    CHECK(tok.encode("é") == std::vector<token_id>{id_of(tok, ch(0xC3)), id_of(tok, ch(0xA9))});
    CHECK(tok.decode(tok.encode("é")) == "é");
    // Vocabulary order is bytes_to_unicode's: "!" first, byte 0 at 188.
    CHECK(tok.find("!") == 0);
    CHECK(tok.find(ch(0)) == 188);
}

TEST_CASE("llama3 takes a pre-token that is a vocabulary token whole", "[tokenizer]") {
    const tokenizer llama3(byte_vocab({"he", "hello"}, {"h e"}, "llama3"));
    CHECK(llama3.encode("hello") == std::vector<token_id>{id_of(llama3, "hello")});
    const tokenizer gpt2(byte_vocab({"he", "hello"}, {"h e"}, "gpt2"));
    CHECK(gpt2.encode("hello") == std::vector<token_id>{id_of(gpt2, "he"), id_of(gpt2, "l"),
                                                        id_of(gpt2, "l"), id_of(gpt2, "o")});
}

TEST_CASE("byte-level BPE gives unk, or nothing, for a byte without a token", "[tokenizer]") {
    tokenizer_data d;
    d.model = "gpt2";
    d.add_bos = false;
    d.tokens = {"<unk>", "a", "b"};
    d.types = {token_type::unknown, token_type::normal, token_type::normal};
    CHECK(tokenizer(d).encode("azb") == std::vector<token_id>{1, 2});
    d.unk = 0;
    CHECK(tokenizer(d).encode("azb") == std::vector<token_id>{1, 0, 2});
}

TEST_CASE("add_special puts BOS and EOS around the text as configured", "[tokenizer]") {
    auto d = byte_vocab({"<s>", "</s>"}, {});
    d.types.assign(d.tokens.size(), token_type::normal);
    d.types[256] = d.types[257] = token_type::control;
    d.bos = 256;
    d.eos = 257;
    d.add_bos = true;
    d.add_eos = true;
    const tokenizer tok(d);
    const token_id a = id_of(tok, "a");
    CHECK(tok.encode("a") == std::vector<token_id>{256, a, 257});
    CHECK(tok.encode("a", false) == std::vector<token_id>{a});
    CHECK(tok.encode("") == std::vector<token_id>{256, 257});
    CHECK(tok.decode(tok.encode("a")) == "<s>a</s>");
    CHECK(tok.decode(tok.encode("a"), true) == "a");
}

TEST_CASE("SentencePiece merges the best-scoring pair first", "[tokenizer]") {
    const tokenizer tok(spm_vocab(spm_pieces));
    const token_id he_ = id_of(tok, "▁he");
    CHECK(tok.encode("hello", false) == std::vector<token_id>{he_, id_of(tok, "llo")});
    CHECK(tok.encode("hello") == std::vector<token_id>{1, he_, id_of(tok, "llo")});
    CHECK(tok.encode("he he", false) == std::vector<token_id>{he_, he_});
    CHECK(tok.decode(tok.encode("hello", false)) == "hello");
    CHECK(tok.decode(tok.encode("he he")) == "<s>he he");
    CHECK(tok.decode(tok.encode("he he"), true) == "he he");
    CHECK(tok.token_to_piece(he_) == " he");
}

TEST_CASE("SentencePiece adds the space prefix only when asked to", "[tokenizer]") {
    auto d = spm_vocab(spm_pieces);
    d.add_space_prefix = false;
    const tokenizer tok(d);
    CHECK(tok.encode("hello", false) == std::vector<token_id>{id_of(tok, "hell"), id_of(tok, "o")});
    CHECK(tok.decode(tok.encode(" hello", false)) == " hello");
}

TEST_CASE("SentencePiece spells characters without a token in byte tokens", "[tokenizer]") {
    const tokenizer tok(spm_vocab(spm_pieces));
    CHECK(tok.encode("hi", false) == std::vector<token_id>{id_of(tok, "▁h"), spm_byte('i')});
    CHECK(tok.encode("é", false) ==
          std::vector<token_id>{id_of(tok, "▁"), spm_byte(0xC3), spm_byte(0xA9)});
    CHECK(tok.token_to_piece(spm_byte('\n')) == "\n");
    CHECK(tok.decode(tok.encode("hi é\n\xFF", false)) == "hi é\n\xFF");
}

TEST_CASE("SentencePiece without byte tokens falls back to unk", "[tokenizer]") {
    tokenizer_data d;
    d.model = "llama";
    d.tokens = {"<unk>", "▁", "a"};
    d.types = {token_type::unknown, token_type::normal, token_type::normal};
    d.add_bos = false;
    CHECK(tokenizer(d).encode("axa") == std::vector<token_id>{1, 2, 2});
    d.unk = 0;
    CHECK(tokenizer(d).encode("axa") == std::vector<token_id>{1, 2, 0, 2});
}

TEST_CASE("parse_special splits control token texts out of the text", "[tokenizer]") {
    auto d = byte_vocab({"<|eot_id|>", "<x>", "<x>y", "<tool>"}, {});
    d.types.assign(d.tokens.size(), token_type::normal);
    d.types[256] = d.types[257] = d.types[258] = token_type::control;
    d.types[259] = token_type::user_defined;
    d.eot = 256;
    const tokenizer tok(d);
    const auto ids = tok.encode("hi<|eot_id|>yo<|eot_id|>", false, true);
    CHECK(ids == std::vector<token_id>{id_of(tok, "h"), id_of(tok, "i"), 256, id_of(tok, "y"),
                                       id_of(tok, "o"), 256});
    CHECK(tok.decode(ids) == "hi<|eot_id|>yo<|eot_id|>");
    CHECK(tok.decode(ids, true) == "hiyo");
    // Without parse_special the control text is ordinary text...
    const auto plain = tok.encode("<|eot_id|>", false, false);
    CHECK(plain.size() == std::string_view("<|eot_id|>").size());
    CHECK(tok.decode(plain) == "<|eot_id|>");
    // ...while user_defined tokens are always whole tokens.
    CHECK(tok.encode("a<tool>", false, false) == std::vector<token_id>{id_of(tok, "a"), 259});
    // The longest special text at a position wins.
    CHECK(tok.encode("<x>yz", false, true) == std::vector<token_id>{258, id_of(tok, "z")});
    CHECK(tok.encode("<x>z", false, true) == std::vector<token_id>{257, id_of(tok, "z")});
}

TEST_CASE("SentencePiece puts a space prefix after each special token", "[tokenizer]") {
    const tokenizer tok(spm_vocab(spm_pieces));
    const token_id he_ = id_of(tok, "▁he");
    const auto ids = tok.encode("hello</s>he", false, true);
    CHECK(ids == std::vector<token_id>{he_, id_of(tok, "llo"), 2, he_});
    CHECK(tok.decode(ids) == "hello</s>he");
    CHECK(tok.decode(ids, true) == "hellohe");
    const auto plain = tok.encode("</s>", false, false);
    CHECK(std::find(plain.begin(), plain.end(), 2) == plain.end());
}

TEST_CASE("tokenizer answers questions about special tokens", "[tokenizer]") {
    auto d = spm_vocab(spm_pieces);
    d.eot = id_of(tokenizer(d), "▁he"); // any id will do
    const tokenizer tok(d);
    CHECK(tok.vocab_size() == d.tokens.size());
    CHECK(tok.bos() == 1);
    CHECK(tok.eos() == 2);
    CHECK(tok.is_eog(2));
    CHECK(tok.is_eog(*d.eot));
    CHECK_FALSE(tok.is_eog(1));
    CHECK(tok.is_special(0));
    CHECK(tok.is_special(1));
    CHECK_FALSE(tok.is_special(spm_byte('a')));
    CHECK_FALSE(tok.is_special(-1));
    CHECK_FALSE(tok.is_special(1 << 30));
    CHECK(tok.find("<s>") == 1);
    CHECK_FALSE(tok.find("nope").has_value());
    CHECK(tok.data().tokens == d.tokens);
    CHECK(tok.token_to_piece(1) == "<s>");
    CHECK_THROWS_AS(tok.token_to_piece(-1), tokenizer_error);
    const std::vector<token_id> bad = {1, static_cast<token_id>(d.tokens.size())};
    CHECK_THROWS_AS(tok.decode(bad), tokenizer_error);
}

TEST_CASE("tokenizer copies share their state and outlive the original", "[tokenizer]") {
    std::optional<tokenizer> original(std::in_place, spm_vocab(spm_pieces));
    const tokenizer copy = *original;
    const auto expected = original->encode("hello");
    original.reset();
    CHECK(copy.encode("hello") == expected);
}

TEST_CASE("invalid tokenizer data is rejected with tokenizer_error", "[tokenizer]") {
    const auto rejects = [](tokenizer_data d, const std::string& what) {
        CHECK_THROWS_WITH(tokenizer(std::move(d)), Contains(what));
    };
    auto good = byte_vocab({"ab"}, {"a b"});
    REQUIRE_NOTHROW(tokenizer(good));

    auto d = good;
    d.model = "bert";
    rejects(d, "unsupported model");
    d = good;
    d.tokens.clear();
    d.merges.clear();
    rejects(d, "empty");
    d = good;
    d.scores.assign(3, 0.0f);
    rejects(d, "3 scores");
    d = good;
    d.types.assign(d.tokens.size() + 1, token_type::normal);
    rejects(d, "token types");
    d = good;
    d.types.assign(d.tokens.size(), token_type::normal);
    d.types[5] = static_cast<token_type>(9);
    rejects(d, "unknown type 9");
    d = good;
    d.types.assign(d.tokens.size(), token_type::normal);
    d.types[5] = token_type::byte;
    rejects(d, "<0xXX>");
    d = good;
    d.bos = static_cast<token_id>(d.tokens.size());
    rejects(d, "bos token id");
    d = good;
    d.eos = -1;
    rejects(d, "eos token id");
    d = good;
    d.merges = {"ab"};
    rejects(d, "not two tokens");
    d = good;
    d.merges = {"a zz"};
    rejects(d, "\"zz\", which is not a token");
    d = good;
    d.merges = {"b a"};
    rejects(d, "makes \"ba\"");
    CHECK_THROWS_AS(tokenizer(tokenizer_data{}), tokenizer_error);
}
