/// \file
/// GGUF model files (llama.cpp's format, versions 2 and 3): `gguf_file`, a
/// validating read-only reader over a memory mapping, and `gguf_writer`,
/// which produces version-3 files.
///
/// `gguf_file::open` maps the file and checks all of it before returning:
/// header, every metadata key and value, every tensor's shape, type and data
/// range. Any defect, however the bytes are damaged, is reported as a
/// `gguf_error` whose message reads "<file>: <what is wrong>"; nothing is
/// read outside the file and no allocation is larger than the file justifies.
/// Values and tensor data are not copied: strings are views into the mapping
/// and `gguf_tensor::data` points into it. Tensor types that weft cannot
/// compute with are accepted here (the model loader names them).
///
/// Lifetime: a `gguf_file` is move-only and owns its mapping; every view,
/// pointer and span it hands out (values, strings, tensors, data) stays valid
/// until the file is destroyed, also across moves of the `gguf_file`. A
/// moved-from `gguf_file` may only be destroyed or assigned to. A file made by
/// `from_memory` borrows the caller's bytes, which must outlive it. A file
/// truncated by someone else while mapped raises SIGBUS on access; that is the
/// nature of mappings and cannot be checked for.
///
/// Threading: a `gguf_file` is immutable after construction; all const member
/// functions (including `prefault`) may run concurrently. `gguf_writer` is a
/// plain value: no concurrent use of one writer.
///
/// Byte order: GGUF is little-endian and so must the host be.
#pragma once

#include <weft/serve/ggml_type.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weft::serve {

static_assert(std::endian::native == std::endian::little, "GGUF support needs a little-endian host");

/// A malformed file, a missing key or tensor, or a value of the wrong type.
class gguf_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Metadata value types, numbered as in the file.
enum class gguf_value_type : std::uint32_t {
    uint8 = 0,
    int8 = 1,
    uint16 = 2,
    int16 = 3,
    uint32 = 4,
    int32 = 5,
    float32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    uint64 = 10,
    int64 = 11,
    float64 = 12,
};

/// "uint8", "float32", "string", ...; "unknown" for a number that names no type.
std::string_view to_string(gguf_value_type t) noexcept;

/// One metadata value, viewing the file's bytes. Typed accessors convert
/// where nothing is lost and otherwise throw a `gguf_error` naming the key.
class gguf_value {
public:
    std::string_view key() const noexcept { return m_key; }
    gguf_value_type type() const noexcept { return m_type; }
    /// Element type of an array; throws if this is not an array.
    gguf_value_type array_type() const;
    /// Element count of an array; throws if this is not an array.
    std::uint64_t array_size() const;

    /// Any integer type holding a non-negative value.
    std::uint64_t as_uint() const;
    /// Any integer type whose value fits in int64.
    std::int64_t as_int() const;
    /// Any integer or floating-point type.
    double as_float() const;
    /// Booleans only (any non-zero byte is true).
    bool as_bool() const;
    /// Strings only; the view points into the file.
    std::string_view as_string() const;
    /// Arrays of strings only.
    std::vector<std::string_view> as_string_array() const;
    /// Arrays of any numeric element type (converted to float).
    std::vector<float> as_float_array() const;
    /// Arrays of any integer element type whose values fit in int64.
    std::vector<std::int64_t> as_int_array() const;

private:
    friend class gguf_file;
    gguf_value() = default;

    [[noreturn]] void mismatch(std::string_view expected) const;

    std::string_view m_file; // for messages; owned by the gguf_file's state
    std::string_view m_key;
    gguf_value_type m_type = gguf_value_type::uint8;
    gguf_value_type m_array_type = gguf_value_type::uint8;
    std::uint64_t m_array_size = 0;
    const std::byte* m_data = nullptr; // scalar bytes, string bytes, or the first array element
    std::size_t m_bytes = 0;           // of all of the above
};

/// One tensor of a file: name, type, shape and where its bytes are.
struct gguf_tensor {
    std::string name;
    ggml_type type = ggml_type::f32;
    /// dims[0] is the contiguous row length, as in ggml; 1 to 4 dims, all > 0.
    std::vector<std::uint64_t> dims;
    /// Offset of the data within the file's data section.
    std::uint64_t offset = 0;
    const std::byte* data = nullptr;
    std::size_t bytes = 0;

    std::uint64_t elements() const noexcept {
        std::uint64_t n = 1;
        for (std::uint64_t d : dims) n *= d;
        return n;
    }
    /// Product of dims[1..].
    std::uint64_t rows() const noexcept {
        std::uint64_t n = 1;
        for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
        return n;
    }
    std::uint64_t row_length() const noexcept { return dims.empty() ? 0 : dims[0]; }
};

/// A validated, memory-mapped GGUF file.
class gguf_file {
public:
    /// Maps `path` read-only and validates it; the name in messages is `path`.
    static gguf_file open(const std::filesystem::path& path);
    /// Validates `bytes` in place (no copy); the caller keeps them alive.
    static gguf_file from_memory(std::span<const std::byte> bytes, std::string name = "<memory>");

    gguf_file(gguf_file&&) noexcept;
    gguf_file& operator=(gguf_file&&) noexcept;
    gguf_file(const gguf_file&) = delete;
    gguf_file& operator=(const gguf_file&) = delete;
    ~gguf_file();

    const std::string& name() const noexcept;
    std::uint32_t version() const noexcept;
    /// `general.alignment`, 32 when absent.
    std::uint64_t alignment() const noexcept;
    std::size_t file_size() const noexcept;
    /// Where the tensor data section starts in the file.
    std::uint64_t data_offset() const noexcept;

