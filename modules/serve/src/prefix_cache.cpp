#include <weft/serve/prefix_cache.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace weft::serve {

prefix_cache::prefix_cache(block_manager& blocks)
    : m_blocks(blocks), m_entries(blocks.num_blocks()), m_tokens(blocks.num_blocks() * blocks.block_size()) {
    m_index.reserve(blocks.num_blocks()); // at most one entry a block: no rehash while serving
}

prefix_cache::~prefix_cache() = default;

std::uint64_t prefix_cache::hash_of(block_id previous, std::span<const token_id> tokens) noexcept {
    // FNV-1a over the previous block's number and the tokens, then a final
    // mix; only finds candidates (contents are compared on every hit).
    std::uint64_t h = 0xcbf29ce484222325ULL;
    const auto add = [&](std::uint64_t v) {
        for (int i = 0; i < 4; ++i) {
            h ^= (v >> (16 * i)) & 0xffff;
            h *= 0x100000001b3ULL;
        }
    };
    add(previous);
    for (const token_id t : tokens) add(static_cast<std::uint32_t>(t));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

std::optional<block_id> prefix_cache::find(block_id previous, std::span<const token_id> tokens,
                                           std::uint64_t hash) const {
    const auto it = m_index.find(hash);
    if (it == m_index.end()) return std::nullopt;
    const entry& e = m_entries[it->second];
    const std::span<const token_id> cached = tokens_of(it->second);
    if (e.previous != previous || !std::equal(cached.begin(), cached.end(), tokens.begin(), tokens.end())) {
        return std::nullopt; // another content with the same hash
    }
    return it->second;
}

std::size_t prefix_cache::acquire(std::span<const token_id> tokens, std::size_t max_blocks,
                                  std::vector<block_id>& out) {
    const std::size_t bs = m_blocks.block_size();
    std::size_t n = 0;
    block_id previous = no_block;
    while (n < max_blocks && (n + 1) * bs <= tokens.size()) {
        const auto block = tokens.subspan(n * bs, bs);
        const std::optional<block_id> b = find(previous, block, hash_of(previous, block));
        if (!b) break;
        hold(*b);
        out.push_back(*b);
        previous = *b;
        ++n;
    }
    return n;
}

std::optional<block_id> prefix_cache::insert(std::optional<block_id> previous, std::span<const token_id> tokens,
                                             block_id b) {
    if (tokens.size() != m_blocks.block_size()) {
        throw std::invalid_argument("prefix_cache::insert: " + std::to_string(tokens.size()) +
                                    " tokens for a block of " + std::to_string(m_blocks.block_size()));
    }
    const block_id prev = previous.value_or(no_block);
    if (prev != no_block && !contains(prev)) return std::nullopt;
    const std::uint64_t h = hash_of(prev, tokens);
    if (const std::optional<block_id> twin = find(prev, tokens, h)) {
        hold(*twin);
        return twin;
    }
    if (contains(b)) return std::nullopt; // already cached under another content
    if (m_index.contains(h)) return std::nullopt; // collision: leave it uncached
    m_blocks.retain(b); // the cache's own reference
    entry& e = m_entries[b];
    e.cached = true;
    e.previous = prev;
    e.successors = 0;
    e.last_use = ++m_clock;
    e.hash = h;
    std::copy(tokens.begin(), tokens.end(), tokens_of(b).begin());
    m_index.emplace(h, b);
    if (prev != no_block) {
        take_from_evictable(prev); // it has a successor now
        ++m_entries[prev].successors;
    }
    return b;
}

std::span<token_id> prefix_cache::tokens_of(block_id b) noexcept {
    const std::size_t bs = m_blocks.block_size();
    return std::span(m_tokens).subspan(static_cast<std::size_t>(b) * bs, bs);
}

std::span<const token_id> prefix_cache::tokens_of(block_id b) const noexcept {
    const std::size_t bs = m_blocks.block_size();
    return std::span(m_tokens).subspan(static_cast<std::size_t>(b) * bs, bs);
}

void prefix_cache::hold(block_id b) {
    take_from_evictable(b);
    if (m_blocks.ref_count(b) == 1) --m_idle;
    m_blocks.retain(b);
    m_entries[b].last_use = ++m_clock;
}

void prefix_cache::released(block_id b) {
    if (contains(b) && m_blocks.ref_count(b) == 1) {
        ++m_idle;
        make_evictable_if_idle(b);
    }
}

void prefix_cache::make_evictable_if_idle(block_id b) {
    entry& e = m_entries[b];
    if (e.successors == 0 && m_blocks.ref_count(b) == 1) {
        m_evictable.emplace(e.last_use, b);
    }
}

void prefix_cache::take_from_evictable(block_id b) { m_evictable.erase({m_entries[b].last_use, b}); }

bool prefix_cache::evict_one() {
    if (m_evictable.empty()) return false;
    const block_id b = m_evictable.begin()->second;
    m_evictable.erase(m_evictable.begin());
    entry& e = m_entries[b];
    m_index.erase(e.hash);
    const block_id prev = e.previous;
    e = entry{};
    --m_idle;
    m_blocks.release(b); // the cache's reference was the last
    if (prev != no_block) {
        --m_entries[prev].successors;
        make_evictable_if_idle(prev);
    }
    return true;
}

} // namespace weft::serve
