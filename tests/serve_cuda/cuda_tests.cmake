# weft_tests_cuda: the CUDA backend's tests (Catch2, own main). They need a
# GPU: without one the binary exits 77, which CTest reports as skipped.
# modules/serve/CMakeLists.txt includes this file and calls the function at
# the end of the top-level directory when WEFT_ENABLE_CUDA and tests are on.
function(weft_add_cuda_tests)
  find_package(Catch2 REQUIRED)
  find_package(CUDAToolkit REQUIRED)
  find_package(fmt REQUIRED)
  set(_dir "${CMAKE_CURRENT_FUNCTION_LIST_DIR}")
  file(GLOB _sources CONFIGURE_DEPENDS "${_dir}/*.cpp")
  list(REMOVE_ITEM _sources "${_dir}/main.cpp")

  # The main holds Catch2's implementation: built apart and without weft's
  # warning flags, as weft_catch_main (GCC 12 warns inside it at -O1).
  add_library(weft_tests_cuda_main OBJECT "${_dir}/main.cpp")
  target_include_directories(weft_tests_cuda_main PRIVATE "${PROJECT_SOURCE_DIR}/modules/serve/src")
  target_link_libraries(weft_tests_cuda_main PRIVATE weft::serve Catch2::Catch2 CUDA::cudart CUDA::cublas)

  add_executable(weft_tests_cuda ${_sources} $<TARGET_OBJECTS:weft_tests_cuda_main>)
  set_target_properties(weft_tests_cuda PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/tests")
  target_include_directories(weft_tests_cuda PRIVATE
    "${PROJECT_SOURCE_DIR}/modules/serve/src"   # kernel launchers, cuda_check.hpp
    "${PROJECT_SOURCE_DIR}/tests/serve")        # model_test_support.hpp
  target_link_libraries(weft_tests_cuda PRIVATE
    weft::serve weft::core Catch2::Catch2 CUDA::cudart CUDA::cublas fmt::fmt)
  weft_target_warnings(weft_tests_cuda)
  if(WEFT_TEST_LAUNCHER)
    set_property(TARGET weft_tests_cuda PROPERTY CROSSCOMPILING_EMULATOR "${WEFT_TEST_LAUNCHER}")
  endif()
  # One CTest entry for the whole binary: Catch2's test discovery would run
  # it at build time, and without a GPU it lists nothing.
  add_test(NAME serve_cuda.all COMMAND weft_tests_cuda)
  set_tests_properties(serve_cuda.all PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
endfunction()
