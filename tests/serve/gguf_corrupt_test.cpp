#include "gguf_test_support.hpp"

#include <weft/serve/gguf.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace weft::serve;
using weft::serve::test::filled;
using weft::serve::test::gguf_bytes;
using Catch::Matchers::Contains;

namespace {

constexpr std::uint32_t t_f32 = 0, t_q8_0 = 8, t_f64 = 28;
constexpr std::uint32_t v_uint32 = 4, v_string = 8, v_array = 9, v_uint64 = 10;

/// A header, one `general.architecture` key and one tensor `w`, data padded
/// to 32 and followed by `data_bytes` zeros.
gguf_bytes one_tensor(std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset,
                      std::size_t data_bytes) {
    gguf_bytes b;
    b.header(1, 1).str("general.architecture").u32(v_string).str("test");
    b.tensor("w", std::move(dims), type, offset).pad_to(32).zeros(data_bytes);
    return b;
}

volatile unsigned walk_result = 0; // keeps walk()'s reads from being optimised away

struct corrupt_case {
    const char* what;
    gguf_bytes file;
    std::string message;
};

/// Every accessor on every key, every tensor's first and last byte: what a
/// loader might do with a file that parsed. Exceptions other than gguf_error
/// escape.
void walk(const gguf_file& f) {
    unsigned sink = 0;
    for (std::string_view key : f.keys()) {
        const gguf_value& v = f.at(key);
        const auto attempt = [&](auto&& fn) {
            try {
                fn();
            } catch (const gguf_error&) {
            }
        };
        attempt([&] { sink += static_cast<unsigned>(v.array_size() + static_cast<unsigned>(v.array_type())); });
        attempt([&] { sink += static_cast<unsigned>(v.as_uint()); });
        attempt([&] { sink += static_cast<unsigned>(v.as_int()); });
        attempt([&] { sink += v.as_float() > 0; });
        attempt([&] { sink += v.as_bool(); });
        attempt([&] { sink += static_cast<unsigned>(v.as_string().size()); });
        attempt([&] { sink += static_cast<unsigned>(v.as_string_array().size()); });
        attempt([&] { sink += static_cast<unsigned>(v.as_float_array().size()); });
        attempt([&] { sink += static_cast<unsigned>(v.as_int_array().size()); });
    }
    for (const gguf_tensor& t : f.tensors()) {
        sink += static_cast<unsigned>(t.data[0]) + static_cast<unsigned>(t.data[t.bytes - 1]);
    }
    walk_result = sink;
}

} // namespace

