/// \file
/// `block_manager`: bookkeeping for the pages ("blocks") of a paged KV cache.
/// It owns no memory: it hands out block numbers `0 .. num_blocks - 1`, each
/// standing for `block_size` token positions of the cache, and counts
/// references so that several sequences can later share a block (a common
/// prompt prefix). A block returns to the free list when its count drops to
/// zero.
///
/// Allocation is deterministic: the lowest-numbered free block is always
/// handed out first, so that the same sequence of calls gives the same block
/// tables on every run.
///
/// Misuse (retaining or releasing a free block, a block number out of range)
/// throws `std::logic_error` (`std::out_of_range` for the range) and leaves the
/// manager unchanged.
///
/// Threading: not synchronized; one owner (the scheduler) uses it.
#pragma once

#include <weft/serve/token.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <vector>

namespace weft::serve {

class block_manager {
public:
    /// Throws `std::invalid_argument` for a zero block size or more blocks than
    /// `block_id` can number.
    block_manager(std::size_t num_blocks, std::size_t block_size);

    /// One block with a reference count of one, or nothing when none is free.
    std::optional<block_id> allocate();
    /// Appends `n` fresh blocks to `out` (each with a count of one), or, when
    /// fewer than `n` are free, changes nothing and returns false.
    bool allocate(std::size_t n, std::vector<block_id>& out);
    /// One more reference to a block in use.
    void retain(block_id b);
    /// Drops one reference; the block is free again at zero.
    void release(block_id b);

    /// References to `b` (0: free).
    std::uint32_t ref_count(block_id b) const;
    std::size_t num_blocks() const noexcept { return m_ref_counts.size(); }
    std::size_t num_free() const noexcept { return m_free.size(); }
    std::size_t num_used() const noexcept { return num_blocks() - num_free(); }
    std::size_t block_size() const noexcept { return m_block_size; }

    /// Blocks needed to hold `tokens` positions: ceil(tokens / block_size).
    /// Throws `std::invalid_argument` for a zero block size.
    static std::size_t blocks_for(std::size_t tokens, std::size_t block_size);

private:
    void check(block_id b, const char* what) const;

    std::size_t m_block_size;
    std::vector<std::uint32_t> m_ref_counts;
    // Min-heap: the lowest free number is always on top.
    std::priority_queue<block_id, std::vector<block_id>, std::greater<>> m_free;
};

} // namespace weft::serve
