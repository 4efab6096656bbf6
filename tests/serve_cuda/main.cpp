// weft_tests_cuda: the CUDA backend's tests. Without a usable CUDA device it
// prints why and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE).
#define CATCH_CONFIG_RUNNER
#include "cuda_test_support.hpp"

#include <weft/serve/cuda_backend.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

int main(int argc, char** argv) {
    if (argc >= 2 && std::string_view(argv[1]) == weft::serve::cuda::test::fault_child_flag) {
        return weft::serve::cuda::test::run_fault_child();
    }
    if (!weft::serve::cuda_available()) {
        std::printf("weft_tests_cuda: skipped: %s\n", weft::serve::cuda_describe_devices().c_str());
        return 77;
    }
    std::printf("%s\n", weft::serve::cuda_describe_devices().c_str());
    const int failed = Catch::Session().run(argc, argv);
    // 77 failures must not read as "skipped".
    return failed == 77 ? 1 : failed;
}
