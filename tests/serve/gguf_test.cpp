#include "gguf_test_support.hpp"

#include <weft/serve/gguf.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

using namespace weft::serve;
using weft::serve::test::filled;
using weft::serve::test::temp_dir;
using Catch::Matchers::Contains;

namespace {

constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
constexpr auto i64_min = std::numeric_limits<std::int64_t>::min();

gguf_writer every_value_type() {
    gguf_writer w;
    w.set_string("general.architecture", "llama");
    w.set_u8("u8", 255);
    w.set_i8("i8", -128);
    w.set_u16("u16", 65535);
    w.set_i16("i16", -32768);
    w.set_u32("u32", 4294967295u);
    w.set_i32("i32", std::numeric_limits<std::int32_t>::min());
    w.set_u64("u64", u64_max);
    w.set_i64("i64", i64_min);
    w.set_f32("f32", 1.5f);
    w.set_f64("f64", -2.25e300);
    w.set_bool("yes", true);
    w.set_bool("no", false);
    w.set_string("text", std::string_view("h\xc3\xa9llo\0x", 8));
    w.set_string("empty", "");
    w.set_u8_array("a.u8", std::vector<std::uint8_t>{0, 1, 255});
    w.set_i8_array("a.i8", std::vector<std::int8_t>{-1, 2});
    w.set_u16_array("a.u16", std::vector<std::uint16_t>{7, 65535});
    w.set_i16_array("a.i16", std::vector<std::int16_t>{-7, 300});
    w.set_u32_array("a.u32", std::vector<std::uint32_t>{1, 2, 3});
    w.set_i32_array("a.i32", std::vector<std::int32_t>{-5, 0, 5});
    w.set_u64_array("a.u64", std::vector<std::uint64_t>{1ull << 40});
    w.set_i64_array("a.i64", std::vector<std::int64_t>{i64_min, 9});
    w.set_f32_array("a.f32", std::vector<float>{0.5f, -1.0f, 3.25f});
    w.set_f64_array("a.f64", std::vector<double>{1e-300, 2.0, 1e300, -1e300});
    const bool flags[] = {true, false, true};
    w.set_bool_array("a.bool", flags);
    w.set_string_array("a.str", std::vector<std::string>{"<s>", "", "\xe2\x96\x81the"});
    w.set_string_array("a.sv", std::vector<std::string_view>{"x", "yz"});
    w.set_f32_array("a.empty", std::vector<float>{});
    return w;
}

} // namespace

TEST_CASE("gguf writer and reader round-trip every scalar value type", "[gguf]") {
    const std::vector<std::byte> bytes = every_value_type().to_bytes();
    const gguf_file f = gguf_file::from_memory(bytes, "values.gguf");

    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.name() == "values.gguf");
    CHECK(f.file_size() == bytes.size());
    CHECK(f.architecture() == "llama");
    CHECK(f.at("u8").type() == gguf_value_type::uint8);
    CHECK(f.get_uint("u8") == 255);
    CHECK(f.get_int("i8") == -128);
    CHECK(f.get_uint("u16") == 65535);
    CHECK(f.get_int("i16") == -32768);
    CHECK(f.get_uint("u32") == 4294967295u);
    CHECK(f.get_int("i32") == std::numeric_limits<std::int32_t>::min());
    CHECK(f.get_uint("u64") == u64_max);
    CHECK(f.get_int("i64") == i64_min);
    CHECK(f.get_float("f32") == 1.5);
    CHECK(f.at("f32").type() == gguf_value_type::float32);
    CHECK(f.get_float("f64") == -2.25e300);
    CHECK(f.get_bool("yes"));
    CHECK_FALSE(f.get_bool("no"));
    CHECK(f.get_string("text") == std::string_view("h\xc3\xa9llo\0x", 8));
    CHECK(f.get_string("empty").empty());
}