TEST_CASE("gguf reader rejects each kind of corrupt file with a message naming the defect", "[gguf]") {
    std::vector<corrupt_case> cases;
    const auto add = [&](const char* what, gguf_bytes file, std::string message) {
        cases.push_back({what, std::move(file), std::move(message)});
    };
    add("empty", gguf_bytes{}, "too small to be a GGUF file (0 bytes)");
    add("three bytes", gguf_bytes{}.raw("GGU", 3), "too small to be a GGUF file (3 bytes)");
    add("bad magic", gguf_bytes{}.raw("GGUX", 4).u32(3).u64(0).u64(0),
        "not a GGUF file (magic 'GGUX', expected 'GGUF')");
    add("binary magic", gguf_bytes{}.u32(0x00ff0a01).u32(3), "not a GGUF file (magic '\\x01\\x0a\\xff\\x00'");
    add("version 1", gguf_bytes{}.header(0, 0, 1), "GGUF version 1 is not supported");
    add("version 4", gguf_bytes{}.header(0, 0, 4), "unsupported GGUF version 4 (only versions 2 and 3)");
    add("big-endian", gguf_bytes{}.header(0, 0, 0x03000000), "0x03000000 (a big-endian file?");
    add("truncated header", gguf_bytes{}.raw("GGUF", 4).u32(3).u64(0), "file truncated: metadata key count at offset 16");
    add("huge key count", gguf_bytes{}.header(0, 1ull << 60).zeros(100),
        "metadata key count 1152921504606846976 cannot fit in the 100 bytes left");
    add("huge tensor count", gguf_bytes{}.header(1ull << 61, 0).zeros(100),
        "tensor count 2305843009213693952 cannot fit in the 100 bytes left");
    add("tensor count after the keys",
        gguf_bytes{}.header(2, 1).str("k").u32(v_string).str(std::string(40, 'x')).zeros(30),
        "tensor count 2 cannot fit in the 30 bytes left");
    add("key length past the end", gguf_bytes{}.header(0, 1).u64(1000).zeros(10),
        "metadata key 0 length 1000 at offset 24 runs past the end of the file (10 bytes left)");
    add("string value past the end", gguf_bytes{}.header(0, 1).str("name").u32(v_string).u64(500).raw("short", 5),
        "key 'name': string value length 500 at offset 40 runs past the end of the file (5 bytes left)");
    add("truncated scalar", gguf_bytes{}.header(0, 1).str("k").u32(v_uint64).u32(1),
        "key 'k': file truncated: uint64 value at offset 37 needs 8 bytes, only 4 left");
    add("unknown value type", gguf_bytes{}.header(0, 1).str("k").u32(13).u32(0), "key 'k': unknown value type 13");
    add("nested array", gguf_bytes{}.header(0, 1).str("k").u32(v_array).u32(v_array).u64(0),
        "key 'k': nested arrays are not supported");
    add("unknown element type", gguf_bytes{}.header(0, 1).str("k").u32(v_array).u32(77).u64(0),
        "key 'k': unknown array element type 77");
    add("huge array", gguf_bytes{}.header(0, 1).str("k").u32(v_array).u32(v_uint32).u64(1ull << 62).u32(1),
        "key 'k': array length 4611686018427387904 of uint32 cannot fit in the 4 bytes left");
    add("huge string array", gguf_bytes{}.header(0, 1).str("k").u32(v_array).u32(v_string).u64(3).str("a"),
        "key 'k': array length 3 of string cannot fit in the 9 bytes left");
    add("string element past the end",
        gguf_bytes{}.header(0, 1).str("k").u32(v_array).u32(v_string).u64(2).str("a").u64(99).zeros(4),
        "key 'k': array element 1 length 99");
    add("duplicate key", gguf_bytes{}.header(0, 2).kv_u32("a", 1).kv_u32("a", 2), "key 'a': duplicate key");
    add("unprintable key", gguf_bytes{}.header(0, 2).kv_u32("\x01\n", 1).kv_u32("\x01\n", 2),
        "key '\\x01\\x0a': duplicate key");
    add("alignment 48", gguf_bytes{}.header(0, 1).kv_u32("general.alignment", 48),
        "general.alignment 48 is not a power of two");
    add("alignment 0", gguf_bytes{}.header(0, 1).kv_u32("general.alignment", 0),
        "general.alignment 0 is not a power of two");
    add("alignment string", gguf_bytes{}.header(0, 1).str("general.alignment").u32(v_string).str("32"),
        "key 'general.alignment' is string, expected an unsigned integer");
    add("unknown tensor type 99", one_tensor({32}, 99, 0, 128), "tensor 'w': unknown tensor type 99");
    add("removed tensor type 4", one_tensor({32}, 4, 0, 128), "tensor 'w': unknown tensor type 4");
    add("misaligned offset", one_tensor({4}, t_f32, 16, 64),
        "tensor 'w': data offset 16 is not a multiple of the alignment 32");
    add("tensor past the end", one_tensor({4}, t_f32, 0, 8),
        "tensor 'w': data (offset 0, 16 bytes, in the data section at 128) runs past the end of the file (136 bytes)");
    add("tensor offset far past the end", one_tensor({4}, t_f32, 1ull << 62, 64),
        "tensor 'w': data (offset 4611686018427387904");
    add("zero dimension", one_tensor({4, 0}, t_f32, 0, 64), "tensor 'w': dimension 1 is 0");
    add("overflowing dims", one_tensor({1ull << 32, 1ull << 32}, t_f32, 0, 64),
        "tensor 'w': element count of shape [4294967296, 4294967296] overflows");
    add("dims past int64", one_tensor({1ull << 62, 2}, t_f32, 0, 64), "element count of shape");
    add("byte size overflow", one_tensor({1ull << 62}, t_f64, 0, 64),
        "tensor 'w': byte size of shape [4611686018427387904] overflows");
    add("no dims", one_tensor({}, t_f32, 0, 64), "tensor 'w': has 0 dimensions (must be 1 to 4)");
    add("five dims", one_tensor({1, 1, 1, 1, 1}, t_f32, 0, 64), "tensor 'w': has 5 dimensions (must be 1 to 4)");
    add("row not a block multiple", one_tensor({16}, t_q8_0, 0, 64),
        "tensor 'w': row length 16 is not a multiple of the q8_0 block size 32");
    add("duplicate tensor",
        gguf_bytes{}.header(2, 0).tensor("w", {1}, t_f32, 0).tensor("w", {1}, t_f32, 32).pad_to(32).zeros(64),
        "tensor 'w': duplicate tensor name");
    add("tensor name past the end", gguf_bytes{}.header(1, 0).u64(77).zeros(40),
        "tensor name 0 length 77 at offset 24 runs past the end of the file (40 bytes left)");
    add("tensor with alignment 64",
        gguf_bytes{}.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, t_f32, 32).pad_to(64).zeros(128),
        "tensor 'w': data offset 32 is not a multiple of the alignment 64");

    for (const corrupt_case& c : cases) {
        INFO(c.what);
        CHECK_THROWS_AS(gguf_file::from_memory(c.file.span(), "bad.gguf"), gguf_error);
        CHECK_THROWS_WITH(gguf_file::from_memory(c.file.span(), "bad.gguf"),
                          Contains("bad.gguf: ") && Contains(c.message));
    }
}

