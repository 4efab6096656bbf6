// Helpers shared by the io tests: the backends every test runs on, and a
// string's bytes for the write calls.
#pragma once

#include <weft/io/io_context.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <span>
#include <string>

namespace weft::io::test {

/// The backends under test: automatic (io_uring here, epoll where the kernel
/// refuses it) and epoll. A test case that calls it runs once for each.
inline io_backend backend_under_test() { return GENERATE(io_backend::automatic, io_backend::epoll); }

inline std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

} // namespace weft::io::test
