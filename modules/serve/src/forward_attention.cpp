// The CPU forward pass's attention: each token's query heads against its
// sequence's cached keys and values, in work items the team shares. (Its
// cost estimate, cpu_forward::attention_ns, is with the split decisions in
// forward.cpp.)
#include "forward.hpp"

#include <cstdint>
#include <utility>
#include <vector>

namespace weft::serve {

void cpu_forward::attention(const batch& b, std::size_t layer, const batch_span& sp, std::size_t ln) {
    lane& ls = m_lanes[ln];
    if (m_cache.type() == ggml_type::f16) {
        attention_over<std::uint16_t>(b, layer, sp, ln, ls.key_blocks_f16, ls.value_blocks_f16);
    } else {
        attention_over<float>(b, layer, sp, ln, ls.key_blocks, ls.value_blocks);
    }
}

template <class E>
void cpu_forward::attention_over(const batch& b, std::size_t layer, const batch_span& sp, std::size_t ln,
                                 std::vector<const E*>& keys, std::vector<const E*>& values) {
    const model_config& c = m_config;
    const std::size_t group = c.n_head / c.n_head_kv;
    const std::size_t Q = c.q_dim();
    std::vector<std::size_t>& block_offset = m_lanes[ln].chunk_block_offset;

    // Block pointers of every chunk of the span for this layer, concatenated.
    keys.clear();
    values.clear();
    block_offset.clear();
    for (std::size_t ci = sp.chunk_begin; ci < sp.chunk_end; ++ci) {
        const batch_chunk& ch = b.chunks[ci];
        block_offset.push_back(keys.size());
        const std::size_t used = (ch.start + ch.tokens.size() + m_cache.block_size() - 1) / m_cache.block_size();
        for (std::size_t i = 0; i < used; ++i) {
            keys.push_back(m_cache.keys_as<E>(layer, ch.blocks[i]));
            values.push_back(m_cache.values_as<E>(layer, ch.blocks[i]));
        }
    }

    // Runs of consecutive positions of one chunk (a prompt's tokens), up to
    // attention_run each: a run is one kernel call, which gives each token
    // the bits it gets alone, so how tokens are grouped does not matter.
    std::vector<std::pair<std::size_t, std::size_t>>& runs = m_lanes[ln].runs;
    runs.clear();
    for (std::size_t t = sp.t_begin; t < sp.t_end; ++t) {
        if (!runs.empty()) {
            auto& [first, count] = runs.back();
            const token_slot& a = m_slots[first + count - 1];
            if (count < attention_run && m_slots[t].chunk == a.chunk && m_slots[t].pos == a.pos + 1) {
                ++count;
                continue;
            }
        }
        runs.emplace_back(t, 1);
    }

    // Work items taken in turn by whichever thread is free: later positions
    // cost more, and a descheduled thread then holds up one item, not a
    // fixed share. A run of several positions (a prompt's) is an item per
    // KV head, taken first: one item for all of a late run's heads kept a
    // 2000-token prompt's attention on one thread while the other finished
    // the decodes, and goal 3's longest gap doubled. A lone token is one item
    // with all its KV heads when there are tokens enough to share: a block
    // keeps its heads side by side, so the item reads each block's keys (and
    // values) as one run, which the hardware prefetcher follows, where items
    // of one head each would read every other run of it. Few tokens (a lone
    // decode): one item per (token, KV head), so the threads still split the
    // work.
    std::vector<attention_item>& items = m_lanes[ln].items;
    items.clear();
    const bool whole_tokens = runs.size() >= 4 * m_team.size();
    for (std::size_t r = 0; r < runs.size(); ++r) {
        if (runs[r].second == 1) continue;
        for (std::size_t g = 0; g < c.n_head_kv; ++g) items.push_back({r, g, g + 1});
    }
    for (std::size_t r = 0; r < runs.size(); ++r) {
        if (runs[r].second != 1) continue;
        if (whole_tokens) {
            items.push_back({r, 0, c.n_head_kv});
        } else {
            for (std::size_t g = 0; g < c.n_head_kv; ++g) items.push_back({r, g, g + 1});
        }
    }
    auto run_item = [&](std::size_t item, std::size_t, std::size_t scratch) {
        const attention_item& it = items[item];
        const auto [first, count] = runs[it.run];
        const token_slot& s = m_slots[first];
        const std::size_t off = block_offset[s.chunk - sp.chunk_begin];
        const kernels::basic_attention_source<E> src{keys.data() + off, values.data() + off, m_cache.block_size()};
        if (count == 1) {
            // A lone token's KV heads in one call: one softmax over all its rows.
            const std::size_t at = first * Q + it.head_begin * group * c.head_dim;
            kernels::attend_heads(&m_q[at], group, c.head_dim, it.head_begin, it.head_end, s.pos, src, &m_att[at],
                                  m_scratch[scratch].data());
            return;
        }
        for (std::size_t g = it.head_begin; g < it.head_end; ++g) {
            const std::size_t at = first * Q + g * group * c.head_dim; // this KV head's query heads
            kernels::attend_rows(&m_q[at], Q, count, group, c.head_dim, g, s.pos, src, &m_att[at], Q,
                                 m_scratch[scratch].data());
        }
    };
    if (!worth_forking(m_attention_ns)) {
        // On this thread: the lane's scratch (a lane is one of the team's parts).
        for (std::size_t item = 0; item < items.size(); ++item) run_item(item, items.size(), ln);
        return;
    }
    m_team.run_chunks(items.size(), run_item);
}

} // namespace weft::serve