TEST_CASE("gguf writer and reader round-trip arrays of every element type", "[gguf]") {
    const std::vector<std::byte> bytes = every_value_type().to_bytes();
    const gguf_file f = gguf_file::from_memory(bytes);

    CHECK(f.at("a.u8").type() == gguf_value_type::array);
    CHECK(f.at("a.u8").array_type() == gguf_value_type::uint8);
    CHECK(f.at("a.u8").array_size() == 3);
    CHECK(f.at("a.u8").as_int_array() == std::vector<std::int64_t>{0, 1, 255});
    CHECK(f.at("a.i8").as_int_array() == std::vector<std::int64_t>{-1, 2});
    CHECK(f.at("a.u16").as_int_array() == std::vector<std::int64_t>{7, 65535});
    CHECK(f.at("a.i16").as_int_array() == std::vector<std::int64_t>{-7, 300});
    CHECK(f.at("a.u32").as_int_array() == std::vector<std::int64_t>{1, 2, 3});
    CHECK(f.at("a.i32").as_int_array() == std::vector<std::int64_t>{-5, 0, 5});
    CHECK(f.at("a.u64").as_int_array() == std::vector<std::int64_t>{1ll << 40});
    CHECK(f.at("a.i64").as_int_array() == std::vector<std::int64_t>{i64_min, 9});
    CHECK(f.at("a.f32").as_float_array() == std::vector<float>{0.5f, -1.0f, 3.25f});
    // Doubles beyond float's range saturate to infinity.
    const float inf = std::numeric_limits<float>::infinity();
    CHECK(f.at("a.f64").as_float_array() == std::vector<float>{0.0f, 2.0f, inf, -inf});
    CHECK(f.at("a.i32").as_float_array() == std::vector<float>{-5.0f, 0.0f, 5.0f});
    CHECK(f.at("a.bool").array_type() == gguf_value_type::boolean);
    CHECK(f.at("a.bool").array_size() == 3);
    CHECK(f.at("a.str").as_string_array() ==
          std::vector<std::string_view>{"<s>", "", "\xe2\x96\x81the"});
    CHECK(f.at("a.sv").as_string_array() == std::vector<std::string_view>{"x", "yz"});
    CHECK(f.at("a.empty").array_size() == 0);
    CHECK(f.at("a.empty").as_float_array().empty());
}

TEST_CASE("gguf values convert only where nothing is lost and name the key otherwise", "[gguf]") {
    const std::vector<std::byte> bytes = every_value_type().to_bytes();
    const gguf_file f = gguf_file::from_memory(bytes, "m.gguf");

    CHECK(f.at("u8").as_int() == 255);
    CHECK(f.at("u8").as_float() == 255.0);
    CHECK(f.at("a.i32").as_int_array().size() == 3);
    CHECK_THROWS_WITH(f.get_uint("i8"), "m.gguf: key 'i8' holds -128, expected a non-negative integer");
    CHECK_THROWS_WITH(f.get_int("u64"), Contains("key 'u64' holds 18446744073709551615") &&
                                            Contains("does not fit in int64"));
    CHECK_THROWS_WITH(f.get_uint("f32"), "m.gguf: key 'f32' is float32, expected an unsigned integer");
    CHECK_THROWS_WITH(f.get_int("text"), "m.gguf: key 'text' is string, expected an integer");
    CHECK_THROWS_WITH(f.get_float("yes"), "m.gguf: key 'yes' is bool, expected a number");
    CHECK_THROWS_WITH(f.get_bool("u8"), "m.gguf: key 'u8' is uint8, expected bool");
    CHECK_THROWS_WITH(f.get_string("a.str"), "m.gguf: key 'a.str' is an array of string, expected string");
    CHECK_THROWS_WITH(f.at("a.f32").as_int_array(), Contains("key 'a.f32' is an array of float32"));
    CHECK_THROWS_WITH(f.at("a.str").as_float_array(), Contains("expected an array of numbers"));
    CHECK_THROWS_WITH(f.at("a.bool").as_float_array(), Contains("expected an array of numbers"));
    CHECK_THROWS_WITH(f.at("a.u32").as_string_array(), Contains("expected an array of string"));
    CHECK_THROWS_WITH(f.at("u32").array_type(), "m.gguf: key 'u32' is uint32, expected an array");
    CHECK_THROWS_WITH(f.at("u32").array_size(), Contains("expected an array"));
    CHECK_THROWS_AS(f.at("a.u64").as_uint(), gguf_error);
}

