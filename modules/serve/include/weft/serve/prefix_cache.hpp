/// \file
/// `prefix_cache`: automatic prefix caching over a `block_manager`. Full KV
/// blocks whose entries are computed are offered to the cache under their
/// content: the tokens they hold and the cached block before them (a chain
/// from the start of the sequence, so a block stands for its whole prefix).
/// A new request whose prompt starts with a cached chain takes those blocks
/// (one more reference each) instead of computing them again.
///
/// The cache holds one reference to each cached block, so a cached block
/// outlives the sequences that computed it. A cached block that no sequence
/// uses and that has no cached successor is *evictable*: `evict_one()` frees
/// the one idle longest (least recently used), and a chain is evicted from
/// its end, so every cached block's predecessor stays cached. Sequences never
/// write into a cached block: it is full, and a sequence only writes
/// positions past what it has computed.
///
/// Content is compared token by token on every hit (the hash only finds the
/// candidate), so a hash collision costs a miss, never a wrong block.
///
/// Why reuse is exact on the CPU backend: a position's keys and values are
/// bitwise the same whichever batch and chunking computed them (the forward
/// pass is batch invariant), so a reused block holds the very bits a
/// recomputation would write. A backend without that property (cuBLAS)
/// gives results within its usual rounding, as other engines' prefix caches
/// do.
///
/// Threading: not synchronized; one owner (the scheduler) uses it.
#pragma once

#include <weft/serve/block_manager.hpp>
#include <weft/serve/token.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace weft::serve {

class prefix_cache {
public:
    /// Caches blocks of `blocks` (which must outlive it).
    explicit prefix_cache(block_manager& blocks);
    ~prefix_cache();
    prefix_cache(const prefix_cache&) = delete;
    prefix_cache& operator=(const prefix_cache&) = delete;

    /// The longest cached chain for the leading full blocks of `tokens`, at
    /// most `max_blocks` long: each block is retained (one more reference)
    /// and appended to `out`. Returns how many were appended.
    std::size_t acquire(std::span<const token_id> tokens, std::size_t max_blocks, std::vector<block_id>& out);

    /// Offers block `b` (in use, its entries computed) holding `tokens`
    /// (exactly one block's worth), following `previous` (the cached block
    /// before it; nullopt for a sequence's first block). Returns the block
    /// the caller holds for this content from now on: `b` when it was added;
    /// an existing block with the same content, already retained for the
    /// caller, who then drops its reference to `b` (the entries are the
    /// same); or nullopt when it cannot be cached (a hash collision, or
    /// `previous` is not cached).
    std::optional<block_id> insert(std::optional<block_id> previous, std::span<const token_id> tokens, block_id b);

    /// A sequence dropped its reference to `b` (call it after
    /// `block_manager::release`); when only the cache holds `b` now, and no
    /// cached block follows it, it becomes evictable.
    void released(block_id b);

    /// Frees the least recently used evictable block; false when none is.
    bool evict_one();

    [[nodiscard]] bool contains(block_id b) const noexcept { return b < m_entries.size() && m_entries[b].cached; }
    [[nodiscard]] std::size_t num_cached() const noexcept { return m_index.size(); }
    /// Cached blocks no sequence holds (all of them can be freed, chain
    /// ends first).
    [[nodiscard]] std::size_t num_idle() const noexcept { return m_idle; }
    /// Idle blocks `evict_one()` can free right now (chain ends).
    [[nodiscard]] std::size_t num_evictable() const noexcept { return m_evictable.size(); }

private:
    static constexpr block_id no_block = ~block_id{0};

    struct entry {
        bool cached = false;
        block_id previous = no_block;
        std::uint32_t successors = 0; // cached blocks whose `previous` is this one
        std::uint64_t last_use = 0;   // key in m_evictable while evictable
        std::uint64_t hash = 0;
    };

    static std::uint64_t hash_of(block_id previous, std::span<const token_id> tokens) noexcept;
    /// The cached block with this content, whose hash is `hash`.
    std::optional<block_id> find(block_id previous, std::span<const token_id> tokens, std::uint64_t hash) const;
    void make_evictable_if_idle(block_id b);
    void take_from_evictable(block_id b);
    void hold(block_id b);
    /// Block `b`'s slot of m_tokens (its tokens while it is cached).
    [[nodiscard]] std::span<token_id> tokens_of(block_id b) noexcept;
    [[nodiscard]] std::span<const token_id> tokens_of(block_id b) const noexcept;

    block_manager& m_blocks;
    std::vector<entry> m_entries;                                  // by block id
    // A cached block's tokens at [id * block size, (id + 1) * block size):
    // every entry holds exactly one block's worth, so one array serves all
    // and caching a block allocates nothing.
    std::vector<token_id> m_tokens;
    std::unordered_map<std::uint64_t, block_id> m_index;           // content hash -> block
    std::set<std::pair<std::uint64_t, block_id>> m_evictable;      // (last use, block), oldest first
    std::uint64_t m_clock = 0;
    std::size_t m_idle = 0;
};

} // namespace weft::serve
