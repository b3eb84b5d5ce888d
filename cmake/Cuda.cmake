# CUDA: when nvcc exists the optimized/ targets are always compiled, with or without a
# device. Architectures are fixed to the two we target: sm_90a (H100/H200, wgmma/TMA) and
# sm_80 (A100); nothing else, to keep nvcc time down on 2-core CI machines.
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
    set(DSV4_CUDA_GENCODE
      -gencode=arch=compute_90a,code=sm_90a
      -gencode=arch=compute_80,code=sm_80)
    message(STATUS "dsv4: CUDA ${CMAKE_CUDA_COMPILER_VERSION}: building optimized/ for sm_90a, sm_80")
  else()
    message(STATUS "dsv4: nvcc not found: optimized/ is not built")
  endif()
endif()
