#include <weft/serve/block_manager.hpp>

#include <limits>
#include <stdexcept>
#include <string>

namespace weft::serve {

block_manager::block_manager(std::size_t num_blocks, std::size_t block_size) : m_block_size(block_size) {
    if (block_size == 0) {
        throw std::invalid_argument("block_manager: block size must be at least 1");
    }
    if (num_blocks > std::size_t{std::numeric_limits<block_id>::max()} + 1) {
        throw std::invalid_argument("block_manager: " + std::to_string(num_blocks) +
                                    " blocks exceed what a block id can number");
    }
    m_ref_counts.assign(num_blocks, 0);
    std::vector<block_id> all(num_blocks);
    for (std::size_t i = 0; i < num_blocks; ++i) {
        all[i] = static_cast<block_id>(i);
    }
    m_free = decltype(m_free)(std::greater<>{}, std::move(all));
}

std::optional<block_id> block_manager::allocate() {
    if (m_free.empty()) {
        return std::nullopt;
    }
    const block_id b = m_free.top();
    m_free.pop();
    m_ref_counts[b] = 1;
    return b;
}

bool block_manager::allocate(std::size_t n, std::vector<block_id>& out) {
    if (n > m_free.size()) {
        return false;
    }
    out.reserve(out.size() + n);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(*allocate());
    }
    return true;
}

void block_manager::check(block_id b, const char* what) const {
    if (b >= m_ref_counts.size()) {
        throw std::out_of_range(std::string("block_manager::") + what + ": block " + std::to_string(b) +
                                " is out of range (" + std::to_string(m_ref_counts.size()) + " blocks)");
    }
    if (m_ref_counts[b] == 0) {
        throw std::logic_error(std::string("block_manager::") + what + ": block " + std::to_string(b) +
                               " is not allocated");
    }
}

void block_manager::retain(block_id b) {
    check(b, "retain");
    if (m_ref_counts[b] == std::numeric_limits<std::uint32_t>::max()) {
        throw std::overflow_error("block_manager::retain: reference count of block " + std::to_string(b) +
                                  " overflows");
    }
    ++m_ref_counts[b];
}

void block_manager::release(block_id b) {
    check(b, "release");
    if (--m_ref_counts[b] == 0) {
        m_free.push(b);
    }
}

std::uint32_t block_manager::ref_count(block_id b) const {
    if (b >= m_ref_counts.size()) {
        throw std::out_of_range("block_manager::ref_count: block " + std::to_string(b) + " is out of range (" +
                                std::to_string(m_ref_counts.size()) + " blocks)");
    }
    return m_ref_counts[b];
}

std::size_t block_manager::blocks_for(std::size_t tokens, std::size_t block_size) {
    if (block_size == 0) {
        throw std::invalid_argument("block_manager::blocks_for: block size must be at least 1");
    }
    return tokens / block_size + (tokens % block_size != 0 ? 1 : 0);
}

} // namespace weft::serve
