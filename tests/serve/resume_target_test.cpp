// resume_target: the engine's type-erased way back to a reader's executor,
// one handle at a time or a step's batch at once.
#include <weft/serve/engine.hpp>

#include <catch2/catch.hpp>

#include <coroutine>
#include <span>
#include <vector>

using weft::serve::resume_target;

namespace {

/// Records what it is handed, without resuming anything.
struct post_only {
    std::vector<void*> posted;
    void post(std::coroutine_handle<> h) { posted.push_back(h.address()); }
};

struct with_bulk : post_only {
    std::vector<std::size_t> batches;
    void post_bulk(std::span<const std::coroutine_handle<>> hs) {
        batches.push_back(hs.size());
        for (std::coroutine_handle<> h : hs) posted.push_back(h.address());
    }
};

std::vector<std::coroutine_handle<>> handles(int n) {
    // Addresses stand for handles: nothing here resumes them.
    static int anchors[8];
    std::vector<std::coroutine_handle<>> hs;
    for (int i = 0; i < n; ++i) hs.push_back(std::coroutine_handle<>::from_address(&anchors[i]));
    return hs;
}

} // namespace

TEST_CASE("resume_target hands a batch to an executor's post_bulk in one call", "[engine]") {
    with_bulk ex;
    const resume_target t(ex);
    const auto hs = handles(3);
    t.post_bulk(hs);
    CHECK(ex.batches == std::vector<std::size_t>{3});
    CHECK(ex.posted == std::vector<void*>{hs[0].address(), hs[1].address(), hs[2].address()});
}

TEST_CASE("resume_target posts a batch one by one to an executor without post_bulk", "[engine]") {
    post_only ex;
    const resume_target t(ex);
    const auto hs = handles(3);
    t.post_bulk(hs);
    CHECK(ex.posted == std::vector<void*>{hs[0].address(), hs[1].address(), hs[2].address()});
}

TEST_CASE("resume_target tells whether two targets post to the same executor", "[engine]") {
    post_only a, b;
    const resume_target ta(a), ta2(a), tb(b);
    CHECK(ta.same_executor(ta2));
    CHECK_FALSE(ta.same_executor(tb));
    CHECK(static_cast<bool>(ta));
    CHECK_FALSE(static_cast<bool>(resume_target{}));
}
