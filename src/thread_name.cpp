// weft::set_current_thread_name / current_thread_name: pthread's names.
#include <weft/thread_name.hpp>

#include <pthread.h>

#include <algorithm>
#include <cstring>

namespace weft {

void set_current_thread_name(std::string_view name) noexcept {
    char buf[max_thread_name_size + 1];
    const std::size_t n = std::min(name.size(), max_thread_name_size);
    std::memcpy(buf, name.data(), n);
    buf[n] = '\0';
    // ERANGE cannot happen (cut above); any other failure leaves the old name.
    (void)::pthread_setname_np(::pthread_self(), buf);
}

std::string current_thread_name() {
    char buf[max_thread_name_size + 1] = {};
    if (::pthread_getname_np(::pthread_self(), buf, sizeof buf) != 0) return {};
    return buf;
}

} // namespace weft
