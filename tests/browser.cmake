# tests/browser.cmake: the `browser` test. tests/browser/run.mjs starts the
# real `arena serve` on a fresh database of the test cluster and drives the
# pages in Debian's headless Chromium with playwright-core (an npm package
# of static/, installed by `./dev deps`). Exit 77 (skipped) only while the
# server answers 404 for POST /api/battles. Screenshots go to
# ${ARENA_TEST_OUT}/screenshots.
find_program(ARENA_NODE_FOR_TESTS node)
if(ARENA_NODE_FOR_TESTS)
  set(browser_node ${ARENA_NODE_FOR_TESTS})
else()
  set(browser_node node)  # fails with a clear "not found": run ./dev deps
endif()
add_test(NAME browser
         COMMAND ${browser_node} ${CMAKE_CURRENT_SOURCE_DIR}/browser/run.mjs)
set_tests_properties(browser PROPERTIES
                     ENVIRONMENT "${test_env}"
                     SKIP_RETURN_CODE 77
                     FIXTURES_REQUIRED pg
                     TIMEOUT 600
                     PROCESSORS 2)

# The pages' pure modules (SSE parser, Markdown escaping, leaderboard maths)
# under node's own test runner: no server, no browser.
add_test(NAME pages_unit
         COMMAND ${browser_node} --test
                 ${CMAKE_CURRENT_SOURCE_DIR}/browser/unit.test.mjs)
set_tests_properties(pages_unit PROPERTIES ENVIRONMENT "${test_env}" TIMEOUT 120)
