/// \file
/// `waiting_queue<T>`: the requests waiting for admission, by priority class
/// with aging, in the order the scheduler admits them, without sorting them
/// all on every step.
///
/// Each entry has a priority (smaller first), a unique queue key (smaller
/// first within a class) and the step count at which it began waiting. At
/// step count `now`, an entry's effective priority is its priority less one
/// for every `aging_steps` steps it has waited; entries are admitted by
/// (effective priority, queue key), smallest first. A scheduler with
/// thousands waiting admits a few per step, so `order()` yields them lazily:
/// O(classes) per entry taken, after O(p log p) for the p entries kept apart
/// (below), where a full sort would cost O(n log n) per step.
///
/// Why that order can be read off without sorting: within a class, entries
/// pushed with ever larger keys and never smaller waiting starts (new
/// arrivals: a counter for the key, the current step for the start) are in
/// key order and in waiting order at once, so their key order is already
/// their admission order whatever `now` is. An entry that breaks that run (a
/// preempted request put back at the head of its class, with a smaller key
/// and a later start) is kept apart, in a short list sorted when `order()`
/// is called; the two lists of a class are then merged, and the classes
/// merged by effective priority.
///
/// Not thread-safe: it belongs to its scheduler. Entries are pointers the
/// queue does not own; `order()`'s cursor is valid until the queue changes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

namespace weft::serve {

template <class T>
class waiting_queue {
public:
    struct entry {
        std::int64_t queue_key = 0;
        std::uint64_t waiting_since = 0;
        T* item = nullptr;
    };

    /// Adds `item`; `queue_key` must be unique in the queue.
    void push(int priority, std::int64_t queue_key, std::uint64_t waiting_since, T* item) {
        klass& c = m_classes[priority];
        const entry e{queue_key, waiting_since, item};
        if (c.run.empty() || (queue_key > c.run.rbegin()->first &&
                              waiting_since >= c.run.rbegin()->second.waiting_since)) {
            c.run.emplace_hint(c.run.end(), queue_key, e);
        } else {
            c.apart.push_back(e);
        }
        ++m_size;
    }

    /// Removes the entry pushed with this priority and key; false if none.
    bool erase(int priority, std::int64_t queue_key) {
        const auto ci = m_classes.find(priority);
        if (ci == m_classes.end()) {
            return false;
        }
        klass& c = ci->second;
        bool found = c.run.erase(queue_key) != 0;
        if (!found) {
            const auto it = std::find_if(c.apart.begin(), c.apart.end(),
                                         [&](const entry& e) { return e.queue_key == queue_key; });
            found = it != c.apart.end();
            if (found) c.apart.erase(it);
        }
        if (found) {
            --m_size;
            if (c.run.empty() && c.apart.empty()) m_classes.erase(ci);
        }
        return found;
    }

    std::size_t size() const noexcept { return m_size; }
    bool empty() const noexcept { return m_size == 0; }

    /// Entries one at a time in admission order at step count `now`:
    /// next() returns nullptr after the last.
    class cursor {
    public:
        T* next() {
            head* best = nullptr;
            const entry* best_entry = nullptr;
            std::int64_t best_effective = 0;
            for (head& h : m_heads) {
                const entry* e = h.peek(m_now, m_aging);
                if (e == nullptr) {
                    continue;
                }
                const std::int64_t eff = h.priority - aged(*e, m_now, m_aging);
                if (best == nullptr ||
                    std::pair(eff, e->queue_key) < std::pair(best_effective, best_entry->queue_key)) {
                    best = &h;
                    best_entry = e;
                    best_effective = eff;
                }
            }
            if (best == nullptr) {
                return nullptr;
            }
            best->pass(best_entry);
            return best_entry->item;
        }

    private:
        friend class waiting_queue;
        struct head {
            std::int64_t priority;
            typename std::map<std::int64_t, entry>::const_iterator run, run_end;
            std::vector<entry> apart; // sorted by (-aged, key)
            std::size_t next_apart = 0;

            /// This class's next entry: the better of its two lists' heads.
            const entry* peek(std::uint64_t now, std::uint64_t aging) const {
                const entry* r = run != run_end ? &run->second : nullptr;
                const entry* a = next_apart < apart.size() ? &apart[next_apart] : nullptr;
                if (r == nullptr || a == nullptr) {
                    return r != nullptr ? r : a;
                }
                return before(*a, *r, now, aging) ? a : r;
            }
            /// Moves past `e`, the entry peek() returned.
            void pass(const entry* e) {
                if (run != run_end && e == &run->second) {
                    ++run;
                } else {
                    ++next_apart;
                }
            }
        };
        std::vector<head> m_heads;
        std::uint64_t m_now = 0;
        std::uint64_t m_aging = 0;
    };

    cursor order(std::uint64_t now, std::uint64_t aging_steps) const {
        cursor c;
        c.m_now = now;
        c.m_aging = aging_steps;
        c.m_heads.reserve(m_classes.size());
        for (const auto& [priority, k] : m_classes) {
            typename cursor::head h{priority, k.run.begin(), k.run.end(), k.apart, 0};
            std::sort(h.apart.begin(), h.apart.end(),
                      [&](const entry& x, const entry& y) { return before(x, y, now, aging_steps); });
            c.m_heads.push_back(std::move(h));
        }
        return c;
    }

private:
    struct klass {
        std::map<std::int64_t, entry> run; // key order = waiting order: admission order
        std::vector<entry> apart;           // the rest, few
    };

    /// Steps of aging credited to `e` at step count `now`.
    static std::int64_t aged(const entry& e, std::uint64_t now, std::uint64_t aging) noexcept {
        if (aging == 0 || now <= e.waiting_since) {
            return 0;
        }
        return static_cast<std::int64_t>((now - e.waiting_since) / aging);
    }
    /// Within one class: more aged first, then the smaller key.
    static bool before(const entry& x, const entry& y, std::uint64_t now, std::uint64_t aging) noexcept {
        const std::int64_t ax = aged(x, now, aging);
        const std::int64_t ay = aged(y, now, aging);
        return ax != ay ? ax > ay : x.queue_key < y.queue_key;
    }

    std::map<int, klass> m_classes;
    std::size_t m_size = 0;
};

} // namespace weft::serve
