// gguf_file: maps a GGUF file and validates all of it before handing anything
// out. The parser treats every number in the file as hostile: each length is
// compared with the bytes that are left before it is used, and each count
// with the smallest size its items could have before anything is reserved,
// so no input can make it read out of bounds or allocate more than the file
// justifies.
#include "gguf_format.hpp"

#include <weft/serve/gguf.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>
#include <utility>

namespace weft::serve {

using namespace gguf_format;

struct gguf_file::state {
    std::string name;
    const std::byte* base = nullptr;
    std::size_t size = 0;
    void* mapping = nullptr; // owned; null for from_memory
    std::uint32_t version = 0;
    std::uint64_t alignment = default_alignment;
    std::uint64_t data_offset = 0;
    std::vector<gguf_value> values;
    std::unordered_map<std::string_view, std::size_t> value_index;
    std::vector<gguf_tensor> tensors;
    // Keyed by views into the file (stable), not into gguf_tensor::name.
    std::unordered_map<std::string_view, std::size_t> tensor_index;

    state() = default;
    state(const state&) = delete;
    state& operator=(const state&) = delete;
    ~state() {
        if (mapping != nullptr) ::munmap(mapping, size);
    }
};

namespace {

constexpr std::uint64_t max_i64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// Smallest encodings, used to bound counts before anything is reserved:
// key length + type tag + a one-byte value; name length + n_dims + one dim +
// type + offset.
constexpr std::size_t min_kv_bytes = 8 + 4 + 1;
constexpr std::size_t min_tensor_info_bytes = 8 + 4 + 8 + 4 + 8;

class cursor {
public:
    cursor(const std::string& file, const std::byte* base, std::size_t size) noexcept
        : m_file(file), m_base(base), m_size(size) {}

    std::size_t pos() const noexcept { return m_pos; }
    std::size_t left() const noexcept { return m_size - m_pos; }
    const std::byte* here() const noexcept { return m_base + m_pos; }

    /// Messages from now on name this key or tensor.
    void subject(std::string_view kind, std::string_view name) noexcept {
        m_kind = kind;
        m_name = name;
    }

    [[noreturn]] void fail(const std::string& what) const {
        std::string msg = m_file + ": ";
        if (!m_kind.empty()) {
            msg += m_kind;
            msg += " '";
            msg += printable(m_name);
            msg += "': ";
        }
        msg += what;
        throw gguf_error(msg);
    }

    void need(std::size_t n, std::string_view what) const {
        if (n > left()) {
            fail("file truncated: " + std::string(what) + " at offset " + std::to_string(m_pos) +
                 " needs " + std::to_string(n) + " bytes, only " + std::to_string(left()) + " left");
        }
    }

    void skip(std::size_t n, std::string_view what) {
        need(n, what);
        m_pos += n;
    }

    template <class T>
    T read(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, here(), sizeof v);
        m_pos += sizeof v;
        return v;
    }

    std::uint32_t u32(std::string_view what) { return read<std::uint32_t>(what); }
    std::uint64_t u64(std::string_view what) { return read<std::uint64_t>(what); }

    std::string_view string(std::string_view what) {
        const std::size_t at = m_pos;
        const std::uint64_t len = u64(what);
        if (len > left()) {
            fail(std::string(what) + " length " + std::to_string(len) + " at offset " +
                 std::to_string(at) + " runs past the end of the file (" + std::to_string(left()) +
                 " bytes left)");
        }
        const std::string_view s(reinterpret_cast<const char*>(here()), len);
        m_pos += len;
        return s;
    }

private:
    const std::string& m_file;
    const std::byte* m_base;
    std::size_t m_size;
    std::size_t m_pos = 0;
    std::string_view m_kind;
    std::string_view m_name;
};

std::string to_hex(std::uint32_t v) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s = "0x";
    for (int shift = 28; shift >= 0; shift -= 4) s += digits[(v >> shift) & 15];
    return s;
}

gguf_value_type value_type(cursor& in, std::string_view what) {
    const std::uint32_t t = in.u32(what);
    if (!is_valid(static_cast<gguf_value_type>(t))) in.fail("unknown " + std::string(what) + " " + std::to_string(t));
    return static_cast<gguf_value_type>(t);
}

bool multiply(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
    out = a * b;
    return true;
}

std::string shape(const std::vector<std::uint64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i != 0) s += ", ";
        s += std::to_string(dims[i]);
    }
    return s + "]";
}

} // namespace