TEST_CASE("gguf reader accepts the hand-made base file the corrupt cases start from", "[gguf]") {
    const gguf_bytes good = one_tensor({4}, t_f32, 0, 16);
    const gguf_file f = gguf_file::from_memory(good.span());
    CHECK(f.architecture() == "test");
    CHECK(f.tensor("w").bytes == 16);
    CHECK(f.data_offset() == 128);
    // A file without tensors needs no data section at all.
    const gguf_bytes no_tensors = gguf_bytes{}.header(0, 1).kv_u32("general.alignment", 4096);
    CHECK(gguf_file::from_memory(no_tensors.span()).alignment() == 4096);
}

TEST_CASE("gguf reader rejects every truncation of a valid file before its last tensor byte", "[gguf]") {
    gguf_writer w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.context_length", 2048);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    w.set_bool("flag", true);
    w.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "a", "bc"});
    w.set_f32_array("tokenizer.ggml.scores", std::vector<float>{0, 0, -1, -2});
    w.set_i32_array("tokenizer.ggml.token_type", std::vector<std::int32_t>{2, 3, 1, 1});
    w.add_tensor("a", ggml_type::f32, {3, 2}, filled(24, 1));
    w.add_tensor("b", ggml_type::q8_0, {32}, filled(34, 2));
    const std::vector<std::byte> bytes = w.to_bytes();
    const gguf_file whole = gguf_file::from_memory(bytes);
    std::size_t data_end = 0;
    for (const gguf_tensor& t : whole.tensors()) {
        data_end = std::max(data_end, static_cast<std::size_t>(t.data - bytes.data()) + t.bytes);
    }
    REQUIRE(data_end < bytes.size()); // the writer pads the last tensor too

    std::size_t wrong = 0;
    for (std::size_t n = 0; n <= bytes.size(); ++n) {
        const std::span<const std::byte> prefix(bytes.data(), n);
        bool parsed = false;
        try {
            gguf_file::from_memory(prefix);
            parsed = true;
        } catch (const gguf_error&) {
        }
        if (parsed != (n >= data_end)) {
            ++wrong;
            UNSCOPED_INFO("prefix of " << n << " bytes " << (parsed ? "parsed" : "was rejected"));
        }
    }
    CHECK(wrong == 0);
}

TEST_CASE("gguf reader survives every single-byte corruption of a valid file", "[gguf]") {
    gguf_writer w;
    w.set_string("general.architecture", "llama");
    w.set_u64("n", 5);
    w.set_i8("s", -3);
    w.set_f64("d", 1e300);
    w.set_string_array("toks", std::vector<std::string>{"x", "yy"});
    w.set_f64_array("big", std::vector<double>{1e300, -1e300});
    w.set_u64_array("u", std::vector<std::uint64_t>{~0ull});
    w.add_tensor("t", ggml_type::q4_k, {256}, filled(144, 7));
    const std::vector<std::byte> bytes = w.to_bytes();

    std::size_t parsed = 0, rejected = 0, other = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        for (std::uint8_t x : {0x01, 0x10, 0x80, 0xff}) {
            std::vector<std::byte> copy = bytes;
            copy[i] ^= static_cast<std::byte>(x);
            try {
                const gguf_file f = gguf_file::from_memory(copy);
                walk(f);
                ++parsed;
            } catch (const gguf_error&) {
                ++rejected;
            } catch (...) {
                ++other;
            }
        }
    }
    CHECK(other == 0);
    CHECK(parsed > 0);
    CHECK(rejected > 0);
}

TEST_CASE("gguf seed corpus files parse or fail as their names say", "[gguf]") {
    const auto dir = std::filesystem::path(__FILE__).parent_path() / "fuzz" / "gguf_corpus";
    REQUIRE(std::filesystem::is_directory(dir));
    std::size_t valid = 0, broken = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        INFO(name);
        CHECK(entry.file_size() < 4096);
        if (name.starts_with("valid_")) {
            const gguf_file f = gguf_file::open(entry.path());
            CHECK_NOTHROW(walk(f));
            ++valid;
        } else if (name.starts_with("broken_")) {
            CHECK_THROWS_AS(gguf_file::open(entry.path()), gguf_error);
            ++broken;
        } else {
            FAIL("corpus file names start with valid_ or broken_");
        }
    }
    CHECK(valid >= 3);
    CHECK(broken >= 3);
}
