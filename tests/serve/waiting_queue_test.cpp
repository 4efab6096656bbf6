#include <weft/serve/waiting_queue.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

using namespace weft::serve;

namespace {

struct item {
    int priority = 0;
    std::int64_t key = 0;
    std::uint64_t since = 0;
};

/// The admission order by definition: every entry's effective priority at
/// `now`, sorted with its key.
std::vector<const item*> sorted_order(const std::vector<const item*>& waiting, std::uint64_t now, std::uint64_t aging) {
    auto effective = [&](const item* x) {
        const std::uint64_t waited = now > x->since ? now - x->since : 0;
        return std::int64_t{x->priority} - (aging != 0 ? static_cast<std::int64_t>(waited / aging) : 0);
    };
    std::vector<const item*> out = waiting;
    std::sort(out.begin(), out.end(), [&](const item* x, const item* y) {
        return std::tuple(effective(x), x->key) < std::tuple(effective(y), y->key);
    });
    return out;
}

std::vector<const item*> queue_order(const waiting_queue<const item>& q, std::uint64_t now, std::uint64_t aging) {
    std::vector<const item*> out;
    auto c = q.order(now, aging);
    while (const item* x = c.next()) out.push_back(x);
    return out;
}

} // namespace

TEST_CASE("waiting queue yields first come first served within a class, smaller priorities first",
          "[scheduler][waiting_queue]") {
    std::vector<item> items{{1, 1, 0}, {0, 2, 0}, {1, 3, 0}, {0, 4, 1}};
    waiting_queue<const item> q;
    for (const item& x : items) q.push(x.priority, x.key, x.since, &x);
    CHECK(q.size() == 4);
    CHECK(queue_order(q, 2, 0) == std::vector<const item*>{&items[1], &items[3], &items[0], &items[2]});
}

TEST_CASE("waiting queue puts a preempted entry at the head of its class until older ones age past it",
          "[scheduler][waiting_queue]") {
    // Arrivals count keys up; a preempted entry gets a smaller key and starts waiting later.
    std::vector<item> items{{0, 1, 0}, {0, 2, 3}, {0, -1, 10}};
    waiting_queue<const item> q;
    for (const item& x : items) q.push(x.priority, x.key, x.since, &x);
    // Without aging the key alone decides.
    CHECK(queue_order(q, 10, 0) == std::vector<const item*>{&items[2], &items[0], &items[1]});
    // Aging every 4 steps at step 10: waited 10, 7 and 0 steps, aged 2, 1 and 0.
    CHECK(queue_order(q, 10, 4) == std::vector<const item*>{&items[0], &items[1], &items[2]});
    // Aging every 16 steps: all aged 0, the key decides again.
    CHECK(queue_order(q, 10, 16) == std::vector<const item*>{&items[2], &items[0], &items[1]});
}

TEST_CASE("waiting queue erases by priority and key, and reports unknown ones", "[scheduler][waiting_queue]") {
    std::vector<item> items{{0, 1, 0}, {2, 2, 0}, {0, -1, 1}};
    waiting_queue<const item> q;
    for (const item& x : items) q.push(x.priority, x.key, x.since, &x);
    CHECK(q.erase(0, -1));
    CHECK(q.erase(2, 2));
    CHECK_FALSE(q.erase(2, 2));
    CHECK_FALSE(q.erase(5, 1));
    CHECK(q.size() == 1);
    CHECK(queue_order(q, 3, 1) == std::vector<const item*>{&items[0]});
    CHECK(q.erase(0, 1));
    CHECK(q.empty());
    CHECK(queue_order(q, 3, 1).empty());
}

TEST_CASE("waiting queue order equals a full sort under random arrivals, preemptions, removals and aging",
          "[scheduler][waiting_queue]") {
    const std::uint64_t aging = GENERATE(0u, 1u, 3u, 16u);
    std::mt19937_64 rng(Catch::rngSeed() + aging);
    std::vector<std::unique_ptr<item>> all;
    std::vector<const item*> waiting;
    waiting_queue<const item> q;
    std::int64_t back = 0, front = 0;
    std::uint64_t step = 0;
    for (int round = 0; round < 400; ++round) {
        step += rng() % 3;
        const int op = static_cast<int>(rng() % 10);
        if (op < 5) { // an arrival, now or (for a caller whose steps lag) a little earlier
            const std::uint64_t since = step - std::min<std::uint64_t>(step, rng() % 4 == 0 ? rng() % 5 : 0);
            all.push_back(std::make_unique<item>(item{static_cast<int>(rng() % 4), ++back, since}));
            waiting.push_back(all.back().get());
            q.push(waiting.back()->priority, waiting.back()->key, waiting.back()->since, waiting.back());
        } else if (op < 7) { // a preemption: back at the head of its class, waiting from now
            all.push_back(std::make_unique<item>(item{static_cast<int>(rng() % 4), --front, step}));
            waiting.push_back(all.back().get());
            q.push(waiting.back()->priority, waiting.back()->key, waiting.back()->since, waiting.back());
        } else if (!waiting.empty()) { // an admission or an abort, anywhere in the queue
            const std::size_t i = op == 7 ? 0 : rng() % waiting.size();
            const auto expected = sorted_order(waiting, step, aging);
            const item* x = op == 7 ? expected.front() : waiting[i];
            REQUIRE(q.erase(x->priority, x->key));
            std::erase(waiting, x);
        }
        REQUIRE(q.size() == waiting.size());
        REQUIRE(queue_order(q, step, aging) == sorted_order(waiting, step, aging));
        // Later steps age the same entries differently: the order still holds.
        REQUIRE(queue_order(q, step + 40, aging) == sorted_order(waiting, step + 40, aging));
    }
}
