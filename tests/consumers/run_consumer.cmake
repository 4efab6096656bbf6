# Builds and runs one consumer project against weft (run by ctest with cmake -P).
#
#   MODE=find_package      install WEFT_BUILD_DIR into WORK_DIR/prefix, then build
#                          CONSUMER_DIR with -DCMAKE_PREFIX_PATH=WORK_DIR/prefix
#   MODE=add_subdirectory  build CONSUMER_DIR with -DWEFT_SOURCE_DIR=<weft source>
#
# Also: CONSUMER_DIR, WORK_DIR, CXX_COMPILER, GENERATOR, MAKE_PROGRAM, BUILD_TYPE,
# CXX_FLAGS, LINKER_FLAGS, LAUNCHER (|-separated command prefix for the binary).
cmake_minimum_required(VERSION 3.25)

foreach(_var MODE CONSUMER_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${_var} is required")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(_extra_args "")
if(MODE STREQUAL "find_package")
  if(NOT WEFT_BUILD_DIR)
    message(FATAL_ERROR "run_consumer.cmake: WEFT_BUILD_DIR is required")
  endif()
  set(_prefix "${WORK_DIR}/prefix")
  message(STATUS "Installing ${WEFT_BUILD_DIR} into ${_prefix}")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" --install "${WEFT_BUILD_DIR}"
            --prefix "${_prefix}" --config "${BUILD_TYPE}"
    COMMAND_ERROR_IS_FATAL ANY)
  list(APPEND _extra_args
    "-DCMAKE_PREFIX_PATH=${_prefix}"
    "-DWEFT_EXPECTED_PREFIX=${_prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "add_subdirectory")
  if(NOT WEFT_SOURCE_DIR)
    message(FATAL_ERROR "run_consumer.cmake: WEFT_SOURCE_DIR is required")
  endif()
  list(APPEND _extra_args "-DWEFT_SOURCE_DIR=${WEFT_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

if(MAKE_PROGRAM)
  list(APPEND _extra_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

set(_build "${WORK_DIR}/build")
message(STATUS "Configuring consumer ${CONSUMER_DIR}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${_build}"
          -G "${GENERATOR}"
          "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
          "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
          "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
          "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}"
          ${_extra_args}
  COMMAND_ERROR_IS_FATAL ANY)

message(STATUS "Building consumer")
execute_process(
  COMMAND "${CMAKE_COMMAND}" --build "${_build}" --config "${BUILD_TYPE}" --parallel 2
  COMMAND_ERROR_IS_FATAL ANY)

set(_exe "${_build}/weft_consumer")
if(NOT EXISTS "${_exe}")
  file(GLOB_RECURSE _exe "${_build}/weft_consumer" "${_build}/weft_consumer.exe")
  list(GET _exe 0 _exe)
endif()
string(REPLACE "|" ";" _launcher "${LAUNCHER}")
message(STATUS "Running ${_exe}")
execute_process(COMMAND ${_launcher} "${_exe}" RESULT_VARIABLE _rc)
if(NOT _rc STREQUAL "0")
  message(FATAL_ERROR "consumer (${MODE}) exited with '${_rc}', expected 0")
endif()
message(STATUS "consumer (${MODE}) OK")
