#include "forward.hpp"

#include <weft/detail/trampoline.hpp>
#include <weft/serve/cpu_backend.hpp>
#include <weft/thread_name.hpp>

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

namespace weft::serve {

struct cpu_backend::impl {
    impl(std::shared_ptr<const model> m, const cpu_backend_options& o)
        : options(o), cache(m->config(), o.kv_blocks, o.kv_block_size, o.kv_type), team(o.threads),
          forward(std::move(m), team, cache, o.split_step_us * 1000.0, o.sequence_lanes) {}

    /// One step handed to the step thread.
    struct job {
        const batch* b = nullptr;
        step_output* out = nullptr;
        std::exception_ptr error;
        std::coroutine_handle<> waiter;
    };

    void step_thread_main() {
        std::unique_lock lock(mutex);
        for (;;) {
            wake.wait(lock, [&] { return pending != nullptr || quit; });
            if (pending == nullptr) return; // quit with nothing left
            job* j = std::exchange(pending, nullptr);
            lock.unlock();
            try {
                run_timed(*j->b, *j->out);
            } catch (...) {
                j->error = std::current_exception();
            }
            // The awaiter continues on this thread, as the interface says.
            weft::detail::resume(j->waiter);
            lock.lock();
        }
    }

    void run_timed(const batch& b, step_output& out) {
        const auto start = std::chrono::steady_clock::now();
        forward.run(b, out);
        out.compute_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

    struct step_awaiter {
        impl* self;
        job j;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            j.waiter = h;
            // Once `pending` is published the step may run and resume (and
            // destroy) this frame, so nothing here is touched after the lock
            // is released; notifying under it keeps `self` off the frame too.
            impl* s = self;
            std::lock_guard lock(s->mutex);
            s->pending = &j;
            s->wake.notify_one();
        }
        void await_resume() {
            if (j.error) std::rethrow_exception(j.error);
        }
    };

    cpu_backend_options options;
    kv_cache cache;
    kernels::compute_team team;
    cpu_forward forward;

    std::mutex mutex;
    std::condition_variable wake;
    job* pending = nullptr;
    bool quit = false;
    std::thread step_thread;
};

cpu_backend::cpu_backend(std::shared_ptr<const model> m, cpu_backend_options opts)
    : m_impl(std::make_unique<impl>(std::move(m), opts)) {
    m_impl->step_thread = std::thread([this] {
        set_current_thread_name("weft-step");
        m_impl->step_thread_main();
    });
}

cpu_backend::~cpu_backend() {
    {
        std::lock_guard lock(m_impl->mutex);
        m_impl->quit = true;
    }
    m_impl->wake.notify_one();
    m_impl->step_thread.join();
}

const model_config& cpu_backend::config() const noexcept { return m_impl->forward.weights().config(); }
std::size_t cpu_backend::num_kv_blocks() const noexcept { return m_impl->cache.num_blocks(); }
std::size_t cpu_backend::kv_block_size() const noexcept { return m_impl->cache.block_size(); }
const model& cpu_backend::weights() const noexcept { return m_impl->forward.weights(); }
std::size_t cpu_backend::threads() const noexcept { return m_impl->team.size(); }
std::uint64_t cpu_backend::split_jobs() const noexcept { return m_impl->team.jobs_split(); }
std::uint64_t cpu_backend::lane_steps() const noexcept { return m_impl->forward.lane_steps(); }

std::string cpu_backend::describe() const {
    const char* isa = "scalar";
    switch (kernels::active_isa()) {
    case kernels::isa::avx512: isa = "avx512"; break;
    case kernels::isa::avx2: isa = "avx2"; break;
    case kernels::isa::scalar: break;
    }
    return fmt::format("cpu ({} threads, {}, {} kv cache {} blocks of {} tokens, {:.1f} MiB)", threads(), isa,
                       m_impl->cache.type() == ggml_type::f16 ? "f16" : "f32", num_kv_blocks(), kv_block_size(),
                       static_cast<double>(m_impl->cache.bytes()) / (1 << 20));
}

task<void> cpu_backend::step(const batch& b, step_output& out) {
    co_await impl::step_awaiter{m_impl.get(), impl::job{&b, &out, nullptr, {}}};
}

void cpu_backend::step_sync(const batch& b, step_output& out) { m_impl->run_timed(b, out); }

} // namespace weft::serve
