#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

weft::task<int> f() { co_return 41; }

int main() { return weft::sync_wait(f()) == 41 ? 0 : 1; }
