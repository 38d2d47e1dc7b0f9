# Fuzz targets (libFuzzer, clang only), in tests/fuzz/.
#
# With -DARENA_FUZZ=ON (a clang build dir of its own) this defines the
# fuzzers and the seed writer, and instruments the inference library for
# coverage. In the ordinary sanitizer build it defines the ctest "fuzz",
# which makes that clang build in ${CMAKE_BINARY_DIR}/fuzz and runs each
# fuzzer for a bounded time (tests/fuzz/run.sh); it is skipped (77) where
# clang or its libFuzzer runtime is missing.
if(ARENA_FUZZ)
  target_compile_options(inference PRIVATE -fsanitize=fuzzer-no-link)
  foreach(name fuzz_gguf fuzz_tok_load fuzz_tok_encode)
    add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE inference)
  endforeach()
  add_executable(fuzz_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_seeds.c)
elseif(ARENA_SANITIZE MATCHES "address")
  # Once per `./dev test` (the ASan build), not again in the Release build.
  add_test(NAME fuzz
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run.sh
                   ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz
                   ${ARENA_SHARED_DIR})
  set_tests_properties(fuzz PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
                       LABELS fuzz)
endif()
