// join: the one way messages list names.
#include "catch.h"

#include "sagevid/models/join.h"

#include <string>
#include <string_view>
#include <vector>

TEST_CASE("join lists items between separators and cuts a long list to a limit", "[join]") {
  const std::vector<std::string> names = {"a", "b", "c"};
  CHECK(sagevid::join(names) == "a, b, c");
  CHECK(sagevid::join(names, ",") == "a,b,c");
  CHECK(sagevid::join(std::vector<std::string>{}).empty());
  CHECK(sagevid::join(std::vector<std::string_view>{"only"}) == "only");
  CHECK(sagevid::join(names, ", ", 2) == "a, b, ...");
  CHECK(sagevid::join(names, ", ", 3) == "a, b, c");  // exactly the limit: nothing cut
  CHECK(sagevid::join(names, ", ", 0) == "...");
}