TEST_CASE("gguf file finds keys, reports missing ones and keeps file order", "[gguf]") {
    gguf_writer w;
    w.set_u32("b", 1);
    w.set_string("a", "first");
    w.set_f32("c", 2.0f);
    w.set_string("a", "replaced"); // keeps its place, takes the new value
    w.set_u8("b", 7);              // and may change type
    const std::vector<std::byte> bytes = w.to_bytes();
    const gguf_file f = gguf_file::from_memory(bytes, "k.gguf");

    CHECK(f.keys() == std::vector<std::string_view>{"b", "a", "c"});
    CHECK(f.get_string("a") == "replaced");
    CHECK(f.at("b").type() == gguf_value_type::uint8);
    CHECK(f.get_uint("b") == 7);
    CHECK(f.find("nope") == nullptr);
    CHECK(f.find("c")->key() == "c");
    CHECK_FALSE(f.find_uint("nope").has_value());
    CHECK_FALSE(f.find_int("nope").has_value());
    CHECK_FALSE(f.find_float("nope").has_value());
    CHECK_FALSE(f.find_bool("nope").has_value());
    CHECK_FALSE(f.find_string("nope").has_value());
    CHECK(f.find_uint("b") == 7u);
    CHECK(f.find_float("c") == 2.0);
    CHECK(f.find_string("a") == "replaced");
    CHECK_THROWS_WITH(f.at("nope"), "k.gguf: missing key 'nope'");
    CHECK_THROWS_WITH(f.get_uint("nope"), "k.gguf: missing key 'nope'");
    CHECK_THROWS_WITH(f.architecture(), "k.gguf: missing key 'general.architecture'");
    CHECK_THROWS_WITH(f.find_string("b"), "k.gguf: key 'b' is uint8, expected string");
    CHECK(f.tensors().empty());
}

TEST_CASE("gguf writer and reader round-trip tensors of several types and shapes", "[gguf]") {
    gguf_writer w;
    w.set_string("general.architecture", "test");
    const auto f32 = filled(4 * 3 * 4, 1);
    const auto f16 = filled(8 * 2, 2);
    const auto q8 = filled(2 * 34 * 2, 3);
    const auto q4k = filled(2 * 144, 4);
    const auto bf16 = filled(2 * 2 * 2 * 2 * 2, 5);
    const auto q5k = filled(176, 6);
    w.add_tensor("f32", ggml_type::f32, {4, 3}, f32);
    w.add_tensor("f16", ggml_type::f16, {8}, f16);
    w.add_tensor("q8_0", ggml_type::q8_0, {64, 2}, q8);
    w.add_tensor("q4_k", ggml_type::q4_k, {256, 1, 2}, q4k);
    w.add_tensor("bf16", ggml_type::bf16, {2, 2, 2, 2}, bf16);
    // Known but not computable: the reader accepts it, the loader decides.
    w.add_tensor("q5_k", ggml_type::q5_k, {256}, q5k);
    CHECK(w.tensor_count() == 6);
    const std::vector<std::byte> bytes = w.to_bytes();
    const gguf_file f = gguf_file::from_memory(bytes, "t.gguf");

    REQUIRE(f.tensors().size() == 6);
    CHECK(f.tensors()[0].name == "f32");
    CHECK(f.tensors()[5].name == "q5_k");
    CHECK(f.data_offset() % 32 == 0);
    const std::vector<std::pair<std::string, const std::vector<std::byte>*>> expected = {
        {"f32", &f32}, {"f16", &f16}, {"q8_0", &q8}, {"q4_k", &q4k}, {"bf16", &bf16}, {"q5_k", &q5k}};
    for (const auto& [name, data] : expected) {
        INFO(name);
        const gguf_tensor& t = f.tensor(name);
        CHECK(t.offset % 32 == 0);
        CHECK(static_cast<std::size_t>(t.data - bytes.data()) == f.data_offset() + t.offset);
        REQUIRE(t.bytes == data->size());
        CHECK(std::memcmp(t.data, data->data(), t.bytes) == 0);
    }
    const gguf_tensor& q4 = f.tensor("q4_k");
    CHECK(q4.type == ggml_type::q4_k);
    CHECK(q4.dims == std::vector<std::uint64_t>{256, 1, 2});
    CHECK(q4.elements() == 512);
    CHECK(q4.rows() == 2);
    CHECK(q4.row_length() == 256);
    CHECK(q4.bytes == row_bytes(ggml_type::q4_k, 256) * 2);
    CHECK(f.tensor("f16").rows() == 1);
    CHECK(f.tensor("bf16").elements() == 16);
    CHECK(f.tensor("q5_k").type == ggml_type::q5_k);
    CHECK_FALSE(type_info(f.tensor("q5_k").type).supported);
    CHECK(f.find_tensor("missing") == nullptr);
    CHECK_THROWS_WITH(f.tensor("missing"), "t.gguf: missing tensor 'missing'");
}

