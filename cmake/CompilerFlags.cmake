# Host compiler flags. AVX2+FMA rather than the host-native target, which was 20-40 % slower on
# the CI machine kind (targets.md).
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_library(dsv4_flags INTERFACE)
target_compile_options(dsv4_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-mavx2 -mfma -Wall -Wextra -Wno-psabi -Wno-missing-field-initializers>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${DSV4_WERROR}>>:-Werror>)
# Release keeps asserts out but keeps frame pointers for profiling.
set(CMAKE_CXX_FLAGS_RELEASE "-O2 -DNDEBUG -fno-omit-frame-pointer")
