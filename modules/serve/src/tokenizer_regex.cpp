#include "tokenizer_internal.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

namespace weft::serve::detail {
namespace {

// The pre-tokenizer regexes of the Hugging Face tokenizers these GGUF
// "pre" names stand for.
constexpr const char* gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct match_data_deleter {
    void operator()(pcre2_match_data* md) const noexcept { pcre2_match_data_free(md); }
};

// One ovector pair is all a split needs, so one match block per thread
// serves every pattern.
pcre2_match_data* thread_match_data() {
    thread_local std::unique_ptr<pcre2_match_data, match_data_deleter> md{
        pcre2_match_data_create(1, nullptr)};
    if (!md) {
        throw std::bad_alloc();
    }
    return md.get();
}

} // namespace

pre_kind pre_kind_from_name(std::string_view name) noexcept {
    if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
        return pre_kind::llama3;
    }
    if (name == "qwen2" || name == "deepseek-r1-qwen") {
        return pre_kind::qwen2;
    }
    return pre_kind::gpt2;
}

regex_splitter::regex_splitter(pre_kind kind) {
    const char* pattern = kind == pre_kind::llama3  ? llama3_pattern
                          : kind == pre_kind::qwen2 ? qwen2_pattern
                                                    : gpt2_pattern;
    int error = 0;
    PCRE2_SIZE offset = 0;
    // MATCH_INVALID_UTF: invalid UTF-8 in the subject is never matched
    // instead of failing the match, and no per-call validity scan is made.
    m_code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset,
                           nullptr);
    if (m_code == nullptr) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error, message, sizeof message);
        throw tokenizer_error("pre-tokenizer regex does not compile at offset " +
                              std::to_string(offset) + ": " +
                              reinterpret_cast<const char*>(message));
    }
    // Without JIT support this fails and the interpreter is used.
    (void)pcre2_jit_compile(m_code, PCRE2_JIT_COMPLETE);
}

regex_splitter::~regex_splitter() { pcre2_code_free(m_code); }

void regex_splitter::split(std::string_view text, std::vector<std::string_view>& pieces) const {
    pcre2_match_data* md = thread_match_data();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t pos = 0;
    std::size_t unmatched = 0; // start of bytes no match has covered yet
    while (pos < text.size()) {
        const int rc = pcre2_match(m_code, subject, text.size(), pos, 0, md, nullptr);
        if (rc < 0) {
            // No match (only invalid UTF-8 is left), or a resource limit on
            // a pathological input: the rest stays one piece, still encoded
            // byte for byte.
            break;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const std::size_t start = ov[0];
        const std::size_t end = ov[1];
        if (start > unmatched) {
            pieces.push_back(text.substr(unmatched, start - unmatched));
        }
        if (end == start) {
            // The patterns cannot match empty; never loop if one did.
            unmatched = start;
            pos = start + 1;
            continue;
        }
        pieces.push_back(text.substr(start, end - start));
        pos = unmatched = end;
    }
    if (unmatched < text.size()) {
        pieces.push_back(text.substr(unmatched));
    }
}

} // namespace weft::serve::detail
