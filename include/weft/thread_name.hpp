/// \file
/// `set_current_thread_name` / `current_thread_name`: the calling thread's
/// name as the operating system shows it (`top -H`, `perf`, `gdb`,
/// `/proc/<pid>/task/<tid>/comm`).
///
/// weft names the threads it starts: a `thread_pool`'s workers are
/// `<name>-<index>` (the pool's name, "weft-pool" by default), and the
/// serving module's threads say what they run ("weft-engine", "weft-step",
/// "weft-http-0", ...). A name longer than the system allows (15 bytes on
/// Linux) is cut to fit, not refused.
///
/// Threading: each call affects or reads the calling thread only; both are
/// safe to call from any thread at any time. Naming is best effort: where the
/// system refuses (or has no thread names), the set is a no-op and the get
/// returns an empty string.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace weft {

/// The longest name the system keeps, in bytes (Linux: 15, plus the
/// terminating zero it stores).
inline constexpr std::size_t max_thread_name_size = 15;

/// Names the calling thread `name`, cut to `max_thread_name_size` bytes.
void set_current_thread_name(std::string_view name) noexcept;

/// The calling thread's name, or an empty string where it cannot be read.
[[nodiscard]] std::string current_thread_name();

} // namespace weft
