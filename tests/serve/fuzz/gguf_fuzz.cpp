// libFuzzer target for weft::serve::gguf_file (built by
// `scripts/fuzz.sh --target gguf`).
//
// The input is a GGUF file. Invariants checked on every input:
//  - parsing and every accessor either succeed or throw gguf_error; no other
//    exception, crash, leak or out-of-bounds read (ASan/UBSan);
//  - a parsed file's tensors lie inside the input, are aligned as the file
//    says, and their byte size matches their type and shape;
//  - lookups by name find what iteration finds.
#include <weft/serve/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

using namespace weft::serve;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
}

volatile unsigned sink;

template <class Fn>
void attempt(Fn&& fn) {
    try {
        fn();
    } catch (const gguf_error&) {
    }
}

void walk_values(const gguf_file& f) {
    unsigned acc = 0;
    for (std::string_view key : f.keys()) {
        const gguf_value* v = f.find(key);
        if (v == nullptr || v->key() != key) fail("find() misses a key from keys()");
        acc += static_cast<unsigned>(v->type());
        attempt([&] { acc += static_cast<unsigned>(v->array_type()) + static_cast<unsigned>(v->array_size()); });
        attempt([&] { acc += static_cast<unsigned>(v->as_uint()); });
        attempt([&] { acc += static_cast<unsigned>(v->as_int()); });
        attempt([&] { acc += v->as_float() > 0.0; });
        attempt([&] { acc += v->as_bool(); });
        attempt([&] {
            for (char c : v->as_string()) acc += static_cast<unsigned char>(c);
        });
        attempt([&] {
            for (std::string_view s : v->as_string_array()) acc += static_cast<unsigned>(s.size()) + (s.empty() ? 0u : static_cast<unsigned char>(s.back()));
        });
        attempt([&] {
            for (float x : v->as_float_array()) acc += x > 0.0f;
        });
        attempt([&] {
            for (std::int64_t x : v->as_int_array()) acc += static_cast<unsigned>(x);
        });
        attempt([&] { acc += static_cast<unsigned>(f.find_uint(key).value_or(0)); });
        attempt([&] { acc += f.find_float(key).value_or(0.0) > 0.0; });
        attempt([&] { acc += f.find_bool(key).value_or(false); });
        attempt([&] { acc += static_cast<unsigned>(f.find_string(key).value_or("").size()); });
    }
    attempt([&] { acc += static_cast<unsigned>(f.architecture().size()); });
    sink = acc;
}

void walk_tensors(const gguf_file& f, std::span<const std::byte> input) {
    unsigned acc = 0;
    const std::byte* begin = input.data();
    const std::byte* end = input.data() + input.size();
    if (f.alignment() == 0 || (f.alignment() & (f.alignment() - 1)) != 0) fail("alignment not a power of two");
    for (const gguf_tensor& t : f.tensors()) {
        if (f.find_tensor(t.name) != &t) fail("find_tensor() misses a tensor from tensors()");
        if (t.dims.empty() || t.dims.size() > 4) fail("dimension count out of range");
        for (std::uint64_t d : t.dims) {
            if (d == 0) fail("zero dimension");
        }
        const ggml_type_info ti = type_info(t.type);
        if (ti.block_size == 0) fail("unknown type accepted");
        if (t.dims[0] % ti.block_size != 0) fail("row length not a multiple of the block size");
        if (t.bytes != t.elements() / ti.block_size * ti.type_size) fail("byte size does not match the shape");
        if (t.bytes == 0) fail("empty tensor");
        if (t.data < begin || t.data > end || t.bytes > static_cast<std::size_t>(end - t.data)) {
            fail("tensor data outside the input");
        }
        if (static_cast<std::uint64_t>(t.data - begin) % f.alignment() != 0) fail("tensor data misaligned");
        if (t.rows() * t.row_length() != t.elements()) fail("rows * row_length != elements");
        acc += static_cast<unsigned>(t.data[0]) + static_cast<unsigned>(t.data[t.bytes - 1]);
    }
    sink = acc;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    try {
        const gguf_file f = gguf_file::from_memory(input, "fuzz.gguf");
        if (f.file_size() != size) fail("file_size() differs from the input size");
        if (f.version() != 2 && f.version() != 3) fail("unsupported version accepted");
        walk_values(f);
        walk_tensors(f, input);
    } catch (const gguf_error& e) {
        if (std::string_view(e.what()).substr(0, 11) != "fuzz.gguf: ") fail("error message without the file name");
    }
    return 0;
}