gguf_file::gguf_file(std::unique_ptr<state> s) noexcept : m_state(std::move(s)) {}
gguf_file::gguf_file(gguf_file&&) noexcept = default;
gguf_file& gguf_file::operator=(gguf_file&&) noexcept = default;
gguf_file::~gguf_file() = default;

gguf_file gguf_file::open(const std::filesystem::path& path) {
    auto s = std::make_unique<state>();
    s->name = path.string();
    auto sys_fail = [&](std::string_view what) {
        throw gguf_error(s->name + ": " + std::string(what) + ": " +
                         std::generic_category().message(errno));
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) sys_fail("cannot open");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        errno = e;
        sys_fail("cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw gguf_error(s->name + ": not a regular file");
    }
    s->size = static_cast<std::size_t>(st.st_size);
    if (s->size > 0) {
        void* m = ::mmap(nullptr, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            errno = e;
            sys_fail("cannot map " + std::to_string(s->size) + " bytes");
        }
        s->mapping = m;
        s->base = static_cast<const std::byte*>(m);
    }
    ::close(fd); // the mapping keeps the file referenced
    return parse(std::move(s));
}

gguf_file gguf_file::from_memory(std::span<const std::byte> bytes, std::string name) {
    auto s = std::make_unique<state>();
    s->name = std::move(name);
    s->base = bytes.data();
    s->size = bytes.size();
    return parse(std::move(s));
}