    // --- metadata -------------------------------------------------------------
    const gguf_value* find(std::string_view key) const;
    /// Throws "<file>: missing key 'x'".
    const gguf_value& at(std::string_view key) const;
    /// Keys in file order.
    std::vector<std::string_view> keys() const;

    // Conveniences: `find_*` give nullopt for a missing key, `get_*` throw;
    // both throw for a present key of the wrong type.
    std::optional<std::uint64_t> find_uint(std::string_view key) const;
    std::uint64_t get_uint(std::string_view key) const;
    std::optional<std::int64_t> find_int(std::string_view key) const;
    std::int64_t get_int(std::string_view key) const;
    std::optional<double> find_float(std::string_view key) const;
    double get_float(std::string_view key) const;
    std::optional<bool> find_bool(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    std::optional<std::string_view> find_string(std::string_view key) const;
    std::string_view get_string(std::string_view key) const;
    /// `general.architecture` (throws when missing).
    std::string_view architecture() const;

    // --- tensors --------------------------------------------------------------
    /// In file order.
    std::span<const gguf_tensor> tensors() const noexcept;
    const gguf_tensor* find_tensor(std::string_view name) const;
    /// Throws "<file>: missing tensor 'x'".
    const gguf_tensor& tensor(std::string_view name) const;

    /// Pulls the tensor data into memory (madvise WILLNEED, then one read per
    /// page), calling `progress(done, total)` every few MB and once at the end
    /// with done == total. `progress` may be empty.
    void prefault(const std::function<void(std::size_t done, std::size_t total)>& progress) const;

private:
    struct state;
    explicit gguf_file(std::unique_ptr<state> s) noexcept;
    static gguf_file parse(std::unique_ptr<state> s);

    std::unique_ptr<state> m_state;
};

/// Builds a GGUF version-3 file: metadata in insertion order, then tensors in
/// the order added, each aligned to `general.alignment` (32 unless set) and
/// padded with zeros.
class gguf_writer {
public:
    // Scalars. Setting an existing key replaces its value in place.
    void set_u8(std::string_view key, std::uint8_t v);
    void set_i8(std::string_view key, std::int8_t v);
    void set_u16(std::string_view key, std::uint16_t v);
    void set_i16(std::string_view key, std::int16_t v);
    void set_u32(std::string_view key, std::uint32_t v);
    void set_i32(std::string_view key, std::int32_t v);
    void set_u64(std::string_view key, std::uint64_t v);
    void set_i64(std::string_view key, std::int64_t v);
    void set_f32(std::string_view key, float v);
    void set_f64(std::string_view key, double v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);
    /// `general.alignment` as uint32; must be a power of two.
    void set_alignment(std::uint32_t alignment);

    // Arrays.
    void set_u8_array(std::string_view key, std::span<const std::uint8_t> v);
    void set_i8_array(std::string_view key, std::span<const std::int8_t> v);
    void set_u16_array(std::string_view key, std::span<const std::uint16_t> v);
    void set_i16_array(std::string_view key, std::span<const std::int16_t> v);
    void set_u32_array(std::string_view key, std::span<const std::uint32_t> v);
    void set_i32_array(std::string_view key, std::span<const std::int32_t> v);
    void set_u64_array(std::string_view key, std::span<const std::uint64_t> v);
    void set_i64_array(std::string_view key, std::span<const std::int64_t> v);
    void set_f32_array(std::string_view key, std::span<const float> v);
    void set_f64_array(std::string_view key, std::span<const double> v);
    void set_bool_array(std::string_view key, std::span<const bool> v);
    void set_string_array(std::string_view key, std::span<const std::string> v);
    void set_string_array(std::string_view key, std::span<const std::string_view> v);

    /// Adds a tensor with its bytes; throws `gguf_error` for a bad shape or
    /// type, a duplicate name, or `data.size()` other than the shape's size.
    void add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> dims,
                    std::vector<std::byte> data);
    /// Adds a tensor whose bytes `fill` produces when the file is written
    /// (given a zeroed span of exactly the tensor's size), so large models are
    /// written without holding them in memory. Called once per write.
    void add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> dims,
                    std::function<void(std::span<std::byte>)> fill);

    std::size_t key_count() const noexcept { return m_entries.size(); }
    std::size_t tensor_count() const noexcept { return m_tensors.size(); }

    /// Writes "<path>.tmp" and renames it to `path`. I/O failures throw
    /// std::system_error; an invalid `general.alignment` throws gguf_error.
    void write(const std::filesystem::path& path) const;
    /// The whole file in memory.
    std::vector<std::byte> to_bytes() const;

private:
    struct entry {
        std::string key;
        gguf_value_type type;
        std::vector<std::byte> payload; // everything after the type tag
    };
    struct tensor_entry {
        std::string name;
        ggml_type type;
        std::vector<std::uint64_t> dims;
        std::size_t bytes;
        std::vector<std::byte> data;
        std::function<void(std::span<std::byte>)> fill;
    };
    using sink_fn = std::function<void(std::span<const std::byte>)>;

    void set(std::string_view key, gguf_value_type type, std::vector<std::byte> payload);
    template <class T>
    void set_scalar(std::string_view key, gguf_value_type type, T v);
    template <class T>
    void set_array(std::string_view key, gguf_value_type elem, std::span<const T> v);
    std::size_t check_tensor(const std::string& name, ggml_type type,
                             const std::vector<std::uint64_t>& dims) const;
    std::uint64_t alignment() const;
    std::vector<std::byte> header(std::uint64_t alignment) const;
    void emit(const sink_fn& out) const;

    std::vector<entry> m_entries;
    std::unordered_map<std::string, std::size_t> m_entry_index;
    std::vector<tensor_entry> m_tensors;
    std::unordered_map<std::string, std::size_t> m_tensor_index;
};

} // namespace weft::serve