TEST_CASE("gguf writer honours general.alignment for the data section and every tensor", "[gguf]") {
    for (std::uint64_t alignment : {1u, 8u, 64u, 4096u}) {
        INFO("alignment " << alignment);
        gguf_writer w;
        w.set_u64("general.alignment", alignment); // any unsigned type is accepted
        w.add_tensor("a", ggml_type::f32, {3}, filled(12, 1));
        w.add_tensor("b", ggml_type::f16, {5}, filled(10, 2));
        w.add_tensor("c", ggml_type::q8_0, {32}, filled(34, 3));
        const std::vector<std::byte> bytes = w.to_bytes();
        const gguf_file f = gguf_file::from_memory(bytes);
        CHECK(f.alignment() == alignment);
        CHECK(f.data_offset() % alignment == 0);
        for (const gguf_tensor& t : f.tensors()) CHECK(t.offset % alignment == 0);
        CHECK(bytes.size() % alignment == 0);
        CHECK(std::memcmp(f.tensor("c").data, filled(34, 3).data(), 34) == 0);
    }
    gguf_writer w;
    w.set_alignment(64);
    const std::vector<std::byte> bytes = w.to_bytes();
    CHECK(gguf_file::from_memory(bytes).alignment() == 64);
    CHECK_THROWS_WITH(w.set_alignment(48), Contains("alignment 48 is not a power of two"));
    w.set_u32("general.alignment", 24);
    CHECK_THROWS_AS(w.to_bytes(), gguf_error);
    w.set_string("general.alignment", "32");
    CHECK_THROWS_WITH(w.to_bytes(), Contains("general.alignment is string"));
}

TEST_CASE("gguf writer calls a tensor's fill function at write time with a zeroed span", "[gguf]") {
    gguf_writer w;
    int calls = 0;
    w.add_tensor("lazy", ggml_type::q8_0, {32, 3}, [&](std::span<std::byte> out) {
        ++calls;
        CHECK(out.size() == 3 * 34);
        for (std::byte b : out) CHECK(b == std::byte{0});
        out[0] = std::byte{0xab};
        out[out.size() - 1] = std::byte{0xcd};
    });
    CHECK(calls == 0);
    const std::vector<std::byte> bytes = w.to_bytes();
    CHECK(calls == 1);
    CHECK(w.to_bytes() == bytes);
    CHECK(calls == 2);
    const gguf_file f = gguf_file::from_memory(bytes);
    const gguf_tensor& t = f.tensor("lazy");
    CHECK(t.data[0] == std::byte{0xab});
    CHECK(t.data[t.bytes - 1] == std::byte{0xcd});
}

TEST_CASE("gguf writer rejects tensors whose shape, type or size is wrong", "[gguf]") {
    gguf_writer w;
    w.add_tensor("ok", ggml_type::f32, {2}, filled(8, 0));
    CHECK_THROWS_WITH(w.add_tensor("ok", ggml_type::f32, {2}, filled(8, 0)),
                      "gguf writer: tensor 'ok': added twice");
    CHECK_THROWS_WITH(w.add_tensor("size", ggml_type::f32, {2, 2}, filled(8, 0)),
                      "gguf writer: tensor 'size': 8 bytes of data, its shape needs 16");
    CHECK_THROWS_WITH(w.add_tensor("block", ggml_type::q4_k, {128}, filled(72, 0)),
                      Contains("row length 128 is not a multiple of the q4_K block size 256"));
    CHECK_THROWS_WITH(w.add_tensor("type", static_cast<ggml_type>(4), {32}, filled(18, 0)),
                      Contains("unknown type 4"));
    CHECK_THROWS_WITH(w.add_tensor("zero", ggml_type::f32, {2, 0}, std::vector<std::byte>{}),
                      Contains("a dimension is 0"));
    CHECK_THROWS_WITH(w.add_tensor("rank", ggml_type::f32, {1, 1, 1, 1, 1}, filled(4, 0)),
                      Contains("5 dimensions (must be 1 to 4)"));
    CHECK_THROWS_WITH(w.add_tensor("huge", ggml_type::f32, {1ull << 40, 1ull << 40}, std::vector<std::byte>{}),
                      Contains("element count overflows"));
    CHECK(w.tensor_count() == 1);
}

TEST_CASE("gguf reader accepts version 2 files", "[gguf]") {
    gguf_writer w;
    w.set_u32("x", 5);
    w.add_tensor("t", ggml_type::f32, {1}, filled(4, 9));
    std::vector<std::byte> bytes = w.to_bytes();
    bytes[4] = std::byte{2}; // v2 has the same layout as v3
    const gguf_file f = gguf_file::from_memory(bytes);
    CHECK(f.version() == 2);
    CHECK(f.get_uint("x") == 5);
    CHECK(f.tensor("t").bytes == 4);
}

