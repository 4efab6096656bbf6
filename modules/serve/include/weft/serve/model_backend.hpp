/// \file
/// `model_backend`: the asynchronous interface between the serving engine
/// and whatever runs the model (the CPU backend; a GPU backend plugs in the
/// same way).
///
/// `co_await backend.step(b, out)` runs one forward step over batch `b`
/// (see batch.hpp) and fills `out` with its logits. The step runs on the
/// backend's own threads: the awaiting coroutine suspends while it computes
/// and is resumed on a backend thread when it is done (hop back to your own
/// executor afterwards if it matters). Errors (a batch that does not fit the
/// cache, a position past the context) are thrown from the `co_await`.
///
/// The backend owns the KV cache: `num_kv_blocks()` blocks of
/// `kv_block_size()` tokens, indexed by the block ids in the batch.
///
/// Lifetime: the backend must outlive every step in flight; the batch and
/// the output must stay valid until the step completes.
/// Threading: one step at a time; the other members are thread-safe.
#pragma once

#include <weft/serve/batch.hpp>
#include <weft/serve/model_config.hpp>
#include <weft/task.hpp>

#include <cstddef>
#include <string>

namespace weft::serve {

class model_backend {
public:
    virtual ~model_backend() = default;

    virtual const model_config& config() const noexcept = 0;
    virtual std::size_t num_kv_blocks() const noexcept = 0;
    virtual std::size_t kv_block_size() const noexcept = 0;
    /// One line for logs: "cpu (2 threads, avx512)".
    virtual std::string describe() const = 0;

    virtual task<void> step(const batch& b, step_output& out) = 0;

    /// True when the coroutine a step resumed may stay on that backend
    /// thread, schedule there, and await the next step from it: the CPU
    /// backend's step thread then takes the next batch as soon as it is
    /// built, with no thread to wake in between. False (the default): the
    /// engine hops back to its own thread after every step.
    virtual bool continues_on_step_thread() const noexcept { return false; }
};

} // namespace weft::serve
