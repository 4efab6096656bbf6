// cuda_backend when weft is built without CUDA (WEFT_ENABLE_CUDA=OFF): the
// same symbols, so that callers (weft-serve --device cuda) build everywhere
// and fail with a clear message at run time.
#include <weft/serve/cuda_backend.hpp>

#include <exception>
#include <stdexcept>

namespace weft::serve {

namespace {

constexpr const char* without_cuda =
    "weft was built without CUDA (configure with -DWEFT_ENABLE_CUDA=ON and the CUDA toolkit installed)";

[[noreturn]] void no_cuda() { throw std::runtime_error(without_cuda); }

} // namespace

struct cuda_backend::impl {};

cuda_backend::cuda_backend(std::shared_ptr<const model>, cuda_backend_options) { no_cuda(); }
cuda_backend::~cuda_backend() = default;

// Unreachable: no cuda_backend can be constructed.
const model_config& cuda_backend::config() const noexcept { std::terminate(); }
std::size_t cuda_backend::num_kv_blocks() const noexcept { return 0; }
std::size_t cuda_backend::kv_block_size() const noexcept { return 0; }
std::string cuda_backend::describe() const { no_cuda(); }
task<void> cuda_backend::step(const batch&, step_output&) { no_cuda(); }
task<void> cuda_backend::step_argmax(const batch&, std::vector<token_id>&) { no_cuda(); }
void cuda_backend::step_sync(const batch&, step_output&) { no_cuda(); }
void cuda_backend::step_argmax_sync(const batch&, std::vector<token_id>&) { no_cuda(); }
const model& cuda_backend::weights() const noexcept { std::terminate(); }
const cuda_backend_options& cuda_backend::options() const noexcept { std::terminate(); }
std::size_t cuda_backend::step_weight_bytes() const noexcept { return 0; }
std::size_t cuda_backend::graphs_captured() const noexcept { return 0; }

bool cuda_available() noexcept { return false; }

std::string cuda_describe_devices() { return without_cuda; }

} // namespace weft::serve
