# weft-cuda-bench (bench/serve/cuda/cuda_bench.cpp): the CUDA backend against
# the GPU's copy bandwidth. modules/serve/CMakeLists.txt includes this file
# and calls the function at the end of the top-level directory when
# WEFT_ENABLE_CUDA and benchmarks are on. run_on_device.sh runs it.
function(weft_add_cuda_bench)
  find_package(CUDAToolkit REQUIRED)
  find_package(CLI11 REQUIRED)
  find_package(fmt REQUIRED)
  find_package(nlohmann_json 3.10 REQUIRED)
  add_executable(weft_cuda_bench "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/cuda_bench.cpp")
  set_target_properties(weft_cuda_bench PROPERTIES
    OUTPUT_NAME weft-cuda-bench
    RUNTIME_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/bench/serve/cuda")
  target_link_libraries(weft_cuda_bench PRIVATE
    weft::serve CUDA::cudart CLI11::CLI11 fmt::fmt nlohmann_json::nlohmann_json)
  weft_target_warnings(weft_cuda_bench)
endfunction()
