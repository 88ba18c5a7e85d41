// REQUIRE(cond): the fuzz targets' invariant check; a failure aborts, so libFuzzer saves the input.
#pragma once
#include <cstdio>
#include <cstdlib>

#define REQUIRE(c)                                                              \
  do {                                                                          \
    if (!(c)) {                                                                 \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #c); \
      abort();                                                                  \
    }                                                                           \
  } while (0)
