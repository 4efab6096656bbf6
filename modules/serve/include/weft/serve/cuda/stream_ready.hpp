/// \file
/// `cuda::stream_ready`: `co_await stream_ready{stream, executor}` suspends
/// the coroutine until everything enqueued on a CUDA stream so far has run,
/// then resumes it through `executor.post(handle)` (an io_context, a
/// thread_pool, anything with `post(std::coroutine_handle<>)`). No thread
/// blocks in cudaStreamSynchronize.
///
/// How: await_suspend enqueues a host callback (cudaStreamAddCallback) behind
/// the stream's work; CUDA's callback thread runs it, and it does nothing but
/// record the stream's status and post the handle, so no CUDA call ever runs
/// on the callback thread (CUDA forbids it) and the coroutine continues on
/// its executor. cudaStreamAddCallback rather than cudaLaunchHostFunc: the
/// latter is never called once the context has faulted, which would leave
/// the coroutine suspended for ever; the former is called exactly once, with
/// the error.
///
/// Errors: a fault reported to the callback, a failure to enqueue it, or an
/// error cudaStreamQuery reports after the resumption (other than "not
/// ready": later work may have been enqueued meanwhile) is thrown from the
/// co_await as `cuda_error` naming CUDA's error. Either way the coroutine
/// continues on the executor, never inline in await_suspend.
///
/// Lifetime: the stream and the executor must outlive the wait; the
/// executor's `post` must not throw (a thread_pool must not be shut down
/// while a wait is pending): the callback cannot report it, so it terminates.
/// Threading: one awaiter per co_await; the stream may be shared (the wait
/// covers whatever was enqueued on it before the co_await, from any thread).
/// Needs the CUDA runtime headers.
#pragma once

#include <weft/serve/cuda/cuda_error.hpp>

#include <cuda_runtime_api.h>

#include <concepts>
#include <coroutine>
#include <string>

namespace weft::serve::cuda {

class stream_ready {
public:
    template <class Executor>
        requires requires(Executor& e, std::coroutine_handle<> h) { e.post(h); }
    stream_ready(cudaStream_t stream, Executor& executor) noexcept
        : m_stream(stream), m_executor(&executor),
          m_post([](void* e, std::coroutine_handle<> h) { static_cast<Executor*>(e)->post(h); }) {}

    bool await_ready() const noexcept { return false; }

    void await_suspend(std::coroutine_handle<> h) {
        m_handle = h;
        const cudaError_t e = cudaStreamAddCallback(m_stream, &on_stream_done, this, 0);
        if (e != cudaSuccess) {
            // Continue on the executor all the same (the coroutine always
            // does); await_resume throws.
            m_status = e;
            m_failed_call = "cudaStreamAddCallback";
            m_post(m_executor, h);
        }
        // From here the coroutine may already run on another thread and this
        // awaiter be gone: touch nothing.
    }

    void await_resume() const {
        if (m_status != cudaSuccess) throw_error(m_failed_call, m_status);
        const cudaError_t e = cudaStreamQuery(m_stream);
        if (e != cudaSuccess && e != cudaErrorNotReady) throw_error("cudaStreamQuery", e);
    }

private:
    static void CUDART_CB on_stream_done(cudaStream_t, cudaError_t status, void* self) noexcept {
        auto* a = static_cast<stream_ready*>(self);
        a->m_status = status;
        // post() publishes m_status to the resuming thread; after it, `a`
        // may be destroyed.
        a->m_post(a->m_executor, a->m_handle);
    }

    [[noreturn]] static void throw_error(const char* call, cudaError_t e) {
        throw cuda_error(std::string("CUDA stream: ") + call + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e),
                         static_cast<int>(e));
    }

    cudaStream_t m_stream;
    void* m_executor;
    void (*m_post)(void*, std::coroutine_handle<>);
    std::coroutine_handle<> m_handle;
    cudaError_t m_status = cudaSuccess;
    const char* m_failed_call = "stream work";
};

} // namespace weft::serve::cuda