TEST_CASE("gguf file views stay valid when the file object is moved", "[gguf]") {
    gguf_writer w;
    w.set_string("general.architecture", "moved");
    w.add_tensor("t", ggml_type::f32, {2}, filled(8, 1));
    const std::vector<std::byte> bytes = w.to_bytes();
    gguf_file a = gguf_file::from_memory(bytes, "a-rather-long-file-name-beyond-small-string-size.gguf");
    const gguf_value* arch = a.find("general.architecture");
    const gguf_tensor* t = a.find_tensor("t");
    gguf_file b = std::move(a);
    CHECK(b.find("general.architecture") == arch);
    CHECK(b.find_tensor("t") == t);
    CHECK_THROWS_WITH(arch->as_uint(), Contains("a-rather-long-file-name-beyond-small-string-size.gguf: key"));
    gguf_file c = gguf_file::from_memory(bytes);
    c = std::move(b);
    CHECK(c.architecture() == "moved");
}

TEST_CASE("gguf file written to disk opens through a memory mapping", "[gguf]") {
    temp_dir dir;
    const auto path = dir.path() / "model.gguf";
    gguf_writer w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    const std::size_t big = std::size_t{5} << 20; // several progress reports
    w.add_tensor("token_embd.weight", ggml_type::f32, {256, big / 1024}, [](std::span<std::byte> out) {
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i * 31 + 7);
    });
    w.add_tensor("output_norm.weight", ggml_type::f32, {256}, filled(1024, 3));
    w.write(path);
    CHECK(std::filesystem::exists(path));
    CHECK_FALSE(std::filesystem::exists(dir.path() / "model.gguf.tmp"));

    const gguf_file f = gguf_file::open(path);
    CHECK(f.name() == path.string());
    CHECK(f.file_size() == std::filesystem::file_size(path));
    CHECK(f.architecture() == "llama");
    CHECK(f.get_uint("llama.block_count") == 2);
    const gguf_tensor& emb = f.tensor("token_embd.weight");
    REQUIRE(emb.bytes == big);
    bool same = true;
    for (std::size_t i = 0; i < emb.bytes; i += 4099) {
        same = same && emb.data[i] == static_cast<std::byte>(i * 31 + 7);
    }
    CHECK(same);
    CHECK(std::memcmp(f.tensor("output_norm.weight").data, filled(1024, 3).data(), 1024) == 0);
    // The tensor data in memory is identical to what to_bytes() produces.
    const std::vector<std::byte> again = w.to_bytes();
    REQUIRE(again.size() == f.file_size());
    CHECK(std::memcmp(again.data() + f.data_offset(), emb.data, emb.bytes) == 0);

    std::vector<std::pair<std::size_t, std::size_t>> reports;
    f.prefault([&](std::size_t done, std::size_t total) { reports.emplace_back(done, total); });
    REQUIRE(reports.size() >= 2);
    const std::size_t total = reports.back().second;
    CHECK(total >= big + 1024);
    CHECK(reports.back().first == total);
    for (std::size_t i = 1; i < reports.size(); ++i) CHECK(reports[i].first > reports[i - 1].first);
    f.prefault({}); // an empty progress function is allowed
}

TEST_CASE("gguf file open reports files it cannot map with their name", "[gguf]") {
    temp_dir dir;
    CHECK_THROWS_WITH(gguf_file::open(dir.path() / "absent.gguf"),
                      Contains("absent.gguf: cannot open: No such file or directory"));
    CHECK_THROWS_WITH(gguf_file::open(dir.path()), Contains(": not a regular file"));
    const auto empty = dir.path() / "empty.gguf";
    std::ofstream(empty).close();
    CHECK_THROWS_WITH(gguf_file::open(empty), Contains("empty.gguf: too small to be a GGUF file (0 bytes)"));
    const auto text = dir.path() / "text.gguf";
    std::ofstream(text) << "hello, world";
    CHECK_THROWS_WITH(gguf_file::open(text), Contains("text.gguf: not a GGUF file (magic 'hell'"));
}

TEST_CASE("gguf writer reports a path it cannot write as a system error", "[gguf]") {
    temp_dir dir;
    gguf_writer w;
    w.set_u8("x", 1);
    CHECK_THROWS_AS(w.write(dir.path() / "no" / "such" / "dir.gguf"), std::system_error);
    // A failing fill function leaves no temporary file behind.
    w.add_tensor("t", ggml_type::f32, {1}, [](std::span<std::byte>) { throw std::runtime_error("no data"); });
    CHECK_THROWS_WITH(w.write(dir.path() / "x.gguf"), "no data");
    CHECK(std::filesystem::is_empty(dir.path()));
}
