// One test case shared by the suites that use the shared test device (gpu_support.hpp): it runs last, since doctest
// orders test cases by file path and "tests/zz_..." sorts after every "tests/<room>/..." file, and finds every
// device allocation of the suite freed.
#include "gpu_support.hpp"

TEST_CASE("zz: no device memory is leaked") { inferno::testing::check_no_device_memory_leaked(); }