gguf_file gguf_file::parse(std::unique_ptr<state> s) {
    cursor in(s->name, s->base, s->size);

    // --- header ---------------------------------------------------------------
    if (s->size < sizeof magic) {
        in.fail("too small to be a GGUF file (" + std::to_string(s->size) + " bytes)");
    }
    if (std::memcmp(s->base, magic, sizeof magic) != 0) {
        in.fail("not a GGUF file (magic '" +
                printable(std::string_view(reinterpret_cast<const char*>(s->base), sizeof magic)) +
                "', expected 'GGUF')");
    }
    in.skip(sizeof magic, "magic");
    s->version = in.u32("version");
    if (s->version == 1) in.fail("GGUF version 1 is not supported (only versions 2 and 3)");
    if (s->version != 2 && s->version != 3) {
        // A big-endian file shows its small version number byte-swapped.
        if ((s->version & 0xffffu) == 0 && s->version != 0) {
            in.fail("unsupported GGUF version " + to_hex(s->version) +
                    " (a big-endian file? only little-endian versions 2 and 3 are supported)");
        }
        in.fail("unsupported GGUF version " + std::to_string(s->version) +
                " (only versions 2 and 3)");
    }
    const std::uint64_t tensor_count = in.u64("tensor count");
    const std::uint64_t kv_count = in.u64("metadata key count");
    if (kv_count > in.left() / min_kv_bytes) {
        in.fail("metadata key count " + std::to_string(kv_count) + " cannot fit in the " +
                std::to_string(in.left()) + " bytes left in the file");
    }
    if (tensor_count > in.left() / min_tensor_info_bytes) {
        in.fail("tensor count " + std::to_string(tensor_count) + " cannot fit in the " +
                std::to_string(in.left()) + " bytes left in the file");
    }

    // --- metadata -------------------------------------------------------------
    s->values.reserve(kv_count);
    s->value_index.reserve(kv_count);
    for (std::uint64_t k = 0; k < kv_count; ++k) {
        in.subject("", "");
        const std::string_view key = in.string("metadata key " + std::to_string(k));
        in.subject("key", key);
        if (s->value_index.contains(key)) in.fail("duplicate key");

        gguf_value v;
        v.m_file = s->name;
        v.m_key = key;
        v.m_type = value_type(in, "value type");
        const std::size_t start = in.pos();
        if (v.m_type == gguf_value_type::array) {
            v.m_array_type = value_type(in, "array element type");
            if (v.m_array_type == gguf_value_type::array) in.fail("nested arrays are not supported");
            v.m_array_size = in.u64("array length");
            const std::size_t data_start = in.pos();
            const bool strings = v.m_array_type == gguf_value_type::string;
            const std::size_t min_element = strings ? sizeof(std::uint64_t) : scalar_size(v.m_array_type);
            if (v.m_array_size > in.left() / min_element) {
                in.fail("array length " + std::to_string(v.m_array_size) + " of " +
                        std::string(to_string(v.m_array_type)) + " cannot fit in the " +
                        std::to_string(in.left()) + " bytes left in the file");
            }
            if (strings) {
                for (std::uint64_t i = 0; i < v.m_array_size; ++i) {
                    in.string("array element " + std::to_string(i));
                }
            } else {
                in.skip(v.m_array_size * min_element, "array data");
            }
            v.m_data = s->base + data_start;
            v.m_bytes = in.pos() - data_start;
        } else if (v.m_type == gguf_value_type::string) {
            const std::string_view str = in.string("string value");
            v.m_data = reinterpret_cast<const std::byte*>(str.data());
            v.m_bytes = str.size();
        } else {
            v.m_bytes = scalar_size(v.m_type);
            in.skip(v.m_bytes, std::string(to_string(v.m_type)) + " value");
            v.m_data = s->base + start;
        }
        s->value_index.emplace(key, s->values.size());
        s->values.push_back(v);
    }
    in.subject("", "");

    if (auto it = s->value_index.find(alignment_key); it != s->value_index.end()) {
        const std::uint64_t a = s->values[it->second].as_uint();
        if (a == 0 || !std::has_single_bit(a)) {
            in.fail("general.alignment " + std::to_string(a) + " is not a power of two");
        }
        s->alignment = a;
    }

    // --- tensor infos ---------------------------------------------------------
    if (tensor_count > in.left() / min_tensor_info_bytes) {
        in.fail("tensor count " + std::to_string(tensor_count) + " cannot fit in the " +
                std::to_string(in.left()) + " bytes left in the file");
    }
    s->tensors.reserve(tensor_count);
    s->tensor_index.reserve(tensor_count);
    for (std::uint64_t t = 0; t < tensor_count; ++t) {
        in.subject("", "");
        const std::string_view name = in.string("tensor name " + std::to_string(t));
        in.subject("tensor", name);
        if (s->tensor_index.contains(name)) in.fail("duplicate tensor name");

        gguf_tensor info;
        const std::uint32_t n_dims = in.u32("dimension count");
        if (n_dims < 1 || n_dims > max_dims) {
            in.fail("has " + std::to_string(n_dims) + " dimensions (must be 1 to " +
                    std::to_string(max_dims) + ")");
        }
        info.dims.resize(n_dims);
        std::uint64_t elements = 1;
        for (std::uint32_t d = 0; d < n_dims; ++d) {
            const std::uint64_t n = in.u64("dimension");
            if (n == 0) in.fail("dimension " + std::to_string(d) + " is 0");
            info.dims[d] = n;
            if (!multiply(elements, n, elements) || elements > max_i64) {
                info.dims.resize(d + 1);
                in.fail("element count of shape " + shape(info.dims) + " overflows");
            }
        }
        const std::uint32_t type = in.u32("tensor type");
        info.type = static_cast<ggml_type>(type);
        const ggml_type_info ti = type_info(info.type);
        if (ti.block_size == 0) in.fail("unknown tensor type " + std::to_string(type));
        if (info.dims[0] % ti.block_size != 0) {
            in.fail("row length " + std::to_string(info.dims[0]) + " is not a multiple of the " +
                    std::string(ti.name) + " block size " + std::to_string(ti.block_size));
        }
        info.offset = in.u64("tensor data offset");
        if (info.offset % s->alignment != 0) {
            in.fail("data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                    std::to_string(s->alignment));
        }
        std::uint64_t bytes = 0;
        if (!multiply(elements / ti.block_size, ti.type_size, bytes) ||
            bytes > std::numeric_limits<std::size_t>::max()) {
            in.fail("byte size of shape " + shape(info.dims) + " overflows");
        }
        info.bytes = static_cast<std::size_t>(bytes);
        info.name.assign(name);
        s->tensor_index.emplace(name, s->tensors.size());
        s->tensors.push_back(std::move(info));
    }
    in.subject("", "");

    // --- data section ---------------------------------------------------------
    const std::uint64_t info_end = in.pos();
    if (s->alignment - 1 > std::numeric_limits<std::uint64_t>::max() - info_end) {
        in.fail("data section start overflows with alignment " + std::to_string(s->alignment));
    }
    s->data_offset = (info_end + s->alignment - 1) & ~(s->alignment - 1);
    for (gguf_tensor& t : s->tensors) {
        const std::uint64_t room = s->data_offset <= s->size ? s->size - s->data_offset : 0;
        if (s->data_offset > s->size || t.offset > room || t.bytes > room - t.offset) {
            in.subject("tensor", t.name);
            in.fail("data (offset " + std::to_string(t.offset) + ", " + std::to_string(t.bytes) +
                    " bytes, in the data section at " + std::to_string(s->data_offset) +
                    ") runs past the end of the file (" + std::to_string(s->size) + " bytes)");
        }
        t.data = s->base + s->data_offset + t.offset;
    }
    return gguf_file(std::move(s));
}

// --- accessors ------------------------------------------------------------------

const std::string& gguf_file::name() const noexcept { return m_state->name; }
std::uint32_t gguf_file::version() const noexcept { return m_state->version; }
std::uint64_t gguf_file::alignment() const noexcept { return m_state->alignment; }
std::size_t gguf_file::file_size() const noexcept { return m_state->size; }
std::uint64_t gguf_file::data_offset() const noexcept { return m_state->data_offset; }

const gguf_value* gguf_file::find(std::string_view key) const {
    const auto it = m_state->value_index.find(key);
    return it == m_state->value_index.end() ? nullptr : &m_state->values[it->second];
}

const gguf_value& gguf_file::at(std::string_view key) const {
    if (const gguf_value* v = find(key)) return *v;
    throw gguf_error(m_state->name + ": missing key '" + printable(key) + "'");
}

std::vector<std::string_view> gguf_file::keys() const {
    std::vector<std::string_view> out;
    out.reserve(m_state->values.size());
    for (const gguf_value& v : m_state->values) out.push_back(v.key());
    return out;
}

std::optional<std::uint64_t> gguf_file::find_uint(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional(v->as_uint()) : std::nullopt;
}
std::uint64_t gguf_file::get_uint(std::string_view key) const { return at(key).as_uint(); }

std::optional<std::int64_t> gguf_file::find_int(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional(v->as_int()) : std::nullopt;
}
std::int64_t gguf_file::get_int(std::string_view key) const { return at(key).as_int(); }

std::optional<double> gguf_file::find_float(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional(v->as_float()) : std::nullopt;
}
double gguf_file::get_float(std::string_view key) const { return at(key).as_float(); }

std::optional<bool> gguf_file::find_bool(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional(v->as_bool()) : std::nullopt;
}
bool gguf_file::get_bool(std::string_view key) const { return at(key).as_bool(); }

std::optional<std::string_view> gguf_file::find_string(std::string_view key) const {
    const gguf_value* v = find(key);
    return v ? std::optional(v->as_string()) : std::nullopt;
}
std::string_view gguf_file::get_string(std::string_view key) const { return at(key).as_string(); }

std::string_view gguf_file::architecture() const { return get_string("general.architecture"); }

std::span<const gguf_tensor> gguf_file::tensors() const noexcept { return m_state->tensors; }

const gguf_tensor* gguf_file::find_tensor(std::string_view name) const {
    const auto it = m_state->tensor_index.find(name);
    return it == m_state->tensor_index.end() ? nullptr : &m_state->tensors[it->second];
}

const gguf_tensor& gguf_file::tensor(std::string_view name) const {
    if (const gguf_tensor* t = find_tensor(name)) return *t;
    throw gguf_error(m_state->name + ": missing tensor '" + printable(name) + "'");
}

void gguf_file::prefault(const std::function<void(std::size_t, std::size_t)>& progress) const {
    const state& s = *m_state;
    std::size_t end = static_cast<std::size_t>(std::min<std::uint64_t>(s.data_offset, s.size));
    const std::size_t begin = end;
    for (const gguf_tensor& t : s.tensors) {
        end = std::max(end, static_cast<std::size_t>(t.data - s.base) + t.bytes);
    }
    const std::size_t total = end - begin;
    const long page_size = ::sysconf(_SC_PAGESIZE);
    const std::size_t page = page_size > 0 ? static_cast<std::size_t>(page_size) : 4096;
    if (s.mapping != nullptr && total > 0) {
        // Advice only: failure just means the reads below fault the pages in.
        const std::size_t aligned = begin / page * page;
        ::madvise(static_cast<char*>(s.mapping) + aligned, end - aligned, MADV_WILLNEED);
    }
    constexpr std::size_t report_every = std::size_t{2} << 20;
    std::size_t next_report = report_every;
    unsigned char sink = 0;
    // One read in each page, starting at `begin` and then at page boundaries.
    for (std::size_t at = begin; at < end; at = (at / page + 1) * page) {
        sink ^= *reinterpret_cast<const volatile unsigned char*>(s.base + at);
        if (at - begin >= next_report) {
            if (progress) progress(at - begin, total);
            next_report += report_every;
        }
    }
    static_cast<void>(sink);
    if (progress) progress(total, total);
}

} // namespace weft::serve
