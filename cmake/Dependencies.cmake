# System packages, all installed by scripts/setup from Debian's apt.
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(Boost 1.81 REQUIRED COMPONENTS json)
find_package(OpenMP REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
if(DSV4_TESTS)
  find_package(GTest REQUIRED)
endif()
find_package(benchmark REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# The http eval backend's client (libcurl4-openssl-dev) and `dsv4 serve`'s server
# (libcpp-httplib-dev: Debian ships it compiled, found through pkg-config).
find_package(CURL REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# Multi-rank runs (comm/, docs/parallel.md): OpenMPI from apt (libopenmpi-dev, openmpi-bin).
# Optional: without it the MPI transport and the mpi tests are left out of the build.
# The C API through the C++ compiler (the project enables no C), without the removed C++ bindings.
set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI COMPONENTS CXX)
set(DSV4_HAVE_MPI ${MPI_CXX_FOUND})
