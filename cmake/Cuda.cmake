# CUDA: when nvcc exists the optimized/ targets are always compiled, with or without a
# device. Architectures: DSV4_CUDA_ARCHS, a list of the two we target, 90a (H100/H200,
# wgmma/TMA) and 80 (A100); default both. The ci preset builds 90a only (the lent device's
# arch: every CUDA source still compiles on every commit, at half the nvcc time on 2 cores).
set(DSV4_CUDA_ARCHS "90a;80" CACHE STRING "CUDA architectures to build for: 90a and/or 80")
set(DSV4_HAVE_CUDA OFF)
if(DSV4_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Explicit -gencode flags below; keep CMake from adding its own.
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    # CMake < 3.26 knows no nvcc flag for C++20 ("requires the language dialect CUDA20");
    # nvcc 12+ accepts -std=c++20.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(DSV4_HAVE_CUDA ON)
    set(DSV4_CUDA_GENCODE)
    foreach(arch IN LISTS DSV4_CUDA_ARCHS)
      if(NOT arch STREQUAL "90a" AND NOT arch STREQUAL "80")
        message(FATAL_ERROR "DSV4_CUDA_ARCHS: expected 90a and/or 80, found '${arch}'")
      endif()
      list(APPEND DSV4_CUDA_GENCODE -gencode=arch=compute_${arch},code=sm_${arch})
    endforeach()
    if(NOT DSV4_CUDA_GENCODE)
      message(FATAL_ERROR "DSV4_CUDA_ARCHS is empty")
    endif()
    message(STATUS "dsv4: CUDA ${CMAKE_CUDA_COMPILER_VERSION}: building optimized/ for sm_${DSV4_CUDA_ARCHS}")
  else()
    message(STATUS "dsv4: nvcc not found: optimized/ is not built")
  endif()
endif()
